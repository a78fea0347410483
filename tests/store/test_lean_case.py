"""Migration m008_lean_case converts a case written before it: compact word boxes, leaner indexes, the same
search, citations and PDF highlights, and a smaller file."""

from __future__ import annotations

import shutil
import sqlite3
from array import array

import pytest
from builders import make_pdf
from sample_case import write_documents

from rlm_desktop.corpus import Corpus
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store import migrations
from rlm_desktop.store.case import Case
from rlm_desktop.store.pages import span_rects, unpack_boxes

BEFORE = [(name, fn) for name, fn in migrations.MIGRATIONS if name != "m008_lean_case"]


def first_format(data: bytes) -> bytes:
    """Boxes as cases before m008 held them: int32 starts and ends, float32 x0, y0, x1, y1, no header."""
    columns = list(zip(*unpack_boxes(data), strict=True))
    if not columns:
        return b""
    return b"".join(array(code, column).tobytes() for code, column in zip("iiffff", columns, strict=True))


@pytest.fixture(scope="module")
def old_template(tmp_path_factory):
    """A case laid out as the app wrote it before m008: first-format boxes, the old index on every hash."""
    tmp_path = tmp_path_factory.mktemp("old")
    folder = write_documents(tmp_path / "in")
    make_pdf(folder / "long.pdf", ["\n".join(f"word{i} ledger entry" for i in range(40))] * 3)
    path = tmp_path / "old.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", BEFORE)
        with Case.open(path) as case:
            ingest(case, [folder], jobs=1)
            with case.transaction():
                for rowid, boxes in case.conn.execute("SELECT rowid, boxes FROM pages").fetchall():
                    case.conn.execute("UPDATE pages SET boxes = ? WHERE rowid = ?", (first_format(boxes), rowid))
            expected = {
                doc.id: [(p.number, [b[:2] for b in p.boxes], p.boxes) for p in case.pages(doc.id)]
                for doc in case.documents(kind="pdf")
            }
            expected["meta"] = {doc.id: doc.meta for doc in case.documents(include_superseded=True)}
            case.checkpoint()
    conn = sqlite3.connect(path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "documents_sha256" in indexes and "documents_current" not in indexes
    assert all(len(b) % 24 == 0 for (b,) in conn.execute("SELECT boxes FROM pages"))
    conn.close()
    return folder, path, expected


@pytest.fixture
def old_case(old_template, tmp_path):
    folder, template, expected = old_template
    path = tmp_path / "old.sqlite"
    shutil.copyfile(template, path)
    return folder, path, expected


def test_the_migration_converts_boxes_and_indexes_and_shrinks_the_file(old_case):
    folder, path, expected = old_case
    size_before = path.stat().st_size
    with Case.open(path) as case:
        assert "m008_lean_case" in {r[0] for r in case.conn.execute("SELECT name FROM _migrations")}
        metas = expected.pop("meta")
        assert {doc.id: doc.meta for doc in case.documents(include_superseded=True)} == metas
        kinds = dict(case.conn.execute("SELECT typeof(meta), COUNT(*) FROM documents GROUP BY 1").fetchall())
        assert kinds.get("blob", 0) >= 5  # emails, PDFs and DOCX: compressed (short ones stay text)
        assert any(m.get("thread_id") for m in metas.values())
        for doc_id, pages in expected.items():
            converted = case.pages(doc_id)
            assert [p.number for p in converted] == [number for number, _, _ in pages]
            for page, (_, spans, boxes) in zip(converted, pages, strict=True):
                assert [b[:2] for b in page.boxes] == spans  # character spans exact
                for new, old in zip(page.boxes, boxes, strict=True):
                    assert new == old  # float32 both: exactly the same boxes
        stored = case.conn.execute("SELECT boxes FROM pages WHERE length(boxes) > 0").fetchall()
        assert stored and all(b[0] == 2 for (b,) in stored)
        indexes = {r[0] for r in case.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"documents_current", "documents_top_sha256"} <= indexes and "documents_sha256" not in indexes
        plan = case.conn.execute(
            "EXPLAIN QUERY PLAN SELECT id, kind, parent_id, chars FROM documents WHERE id BETWEEN 1 AND 9"
            " AND superseded_by IS NULL AND kind != 'mailbox'"
        ).fetchall()
        assert "COVERING INDEX documents_current" in str(plan)
        # the same file again is recognised by its hash through the new index: nothing is added
        count = case.count_documents()
        ingest(case, [folder], jobs=1)
        assert case.count_documents() == count
    assert path.stat().st_size < size_before  # VACUUM after the migration gave the space back


def test_search_citations_and_highlights_work_on_the_converted_case(old_case):
    _, path, expected = old_case
    expected = {k: v for k, v in expected.items() if k != "meta"}
    with Case.open(path) as case:
        for query in ('"left Rotterdam on 4 May 2023"', "NEAR(containers Antwerp, 5)", "relabel*", "word17"):
            hits = case.search(query)
            assert hits, query
            for hit in hits:
                if hit.field == "text":
                    assert hit.end > hit.start and case.text(hit.doc_id)[hit.start : hit.end]
        (hit,) = [h for h in case.search('"left Rotterdam on 4 May 2023"') if h.field == "text"]
        text = case.text(hit.doc_id)
        assert text[hit.start : hit.end] == "left Rotterdam on 4 May 2023"
        rects = span_rects(case.pages(hit.doc_id), hit.start, hit.end)
        old_pages = expected[hit.doc_id]
        from rlm_desktop.store.pages import Page

        old = [Page(n, 0, 0, 0, 0, boxes) for n, _, boxes in old_pages]
        for page in old:  # the ranges do not matter to span_rects beyond skipping pages without the span
            page.start, page.end = page.boxes[0][0], page.boxes[-1][1]
        want = span_rects(old, hit.start, hit.end)
        assert [n for n, _ in rects] == [n for n, _ in want] == [2]
        for (_, got), (_, was) in zip(rects, want, strict=True):
            assert got == pytest.approx(was, abs=0.01)
    context = Corpus.open(path)
    doc = context.by_id(hit.doc_id)
    assert doc.kind == "pdf" and doc.text[hit.start : hit.end] == "left Rotterdam on 4 May 2023"
    assert [h.doc_id for h in context.search('"left Rotterdam"')] == [hit.doc_id]
