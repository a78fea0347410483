"""Slide decks, OpenDocument text and RTF: text in reading order, slides as pages, damage named."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pptx
import pytest
from pptx.util import Inches

from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case
from rlm_desktop.store.pages import page_for_offset

ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/"'
)


def make_pptx(path: Path) -> Path:
    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly review"
    first.placeholders[1].text_frame.text = "Revenue up 12%"
    first.placeholders[1].text_frame.add_paragraph().text = "Transfer to Zurich pending"
    first.notes_slide.notes_text_frame.text = "Do not mention the Lugano account."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Payments"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    table.cell(0, 0).text, table.cell(0, 1).text = "Payee", "Amount"
    table.cell(1, 0).text, table.cell(1, 1).text = "Geneva Trust", "200"
    deck.core_properties.title = "Q3 board deck"
    deck.save(str(path))
    return path


def make_odf(path: Path, mimetype: str, body: str) -> Path:
    content = f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS}><office:body>{body}' \
              "</office:body></office:document-content>"  # fmt: skip
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("mimetype", mimetype, zipfile.ZIP_STORED)
        package.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path


def read(path: Path, kind: str):
    source = Source(path.name, path=path)
    assert detect_kind(source) == kind
    return extract(source, kind)


def test_pptx_slides_in_order_with_notes_and_tables_each_slide_a_page(tmp_path):
    ex = read(make_pptx(tmp_path / "deck.pptx"), "presentation")
    assert ex.title == "Q3 board deck" and ex.meta["slides"] == 2
    assert ex.text == (
        "Slide 1: Quarterly review\nRevenue up 12%\nTransfer to Zurich pending\n"
        "Notes:\nDo not mention the Lugano account.\n\n"
        "Slide 2: Payments\nPayee\tAmount\nGeneva Trust\t200\n\n"
    )
    assert page_for_offset(ex.pages, ex.text.index("Lugano")) == 1
    assert page_for_offset(ex.pages, ex.text.index("Geneva")) == 2


def test_odp_slides_and_notes(tmp_path):
    body = (
        "<office:presentation>"
        '<draw:page draw:name="p1"><draw:frame><draw:text-box><text:p>Open the '
        "<text:span>Basel</text:span> office</text:p></draw:text-box></draw:frame>"
        '<draw:frame presentation:class="title"><draw:text-box>'
        "<text:p>Plan</text:p></draw:text-box></draw:frame>"
        "<presentation:notes><draw:frame><draw:text-box><text:p>Speaker only</text:p></draw:text-box>"
        "</draw:frame></presentation:notes></draw:page>"
        '<draw:page draw:name="p2"><draw:frame><draw:text-box><text:p>Second</text:p></draw:text-box>'
        "</draw:frame></draw:page></office:presentation>"
    )
    ex = read(make_odf(tmp_path / "plan.odp", "application/vnd.oasis.opendocument.presentation", body),
              "presentation")  # fmt: skip
    # the title is the frame marked as one, wherever it sits; a slide without one has no title
    assert ex.text == "Slide 1: Plan\nOpen the Basel office\nNotes:\nSpeaker only\n\nSlide 2\nSecond\n\n"
    assert [p.number for p in ex.pages] == [1, 2]


def test_odt_paragraphs_tables_and_notes(tmp_path):
    body = (
        "<office:text><text:h>Memo</text:h><text:p>Pay<text:s text:c=\"2\"/>the<text:tab/>invoice"
        "<text:note><text:note-body><text:p>By Friday.</text:p></text:note-body></text:note></text:p>"
        "<table:table><table:table-row><table:table-cell><text:p>A</text:p></table:table-cell>"
        "<table:table-cell><text:p>B</text:p></table:table-cell></table:table-row></table:table>"
        "<text:list><text:list-item><text:p>first point</text:p></text:list-item></text:list></office:text>"
    )
    path = make_odf(tmp_path / "memo.odt", "application/vnd.oasis.opendocument.text", body)
    ex = read(path, "odt")
    assert ex.text == "Memo\nPay  the\tinvoice\nA\tB\nfirst point\n\nNotes:\n[1] By Friday.\n"
    renamed = tmp_path / "memo.bin"
    renamed.write_bytes(path.read_bytes())
    assert detect_kind(Source(renamed.name, path=renamed)) == "odt"


def test_rtf_with_its_code_page(tmp_path):
    rtf = rb"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}\f0 Z\'fcrich memo\par Second paragraph\par}"
    (tmp_path / "memo.rtf").write_bytes(rtf)
    (tmp_path / "memo.txt").write_bytes(rtf)  # content decides
    assert read(tmp_path / "memo.rtf", "rtf").text == "Zürich memo\nSecond paragraph\n"
    assert detect_kind(Source("memo.txt", path=tmp_path / "memo.txt")) == "rtf"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("old.ppt", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000), "not read"),
        ("broken.pptx", b"PK\x03\x04 broken", "not a"),
        ("broken.odt", b"PK\x03\x04 broken", "not a"),
        ("broken.rtf", b"plain words", "not an RTF"),
    ],
)
def test_damaged_files_fail_with_a_reason_and_the_rest_goes_on(tmp_path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    make_pptx(tmp_path / "good.pptx")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / name, tmp_path / "good.pptx"], jobs=1)
        (failure,) = report.failed
        assert failure["path"].endswith(name) and reason in failure["error"], failure
        (doc,) = case.documents()
        assert doc.kind == "presentation" and doc.pages == 2
