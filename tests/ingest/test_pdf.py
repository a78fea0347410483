"""PDF extraction: exact word boxes and page ranges, reading order, errors, image-only pages and OCR."""

from __future__ import annotations

import pymupdf
import pytest

from rlm_desktop.ingest.extracted import ExtractionError
from rlm_desktop.ingest.pdf import extract_pdf, find_tessdata, parse_pdf_date
from rlm_desktop.ingest.pdf_geometry import span_rects
from rlm_desktop.ingest.source import Source


def pdf_source(build, name="doc.pdf", **save) -> Source:
    doc = pymupdf.open()
    build(doc)
    data = doc.tobytes(**save)
    doc.close()
    return Source(name, data=data)


def three_pages(doc):
    for number in range(1, 4):
        page = doc.new_page()
        page.insert_text((72, 72), f"Page {number} heading", fontsize=14)
        page.insert_textbox(
            pymupdf.Rect(72, 100, 300, 400),
            f"Body of page {number} with several words that wrap onto more than one line inside the box.",
            fontsize=11,
        )


def test_every_box_is_its_word_and_pages_cover_the_text():
    ex = extract_pdf(pdf_source(three_pages))
    assert ex.kind == "pdf" and len(ex.pages) == 3 and ex.meta["page_count"] == 3
    text = ex.text
    covered = 0
    for i, page in enumerate(ex.pages):
        assert page.number == i + 1 and page.width == pytest.approx(595, abs=1)
        if i:
            assert text[ex.pages[i - 1].end : page.start] == "\f"  # the separator belongs to no page
        covered += page.end - page.start
        assert text[page.start : page.end].startswith(f"Page {i + 1} heading")
        for start, end, x0, y0, x1, y1 in page.boxes:
            word = text[start:end]
            assert word and " " not in word and "\n" not in word
            assert 0 <= x0 < x1 <= page.width and 0 <= y0 < y1 <= page.height
    assert covered + 2 == len(text)
    assert text.count("\f") == 2


def test_two_columns_keep_their_reading_order():
    def columns(doc):
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(50, 50, 280, 400), "Left column first sentence. " * 6, fontsize=10)
        page.insert_textbox(pymupdf.Rect(320, 50, 550, 400), "Right column second part. " * 6, fontsize=10)

    text = extract_pdf(pdf_source(columns)).text
    assert text.index("Left column") < text.index("Right column")
    assert text.rindex("Left column") < text.index("Right column")  # columns are not interleaved


def test_span_rects_for_a_quote_across_lines_and_pages():
    ex = extract_pdf(pdf_source(three_pages))
    start = ex.text.index("several words")
    end = ex.text.index("inside the box.", start) + len("inside the box.")
    rects = span_rects(ex.pages, start, end)
    assert len(rects) >= 2 and {number for number, _ in rects} == {1}  # one rectangle per line
    across = span_rects(ex.pages, ex.text.index("the box.", 0), ex.pages[1].start + 6)
    assert {number for number, _ in across} == {1, 2}


def test_non_latin_text():
    def cjk(doc):
        page = doc.new_page()
        page.insert_text((72, 72), "合同金额为五百万元", fontname="china-s", fontsize=12)
        page.insert_text((72, 100), "Ελληνικά κείμενα", fontname="helv", fontsize=12)

    text = extract_pdf(pdf_source(cjk)).text
    assert "合同金额为五百万元" in text


def test_encrypted_needs_a_password_but_owner_only_opens():
    with pytest.raises(ExtractionError, match="encrypted and needs a password"):
        extract_pdf(
            pdf_source(three_pages, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
        )
    ex = extract_pdf(pdf_source(three_pages, encryption=pymupdf.PDF_ENCRYPT_AES_128, owner_pw="owner"))
    assert "Page 1 heading" in ex.text and ex.meta["encrypted"]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"%PDF-1.7\n this is not really a pdf at all", "damaged or not a PDF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "damaged or not a PDF"),
    ],
)
def test_garbage_gives_a_clear_error(data, reason):
    with pytest.raises(ExtractionError, match=reason):
        extract_pdf(Source("bad.pdf", data=data))


def test_truncated_pdf_is_repaired_or_refused_never_crashes():
    data = pdf_source(three_pages).data
    for cut in (len(data) // 3, len(data) // 2, len(data) - 30):
        try:
            ex = extract_pdf(Source("cut.pdf", data=data[:cut]))
        except ExtractionError as exc:
            assert "damaged" in str(exc) or "no pages" in str(exc)
        else:
            assert ex.meta["repaired"] and any("repaired" in w for w in ex.warnings)


def scanned(doc):
    """A page that is only a picture of text, as a scanner makes."""
    src = pymupdf.open()
    page = src.new_page(width=400, height=120)
    page.insert_text((20, 70), "SCANNED INVOICE 4711", fontsize=28)
    pix = page.get_pixmap(dpi=200)
    target = doc.new_page(width=400, height=120)
    target.insert_image(target.rect, pixmap=pix)


def test_image_only_pages_are_flagged():
    ex = extract_pdf(pdf_source(scanned), ocr=False)
    assert ex.pages[0].image_only and ex.meta["image_only_pages"] == [1]
    assert ex.meta["ocr_pages"] == [] and ex.text == ""


@pytest.mark.skipif(
    find_tessdata() is None, reason="Tesseract language data not installed (apt tesseract-ocr)"
)
def test_image_only_pages_are_ocred_with_boxes():
    ex = extract_pdf(pdf_source(scanned))
    assert ex.meta["ocr_pages"] == [1] and ex.pages[0].ocr
    assert "INVOICE" in ex.text and "4711" in ex.text
    start, end, *_ = next(b for b in ex.pages[0].boxes if ex.text[b[0] : b[1]] == "4711")
    assert span_rects(ex.pages, start, end)


def test_metadata_and_embedded_files():
    def with_attachment(doc):
        three_pages(doc)
        doc.set_metadata(
            {"title": "Board minutes", "author": "A. Clerk", "creationDate": "D:20230405101500+02'00'"}
        )
        doc.embfile_add("notes.txt", b"embedded notes about the merger", filename="notes.txt")

    ex = extract_pdf(pdf_source(with_attachment))
    assert ex.title == "Board minutes" and ex.meta["author"] == "A. Clerk"
    assert ex.meta["creation_date"] == "2023-04-05T10:15:00+02:00"
    (blob,) = ex.children
    assert blob.filename == "notes.txt" and blob.data == b"embedded notes about the merger"


@pytest.mark.parametrize(
    "raw, iso",
    [
        ("D:20230101120000+01'00'", "2023-01-01T12:00:00+01:00"),
        ("D:20230101120000Z", "2023-01-01T12:00:00+00:00"),
        ("D:2023", "2023-01-01T00:00:00"),
        ("garbage", None),
        ("D:20231399", None),
    ],
)
def test_pdf_dates(raw, iso):
    assert parse_pdf_date(raw) == iso
