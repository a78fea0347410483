"""PDF extraction: exact word boxes and page ranges, reading order, errors, image-only pages and OCR."""

from __future__ import annotations

import re

import pymupdf
import pytest

from rlm_desktop.ingest.extracted import ExtractionError
from rlm_desktop.ingest.pdf import extract_pdf, find_tessdata, parse_pdf_date
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.pages import span_rects


def pdf_source(build, name="doc.pdf", **save) -> Source:
    doc = pymupdf.open()
    build(doc)
    data = doc.tobytes(**save)
    doc.close()
    return Source(name, data=data)


def assert_boxes_are_words(ex):
    """The invariant citations rely on: every box's range is exactly one word, pages tile the text."""
    previous_end = None
    for page in ex.pages:
        assert page.start <= page.end
        if previous_end is not None:
            assert ex.text[previous_end : page.start] == "\f"  # one separator, owned by no page
        previous_end = page.end
        last = page.start
        for start, end, x0, y0, x1, y1 in page.boxes:
            word = ex.text[start:end]
            assert page.start <= start < end <= page.end and start >= last
            assert word.strip() == word and " " not in word and "\n" not in word
            assert x0 <= x1 and y0 <= y1
            last = end
    assert previous_end == len(ex.text)
    assert ex.pages[0].start == 0


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
    assert_boxes_are_words(ex)
    # the layout rules: one space between words, a newline between lines, a blank line between blocks
    assert text[ex.pages[0].start :].startswith("Page 1 heading\n\nBody of page 1 with")
    assert sum(1 for page in ex.pages for _ in page.boxes) == len(text.split())


def test_two_columns_keep_their_reading_order():
    def columns(doc):
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(50, 50, 280, 400), "Left column first sentence. " * 6, fontsize=10)
        page.insert_textbox(pymupdf.Rect(320, 50, 550, 400), "Right column second part. " * 6, fontsize=10)

    ex = extract_pdf(pdf_source(columns))
    assert_boxes_are_words(ex)
    text = ex.text
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


def test_non_latin_text_with_a_font_that_has_the_glyphs():
    def non_latin(doc):
        page = doc.new_page()
        page.insert_font(fontname="F1", fontbuffer=pymupdf.Font("cjk").buffer)  # Droid Sans Fallback
        page.insert_text((72, 72), "合同金额为五百万元", fontname="F1", fontsize=12)
        page.insert_text((72, 100), "Ελληνικά κείμενα και Русский текст", fontname="F1", fontsize=12)

    ex = extract_pdf(pdf_source(non_latin))
    assert_boxes_are_words(ex)
    assert "合同金额为五百万元" in ex.text
    assert "Ελληνικά κείμενα και Русский текст" in ex.text
    words = [ex.text[start:end] for start, end, *_ in ex.pages[0].boxes]
    assert "Ελληνικά" in words and "Русский" in words


def test_rotated_page_boxes_match_the_page_as_displayed():
    def rotated(doc):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 72), "Rotated", fontsize=12)
        page.set_rotation(90)

    ex = extract_pdf(pdf_source(rotated))
    page = ex.pages[0]
    assert (page.width, page.height) == (pytest.approx(842), pytest.approx(595))
    ((start, end, x0, y0, x1, y1),) = page.boxes
    assert ex.text[start:end] == "Rotated"
    # Turned a quarter clockwise, the word near the top-left corner lands near the top-right one,
    # running downwards: (x, y) -> (842 - y, x).
    assert 842 - 80 < x0 < x1 < 842 - 55 and y0 == pytest.approx(72, abs=1) and y1 - y0 > 30


def test_encrypted_needs_a_password_but_owner_only_opens():
    with pytest.raises(ExtractionError, match="encrypted and needs a password"):
        extract_pdf(
            pdf_source(three_pages, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
        )
    ex = extract_pdf(pdf_source(three_pages, encryption=pymupdf.PDF_ENCRYPT_AES_128, owner_pw="owner"))
    assert "Page 1 heading" in ex.text and ex.meta["encrypted"]


def test_a_password_can_be_given():
    locked = pdf_source(three_pages, encryption=pymupdf.PDF_ENCRYPT_RC4_128, user_pw="hunter2", owner_pw="o")
    ex = extract_pdf(locked, password="hunter2")
    assert "Page 2 heading" in ex.text and ex.meta["encrypted"]
    with pytest.raises(ExtractionError, match="given password is wrong"):
        extract_pdf(locked, password="guess")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"%PDF-1.7\n this is not really a pdf at all", "damaged or not a PDF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "damaged or not a PDF"),
    ],
)
def test_garbage_gives_a_clear_error(data, reason, capfd):
    with pytest.raises(ExtractionError, match=reason):
        extract_pdf(Source("bad.pdf", data=data))
    assert capfd.readouterr() == ("", "")


def test_a_missing_file_is_an_extraction_error(tmp_path):
    with pytest.raises(ExtractionError, match="cannot read the file"):
        extract_pdf(Source("gone.pdf", path=tmp_path / "gone.pdf"))


def test_read_from_a_path_and_titled_by_file_name(tmp_path):
    path = tmp_path / "minutes 2023.pdf"
    path.write_bytes(pdf_source(three_pages).data)
    ex = extract_pdf(Source(path.name, path=path))
    assert ex.title == "minutes 2023.pdf" and ex.meta["title"] == ""
    assert ex.meta["page_count"] == 3 and not ex.meta["encrypted"] and not ex.meta["repaired"]


def test_truncated_pdf_is_repaired_or_refused_never_crashes(capfd):
    data = pdf_source(three_pages).data
    repaired = 0
    for cut in (len(data) // 3, len(data) // 2, len(data) - 30, 40):
        try:
            ex = extract_pdf(Source("cut.pdf", data=data[:cut]))
        except ExtractionError as exc:
            assert str(exc).startswith("damaged or not a PDF")
        else:
            repaired += 1
            assert ex.meta["repaired"] and any("repaired" in w for w in ex.warnings)
            assert any(w.startswith("MuPDF: ") for w in ex.warnings)  # MuPDF's own words, kept
            assert_boxes_are_words(ex)
    assert repaired >= 1
    assert capfd.readouterr() == ("", "")  # nothing from MuPDF reaches the terminal


def minimal_pdf(*objects: bytes) -> bytes:
    """A PDF with a correct xref table around the given objects (object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_pdf_without_pages_is_refused():
    data = minimal_pdf(b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>")
    with pytest.raises(ExtractionError, match="PDF has no pages"):
        extract_pdf(Source("empty.pdf", data=data))


def test_a_lost_page_tree_is_rebuilt_from_the_page_objects():
    data = pdf_source(three_pages).data
    tree = re.search(rb"/Type/Pages/Count 3/Kids\[[^]]*\]", data).group(0)
    data = data.replace(tree, b"/Type/Pages/Count 0/Kids[]".ljust(len(tree)))  # same length: xref stays
    ex = extract_pdf(Source("lost.pdf", data=data))
    assert [page.number for page in ex.pages] == [1, 2, 3]
    assert "Page 3 heading" in ex.text and any("page tree is broken" in w for w in ex.warnings)
    assert_boxes_are_words(ex)


def test_text_without_unicode_is_reported_as_garbled():
    def unmapped(doc):
        # WinAnsi has no character for these codes, so MuPDF can only give U+FFFD
        doc.new_page().insert_text((72, 72), "\x07\x08" * 20, fontname="helv")

    ex = extract_pdf(pdf_source(unmapped), ocr=False)
    assert ex.meta["garbled_pages"] == [1]
    assert any("no Unicode mapping" in w for w in ex.warnings)


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
def test_image_only_pages_are_ocred_with_boxes(capfd):
    ex = extract_pdf(pdf_source(scanned))
    assert capfd.readouterr().err == ""  # Tesseract's chatter becomes warnings, never terminal noise
    assert_boxes_are_words(ex)
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
