"""Images: OCR text with a box per word, EXIF in meta, multi-page TIFF, no-text images kept, bombs refused."""

from __future__ import annotations

import io
import struct
import zlib

import pymupdf
import pytest
from PIL import Image

from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.pdf import find_tessdata
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case
from rlm_desktop.store.pages import span_rects

needs_ocr = pytest.mark.skipif(find_tessdata() is None, reason="Tesseract's English data is not installed")


def rendered(text: str, dpi: int = 200) -> Image.Image:
    """A picture of `text` in 24 pt Helvetica on a 400 x 200 pt page, at `dpi`."""
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=200)
    page.insert_text((20, 100), text, fontsize=24)
    return Image.open(io.BytesIO(page.get_pixmap(dpi=dpi).tobytes("png"))).convert("RGB")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def read(name: str, data: bytes):
    source = Source(name, data=data)
    kind = detect_kind(source)
    assert kind == "image"
    return extract(source, kind)


@needs_ocr
def test_ocr_text_with_a_box_per_word_where_the_word_is(tmp_path):
    ex = read("scan.png", encoded(rendered("Invoice 4471 Zurich"), "PNG"))
    assert ex.text == "Invoice 4471 Zurich" and ex.meta["text_found"] is True
    (page,) = ex.pages
    assert page.ocr and [(b[0], b[1]) for b in page.boxes] == [(0, 7), (8, 12), (13, 19)]
    start = ex.text.index("Zurich")
    ((number, (x0, y0, x1, y1)),) = span_rects(ex.pages, start, start + 6)
    # drawn at x = 20 + the width of "Invoice 4471 " (about 145 pt) on a 400 x 200 pt page, baseline at 100;
    # the PNG has no resolution of its own, so its page is its pixels (834 x 417) and everything scales by 834/400
    scale = page.width / 400
    assert page.width == pytest.approx(834, abs=1) and page.height == pytest.approx(417, abs=1)
    assert number == 1 and 150 < x0 / scale < 180 and 75 < y0 / scale < 95 and 95 < y1 / scale < 110


@needs_ocr
def test_formats_exif_and_multi_page_tiff():
    picture = rendered("Paid to Geneva Trust")
    exif = Image.Exif()
    exif[271], exif[272], exif[306] = "Canon", "EOS 5D", "2024:03:01 10:20:30"
    jpeg = read("photo.jpg", encoded(picture, "JPEG", exif=exif, quality=95))
    assert "Geneva Trust" in jpeg.text
    assert jpeg.meta["camera"] == "Canon EOS 5D" and jpeg.meta["date"] == "2024-03-01T10:20:30"
    for name, fmt in (("a.gif", "GIF"), ("a.bmp", "BMP"), ("a.webp", "WEBP")):
        assert "Geneva" in read(name, encoded(picture, fmt)).text, name
    tiff = read("fax.tif", encoded(rendered("First page"), "TIFF", save_all=True,
                                   append_images=[rendered("Second page")]))  # fmt: skip
    assert tiff.text == "First page\fSecond page" and [p.number for p in tiff.pages] == [1, 2]
    assert tiff.meta["frames"] == 2


@needs_ocr
def test_an_image_without_text_is_kept_as_a_document(tmp_path):
    (tmp_path / "holiday-beach.jpg").write_bytes(encoded(Image.new("RGB", (300, 200), "white"), "JPEG"))
    (tmp_path / "receipt.png").write_bytes(encoded(rendered("Total 99 CHF"), "PNG"))
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path], jobs=1)
        assert report.failed == [] and report.added == 2
        docs = {d.title: d for d in case.documents()}
        blank = docs["holiday-beach.jpg"]
        assert blank.kind == "image" and blank.meta["ocr"] == "no text found" and case.text(blank.id) == ""
        assert blank.meta["text_found"] is False and blank.meta["warnings"] == ["no text found"]
        assert [h.doc_id for h in case.search("CHF")] == [docs["receipt.png"].id]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds one row: what a decompression bomb looks like."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1))) \
        + chunk(b"IEND", b"")  # fmt: skip


def test_huge_and_damaged_images_fail_with_a_reason(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    with Case.open(tmp_path / "case.sqlite") as case:
        failed = {f["path"].rsplit("/", 1)[1]: f["error"] for f in ingest(case, [tmp_path], jobs=1).failed}
    assert "100,000 x 100,000 pixels" in failed["bomb.png"] and "limit 150 megapixels" in failed["bomb.png"]
    assert "image" in failed["cut.jpg"]


def test_an_image_without_text_is_found_by_its_file_name(tmp_path):
    from rlm_desktop.corpus import Corpus

    (tmp_path / "in").mkdir()
    Image.new("RGB", (200, 100), "white").save(tmp_path / "in" / "blank_receipt_0042.png")
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        ingest(case, [tmp_path / "in"], jobs=1)
        case.checkpoint()
    corpus = Corpus.open(path)
    [hit] = corpus.search("blank_receipt_0042")
    assert corpus.by_id(hit.doc_id).kind == "image" and hit.field != "text"
