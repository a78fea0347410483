"""PDF to text with a box for every word, via PyMuPDF, with OCR for pages that are only images."""

from __future__ import annotations

import contextlib
import functools
import glob
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

import pymupdf

from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError, Page
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.titles import choose_title

# MuPDF is not thread-safe and its warning buffer is global: every in-process user (the extractor, the
# viewer, reports) holds this lock while it touches a document.
MUPDF_LOCK = threading.Lock()

# Ligatures are expanded so "ﬁ" searches as "fi"; glyphs without Unicode become U+FFFD (detectable)
# instead of raw glyph ids that read as random letters.
_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
_OCR_LANGUAGE = "eng"
_OCR_DPI = 300
_SLOW_PAGE_SECONDS = 10.0
_MAX_MUPDF_WARNINGS = 20
_MAX_EMBEDDED_FILE_BYTES = 256 * 1024 * 1024
# Characters that must not reach the document text: "\f" separates pages, the rest is invisible noise,
# and lone surrogates cannot be encoded as UTF-8 for the store.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
# The same without "\n", which the laid-out page text holds as line separators.
_UNSAFE_IN_PAGE_TEXT = re.compile("[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
_PDF_DATE = re.compile(
    r"^\s*(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?\s*"
    r"(?:([Zz+\-])\s*(?:(\d{1,2})'?\s*(?:(\d{2})'?)?)?)?"
)

Word = tuple[float, float, float, float, str, int, int, int]


@dataclass
class _Run:
    """What one extraction collects besides the text: warnings and per-page findings."""

    ocr_tessdata: str | None
    warnings: list[str] = field(default_factory=list)
    image_only_pages: list[int] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)
    garbled_pages: list[int] = field(default_factory=list)
    failed_pages: int = 0


def extract_pdf(source: Source, *, password: str | None = None, ocr: bool = True) -> Extracted:
    """Extract a PDF's text in reading order, with page ranges and word boxes for every page.

    Raises ExtractionError (never anything else) when the file cannot be read.
    """
    with MUPDF_LOCK:
        tools = pymupdf.TOOLS
        tools.mupdf_display_errors(False)
        tools.mupdf_display_warnings(False)
        tools.reset_mupdf_warnings()
        try:
            return _extract(source, password or source.password, find_tessdata() if ocr else None)
        except ExtractionError:
            raise
        except MemoryError as exc:
            raise ExtractionError("PDF is too large to extract: out of memory") from exc
        except Exception as exc:  # a hostile file must only ever surface as ExtractionError
            raise ExtractionError(f"damaged or not a PDF: {_describe(exc)}") from exc
        finally:
            tools.reset_mupdf_warnings()


def _extract(source: Source, password: str | None, tessdata: str | None) -> Extracted:
    doc = _open(source, password)
    try:
        run = _Run(ocr_tessdata=tessdata)
        if doc.page_count == 0 and _rebuild_page_tree(doc):
            run.warnings.append(
                f"the PDF's page tree is broken; {doc.page_count} pages were recovered from loose page "
                "objects, in file order"
            )
        if doc.page_count == 0:
            if doc.is_repaired:
                raise ExtractionError(f"damaged or not a PDF: no pages could be recovered{_mupdf_hint()}")
            raise ExtractionError("PDF has no pages")
        text, pages = _extract_pages(doc, run)
        if run.failed_pages == doc.page_count:
            raise ExtractionError(f"damaged or not a PDF: no page could be read{_mupdf_hint()}")
        meta = _metadata(doc, run)
        if doc.is_repaired:
            run.warnings.insert(0, "the PDF is damaged; it was repaired and what was readable was extracted")
        if run.garbled_pages:
            unread = [number for number in run.garbled_pages if number not in run.ocr_pages]
            if unread:
                run.warnings.append(
                    f"{_page_list(unread)}: most characters have no Unicode mapping "
                    "(broken font encoding), so the text is unreliable"
                )
        children = _embedded_files(doc, run)
        run.warnings.extend(_mupdf_warnings())
        # a junk metadata title (a path, "Untitled", "x.doc") gives way to the file name; it stays in meta
        title = choose_title(meta.get("title"), source.name)
        if meta.get("title") and title != meta.get("title"):
            meta["metadata_title"] = meta.get("title")
        return Extracted(
            kind="pdf",
            title=title,
            text=text,
            meta=meta,
            pages=pages,
            children=children,
            warnings=run.warnings,
        )
    finally:
        doc.close()


def _open(source: Source, password: str | None) -> pymupdf.Document:
    try:
        if source.path is not None:
            doc = pymupdf.open(source.path, filetype="pdf")
        else:
            doc = pymupdf.open(stream=source.read_bytes(), filetype="pdf")
    except pymupdf.EmptyFileError as exc:
        raise ExtractionError("damaged or not a PDF: the file is empty") from exc
    except (FileNotFoundError, pymupdf.FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise ExtractionError(f"cannot read the file: {exc}") from exc
    except Exception as exc:
        raise ExtractionError(f"damaged or not a PDF: {_mupdf_first_warning() or _describe(exc)}") from exc
    if doc.needs_pass and not (password and doc.authenticate(password)):
        doc.close()
        if password:
            raise ExtractionError("PDF is encrypted and needs a password (the given password is wrong)")
        raise ExtractionError("PDF is encrypted and needs a password")
    return doc


def _rebuild_page_tree(doc: pymupdf.Document) -> bool:
    """Point the catalog at a new page tree made of every /Page object, when the real tree is lost."""
    try:
        catalog = doc.pdf_catalog()
        if catalog <= 0:
            return False
        page_objects = [xref for xref in range(1, doc.xref_length()) if _is_page_object(doc, xref)]
        if not page_objects:
            return False
        tree = doc.get_new_xref()
        kids = " ".join(f"{xref} 0 R" for xref in page_objects)
        doc.update_object(tree, f"<< /Type /Pages /Kids [{kids}] /Count {len(page_objects)} >>")
        for xref in page_objects:
            doc.xref_set_key(xref, "Parent", f"{tree} 0 R")
        doc.xref_set_key(catalog, "Pages", f"{tree} 0 R")
        return doc.page_count > 0
    except Exception:
        return False


def _is_page_object(doc: pymupdf.Document, xref: int) -> bool:
    try:
        return doc.xref_get_key(xref, "Type") == ("name", "/Page")
    except Exception:
        return False


def _extract_pages(doc: pymupdf.Document, run: _Run) -> tuple[str, list[Page]]:
    chunks: list[str] = []
    pages: list[Page] = []
    position = 0
    for index in range(doc.page_count):
        if index:
            chunks.append("\f")  # the separator belongs to no page
            position += 1
        started = time.monotonic()
        try:
            page, page_text = _extract_page(doc, index, position, run)
        except Exception as exc:
            run.failed_pages += 1
            run.warnings.append(f"page {index + 1}: could not be read ({_describe(exc)})")
            page = Page(number=index + 1, start=position, end=position, width=0.0, height=0.0)
            page_text = ""
        elapsed = time.monotonic() - started
        if elapsed > _SLOW_PAGE_SECONDS:
            run.warnings.append(f"page {index + 1}: took {elapsed:.0f} s to read")
        chunks.append(page_text)
        pages.append(page)
        position = page.end
    return "".join(chunks), pages


def _extract_page(doc: pymupdf.Document, index: int, start: int, run: _Run) -> tuple[Page, str]:
    page = doc.load_page(index)
    number = index + 1
    rect = page.rect
    words = page.get_textpage(flags=_TEXT_FLAGS).extractWORDS()
    text, boxes = _layout(words, start)
    image_only = not boxes and _has_images(page)
    garbled = _mostly_unmapped(text)
    if image_only:
        run.image_only_pages.append(number)
    if garbled:
        run.garbled_pages.append(number)
    ocr = False
    # Image-only and garbled pages are read again by OCR when it is available. Garbled text stays when
    # OCR finds nothing: its positions at least show where the unreadable text is.
    if (image_only or garbled) and run.ocr_tessdata:
        ocr_words = _ocr_words(page, run)
        if ocr_words is not None and (ocr_words or image_only):
            words, ocr = ocr_words, True
            text, boxes = _layout(words, start)
            run.ocr_pages.append(number)
    if _UNSAFE_IN_PAGE_TEXT.search(text):
        text, boxes = _layout([_clean_word(word) for word in words], start)
    end = boxes[-1][1] if boxes else start
    if page.rotation and boxes:
        boxes = _rotate_boxes(boxes, page.rotation_matrix)
    return (
        Page(
            number=number,
            start=start,
            end=end,
            width=rect.width,
            height=rect.height,
            boxes=boxes,
            image_only=image_only,
            ocr=ocr,
        ),
        text,
    )


def _layout(words: list[Word], start: int) -> tuple[str, list[tuple[int, int, float, float, float, float]]]:
    """Join words into page text: a space within a line, a newline between lines, two between blocks.

    Written as comprehensions and C-level helpers rather than one Python loop: this runs once per word
    of every document and dominates extraction time after MuPDF's own work.
    """
    words = [word for word in words if word[4]]
    if not words:
        return "", []
    separators = [
        ("\n\n" if before[5] != after[5] else "\n" if before[6] != after[6] else " ")
        for before, after in zip(words, words[1:], strict=False)
    ]
    pieces: list[str] = [""] * (2 * len(words) - 1)
    pieces[0::2] = [word[4] for word in words]
    pieces[1::2] = separators
    # offsets[k] is where piece k starts, so word i spans offsets[2i]:offsets[2i + 1].
    offsets = list(accumulate(map(len, pieces), initial=start))
    boxes = [
        (word_start, word_end, word[0], word[1], word[2], word[3])
        for word_start, word_end, word in zip(offsets[0::2], offsets[1::2], words, strict=True)
    ]
    return "".join(pieces), boxes


def _clean_word(word: Word) -> Word:
    x0, y0, x1, y1, text, block, line, number = word
    return (x0, y0, x1, y1, _UNSAFE_CHARS.sub("", text), block, line, number)


def _rotate_boxes(
    boxes: list[tuple[int, int, float, float, float, float]], matrix: pymupdf.Matrix
) -> list[tuple[int, int, float, float, float, float]]:
    """Move boxes from unrotated page space (where MuPDF reports text) to the page as displayed."""
    a, b, c, d, e, f = matrix.a, matrix.b, matrix.c, matrix.d, matrix.e, matrix.f
    rotated = []
    for start, end, x0, y0, x1, y1 in boxes:
        ax, ay = a * x0 + c * y0 + e, b * x0 + d * y0 + f
        bx, by = a * x1 + c * y1 + e, b * x1 + d * y1 + f
        rotated.append((start, end, min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)))
    return rotated


def _has_images(page: pymupdf.Page) -> bool:
    """Whether the page shows at least one image of visible size (inline images included)."""
    area = abs(page.rect)
    for info in page.get_image_info():
        box = pymupdf.Rect(info["bbox"]) & page.rect
        if not box.is_empty and abs(box) >= 0.001 * area:
            return True
    return False


def _mostly_unmapped(text: str) -> bool:
    """Whether most of the page's characters are U+FFFD: a font without a usable Unicode mapping."""
    unknown = text.count("\ufffd")
    return unknown >= 20 and unknown > 0.3 * (len(text) - text.count(" ") - text.count("\n"))


def _ocr_words(page: pymupdf.Page, run: _Run) -> list[Word] | None:
    try:
        with _stderr_to_warnings(run, f"page {page.number + 1}: OCR: "):
            textpage = page.get_textpage_ocr(
                flags=_TEXT_FLAGS, language=_OCR_LANGUAGE, dpi=_OCR_DPI, full=True, tessdata=run.ocr_tessdata
            )
        return textpage.extractWORDS()
    except Exception as exc:
        run.warnings.append(f"page {page.number + 1}: OCR failed ({_describe(exc)})")
        return None


@contextlib.contextmanager
def _stderr_to_warnings(run: _Run, prefix: str) -> Iterator[None]:
    """Catch what Tesseract (inside MuPDF) prints straight to file descriptor 2 and keep it as warnings."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            printed = capture.read(64 * 1024).decode("utf-8", "replace")
    lines = [line.strip() for line in _UNSAFE_IN_PAGE_TEXT.sub("", printed).splitlines() if line.strip()]
    run.warnings.extend(prefix + line for line in list(dict.fromkeys(lines))[:_MAX_MUPDF_WARNINGS])


@functools.cache
def find_tessdata() -> str | None:
    """The Tesseract language folder holding English data, or None when OCR is not available here.

    MuPDF has Tesseract built in and only needs the language data, which comes with the tesseract package.
    """
    candidates = [os.environ.get("TESSDATA_PREFIX", "")]
    candidates += sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata"), reverse=True)
    candidates += [
        "/usr/share/tesseract-ocr/tessdata",
        "/usr/share/tessdata",
        "/usr/local/share/tessdata",
        "/opt/homebrew/share/tessdata",
    ]
    binary = shutil.which("tesseract")
    if binary:
        try:
            listing = subprocess.run(
                [binary, "--list-langs"], capture_output=True, text=True, timeout=20, check=False
            )
            found = re.search(r'languages in "(.+?)"', listing.stdout + listing.stderr)
            if found:
                candidates.insert(1, found.group(1))
        except (OSError, subprocess.SubprocessError):
            pass
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, f"{_OCR_LANGUAGE}.traineddata")):
            return folder
    return None


def _metadata(doc: pymupdf.Document, run: _Run) -> dict[str, Any]:
    raw = doc.metadata or {}

    def clean(key: str) -> str:
        return _UNSAFE_CHARS.sub("", str(raw.get(key) or "")).strip()

    return {
        "page_count": doc.page_count,
        "title": clean("title"),
        "author": clean("author"),
        "subject": clean("subject"),
        "keywords": clean("keywords"),
        "creator": clean("creator"),
        "producer": clean("producer"),
        "creation_date": parse_pdf_date(clean("creationDate")),
        "mod_date": parse_pdf_date(clean("modDate")),
        "pdf_format": clean("format"),
        "encrypted": bool(raw.get("encryption")) or bool(doc.is_encrypted),
        "repaired": bool(doc.is_repaired),
        "image_only_pages": run.image_only_pages,
        "ocr_pages": run.ocr_pages,
        "garbled_pages": run.garbled_pages,
    }


def parse_pdf_date(value: str) -> str | None:
    """A PDF date string ("D:20230101120000+01'00'", possibly partial) as ISO 8601, or None."""
    match = _PDF_DATE.match(value or "")
    if not match:
        return None
    year, month, day, hour, minute, second, sign, tz_hours, tz_minutes = match.groups()
    try:
        moment = datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    if sign in ("Z", "z"):
        moment = moment.replace(tzinfo=UTC)
    elif sign and tz_hours is not None:
        offset = timedelta(hours=int(tz_hours), minutes=int(tz_minutes or 0))
        try:
            moment = moment.replace(tzinfo=timezone(-offset if sign == "-" else offset))
        except ValueError:
            pass  # an offset of a day or more is nonsense; keep the local time
    return moment.isoformat()


def _embedded_files(doc: pymupdf.Document, run: _Run) -> list[Blob]:
    """Files embedded in the PDF (its EmbeddedFiles tree), to be ingested as child documents."""
    children: list[Blob] = []
    try:
        names = doc.embfile_names()
    except Exception as exc:
        run.warnings.append(f"embedded files could not be listed ({_describe(exc)})")
        return children
    for position, name in enumerate(names, start=1):
        try:
            info = doc.embfile_info(name)
            if int(info.get("size") or 0) > _MAX_EMBEDDED_FILE_BYTES:
                run.warnings.append(f"embedded file {name!r} skipped: larger than 256 MB")
                continue
            data = doc.embfile_get(name)
        except Exception as exc:
            run.warnings.append(f"embedded file {name!r} could not be read ({_describe(exc)})")
            continue
        filename = info.get("ufilename") or info.get("filename") or name
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        children.append(
            Blob(filename=filename, data=data, content_type=content_type, origin=f"embedded file {position}")
        )
    return children


def _mupdf_warnings() -> list[str]:
    """MuPDF's collected messages, deduplicated and capped, prefixed so the user knows their source."""
    messages = _UNSAFE_IN_PAGE_TEXT.sub("\ufffd", pymupdf.TOOLS.mupdf_warnings())
    lines = list(dict.fromkeys(line.strip() for line in messages.splitlines()))
    lines = [line for line in lines if line]
    shown = [f"MuPDF: {line}" for line in lines[:_MAX_MUPDF_WARNINGS]]
    if len(lines) > _MAX_MUPDF_WARNINGS:
        shown.append(f"MuPDF: ... and {len(lines) - _MAX_MUPDF_WARNINGS} more messages")
    return shown


def _mupdf_first_warning() -> str:
    for line in pymupdf.TOOLS.mupdf_warnings(reset=False).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _mupdf_hint() -> str:
    first = _mupdf_first_warning()
    return f" ({first})" if first else ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _page_list(numbers: list[int]) -> str:
    shown = ("page " if len(numbers) == 1 else "pages ") + ", ".join(str(number) for number in numbers[:20])
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
