"""What every extractor returns: plain data, no I/O, no store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ExtractionError(Exception):
    """A file could not be turned into text; the message is shown to the user as the reason."""


class UnsupportedFormat(ExtractionError):
    """The file's type is one we do not read (the message names the type and, if any, the way out)."""


@dataclass
class Page:
    """One PDF page: its character range in the document text and the geometry to map spans to rectangles.

    `boxes` holds one entry per word (or OCR word) as (start, end, x0, y0, x1, y1): `start`/`end` are
    character offsets into the *document* text, coordinates are PDF points in PyMuPDF's page space
    (origin top-left, y down).
    """

    number: int  # 1-based page number
    start: int
    end: int
    width: float
    height: float
    boxes: list[tuple[int, int, float, float, float, float]] = field(default_factory=list)
    image_only: bool = False  # no text layer (before any OCR)
    ocr: bool = False  # this page's text came from OCR


@dataclass
class Blob:
    """An embedded file (attachment, nested message) to be ingested in turn as a child document."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    # where it sits in its parent, e.g. "attachment 2" or "message/rfc822 part 1.3"
    origin: str = ""


@dataclass
class Extracted:
    """A document as extracted: the exact text the engine will see, plus what we know about it.

    `text` is final: offsets into it are what citations point at, so extractors must not post-edit it
    after computing page ranges or boxes.
    """

    kind: str  # pdf, docx, email, text, markdown, html, mailbox, attachment
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    pages: list[Page] = field(default_factory=list)
    children: list[Blob] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
