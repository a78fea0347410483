"""Outlook stores: every message an email with its folder, streamed and resumable like an mbox.

No PST can be written here (no library writes one), so the store tests read the shared sample corpus's PST
when it is beside the checkout, and skip with that reason when it is not.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from rlm_desktop.ingest import pipeline
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.progress import FileProgressed
from rlm_desktop.store.case import Case

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mbox" / "ingestfile__testPST.pst"
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason=f"the shared sample PST is not at {SAMPLE}")
pytest.importorskip("pypff", reason="libpff-python is not installed")

SUBJECTS = [
    "Re: Feature Generators",
    'Re: init tokenizer fails: "Bad type in putfield/putstatic"',
    "Feature Generators",
    "[jira] [Resolved] (TIKA-1249) Vcard files detection",
    "[jira] [Commented] (TIKA-1250) Process loops infintely processing a CHM file",
    '[WEBINAR] - "Introducing Couchbase Server 2.5"',
]


@needs_sample
@pytest.mark.parametrize("jobs", [1, None], ids=["in process", "libpff in an extractor process"])
def test_every_message_of_the_store_is_an_email_with_its_folder_and_thread(tmp_path, jobs):
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [SAMPLE], jobs=jobs)
        assert report.failed == [] and report.child_failures == []
        store, *messages = case.documents()
        assert store.kind == "mailbox" and store.meta["format"] == "pst" and store.meta["messages"] == 6
        assert [m.title for m in messages] == SUBJECTS and {m.kind for m in messages} == {"email"}
        assert {m.meta["folder"] for m in messages} == {"Début du fichier de données Outlook"}
        first = messages[0]
        assert first.meta["from"] == ["Jörn Kottmann <kottmann@gmail.com>"]
        assert first.meta["date"] == "2014-02-26T08:50:04+01:00"
        assert first.meta["thread_id"] == messages[2].meta["thread_id"]  # the reply joins its question
        assert "Feature Generators" in case.text(first.id)
        assert ingest(case, [SAMPLE], jobs=1).unchanged == 1


@needs_sample
def test_a_stopped_store_ingest_resumes_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "MAILBOX_BATCH_MESSAGES", 2)
    stop = threading.Event()
    seen: list[int] = []

    def progress(event: object) -> None:
        if isinstance(event, FileProgressed):
            seen.append(event.messages)
            stop.set()  # as Ctrl-C after the first batch was committed

    with Case.open(tmp_path / "case.sqlite") as case:
        first = ingest(case, [SAMPLE], jobs=1, progress=progress, cancel=stop)
        assert first.cancelled and seen == [2]
        (partial,) = [d for d in case.documents() if d.kind == "mailbox"]
        assert partial.meta["resume_offset"] == 2
        stop.clear()
        seen.clear()
        again = ingest(case, [SAMPLE], jobs=1, progress=lambda e: None)
        assert again.failed == [] and not again.cancelled
        titles = [d.title for d in case.documents() if d.kind == "email"]
        assert titles == SUBJECTS


def test_a_damaged_store_fails_with_a_reason_and_the_rest_goes_on(tmp_path):
    (tmp_path / "broken.pst").write_bytes(b"!BDN" + bytes(600))
    (tmp_path / "note.txt").write_text("still read")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path], jobs=1)
        (failure,) = report.failed
        assert failure["path"].endswith("broken.pst") and "Outlook PST/OST" in failure["error"]
        assert report.added == 1


def test_without_libpff_the_reason_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pypff", None)  # as on a machine where it is not installed
    (tmp_path / "mail.pst").write_bytes(b"!BDN" + bytes(600))
    with Case.open(tmp_path / "case.sqlite") as case:
        (failure,) = ingest(case, [tmp_path / "mail.pst"], jobs=1).failed
    assert "pip install libpff-python" in failure["error"] and "readpst" in failure["error"]


KILL_DRIVER = """
import sys
from rlm_desktop.ingest import pipeline
from rlm_desktop.ingest.progress import FileProgressed
from rlm_desktop.store.case import Case
pipeline.MAILBOX_BATCH_MESSAGES = 2
def on_event(event):
    if isinstance(event, FileProgressed):
        print("batch", event.messages, flush=True)
        sys.stdin.readline()  # hold here, the batch committed, until the test kills this process
pipeline.ingest(Case.open(sys.argv[1]), [sys.argv[2]], progress=on_event)
print("DONE", flush=True)
"""


@needs_sample
def test_a_store_ingest_killed_mid_store_resumes_like_an_mbox(tmp_path):
    import signal
    import sqlite3
    import subprocess

    case_path = tmp_path / "case.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_DRIVER, str(case_path), str(SAMPLE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().split() == ["batch", "2"]  # libpff read it in an extractor process
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    conn = sqlite3.connect(case_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Case.open(case_path) as case:
        (box,) = case.documents(kind="mailbox")
        assert box.status == "partial" and box.meta["resume_offset"] == 2 and box.meta["messages"] == 2
        assert [d.title for d in case.documents(kind="email")] == SUBJECTS[:2]
        report = ingest(case, [SAMPLE])
        assert report.added == 1 and report.failed == []
        assert [d.title for d in case.documents(kind="email")] == SUBJECTS  # the rest once, none twice
        assert case.document(box.id).status == "complete"
        assert ingest(case, [SAMPLE]).unchanged == 1


class Attachment:
    """What the rebuild reads of a pypff attachment."""

    def __init__(self, name: str | None, data: bytes, size: int | None = None):
        self.long_filename, self.size, self._data = name, len(data) if size is None else size, data

    def read_buffer(self, size: int) -> bytes:
        return self._data[:size]


class StoreItem:
    """What the rebuild reads of a pypff message (no library writes a PST to get real ones from)."""

    transport_headers: str | None = (
        "Received: from mx.example.org\r\n by mail.example.org; Tue, 4 Mar 2014 10:00:00 +0000\r\n"
        "From: =?utf-8?q?J=C3=B6rn?= <j@example.org>\r\nTo: a@example.org,\r\n b@example.org\r\n"
        "Message-ID: <two@example.org>\r\nIn-Reply-To: <one@example.org>\r\n"
        "Content-Type: multipart/mixed; boundary=gone\r\nDate: Tue, 4 Mar 2014 10:00:00 +0000\r\n\r\n"
    )
    subject = "Überweisung nach Zürich"
    sender_name = "Jörn"
    plain_text_body: bytes | None = "Bitte 500 CHF überweisen.\r\n".encode()
    html_body: bytes | None = None
    delivery_time = None
    client_submit_time = None
    creation_time = None

    def __init__(self, **fields):
        self.attachments = [Attachment("Beleg März.pdf", b"%PDF-1.4 receipt"), Attachment("notes.txt", b"row four")]
        for name, value in fields.items():
            setattr(self, name, value)

    @property
    def number_of_attachments(self) -> int:
        return len(self.attachments)

    def get_attachment(self, index: int) -> Attachment:
        return self.attachments[index]


def test_a_rebuilt_store_message_keeps_non_ascii_headers_and_its_attachments():
    """The rebuild on an object with pypff's message attributes: its transport headers' body fields dropped, a
    non-ASCII subject encoded, the attachments kept byte for byte."""
    from rlm_desktop.ingest.mail import extract_email
    from rlm_desktop.ingest.pst import message_bytes
    from rlm_desktop.ingest.source import Source

    raw = message_bytes(StoreItem())
    assert raw.isascii() and b"boundary=gone" not in raw
    extracted = extract_email(Source("message.eml", data=raw))
    meta = extracted.meta
    assert meta["subject"] == "Überweisung nach Zürich" and meta["from"] == ["Jörn <j@example.org>"]
    assert meta["to"] == ["a@example.org", "b@example.org"] and meta["in_reply_to"] == "<one@example.org>"
    assert meta["date"] == "2014-03-04T10:00:00+00:00" and "Bitte 500 CHF überweisen." in extracted.text
    assert [(c.filename, c.data) for c in extracted.children] == [
        ("Beleg März.pdf", b"%PDF-1.4 receipt"),
        ("notes.txt", b"row four"),
    ]


def _same_as_parsed(item) -> None:
    """The document built from the store's fields is the one extract_email reads from the item's bytes."""
    from rlm_desktop.ingest.mail import extract_email
    from rlm_desktop.ingest.pst import store_message
    from rlm_desktop.ingest.source import Source

    direct, raw = store_message(item)
    parsed = extract_email(Source("message.eml", data=raw))
    assert (direct.kind, direct.title, direct.text, direct.meta, direct.warnings) == (
        parsed.kind, parsed.title, parsed.text, parsed.meta, parsed.warnings
    )  # fmt: skip
    assert [(c.filename, c.data, c.content_type, c.origin) for c in direct.children] == [
        (c.filename, c.data, c.content_type, c.origin) for c in parsed.children
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"plain_text_body": None, "html_body": b"<p>Only <b>HTML</b> here &amp; there</p>"},
        {"html_body": b"<p>The HTML rendering</p>"},
        {"plain_text_body": b"  \r\n", "html_body": "<p>caf\u00e9 in HTML</p>".encode()},
        {"plain_text_body": None, "html_body": None},
        {"transport_headers": None, "sender_name": "Outlook Only", "subject": "RE: no headers"},
        {"transport_headers": "Subject: caf\u00e9 raw 8-bit\r\nFrom: x@example.org\r\nX-Odd: a\r\n\tb\r\n"},
        {"attachments": [Attachment(None, b"no name"), Attachment("big.iso", b"", size=2**27),
                         Attachment("../../etc/passwd", b"path in a name")]},  # fmt: skip
    ],
    ids=["plain", "html only", "plain and html", "blank plain", "no body", "no transport headers",
         "raw 8-bit header", "odd attachments"],  # fmt: skip
)
def test_a_store_message_is_the_document_its_bytes_parse_to(fields):
    _same_as_parsed(StoreItem(**fields))


@needs_sample
def test_the_sample_stores_messages_are_the_documents_their_bytes_parse_to():
    from rlm_desktop.ingest.pst import _folders, open_store

    store = open_store(SAMPLE)
    try:
        for folder, _ in _folders(store.get_root_folder(), ""):
            for index in range(folder.number_of_sub_messages):
                _same_as_parsed(folder.get_sub_message(index))
    finally:
        store.close()


@needs_sample
def test_the_same_store_at_two_paths_is_one_mailbox(tmp_path):
    import shutil

    for name in ("a.pst", "copy of a.pst"):
        shutil.copyfile(SAMPLE, tmp_path / name)
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "a.pst", tmp_path / "copy of a.pst"], jobs=1)
        assert (report.added, report.unchanged, report.failed) == (1, 1, [])
        (box,) = case.documents(kind="mailbox")
        assert len(case.documents(kind="email")) == 6 and box.meta["messages"] == 6
