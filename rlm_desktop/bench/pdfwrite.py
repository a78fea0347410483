"""A minimal PDF writer (Helvetica, Flate-compressed pages, one or two columns): fast and byte-deterministic.

Writing the PDF syntax directly is ~20x faster than laying text out with PyMuPDF, so generating thousands
of files does not dominate the benchmark.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

PAGE_WIDTH, PAGE_HEIGHT = 612, 792  # US Letter, points
MARGIN = 72
FONT_SIZE, LEADING = 10.5, 13.5
HEADING_SIZE = 14
# Average Helvetica glyph width is about 0.5 em; wrapping a little short keeps lines inside their column.
CHARS_SINGLE = 84
CHARS_COLUMN = 39
COLUMN_GAP = 24
LINES_PER_PAGE = int((PAGE_HEIGHT - 2 * MARGIN) / LEADING)
KEEP = "\x01"  # joins words that must stay on one line (needles); becomes a space in the PDF


@dataclass
class PdfLine:
    text: str
    heading: bool = False


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").replace(KEEP, " ")


def _column_stream(lines: list[PdfLine], x: float) -> str:
    parts = [f"BT {x} {PAGE_HEIGHT - MARGIN} Td {LEADING} TL"]
    font = None
    for line in lines:
        wanted = ("/F2", HEADING_SIZE) if line.heading else ("/F1", FONT_SIZE)
        if wanted != font:
            parts.append(f"{wanted[0]} {wanted[1]} Tf")
            font = wanted
        parts.append(f"({_escape(line.text)}) Tj T*" if line.text else "T*")
    parts.append("ET")
    return "\n".join(parts)


def layout_pages(paragraphs: list[tuple[str, bool]], columns: int) -> list[list[list[PdfLine]]]:
    """Wrap (text, is_heading) paragraphs into pages of columns of lines."""
    from rlm_desktop.bench.prose import wrap

    width = CHARS_SINGLE if columns == 1 else CHARS_COLUMN
    flat: list[PdfLine] = []
    for text, heading in paragraphs:
        flat.extend(PdfLine(line, heading) for line in wrap(text, width))
        flat.append(PdfLine(""))
    per_page = LINES_PER_PAGE * columns
    pages = []
    for start in range(0, len(flat), per_page):
        page = flat[start : start + per_page]
        pages.append([page[i : i + LINES_PER_PAGE] for i in range(0, len(page), LINES_PER_PAGE)])
    return pages or [[[]]]


def write_pdf(pages: list[list[list[PdfLine]]], title: str, author: str, date: str) -> bytes:
    """A PDF with one content stream per page; `date` is a PDF date string like D:20190301120000Z."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    add(b"<< /Type /Catalog /Pages 2 0 R >>")
    add(b"")  # the page tree, filled in once the page ids are known
    font = "<< /Type /Font /Subtype /Type1 /BaseFont /{} /Encoding /WinAnsiEncoding >>"
    add(font.format("Helvetica").encode())
    add(font.format("Helvetica-Bold").encode())
    info = add(f"<< /Title ({_escape(title)}) /Author ({_escape(author)}) /CreationDate ({date}) >>".encode())
    column_width = (PAGE_WIDTH - 2 * MARGIN - COLUMN_GAP) / 2
    page_ids = []
    for columns in pages:
        xs = [MARGIN] if len(columns) == 1 else [MARGIN, MARGIN + column_width + COLUMN_GAP]
        stream = "\n".join(_column_stream(lines, x) for lines, x in zip(columns, xs, strict=False))
        data = zlib.compress(stream.encode("latin-1", "replace"), 6)
        content = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
        page_ids.append(
            add(
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] /Contents {content} 0 R"
                " /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> >>".encode()
            )
        )
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects[1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info,
        xref,
    )
    return bytes(out)
