"""A SIGKILLed ingest leaves a consistent case, and the next ingest resumes without duplicates."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from builders import make_mbox

from rlm_desktop.ingest import pipeline
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

DRIVER = textwrap.dedent(
    """
    import sys
    from rlm_desktop.ingest import pipeline
    from rlm_desktop.ingest.progress import FileFinished, FileProgressed
    from rlm_desktop.store.case import Case
    pipeline.MAILBOX_BATCH_MESSAGES = 50
    def on_event(event):
        if isinstance(event, (FileProgressed, FileFinished)):
            print(type(event).__name__, flush=True)
    pipeline.ingest(Case.open(sys.argv[1]), sys.argv[2:], progress=on_event)
    print("DONE", flush=True)
    """
)


def _run_until(case_path, source, marker: str, count: int) -> set[int]:
    """Start an ingest in a child process and SIGKILL it once `marker` was printed `count` times.

    Returns the pids of the processes it had started (extractor workers), to check they do not outlive it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(case_path), str(source)], stdout=subprocess.PIPE, text=True
    )
    seen = 0
    for line in proc.stdout:
        if line.strip() == marker:
            seen += 1
            if seen == count:
                helpers = _children(proc.pid)
                proc.send_signal(signal.SIGKILL)
                break
        assert line.strip() != "DONE", "the ingest finished before it could be killed"
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return helpers


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_consistent(case_path) -> None:
    conn = sqlite3.connect(case_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.execute(
        "INSERT INTO chunks_fts(chunks_fts, rank) VALUES('integrity-check', 1)"
    )  # FTS matches content
    orphans = conn.execute(
        "SELECT COUNT(*) FROM documents d WHERE parent_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM documents p WHERE p.id = d.parent_id)"
    ).fetchone()[0]
    assert orphans == 0
    conn.close()


def test_killed_mailbox_ingest_resumes_where_it_stopped(tmp_path):
    mbox = tmp_path / "big.mbox"
    ids = make_mbox(mbox, 600)
    case_path = tmp_path / "case.sqlite"
    _run_until(case_path, mbox, "FileProgressed", 3)
    _assert_consistent(case_path)
    with Case.open(case_path) as case:
        (box,) = case.documents(kind="mailbox")
        assert box.status == "partial"
        stored = len(case.documents(kind="email"))
        assert stored == box.meta["messages"] >= 150  # whole batches only
        pipeline.MAILBOX_BATCH_MESSAGES = 50
        try:
            report = ingest(case, [mbox])
        finally:
            pipeline.MAILBOX_BATCH_MESSAGES = 200
        assert report.added == 1 and not report.failed
        emails = case.documents(kind="email")
        assert sorted(e.meta["message_id"] for e in emails) == sorted(ids)  # all there, none twice
        assert case.document(box.id).status == "complete"
        assert case.document(box.id).path == str(mbox)


def test_killed_folder_ingest_keeps_whole_files_and_finishes_later(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(400):
        (source / f"doc{i:03}.txt").write_text(f"document number {i}\n" * 50)
    case_path = tmp_path / "case.sqlite"
    helpers = _run_until(case_path, source, "FileFinished", 40)
    _assert_consistent(case_path)
    time.sleep(1.5)  # the extractor processes notice their parent is gone within a second
    assert helpers, "the folder ingest should have used extractor processes"
    assert not [pid for pid in helpers if _alive(pid)], "extractor processes outlived the killed ingest"
    with Case.open(case_path) as case:
        done = case.count_documents()
        assert 40 <= done < 400
        report = ingest(case, [source])
        assert report.added == 400 - done and report.unchanged == done
        assert case.count_documents() == 400
