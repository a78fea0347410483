"""PDF pages of a document: their character ranges and word boxes, spans mapped to page rectangles, boxes packed."""

from __future__ import annotations

import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add, mul, sub


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


BOX_SCALE = 100
"""Box coordinates are kept in hundredths of a PDF point (1/7200 inch), as citations round them."""
_FORMAT = 2  # the first byte of packed boxes (the first format, 24 bytes a word, had no header)
_CODES = "bhi"  # the narrowest array type a column's values fit in: 1, 2 or 4 bytes
_LIMITS = {"b": 1 << 7, "h": 1 << 15, "i": 1 << 31}


def pack_boxes(boxes: Sequence[Sequence[float]]) -> bytes:
    """Word boxes, compact: about 3.5 bytes a word where the first format took 24 (issue 15: the boxes were a
    quarter of a 100M-token case).

    Each word is stored relative to the one before it, as whole numbers: the gap from the previous word's end
    and its length in characters; x0 from the previous x1, y0 from the previous y0, its width, and its height
    from the previous height, in BOX_SCALE units. Words of a line share y0 and height, so most of these are 0
    or small; each column takes the narrowest integer type its values fit, and zlib packs the rest.
    """
    if not boxes:
        return b""
    try:
        starts, ends, x0s, y0s, x1s, y1s = zip(*boxes, strict=True)  # strict: every box as long as the first
    except ValueError:
        raise ValueError(f"a box has {_FIELDS_PER_BOX} fields: (start, end, x0, y0, x1, y1)") from None
    scale = repeat(float(BOX_SCALE))
    x0, y0, x1, y1 = ([*map(round, map(mul, column, scale))] for column in (x0s, y0s, x1s, y1s))
    heights = [*map(sub, y1, y0)]
    columns = (
        map(sub, starts, (0, *ends[:-1])),
        map(sub, ends, starts),
        map(sub, x0, (0, *x1[:-1])),
        map(sub, y0, (0, *y0[:-1])),
        map(sub, x1, x0),
        map(sub, heights, (0, *heights[:-1])),
    )
    codes, parts = [], []
    for column in columns:
        values = [*column]
        low, high = min(values), max(values)
        code = next((c for c in _CODES if -_LIMITS[c] <= low and high < _LIMITS[c]), None)
        if code is None:
            raise ValueError("a word box is out of range (more than 2**31 characters or points)")
        part = array(code, values)
        if sys.byteorder != "little":
            part.byteswap()
        codes.append(code)
        parts.append(part.tobytes())
    header = bytes([_FORMAT]) + len(boxes).to_bytes(4, "little") + "".join(codes).encode("ascii")
    return header + zlib.compress(b"".join(parts))


def unpack_boxes(data: bytes) -> list[Box]:
    """The boxes `pack_boxes` stored (or the first format's, which migration m008 converts)."""
    if not data:
        return []
    if data[0] != _FORMAT or len(data) < 11:
        return unpack_first_format(data)
    try:
        count = int.from_bytes(data[1:5], "little")
        codes = data[5:11].decode("ascii")
        body = zlib.decompress(data[11:])
    except (UnicodeDecodeError, zlib.error):
        return unpack_first_format(data)  # a first-format blob that happens to start with the byte 2
    columns: list[array] = []
    at = 0
    for code in codes:
        column = array(code)
        size = column.itemsize * count
        column.frombytes(body[at : at + size])
        if sys.byteorder != "little":
            column.byteswap()
        columns.append(column)
        at += size
    if at != len(body) or any(len(column) != count for column in columns):
        raise ValueError("packed word boxes are damaged")
    gaps, lengths, dx, dy, widths, dh = columns
    ends = [*accumulate(map(add, gaps, lengths))]
    starts = [*map(sub, ends, lengths)]
    x1 = [*accumulate(map(add, dx, widths))]
    x0 = [*map(sub, x1, widths)]
    y0 = [*accumulate(dy)]
    y1 = [*map(add, y0, accumulate(dh))]
    scale = BOX_SCALE
    return list(
        zip(
            starts,
            ends,
            [v / scale for v in x0],
            [v / scale for v in y0],
            [v / scale for v in x1],
            [v / scale for v in y1],
            strict=True,
        )
    )


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
