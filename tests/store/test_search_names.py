"""Documents are found by their names (file, path, title, author, email subject, from, to, cc), the index
follows ingest (new paths, superseded files), the everyday queries of issue 13 find text, and migration
m005 fills the index and mends junk titles in a case written before it."""

from __future__ import annotations

import hashlib
import sqlite3

import docx
import pymupdf
import pytest
from builders import make_email, make_pdf
from nasty_queries import NASTY, fuzzed

from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store import migrations
from rlm_desktop.store.case import Case
from rlm_desktop.store.fts import InvalidQuery
from rlm_desktop.store.metadata import decode_meta

ISSUE_QUERIES = ["stefan@datenfreihafen.org", "FAA-2020-0686", "O'Brien", "$50,000", "U.S.", "C++"]
TEXT = (
    "Docket FAA-2020-0686 was reviewed by Mr. O'Brien of the U.S. office, who wired $50,000.\n"
    "Questions to stefan@datenfreihafen.org please; the parser is written in C++.\n"
)


@pytest.fixture
def case(tmp_path):
    with Case.open(tmp_path / "case.sqlite") as case:
        yield case


@pytest.mark.parametrize("query", ISSUE_QUERIES)
def test_every_query_that_failed_in_the_issue_finds_its_text(case, query):
    doc_id = case.add_text_document("memo", TEXT)
    case.add_text_document("other", "Nothing of interest: lunch on Friday.")
    hits = case.search(query)
    assert [h.doc_id for h in hits] == [doc_id]
    (hit,) = hits
    assert hit.field == "text"
    found = TEXT[hit.start : hit.end]
    assert found and found.lower() in query.lower().replace("$", "")  # the first word of the query, exactly


def test_an_empty_query_says_so_in_words(case):
    with pytest.raises(InvalidQuery, match="empty"):
        case.search("  ")
    with pytest.raises(InvalidQuery, match="nothing to search for"):
        case.search("++ --")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "evidence" / "Athens 2019"
    root.mkdir(parents=True)
    make_pdf(root / "greek.pdf", ["Olives and marble, nothing else."])
    mail = make_email(
        "(no subject)",
        "See you at the harbour.",
        sender="Stefan Schmidt <stefan@datenfreihafen.org>",
        to="Carol Jones <carol@example.net>",
    )
    mail["Cc"] = "Dan Watcher <dan.watcher@example.com>"
    (root / "note.eml").write_bytes(bytes(mail))
    return root


def _name_hits(case: Case, query: str) -> list[tuple[int, str, str]]:
    return [(h.doc_id, h.field, h.chunk_text) for h in case.search(query) if h.field != "text"]


def test_file_names_paths_and_addresses_are_found(case, folder):
    ingest(case, [folder])
    docs = {d.path.rsplit("/", 1)[-1]: d for d in case.documents() if d.path}
    greek, mail = docs["greek.pdf"], docs["note.eml"]

    for query in ("greek.pdf", "greek", "gree*", '"Athens 2019"', "evidence AND athens"):
        hits = case.search(query)
        assert hits and hits[0].doc_id == greek.id, query
        first = hits[0]
        # a name hit is the empty span at the document's start; the name that matched is its text
        assert (first.start, first.end, first.chunk_start) == (0, 0, 0)
        assert first.field in ("path", "title") and "greek.pdf" in first.chunk_text

    assert _name_hits(case, "stefan@datenfreihafen.org")[0][:2] == (mail.id, "from")
    assert _name_hits(case, "carol@example.net")[0][:2] == (mail.id, "to")
    assert _name_hits(case, "dan.watcher@example.com")[0][:2] == (mail.id, "cc")
    assert _name_hits(case, '"no subject"')[0][:2] == (mail.id, "subject")
    assert case.search("marble")[0].field == "text"  # the text is still searched as before
    assert case.search("athens", doc_ids=[mail.id])[0].doc_id == mail.id  # a subset stays a subset
    assert all(h.doc_id == mail.id for h in case.search("athens", doc_ids=[mail.id]))


def test_name_hits_leave_room_for_text_hits(case):
    for n in range(6):
        case.add_text_document(f"invoice {n}", f"unrelated text {n}")
    texts = [case.add_text_document(f"memo {n}", f"the invoice number {n}") for n in range(6)]
    hits = case.search("invoice", limit=6)
    assert len(hits) == 6
    assert [h.field for h in hits] == ["title"] * 3 + ["text"] * 3
    assert {h.doc_id for h in hits[3:]} <= set(texts)


def test_the_names_index_follows_paths_and_superseded_files(case, tmp_path):
    first = tmp_path / "a" / "ledger.txt"
    first.parent.mkdir()
    first.write_text("column totals\n", encoding="utf-8")
    ingest(case, [first])
    (doc,) = case.documents()
    assert _name_hits(case, "ledger")[0][0] == doc.id

    copy = tmp_path / "b" / "backup-copy.txt"  # the same bytes at a second path: the same document
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    ingest(case, [copy])
    assert _name_hits(case, "backup-copy")[0][0] == doc.id

    first.write_text("column totals, corrected\n", encoding="utf-8")  # the first path now holds new bytes
    ingest(case, [first])
    new = next(d for d in case.documents() if d.id != doc.id)
    indexed = dict(case.conn.execute("SELECT doc_id, value FROM doc_names WHERE field = 'path'").fetchall())
    assert indexed == {new.id: str(first), doc.id: str(copy)}  # the old document keeps only its other path
    assert {h[0] for h in _name_hits(case, "backup-copy")} == {doc.id}

    copy.write_text("something else entirely\n", encoding="utf-8")
    ingest(case, [copy])
    assert case.document(doc.id).superseded_by is not None
    assert doc.id not in {h.doc_id for h in case.search("backup-copy")}  # superseded: gone from search
    assert doc.id not in {h.doc_id for h in case.search("ledger")}


def test_deleted_documents_leave_the_names_index(case):
    doc_id = case.add_text_document("pelican report", "text")
    assert _name_hits(case, "pelican")
    with case.transaction():
        case.delete_document_tree(doc_id)
    assert case.search("pelican") == []
    assert case.conn.execute("SELECT COUNT(*) FROM doc_names").fetchone()[0] == 0


def _pdf_with_title(path, title: str, text: str) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text)
    doc.set_metadata({"title": title})
    doc.save(path)
    doc.close()


def test_ingest_titles_junk_metadata_with_the_file_name(case, tmp_path):
    _pdf_with_title(tmp_path / "greek.pdf", r"C:\Datatech\ScanWatermark\Samples\Scanned Document.tiff", "Alpha")
    _pdf_with_title(tmp_path / "transcript.pdf", "10811.exe", "Court transcript")
    _pdf_with_title(tmp_path / "budget.pdf", "Budget 2024 for the harbour", "Numbers")
    document = docx.Document()
    document.add_paragraph("Minutes of the meeting")
    document.core_properties.title = "Microsoft Word - minutes.doc"
    document.save(tmp_path / "minutes.docx")
    names = ["greek.pdf", "transcript.pdf", "budget.pdf", "minutes.docx"]
    ingest(case, [tmp_path / name for name in names])
    titles = {d.path.rsplit("/", 1)[-1]: d for d in case.documents()}
    assert titles["minutes.docx"].title == "minutes.docx"
    assert titles["minutes.docx"].meta["metadata_title"] == "Microsoft Word - minutes.doc"
    assert titles["greek.pdf"].title == "greek.pdf"
    assert titles["greek.pdf"].meta["metadata_title"] == r"C:\Datatech\ScanWatermark\Samples\Scanned Document.tiff"
    assert titles["transcript.pdf"].title == "transcript.pdf"
    assert titles["budget.pdf"].title == "Budget 2024 for the harbour"  # a real title stays
    assert "metadata_title" not in titles["budget.pdf"].meta


def _old_case(path, monkeypatch) -> None:
    """A case as the app wrote it before m005: migrations up to m004, a junk title from PDF metadata."""
    before = [m for m in migrations.MIGRATIONS if m[0] != "m005_search_names"]
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    with Case.open(path) as case:
        assert not case.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'names_fts'").fetchone()
        junk = r"C:\Datatech\ScanWatermark\Samples\Scanned Document.tiff"
        with case.transaction():
            pdf = case.insert_document(
                kind="pdf", title=junk, text="Olives.", sha256=hashlib.sha256(b"1").hexdigest(), size=1,
                meta={"title": junk},
            )
            case.link_path("/evidence/greek.pdf", pdf, 1, 1)
            good = case.insert_document(
                kind="pdf", title="Harbour budget", text="Numbers.", sha256=hashlib.sha256(b"2").hexdigest(),
                size=1, meta={"title": "Harbour budget"},
            )
            case.link_path("/evidence/budget.pdf", good, 1, 1)
            case.insert_document(
                kind="email", title="Lunch", text="From: stefan@datenfreihafen.org\n\nHi",
                sha256=hashlib.sha256(b"3").hexdigest(), size=1,
                meta={"from": ["Stefan <stefan@datenfreihafen.org>"], "to": ["x@example.org"], "subject": "Lunch"},
            )


def test_migration_m005_indexes_names_and_mends_titles_of_an_existing_case(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    # the names index did not exist yet, so documents were inserted without it
    monkeypatch.setattr("rlm_desktop.store.case.index_names", lambda conn, doc_id: None)
    _old_case(path, monkeypatch)
    monkeypatch.undo()
    with Case.open(path) as case:
        applied = [r[0] for r in case.conn.execute("SELECT name FROM _migrations")]
        assert "m005_search_names" in applied
        docs = {d.path: d for d in case.documents() if d.path}
        greek = docs["/evidence/greek.pdf"]
        assert greek.title == "greek.pdf"
        assert greek.meta["metadata_title"].endswith("Scanned Document.tiff")
        assert docs["/evidence/budget.pdf"].title == "Harbour budget"
        assert [h.doc_id for h in case.search("greek.pdf")] == [greek.id]
        (mail,) = case.documents(kind="email")
        assert [(h.doc_id, h.field) for h in case.search("stefan@datenfreihafen.org")][0] == (mail.id, "from")
    raw = sqlite3.connect(path)
    meta = decode_meta(raw.execute("SELECT meta FROM documents WHERE title = 'greek.pdf'").fetchone()[0])
    assert meta["title"].startswith("C:\\")  # the metadata as extracted is untouched
    raw.close()


def test_nasty_input_through_the_whole_search_never_reaches_sqlite_as_an_error(case):
    case.add_text_document("memo.txt", TEXT, meta={"filename": "memo (final).txt"})
    for query in NASTY + fuzzed(500, seed=5):
        try:
            case.search(query)  # texts and names; sqlite3.OperationalError fails the test
        except InvalidQuery as exc:
            assert "fts5" not in str(exc).lower()
