"""Ingesting folders: identity, re-ingest, updates, failures that never stop the run, attachments, cancel."""

from __future__ import annotations

import os
import threading

import pytest
from builders import make_docx, make_email, make_mbox, make_pdf, pdf_bytes

from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.progress import FileFinished, FileStarted, IngestFinished, IngestStarted
from rlm_desktop.store.case import Case


@pytest.fixture
def case(tmp_path):
    with Case.open(tmp_path / "case.sqlite") as case:
        yield case


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    make_pdf(root / "report.pdf", ["First page about the merger.", "Second page: payment to Zurich."])
    make_docx(root / "sub" / "memo.docx", ["Memo heading", "The board approved the plan."])
    (root / "notes.txt").write_text("Plain notes mention the pelican codeword.\n", encoding="utf-8")
    (root / "page.html").write_text(
        "<html><title>Web page</title><body><p>Hello <b>web</b></p></body></html>"
    )
    mail = make_email(
        "Invoice attached",
        "Please find the invoice attached.",
        attachments=[("invoice.pdf", pdf_bytes(["Invoice 4711 total 999 EUR"]), "application/pdf")],
    )
    (root / "mail.eml").write_bytes(bytes(mail))
    return root


def test_a_folder_becomes_searchable_documents(case, folder):
    report = ingest(case, [folder])
    assert report.added == 5 and not report.failed
    docs = {d.title: d for d in case.documents()}
    assert {d.kind for d in docs.values()} >= {"pdf", "docx", "text", "html", "email"}
    attachment = next(d for d in docs.values() if d.parent_id is not None)
    assert attachment.kind == "pdf"
    assert case.document(attachment.parent_id).kind == "email"
    # the PDF inside the email is searchable and cites back to its email
    (hit,) = case.search("4711")
    assert hit.doc_id == attachment.id
    assert case.text(hit.doc_id)[hit.start : hit.end] == "4711"
    report_pdf = docs["report.pdf"]
    assert report_pdf.pages == 2 and len(case.pages(report_pdf.id)) == 2
    assert report_pdf.sha256 and report_pdf.size == (folder / "report.pdf").stat().st_size


def test_reingest_adds_nothing(case, folder):
    first = ingest(case, [folder])
    count = case.count_documents()
    second = ingest(case, [folder])
    assert second.added == 0 and second.unchanged == first.added
    assert case.count_documents() == count


def test_changed_file_is_updated_and_old_text_kept_for_citations(case, folder):
    ingest(case, [folder])
    old = next(d for d in case.documents() if d.title == "notes.txt")
    (folder / "notes.txt").write_text("Rewritten: the codeword is now albatross.\n", encoding="utf-8")
    report = ingest(case, [folder])
    assert report.updated == 1 and report.added == 0
    assert case.search("pelican") == []
    (hit,) = case.search("albatross")
    new = case.document(hit.doc_id)
    assert new.id != old.id and new.path == old.path
    assert case.document(old.id).superseded_by == new.id
    assert "pelican" in case.text(old.id)


def test_same_bytes_at_two_paths_is_one_document_with_both_paths(case, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for where in (a, b):
        (where / "copy.txt").write_text("identical content\n")
    report = ingest(case, [tmp_path])
    assert report.added == 1 and report.unchanged == 1
    (doc,) = case.documents()
    assert doc.paths == (str(a / "copy.txt"), str(b / "copy.txt"))


def test_bad_files_fail_with_reasons_and_never_stop_the_ingest(case, tmp_path):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage that is not a pdf")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    (tmp_path / "archive.pst").write_bytes(b"!BDN" + b"\x00" * 100)
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "good.txt").write_text("still ingested")
    report = ingest(case, [tmp_path, tmp_path / "does-not-exist"])
    assert report.added == 1
    errors = {os.path.basename(f["path"]): f["error"] for f in report.failed}
    assert "image" in errors["photo.png"]
    assert "pst" in errors["archive.pst"].lower()
    assert errors["broken.pdf"]
    assert errors["does-not-exist"] == "no such file or folder"
    assert {"path": str(tmp_path / ".DS_Store"), "reason": "hidden file"} in report.skipped
    assert {"path": str(tmp_path / "case.sqlite"), "reason": "the case's own database file"} in report.skipped
    logged = {os.path.basename(f["path"]) for f in case.failures()}
    assert {"broken.pdf", "photo.png", "archive.pst"} <= logged


def test_unreadable_attachment_is_kept_as_a_child_with_its_reason(case, tmp_path):
    mail = make_email(
        "Scan",
        "see attached",
        attachments=[
            ("scan.pdf", b"%PDF-1.4 truncated nonsense", "application/pdf"),
            ("photo.jpg", b"\xff\xd8\xff\xe0" + b"0" * 50, "image/jpeg"),
        ],
    )
    (tmp_path / "m.eml").write_bytes(bytes(mail))
    report = ingest(case, [tmp_path])
    assert report.added == 1
    children = [d for d in case.documents() if d.parent_id]
    assert {c.title for c in children} == {"scan.pdf", "photo.jpg"}
    assert all(c.kind == "attachment" and c.meta["not_extracted"] for c in children)
    # both are damaged (images are read since the formats issue), so both are failures with their reason
    failures = {os.path.basename(f["path"]): f["error"] for f in report.child_failures}
    assert list(failures) == ["m.eml › scan.pdf", "m.eml › photo.jpg"] and "image" in failures["m.eml › photo.jpg"]


def test_mbox_messages_become_emails_in_threads(case, tmp_path):
    ids = make_mbox(tmp_path / "inbox.mbox", 5)
    reply = make_email("Re: Report 0", "Agreed.", message_id="<reply@example.org>", in_reply_to=ids[0])
    (tmp_path / "reply.eml").write_bytes(bytes(reply))
    report = ingest(case, [tmp_path])
    assert report.added == 2 and not report.failed
    emails = case.documents(kind="email")
    assert len(emails) == 6
    (mailbox,) = case.documents(kind="mailbox")
    assert mailbox.status == "complete" and mailbox.meta["messages"] == 5
    assert all(e.parent_id == mailbox.id for e in emails if e.title != "Re: Report 0")
    first = next(e for e in emails if e.meta.get("message_id") == ids[0])
    answer = next(e for e in emails if e.title == "Re: Report 0")
    assert answer.meta["thread_id"] == first.meta["thread_id"]
    assert set(case.thread(first.meta["thread_id"])) == {first.id, answer.id}


def test_maildir_messages_are_read_as_email(case, tmp_path):
    maildir = tmp_path / "Mail"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1700000000.M1P1.host:2,S").write_bytes(bytes(make_email("From maildir", "hello")))
    (maildir / "new" / "1700000001.M2P2.host").write_bytes(bytes(make_email("Second", "hi")))
    report = ingest(case, [tmp_path])
    assert report.added == 2 and not report.failed
    assert sorted(d.title for d in case.documents(kind="email")) == ["From maildir", "Second"]


def test_progress_events_and_cancel(case, tmp_path):
    for i in range(10):
        (tmp_path / f"f{i}.txt").write_text(f"file {i}")
    cancel = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, FileFinished) and event.index == 3:
            cancel.set()

    report = ingest(case, [tmp_path], progress=on_event, cancel=cancel)
    assert report.cancelled and report.added == 4
    assert isinstance(events[0], IngestStarted) and events[0].total_files == 10
    assert isinstance(events[-1], IngestFinished)
    assert [e.path for e in events if isinstance(e, FileStarted)] == [
        str(tmp_path / f"f{i}.txt") for i in range(4)
    ]
    # the next ingest picks up the rest
    assert ingest(case, [tmp_path]).added == 6
