"""PDF pages of a document: their character ranges and word boxes, spans mapped to page rectangles, boxes packed."""

from __future__ import annotations

import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import add, sub


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


_FORMAT = 2  # the first byte of packed boxes (the first format, 24 bytes a word, had no header)


def pack_boxes(boxes: Sequence[Sequence[float]]) -> bytes:
    """Word boxes, compact: about 8 bytes a word where the first format took 24 (issue 15: boxes were a
    quarter of a 100M-token case), exactly as precise (float32 coordinates).

    Six little-endian columns: int32 gaps from the previous word's end and int32 lengths (small numbers, where
    absolute offsets were not), then float32 x0, y0, x1, y1. The bytes are shuffled (every value's first
    byte, then every second byte, ...), which puts the alike parts of alike numbers together (a line's
    words share y0 and y1), and zlib packs them. All of it runs in C: ingest packs every page of every PDF.
    """
    if not boxes:
        return b""
    try:
        starts, ends, x0, y0, x1, y1 = zip(*boxes, strict=True)  # strict: every box as long as the first
    except ValueError:
        raise ValueError(f"a box has {_FIELDS_PER_BOX} fields: (start, end, x0, y0, x1, y1)") from None
    parts = [array("i", map(sub, starts, (0, *ends[:-1]))), array("i", map(sub, ends, starts))]
    parts += [array("f", column) for column in (x0, y0, x1, y1)]
    if sys.byteorder != "little":
        for part in parts:
            part.byteswap()
    raw = b"".join(part.tobytes() for part in parts)
    shuffled = b"".join(raw[i::4] for i in range(4))
    return bytes([_FORMAT]) + len(boxes).to_bytes(4, "little") + zlib.compress(shuffled)


def unpack_boxes(data: bytes) -> list[Box]:
    """The boxes `pack_boxes` stored (or the first format's, which migration m008 converts)."""
    if not data:
        return []
    if data[0] != _FORMAT or len(data) < 6:
        return unpack_first_format(data)
    count = int.from_bytes(data[1:5], "little")
    try:
        shuffled = zlib.decompress(data[5:])
    except zlib.error:
        return unpack_first_format(data)  # a first-format blob that happens to start with the byte 2
    if len(shuffled) != count * _BYTES_PER_BOX:
        raise ValueError("packed word boxes are damaged")
    raw = bytearray(len(shuffled))
    quarter = len(shuffled) // 4
    for i in range(4):
        raw[i::4] = shuffled[i * quarter : (i + 1) * quarter]
    gaps, lengths = array("i"), array("i")
    gaps.frombytes(raw[: 4 * count])
    lengths.frombytes(raw[4 * count : 8 * count])
    coordinates = array("f")
    coordinates.frombytes(raw[8 * count :])
    if sys.byteorder != "little":
        for part in (gaps, lengths, coordinates):
            part.byteswap()
    ends = [*accumulate(map(add, gaps, lengths))]
    starts = [*map(sub, ends, lengths)]
    n = count
    x0, y0, x1, y1 = (coordinates[i * n : (i + 1) * n] for i in range(4))
    return list(zip(starts, ends, x0, y0, x1, y1, strict=True))


def unpack_first_format(data: bytes) -> list[Box]:
    """Boxes in the first format: little-endian columns of int32 starts and ends, then float32 x0, y0, x1, y1."""
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
