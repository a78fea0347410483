"""PDF pages of a document: their character ranges and word boxes, spans mapped to page rectangles, boxes packed."""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field


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


Box = tuple[int, int, float, float, float, float]

_FIELDS_PER_BOX = 6
_BYTES_PER_BOX = _FIELDS_PER_BOX * 4


def page_for_offset(pages: Sequence[Page], offset: int) -> int | None:
    """The number of the page whose text contains `offset`, or None (page separator, outside the text)."""
    index = bisect_right([page.start for page in pages], offset) - 1
    if index >= 0 and pages[index].start <= offset < pages[index].end:
        return pages[index].number
    return None


def span_rects(pages: Sequence[Page], start: int, end: int) -> list[tuple[int, list[float]]]:
    """Rectangles (page number, [x0, y0, x1, y1]) covering the words that overlap text[start:end].

    Consecutive words on the same line are merged into one rectangle, so a span over three lines gives
    three rectangles and a span across a page break gives rectangles on both pages.
    """
    rects: list[tuple[int, list[float]]] = []
    if end <= start:
        return rects
    for page in pages:
        if page.end <= start or page.start >= end or not page.boxes:
            continue
        boxes = page.boxes
        # Boxes are in text order, so their ends are sorted and bisect finds the first overlapping word.
        first = bisect_right([box[1] for box in boxes], start)
        current: list[float] | None = None
        for box in boxes[first:]:
            if box[0] >= end:
                break
            if box[1] <= start:
                continue
            if current is not None and _same_line(current, box):
                current[0] = min(current[0], box[2])
                current[1] = min(current[1], box[3])
                current[2] = max(current[2], box[4])
                current[3] = max(current[3], box[5])
            else:
                current = [box[2], box[3], box[4], box[5]]
                rects.append((page.number, current))
    return rects


def _same_line(rect: list[float], box: Box) -> bool:
    """Whether `box` continues the line of `rect`: they share most of their height and sit close."""
    height = min(rect[3] - rect[1], box[5] - box[3])
    overlap = min(rect[3], box[5]) - max(rect[1], box[3])
    if height <= 0 or overlap < 0.5 * height:
        return False
    # A wide horizontal jump at the same height is another column or table cell, not the next word.
    gap = max(box[2] - rect[2], rect[0] - box[4])
    return gap <= 3 * max(rect[3] - rect[1], box[5] - box[3])


def pack_boxes(boxes: Sequence[Sequence[float]]) -> bytes:
    """Word boxes as little-endian columns: int32 starts, int32 ends, then float32 x0, y0, x1, y1.

    24 bytes a word (float32 keeps PDF points to well under a thousandth), one array call per column.
    """
    if not boxes:
        return b""
    columns = list(zip(*boxes, strict=False))
    if len(columns) != _FIELDS_PER_BOX or any(len(box) != _FIELDS_PER_BOX for box in boxes):
        raise ValueError(f"a box has {_FIELDS_PER_BOX} fields: (start, end, x0, y0, x1, y1)")
    parts = [array("i", columns[0]), array("i", columns[1])] + [array("f", column) for column in columns[2:]]
    if sys.byteorder != "little":
        for part in parts:
            part.byteswap()
    return b"".join(part.tobytes() for part in parts)


def unpack_boxes(data: bytes) -> list[Box]:
    """The boxes `pack_boxes` stored."""
    if len(data) % _BYTES_PER_BOX:
        raise ValueError(f"packed boxes must be a multiple of {_BYTES_PER_BOX} bytes, got {len(data)}")
    count = len(data) // _BYTES_PER_BOX
    parts = []
    for index, code in enumerate("iiffff"):
        part = array(code)
        part.frombytes(data[index * 4 * count : (index + 1) * 4 * count])
        if sys.byteorder != "little":
            part.byteswap()
        parts.append(part)
    return list(zip(*parts, strict=True))
