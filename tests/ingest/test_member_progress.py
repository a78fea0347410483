"""Progress counts members: an archive's members (nested ones too) and a message's attachments, as the extractor
reads them and as the writer stores them, for files that take a while."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from builders import make_email, pdf_bytes
from pausing_extractor import pausing_prepare

from rlm_desktop.ingest import pipeline
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.progress import FileFinished, MembersProgressed
from rlm_desktop.store.case import Case


def make_bundle(path: Path, mails: int = 12) -> int:
    """A ZIP of emails (each with a PDF attached), PDFs and a nested ZIP; returns how many documents it holds."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.writestr("inner/a.txt", "first nested note")
        nested.writestr("inner/b.txt", "second nested note")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for i in range(mails):
            mail = make_email(
                f"Transfer {i}",
                f"Please wire {i} CHF.",
                attachments=[("r.pdf", pdf_bytes([f"R{i}"]), "application/pdf")],
            )
            bundle.writestr(f"mail/{i}.eml", mail.as_bytes())
            bundle.writestr(f"docs/{i}.pdf", pdf_bytes([f"Statement {i}"]))
        bundle.writestr("nested.zip", inner.getvalue())
    return mails * 3 + 3  # each mail, its attachment and a PDF; the nested ZIP and its two notes


@pytest.mark.parametrize("jobs", [1, None], ids=["in process", "extractor process"])
def test_the_writer_counts_members_as_it_stores_them(tmp_path, monkeypatch, jobs):
    monkeypatch.setattr(pipeline, "MEMBER_PROGRESS_INTERVAL", 0.0)  # every member, so the count is exact
    members = make_bundle(tmp_path / "bundle.zip")
    (tmp_path / "note.txt").write_text("no members here")
    events: list[object] = []
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(
            case, [tmp_path / "bundle.zip", tmp_path / "note.txt"], jobs=jobs, progress=events.append
        )
        assert report.added == 2 and report.failed == [] and report.child_failures == []
        stored_in_case = len([d for d in case.documents() if d.parent_id is not None])
    assert stored_in_case == members
    shown = str(tmp_path / "bundle.zip")
    stored = [e for e in events if isinstance(e, MembersProgressed) and e.stored]
    assert {e.path for e in stored} == {shown} and {e.unit for e in stored} == {"members"}
    counts = [e.members for e in stored]
    assert counts == list(range(1, members + 1)) and {e.total for e in stored} == {members}
    read = [e for e in events if isinstance(e, MembersProgressed) and not e.stored]
    assert read and read[-1].members == members and all(e.path == shown for e in read)
    # the counts come between the archive's start and end, before the note's
    finished = [i for i, e in enumerate(events) if isinstance(e, FileFinished)]
    assert events.index(read[0]) < events.index(stored[-1]) < finished[0]


def test_counts_cross_from_the_extractor_process_while_the_writer_waits(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "MEMBER_PROGRESS_INTERVAL", 0.0)
    members = make_bundle(tmp_path / "bundle.zip", mails=3)
    marker = tmp_path / "bundle.zip.seen"
    live: list[MembersProgressed] = []

    def progress(event: object) -> None:
        if isinstance(event, MembersProgressed) and not event.stored:
            live.append(event)
            marker.touch()  # lets the extractor hand its result back

    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "bundle.zip"], jobs=2, extractor=pausing_prepare, progress=progress)
    assert report.added == 1
    # the result was held until a count arrived, so these came from the worker while it still ran
    assert live and 1 <= live[0].members <= members and live[-1].members == members


def test_the_terminal_progress_line_counts_an_archives_members(tmp_path):
    """`rlm-desktop ingest` on a terminal: its progress line names the archive's members as they are stored."""
    import os
    import pty
    import subprocess
    import sys

    members = make_bundle(tmp_path / "bundle.zip", mails=2)
    leader, follower = pty.openpty()  # stderr is a terminal, as when a person runs it
    env = {**os.environ, "RLM_DESKTOP_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "ingest", "--case", "c", str(tmp_path / "bundle.zip")],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        timeout=120,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed and everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.returncode == 0, shown
    assert f"bundle.zip: {members} of {members} members stored".encode() in shown
    assert b"1 added" in proc.stdout
