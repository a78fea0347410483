"""Page-region images for PDF citations: the cited span highlighted on the original page, rendered by PyMuPDF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymupdf

from rlm_desktop.ingest.image import as_pdf
from rlm_desktop.sources import SourceUnavailable, source_bytes
from rlm_desktop.store.case import Case

ZOOM = 2.0  # 144 dpi: sharp on screen and in print at the width a report shows it
MARGIN_Y = 60.0  # points of page shown above and below the highlighted lines
MARGIN_X = 18.0
PAD = 1.5  # the highlight box reaches a little beyond the glyphs
FILL = (1.0, 0.84, 0.0)  # the app's highlight yellow (gui/theme.py HIGHLIGHT)
EDGE = (0.93, 0.55, 0.0)
FRAME = (0.6, 0.64, 0.69)


@dataclass(frozen=True)
class CitationImage:
    page: int  # 1-based
    png: bytes
    width: int  # pixels
    height: int
    highlighted: bool  # False when the span's position on the page is unknown and the whole page is shown

    @property
    def width_pt(self) -> float:
        """The size the region has on the printed page, so reports never show it larger than life."""
        return self.width / ZOOM

    @property
    def height_pt(self) -> float:
        return self.height / ZOOM


def _page_rects(citation: dict[str, Any]) -> dict[int, list[pymupdf.Rect]]:
    """The citation's rectangles grouped by page (rects on several pages when a span crosses a break)."""
    rects = citation.get("rects") or []
    pages = citation.get("rect_pages") or [citation.get("page")] * len(rects)
    grouped: dict[int, list[pymupdf.Rect]] = {}
    for number, rect in zip(pages, rects, strict=False):
        if number:
            grouped.setdefault(int(number), []).append(pymupdf.Rect(rect))
    if not grouped and citation.get("page"):
        grouped[int(citation["page"])] = []
    return grouped


def _content_rect(page: pymupdf.Page) -> pymupdf.Rect:
    """The area of the page holding text, so the image is not mostly empty margin."""
    area = pymupdf.Rect()
    for block in page.get_text("blocks"):
        area |= pymupdf.Rect(block[:4]) * page.rotation_matrix
    return area if not area.is_empty else page.rect


def render_region(page: pymupdf.Page, rects: list[pymupdf.Rect]) -> CitationImage:
    """The band of `page` around `rects` (page coordinates as displayed), the rects highlighted.

    `page` is modified (the boxes are drawn onto it): pass a page of a document opened only for this.
    """
    if not rects:
        pix = page.get_pixmap(matrix=pymupdf.Matrix(ZOOM, ZOOM), alpha=False)
        return CitationImage(page.number + 1, pix.tobytes("png"), pix.width, pix.height, False)
    span = pymupdf.Rect(rects[0])
    for rect in rects[1:]:
        span |= rect
    content = _content_rect(page) | span
    top = max(span.y0 - MARGIN_Y, min(content.y0, span.y0) - MARGIN_X)  # no blank band above the text
    bottom = min(span.y1 + MARGIN_Y, max(content.y1, span.y1) + MARGIN_X)
    clip = pymupdf.Rect(content.x0 - MARGIN_X, top, content.x1 + MARGIN_X, bottom) & page.rect
    for rect in rects:
        # Drawing happens in the unrotated page space; the rects are in the page as displayed.
        box = (rect + (-PAD, -PAD, PAD, PAD)) * page.derotation_matrix
        page.draw_rect(box, color=EDGE, fill=FILL, width=0.6, fill_opacity=0.38, stroke_opacity=0.9)
    # A thin frame: the region reads as a piece of the page in every format, even on white paper.
    frame = (clip + (0.4, 0.4, -0.4, -0.4)) * page.derotation_matrix
    page.draw_rect(frame, color=FRAME, width=0.8)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(ZOOM, ZOOM), clip=clip, alpha=False)
    return CitationImage(page.number + 1, pix.tobytes("png"), pix.width, pix.height, True)


def render_citation_images(
    case: Case, doc_id: int, citation: dict[str, Any]
) -> tuple[list[CitationImage], str | None]:
    """Images of the cited region on each page the span touches, or no images and the reason why."""
    grouped = _page_rects(citation)
    if not grouped:
        return [], "No page image: the span's page is not known."
    try:
        data = source_bytes(case, doc_id)
    except SourceUnavailable as exc:
        return [], f"No page image: {exc}."
    except KeyError:
        return [], "No page image: the document is not in the case."
    try:
        doc = pymupdf.open(stream=as_pdf(data), filetype="pdf")  # an image: the pages its OCR boxes are on
    except Exception as exc:  # a damaged original: the report still stands on the stored text
        return [], f"No page image: the original could not be opened as a PDF ({exc})."
    images: list[CitationImage] = []
    problems: list[str] = []
    with doc:
        for number, rects in sorted(grouped.items()):
            if not 1 <= number <= len(doc):
                problems.append(f"page {number} is not in the original ({len(doc)} pages)")
                continue
            try:
                images.append(render_region(doc[number - 1], rects))
            except Exception as exc:
                problems.append(f"page {number} could not be rendered ({exc})")
    note = None
    if problems:
        note = "No page image for " + "; ".join(problems) + "."
    elif any(not image.highlighted for image in images):
        note = "The span's position on the page is not known; the whole page is shown without a highlight."
    return images, note
