"""Images (.png .jpg .tif multi-page .bmp .gif .webp): OCR through PyMuPDF's Tesseract like scanned PDF pages,
with a box per word; EXIF date and camera in meta. An image without text is still a document ("no text found").

Each frame becomes a page of a PDF made by MuPDF (`convert_to_pdf`), so word boxes are in that page's points,
which the viewer and reports render from the original exactly as they do a scanned PDF page.
"""

from __future__ import annotations

import io
from typing import Any

import pymupdf

from rlm_desktop.ingest.extracted import Extracted, ExtractionError, Page
from rlm_desktop.ingest.pdf import (
    _TEXT_FLAGS,
    MUPDF_LOCK,
    _layout,
    _Run,
    _stderr_to_warnings,
    find_tessdata,
)
from rlm_desktop.ingest.source import Source

MAX_PIXELS = 150_000_000  # per frame: a 600 dpi A4 scan is 35 MP; a decompression bomb claims billions
MAX_FRAMES = 500
OCR_LANGUAGE = "eng"
OCR_MIN_DPI, OCR_MAX_DPI = 150, 400  # render at the image's own resolution, within these bounds
NO_TEXT = "no text found"
_EXIF_DATE_TAGS = (36867, 36868, 306)  # DateTimeOriginal, DateTimeDigitized, DateTime


def _exif(image: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF is common and never worth failing an image for
        return meta
    tags = dict(exif)
    try:
        tags.update(exif.get_ifd(0x8769))  # the Exif sub-IFD holds DateTimeOriginal
    except Exception:  # noqa: BLE001
        pass
    for tag in _EXIF_DATE_TAGS:
        value = str(tags.get(tag) or "").strip().strip("\x00")
        if len(value) >= 19 and value[4] == ":" and value[7] == ":":
            meta["date"] = value[:10].replace(":", "-") + "T" + value[11:19]
            break
    camera = " ".join(str(tags.get(t) or "").strip().strip("\x00") for t in (271, 272)).strip()
    if camera:
        meta["camera"] = camera
    return meta


def _open_frames(data: bytes, name: str) -> tuple[pymupdf.Document, dict[str, Any]]:
    """The image as a PDF (one page per frame), after checking its size from the header alone."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # our own limit below, with our own message
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError as exc:
        raise ExtractionError("damaged or unsupported image: the format is not recognised") from exc
    width, height = image.size
    frames = getattr(image, "n_frames", 1)
    if width * height > MAX_PIXELS:
        raise ExtractionError(
            f"image of {width:,} x {height:,} pixels (limit {MAX_PIXELS // 1_000_000} megapixels); not read"
        )
    if frames > MAX_FRAMES:
        raise ExtractionError(f"image with {frames:,} frames (limit {MAX_FRAMES}); not read")
    meta: dict[str, Any] = {"format": (image.format or "").lower(), "width": width, "height": height}
    if frames > 1:
        meta["frames"] = frames
    meta.update(_exif(image))
    try:
        img = pymupdf.open(stream=data)
    except Exception:  # noqa: BLE001 - MuPDF reads no WebP (and some odd variants): let Pillow decode it
        try:
            out = io.BytesIO()
            image.seek(0)
            image.convert("RGB").save(out, "PNG")
            img = pymupdf.open(stream=out.getvalue(), filetype="png")
        except Exception as exc:  # noqa: BLE001
            raise ExtractionError(f"damaged image: {type(exc).__name__}: {exc}") from exc
    try:
        pdf = pymupdf.open("pdf", img.convert_to_pdf())
    finally:
        img.close()
    if meta.get("frames", 1) > 1 and pdf.page_count == 1:
        meta["frames_read"] = 1
    return pdf, meta


def is_image(data: bytes) -> bool:
    """Whether `data` starts with an image signature this module reads."""
    head = data[:16]
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    )


def as_pdf(data: bytes) -> bytes:
    """Bytes to render pages from: a PDF as it is, an image as the PDF whose pages its OCR boxes were measured
    on (the same conversion as at ingest). The caller holds MUPDF_LOCK where it shares MuPDF across threads."""
    if data[:1024].find(b"%PDF-") >= 0 or not is_image(data):
        return data
    pdf, _ = _open_frames(data, "")
    try:
        return pdf.tobytes()
    finally:
        pdf.close()


def extract_image(source: Source) -> Extracted:
    """An image as OCR text with word boxes (kind "image")."""
    data = source.read_bytes()
    name = source.name.rsplit("/", 1)[-1]
    tessdata = find_tessdata()
    run = _Run(ocr_tessdata=tessdata)
    with MUPDF_LOCK:
        try:
            pdf, meta = _open_frames(data, name)
        except ExtractionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a hostile image must only surface as ExtractionError
            raise ExtractionError(f"damaged image: {type(exc).__name__}: {exc}") from exc
        try:
            text, pages = _ocr_pages(pdf, run, meta)
        finally:
            pdf.close()
    if tessdata is None:
        run.warnings.insert(0, "OCR is not available: install Tesseract (tesseract-ocr and tesseract-ocr-eng)")
        meta["ocr"] = "unavailable"
    meta["text_found"] = bool(text.strip())
    if not text.strip():
        text = ""
        if tessdata is not None:
            run.warnings.append(NO_TEXT)
            meta["ocr"] = NO_TEXT
    return Extracted(kind="image", title=name, text=text, meta=meta, pages=pages, warnings=run.warnings)


def _ocr_pages(pdf: pymupdf.Document, run: _Run, meta: dict[str, Any]) -> tuple[str, list[Page]]:
    chunks: list[str] = []
    pages: list[Page] = []
    position = 0
    for index in range(pdf.page_count):
        if index:
            chunks.append("\f")
            position += 1
        page = pdf.load_page(index)
        words: list[Any] = []
        if run.ocr_tessdata:
            # the page is the image at its own resolution: render it back at that, never a huge upscale
            native = 72.0 * (meta["width"] / page.rect.width) if page.rect.width else 300.0
            dpi = int(min(max(native, OCR_MIN_DPI), OCR_MAX_DPI))
            try:
                with _stderr_to_warnings(run, f"page {index + 1}: OCR: "):
                    textpage = page.get_textpage_ocr(
                        flags=_TEXT_FLAGS, language=OCR_LANGUAGE, dpi=dpi, full=True, tessdata=run.ocr_tessdata
                    )
                words = textpage.extractWORDS()
            except Exception as exc:  # noqa: BLE001
                run.warnings.append(f"page {index + 1}: OCR failed ({type(exc).__name__}: {exc})")
        text, boxes = _layout(words, position)
        end = boxes[-1][1] if boxes else position
        pages.append(Page(index + 1, position, end, page.rect.width, page.rect.height, boxes,
                          image_only=True, ocr=bool(run.ocr_tessdata)))  # fmt: skip
        chunks.append(text)
        position = end
    return "".join(chunks), pages
