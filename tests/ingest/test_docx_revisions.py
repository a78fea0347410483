"""DOCX tracked changes: the stored text stays what the document reads (insertions in, deletions out), and
every insertion and deletion is kept in meta with its author, date and offsets (a deletion's text too)."""

from __future__ import annotations

from pathlib import Path

import docx
from lxml import etree

from rlm_desktop.ingest.docx import extract_docx
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
ANNA = 'w:author="Anna Berg" w:date="2024-03-05T09:30:00Z"'
BEN = 'w:author="Ben Ode" w:date="2024-03-06T14:00:00Z"'


def make_revised_docx(path: Path) -> Path:
    """A memo edited with Track Changes on, as Word writes it: w:ins and w:del around runs."""
    document = docx.Document()
    document.add_paragraph("Board memo")
    body = document.element.body
    paragraphs = [
        '<w:r><w:t xml:space="preserve">The transfer of </w:t></w:r>'
        f'<w:del w:id="1" {ANNA}><w:r><w:delText>EUR 40,000</w:delText></w:r></w:del>'
        f'<w:ins w:id="2" {ANNA}><w:r><w:t>EUR 400,000</w:t></w:r></w:ins>'
        '<w:r><w:t xml:space="preserve"> to Zurich was approved</w:t></w:r>'
        f'<w:ins w:id="3" {BEN}><w:r><w:t xml:space="preserve"> by the chair</w:t></w:r></w:ins>'
        "<w:r><w:t>.</w:t></w:r>",
        # a whole sentence deleted: its paragraph is empty now, the deletion marks where it stood
        f'<w:del w:id="4" {BEN}><w:r><w:delText>Nobody objected.</w:delText></w:r></w:del>',
        "<w:r><w:t>Signed, the secretary.</w:t></w:r>",
    ]
    anchor = body[-1]  # the section properties stay last
    for inner in paragraphs:
        anchor.addprevious(etree.fromstring(f'<w:p xmlns:w="{W}">{inner}</w:p>'))
    document.save(path)
    return path


EXPECTED_TEXT = "Board memo\nThe transfer of EUR 400,000 to Zurich was approved by the chair.\nSigned, the secretary."


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
