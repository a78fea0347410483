"""The report as PDF: the HTML report laid out by PyMuPDF's Story, so the text is real and selectable."""

from __future__ import annotations

import io
import re

import pymupdf

from rlm_desktop.reports.html import CSS, image_name, report_blocks
from rlm_desktop.reports.model import Report

PAGE = pymupdf.paper_rect("a4")
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 50.0, 50.0, 56.0
BODY = PAGE + (MARGIN_X, MARGIN_TOP, -MARGIN_X, -MARGIN_BOTTOM)
BLOCK_GAP = 4.0

# Story's HTML engine has no media queries and its own fonts: a narrower, print-sized variant of the CSS.
PDF_CSS = """
body { font-family: sans-serif; font-size: 9.5pt; }
.page { max-width: none; padding: 0; margin: 0; }
h1 { font-size: 17pt; }
h2 { font-size: 12.5pt; margin-top: 18pt; }
h3 { font-size: 11pt; }
.mono, .hash, pre { font-family: monospace; }
.quote { font-family: serif; font-size: 10pt; }
table.meta th { width: 110pt; }
table.facts th { width: 78pt; }
th, td { vertical-align: baseline; }  /* 'top' shifts inline spans below the line in MuPDF */
tr.head th { background-color: transparent; border: none; border-bottom: none; padding-bottom: 2pt; }
"""


_TEXT_NODE = re.compile(r">([^<]+)<")
_LONG_RUN = re.compile(r"[^\s/&;]{36,}")  # never inside an entity: & and ; end a run
_HASH = re.compile(r"[0-9a-f]{64}")


def soft_wrap(html: str) -> str:
    """Zero-width spaces inside long unbroken runs (paths, base64, code) so MuPDF can wrap them.

    MuPDF sizes table columns by their longest word and does not break words: one long file name would push
    a table off the page. A SHA-256 fits its cell and stays whole, so it can be copied from the PDF.
    """

    def breaks(run: re.Match[str]) -> str:
        token = run.group(0)
        if _HASH.fullmatch(token):
            return token
        return "\u200b".join(token[i : i + 30] for i in range(0, len(token), 30))

    return _TEXT_NODE.sub(lambda node: ">" + _LONG_RUN.sub(breaks, node.group(1)) + "<", html)


class _Pages:
    """Lays out blocks one after another on A4 pages, moving a block that does not fit to the next page.

    One Story per block: MuPDF keeps a block together this way (CSS page-break-inside is not honoured) and a
    block that breaks across pages cannot leave table borders of an earlier block behind.
    """

    def __init__(self, writer: pymupdf.DocumentWriter):
        self.writer = writer
        self.device = None
        self.page = 0
        self.y = BODY.y0
        self.headings: list[list] = []

    def _new_page(self) -> None:
        if self.device is not None:
            self.writer.end_page()
        self.device = self.writer.begin_page(PAGE)
        self.page += 1
        self.y = BODY.y0

    def add(self, story: pymupdf.Story) -> None:
        if self.device is None:
            self._new_page()
        moved = False
        while True:
            more, filled = story.place(pymupdf.Rect(BODY.x0, self.y, BODY.x1, BODY.y1))
            if more and not moved and self.y > BODY.y0 + 1:
                story.reset()
                fits_a_page = not story.place(BODY)[0]
                story.reset()
                if fits_a_page:  # keep it together on the next page; a longer block starts here and flows on
                    self._new_page()
                    moved = True
                    continue
                more, filled = story.place(pymupdf.Rect(BODY.x0, self.y, BODY.x1, BODY.y1))
            story.element_positions(lambda position: self._heading(position), {"page_num": self.page})
            story.draw(self.device)
            if not more:
                self.y = filled[3] + BLOCK_GAP
                return
            self._new_page()

    def _heading(self, position) -> None:
        if position.heading in (2, 3) and position.open_close & 1 and position.text.strip():
            self.headings.append(
                [position.heading - 1, position.text.strip(), position.page_num, position.rect[1]]
            )

    def close(self) -> None:
        if self.device is not None:
            self.writer.end_page()
        self.writer.close()


def render_pdf(report: Report) -> bytes:
    """The PDF bytes: A4 pages, bookmarks for the sections, a footer with the run and page numbers."""
    archive = pymupdf.Archive()
    for citation in report.citations:
        for image in citation.images:
            archive.add(image.png, image_name(citation, image))
    css = CSS + PDF_CSS
    buffer = io.BytesIO()
    pages = _Pages(pymupdf.DocumentWriter(buffer))
    for block in report_blocks(report, image_name, max_image_width=BODY.width, unit=1.0):
        html = soft_wrap(f"<div class='block'>{block}</div>")
        pages.add(pymupdf.Story(html=html, user_css=css, archive=archive))
    pages.close()

    doc = pymupdf.open("pdf", buffer.getvalue())
    _footers(doc, report)
    doc.set_metadata(
        {
            "title": f"Evidence report: {report.question[:200]}",
            "subject": report.subject_label,
            "creator": f"RLM Desktop {report.app_version}",
            "producer": f"PyMuPDF {pymupdf.VersionBind}",
        }
    )
    toc = [
        [level, title, page, {"kind": pymupdf.LINK_GOTO, "to": pymupdf.Point(0, top), "page": page - 1}]
        for level, title, page, top in pages.headings
    ]
    if toc:
        toc[0][0] = 1
    try:
        doc.set_toc(toc)
    except Exception:  # bookmarks are a convenience: an outline MuPDF rejects must not fail the report
        pass
    try:
        doc.subset_fonts()  # the Story embeds whole fonts: subsetting makes a short report ~10x smaller
    except Exception:
        pass
    data = doc.tobytes(garbage=3, deflate=True)
    doc.close()
    return data


def _footers(doc: pymupdf.Document, report: Report) -> None:
    left = report.footer_label
    total = len(doc)
    for page in doc:
        y = PAGE.height - MARGIN_BOTTOM / 2
        page.draw_line(
            (MARGIN_X, y - 10), (PAGE.width - MARGIN_X, y - 10), color=(0.8, 0.83, 0.87), width=0.5
        )
        page.insert_text((MARGIN_X, y), left, fontsize=7.5, fontname="helv", color=(0.36, 0.4, 0.45))
        label = f"Page {page.number + 1} of {total}"
        width = pymupdf.get_text_length(label, fontname="helv", fontsize=7.5)
        page.insert_text(
            (PAGE.width - MARGIN_X - width, y), label, fontsize=7.5, fontname="helv", color=(0.36, 0.4, 0.45)
        )
