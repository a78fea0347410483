"""DOCX tracked changes: the stored text stays what the document reads (insertions in, deletions out), and
every insertion and deletion is kept in meta with its author, date and offsets (a deletion's text too)."""

from __future__ import annotations

import docx
from builders import REVISED_DOCX_TEXT as EXPECTED_TEXT
from builders import make_revised_docx

from rlm_desktop.ingest.docx import extract_docx
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case


def test_revisions_are_recorded_with_author_date_and_offsets(tmp_path):
    extracted = extract_docx(Source("memo.docx", path=make_revised_docx(tmp_path / "memo.docx")))
    text = extracted.text
    assert text == EXPECTED_TEXT  # what the document reads today, as before
    assert "\ufdd0" not in text and "\ufdd2" not in text
    revisions = extracted.meta["revisions"]
    assert [(r["kind"], r["author"], r["date"]) for r in revisions] == [
        ("del", "Anna Berg", "2024-03-05T09:30:00Z"),
        ("ins", "Anna Berg", "2024-03-05T09:30:00Z"),
        ("ins", "Ben Ode", "2024-03-06T14:00:00Z"),
        ("del", "Ben Ode", "2024-03-06T14:00:00Z"),
    ]
    removed, added, chair, sentence = revisions
    assert removed["text"] == "EUR 40,000" and removed["start"] == removed["end"] == text.index("EUR 400,000")
    assert text[added["start"] : added["end"]] == "EUR 400,000"
    assert text[chair["start"] : chair["end"]] == " by the chair"
    assert sentence["text"] == "Nobody objected." and sentence["start"] == text.index("Signed")
    assert extracted.meta["tracked_changes"] is True


def test_ingest_keeps_the_revisions_in_the_documents_meta(tmp_path):
    (tmp_path / "in").mkdir()
    make_revised_docx(tmp_path / "in" / "memo.docx")
    with Case.open(tmp_path / "case.sqlite") as case:
        ingest(case, [tmp_path / "in"], jobs=1)
        (doc,) = case.documents()
        assert case.text(doc.id) == EXPECTED_TEXT
        kinds = [(r["kind"], r.get("text")) for r in doc.meta["revisions"]]
        assert kinds == [("del", "EUR 40,000"), ("ins", None), ("ins", None), ("del", "Nobody objected.")]


def test_a_document_without_tracked_changes_has_no_revisions(tmp_path):
    document = docx.Document()
    document.add_paragraph("Plain")
    document.save(tmp_path / "plain.docx")
    extracted = extract_docx(Source("plain.docx", path=tmp_path / "plain.docx"))
    assert "revisions" not in extracted.meta and extracted.text == "Plain"
