"""One PDF page at a time, rendered by PyMuPDF at the chosen zoom, with a source span's rectangles on top."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pymupdf
from PySide6.QtCore import QElapsedTimer, QPoint, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QScrollArea, QSizePolicy, QWidget

from rlm_desktop.gui import theme

# MuPDF is not thread-safe and an ingest may be extracting a PDF in another thread of this process: every
# MuPDF call here takes the same lock the extractor holds.
from rlm_desktop.ingest.image import as_pdf
from rlm_desktop.ingest.pdf import MUPDF_LOCK

ZOOM_STEPS = (0.25, 0.33, 0.5, 0.67, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
MIN_ZOOM, MAX_ZOOM = ZOOM_STEPS[0], ZOOM_STEPS[-1]
PAGE_MARGIN = 6  # grey space around the page, in pixels: "Fit" leaves little else of the width
# rendered pages kept, by (page, zoom), so flipping back and forth does not re-render; at most this many
# and this many bytes (a page at 400% is 25 MB)
CACHE_SIZE = 6
CACHE_BYTES = 80 * 1024 * 1024
BUSY_RETRY_MS = 250
PAGE_BACKGROUND = QColor(218, 220, 224)

T = TypeVar("T")


class EngineBusy(Exception):
    """MuPDF is in use by an ingest in another thread; try again shortly."""


def _with_mupdf(work: Callable[[], T]) -> T:
    # A short wait only: an OCR extraction can hold the lock for minutes and the window must stay responsive.
    if not MUPDF_LOCK.acquire(timeout=0.05):
        raise EngineBusy
    try:
        return work()
    finally:
        MUPDF_LOCK.release()


class PageCanvas(QWidget):
    """Paints a rendered page image and the highlight rectangles (PDF points, scaled to the image)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.page_size = (612.0, 792.0)  # PDF points, used for the blank page shown before rendering
        self.zoom = 1.0
        self.rects: list[list[float]] = []
        self.unverified = False  # the span is only what sits at a citation's offsets: drawn in red
        self.message = ""
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def page_pixels(self) -> QSize:
        width, height = self.page_size
        return QSize(max(1, round(width * self.zoom)), max(1, round(height * self.zoom)))

    def update_size(self) -> None:
        size = self.page_pixels()
        self.setFixedSize(size.width() + 2 * PAGE_MARGIN, size.height() + 2 * PAGE_MARGIN)
        self.update()

    def rect_on_widget(self, rect: Sequence[float]) -> QRectF:
        """A rectangle in PDF points as widget coordinates at the current zoom."""
        x0, y0, x1, y1 = rect
        z = self.zoom
        return QRectF(PAGE_MARGIN + x0 * z, PAGE_MARGIN + y0 * z, (x1 - x0) * z, (y1 - y0) * z)

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), PAGE_BACKGROUND)
        size = self.page_pixels()
        page = QRectF(PAGE_MARGIN, PAGE_MARGIN, size.width(), size.height())
        painter.fillRect(page.translated(2, 3), QColor(0, 0, 0, 40))  # a soft shadow under the sheet
        if self.image is not None and not self.image.isNull():
            painter.drawImage(page, self.image)
        else:
            painter.fillRect(page, Qt.GlobalColor.white)
            if self.message:
                painter.setPen(theme.MUTED)
                painter.drawText(
                    page.adjusted(24, 24, -24, -24),
                    Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                    self.message,
                )
        if self.rects:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            edge = theme.UNVERIFIED if self.unverified else theme.HIGHLIGHT_ACTIVE
            fill = QColor(theme.UNVERIFIED.red(), theme.UNVERIFIED.green(), theme.UNVERIFIED.blue(), 50)
            pen = QPen(edge)
            pen.setWidthF(1.5)
            for rect in self.rects:
                box = self.rect_on_widget(rect).adjusted(-2, -1, 2, 1)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(fill if self.unverified else theme.HIGHLIGHT)
                painter.drawRoundedRect(box, 2, 2)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(box, 2, 2)
            # a bar in the left margin, level with the passage, so the eye finds it on a busy page
            boxes = [self.rect_on_widget(rect) for rect in self.rects]
            top, bottom = min(box.top() for box in boxes), max(box.bottom() for box in boxes)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(edge)
            painter.drawRoundedRect(QRectF(PAGE_MARGIN + 4, top - 1, 4, bottom - top + 2), 2, 2)
        painter.end()


class PdfPageView(QScrollArea):
    """Shows one page of a PDF (from its bytes) at a zoom, in a scroll area, with span rectangles on top.

    Only the page on screen is rendered; the last few renders are cached. Rendering waits (without
    blocking the window) while an ingest in this process is using MuPDF.
    """

    page_changed = Signal(int)
    zoom_changed = Signal(float)
    failed = Signal(str)  # the PDF cannot be shown (damaged, password-protected): the reason

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas = PageCanvas()
        self.setWidget(self.canvas)
        self.setWidgetResizable(False)
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.viewport().setAutoFillBackground(True)
        palette = self.viewport().palette()
        palette.setColor(self.viewport().backgroundRole(), PAGE_BACKGROUND)
        self.viewport().setPalette(palette)
        self._data: bytes | None = None
        self._doc: pymupdf.Document | None = None
        self._page_count_hint = 0
        self._count = 0
        self._page_sizes: dict[int, tuple[float, float]] = {}  # measured when first shown
        self._page = 1
        self._zoom = 1.0
        self._fit_width = True
        self._highlights: dict[int, list[list[float]]] = {}
        self._cache: OrderedDict[tuple[int, int], QImage] = OrderedDict()
        self._reveal_pending = False
        self._flip_clock = QElapsedTimer()  # when the wheel last turned a page
        self._retry = QTimer(self, singleShot=True, interval=BUSY_RETRY_MS)
        self._retry.timeout.connect(self._render)
        self._refit = QTimer(self, singleShot=True, interval=40)
        self._refit.timeout.connect(self._apply_fit)

    # ---- document --------------------------------------------------------------------------------

    def load(self, data: bytes, page_count_hint: int = 0) -> None:
        """Show the PDF in `data` (opened on first render); `page_count_hint` counts pages until then."""
        self.clear()
        self._data = data
        self._page_count_hint = page_count_hint

    def clear(self) -> None:
        self._retry.stop()
        if self._doc is not None:
            doc, self._doc = self._doc, None
            try:
                _with_mupdf(doc.close)
            except EngineBusy:
                pass  # dropped without an explicit close; Python frees it when collected
        self._data = None
        self._page_sizes = {}
        self._page = 1
        self._highlights = {}
        self._cache.clear()
        self.canvas.image = None
        self.canvas.rects = []
        self.canvas.message = ""
        self.canvas.update()

    @property
    def loaded(self) -> bool:
        return self._data is not None

    @property
    def page_count(self) -> int:
        return self._count if self._doc is not None else self._page_count_hint

    @property
    def page(self) -> int:
        return self._page

    @property
    def zoom(self) -> float:
        return self._zoom

    @property
    def fit_width(self) -> bool:
        return self._fit_width

    @property
    def rendered_image(self) -> QImage | None:
        """The image of the page on screen, or None while it is not rendered yet."""
        return self.canvas.image

    @property
    def highlight_rects(self) -> list[list[float]]:
        return [list(rect) for rect in self._highlights.get(self._page, [])]

    def set_highlights(self, rects: Sequence[tuple[int, Sequence[float]]], unverified: bool = False) -> None:
        """The span's rectangles as (page number, [x0, y0, x1, y1]) pairs, drawn on whichever page is shown.

        `unverified` draws them in red: they mark what is at a citation's offsets, not a checked quote.
        """
        self.canvas.unverified = unverified
        self._highlights = {}
        for number, rect in rects:
            self._highlights.setdefault(number, []).append([float(v) for v in rect])
        self.canvas.rects = self._highlights.get(self._page, [])
        self.canvas.update()

    # ---- navigation and zoom -----------------------------------------------------------------------

    def show_page(self, number: int, reveal: bool = False) -> None:
        """Go to page `number` (clamped); with `reveal`, scroll its highlight (if any) into view."""
        count = self.page_count
        number = max(1, min(number, count)) if count else 1
        changed = number != self._page
        self._page = number
        self._reveal_pending = reveal
        self.canvas.rects = self._highlights.get(number, [])
        self._render()
        if not reveal:
            self.verticalScrollBar().setValue(0)
        if changed:
            self.page_changed.emit(number)

    def next_page(self) -> None:
        if self._page < self.page_count:
            self.show_page(self._page + 1)

    def previous_page(self) -> None:
        if self._page > 1:
            self.show_page(self._page - 1)

    def set_zoom(self, zoom: float) -> None:
        """A fixed zoom (1.0 = 72 dpi, PDF points as pixels); leaves fit-to-width."""
        self._fit_width = False
        self._set_zoom(zoom)

    def zoom_in(self) -> None:
        self.set_zoom(next((step for step in ZOOM_STEPS if step > self._zoom + 0.01), MAX_ZOOM))

    def zoom_out(self) -> None:
        self.set_zoom(next((step for step in reversed(ZOOM_STEPS) if step < self._zoom - 0.01), MIN_ZOOM))

    def fit_to_width(self) -> None:
        self._fit_width = True
        self._apply_fit()

    def _apply_fit(self) -> None:
        if not self._fit_width:
            return
        width, _ = self._page_size(self._page)
        room = self._room()
        if room > 50 and width > 0:
            self._set_zoom(room / width)

    def _room(self) -> int:
        """Pixels a page may take across: the view's width less margins and a vertical scroll bar's width
        (reserved even when hidden, or fitting would make the bar appear and the page no longer fit)."""
        bar = self.verticalScrollBar().sizeHint().width()
        return self.width() - 2 * self.frameWidth() - bar - 2 * PAGE_MARGIN - 2

    def _set_zoom(self, zoom: float) -> None:
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        if abs(zoom - self._zoom) < 0.005:
            return
        # keep the point at the middle of the view where it is, as readers expect when zooming
        bar = self.verticalScrollBar()
        middle = (bar.value() + self.viewport().height() / 2 - PAGE_MARGIN) / max(self._zoom, 1e-6)
        self._zoom = zoom
        self._render()
        if not self._reveal_pending:
            bar.setValue(round(middle * zoom + PAGE_MARGIN - self.viewport().height() / 2))
        self.zoom_changed.emit(zoom)

    def reveal_highlight(self) -> None:
        """Scroll so the first highlight rectangle of the page sits in the upper middle of the view."""
        rects = self._highlights.get(self._page)
        if not rects:
            return
        box = self.canvas.rect_on_widget(rects[0])
        centre = box.center()
        self.ensureVisible(
            round(centre.x()),
            round(centre.y()),
            max(10, min(round(box.width() / 2) + 20, self.viewport().width() // 2 - 10)),
            max(10, self.viewport().height() // 3),
        )

    # ---- rendering -------------------------------------------------------------------------------

    def _page_size(self, number: int) -> tuple[float, float]:
        return self._page_sizes.get(number, self.canvas.page_size)

    def _open(self) -> None:
        """Open the document. Called with the MuPDF lock held."""
        doc = pymupdf.open(stream=as_pdf(self._data), filetype="pdf")  # an image: the pages its OCR boxes are on
        if doc.needs_pass:
            doc.close()
            raise ValueError("the PDF is password-protected, so its pages cannot be shown")
        if doc.page_count == 0:
            doc.close()
            raise ValueError("the PDF has no pages that can be shown")
        self._count = doc.page_count  # read here, under the lock, not on every property access
        self._doc = doc

    def _measure(self, number: int) -> tuple[float, float]:
        """A page's size in points as displayed (rotation applied). Called with the MuPDF lock held.

        Pages are measured one at a time, when shown: a long PDF opens without loading every page.
        """
        rect = self._doc.load_page(number - 1).rect
        return (rect.width, rect.height)

    def _render_page(self, number: int, scale: float) -> QImage:
        """Render one page to an image. Called with the MuPDF lock held."""
        page = self._doc.load_page(number - 1)
        pixmap = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), alpha=False)
        image = QImage(
            pixmap.samples, pixmap.width, pixmap.height, pixmap.stride, QImage.Format.Format_RGB888
        )
        return image.copy()  # own the pixels: the pixmap's buffer is freed with it

    def _render(self) -> None:
        self._retry.stop()
        if self._data is None:
            return
        try:
            if self._doc is None:
                _with_mupdf(self._open)
            self._page = max(1, min(self._page, self.page_count))
            if self._page not in self._page_sizes:
                self._page_sizes[self._page] = _with_mupdf(lambda: self._measure(self._page))
        except EngineBusy:
            self._wait_for_engine()
            return
        except Exception as exc:
            if self._doc is None:
                reason = str(exc) if isinstance(exc, ValueError) else f"the PDF cannot be opened ({exc})"
                self._data = None
                self.failed.emit(reason)
            else:
                self._show_message(f"Page {self._page} could not be read: {exc}")
            return
        if self._fit_width:
            self._fit_zoom_quietly()
        self.canvas.page_size = self._page_size(self._page)
        self.canvas.zoom = self._zoom
        self.canvas.update_size()
        ratio = self.devicePixelRatioF() or 1.0
        key = (self._page, round(self._zoom * ratio * 1000))
        image = self._cache.get(key)
        if image is None:
            try:
                image = _with_mupdf(lambda: self._render_page(self._page, self._zoom * ratio))
            except EngineBusy:
                self._wait_for_engine()
                return
            except Exception as exc:  # a damaged page must not take the viewer down
                self._show_message(f"Page {self._page} could not be drawn: {exc}")
                return
            image.setDevicePixelRatio(ratio)
            self._cache[key] = image
            while len(self._cache) > 1 and (
                len(self._cache) > CACHE_SIZE
                or sum(cached.sizeInBytes() for cached in self._cache.values()) > CACHE_BYTES
            ):
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        self.canvas.image = image
        self.canvas.message = ""
        self.canvas.update()
        if self._reveal_pending:
            self.reveal_highlight()
            # the scroll range follows the canvas's new size only once layouts have run
            QTimer.singleShot(0, self._finish_reveal)

    def _fit_zoom_quietly(self) -> None:
        """Set the fit-to-width zoom for the page about to be drawn (pages may differ in width)."""
        width, _ = self._page_size(self._page)
        room = self._room()
        if room > 50 and width > 0:
            zoom = max(MIN_ZOOM, min(MAX_ZOOM, room / width))
            if abs(zoom - self._zoom) >= 0.005:
                self._zoom = zoom
                self.zoom_changed.emit(zoom)

    def _show_message(self, message: str) -> None:
        self.canvas.image = None
        self.canvas.message = message
        self.canvas.update_size()

    def _finish_reveal(self) -> None:
        if self._reveal_pending:
            self.reveal_highlight()
            # a hidden view cannot scroll yet: keep the request until it is shown
            if self.isVisible() and self.viewport().height() > 50:
                self._reveal_pending = False

    def _wait_for_engine(self) -> None:
        self._show_message("Waiting for the PDF engine: a document is being ingested…")
        self._retry.start()

    # ---- events ----------------------------------------------------------------------------------

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if self._fit_width and self._data is not None:
            self._refit.start()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._fit_width and self._data is not None:
            self._apply_fit()
        if self._reveal_pending:
            QTimer.singleShot(0, self._finish_reveal)

    def wheelEvent(self, event: Any) -> None:
        # Ctrl+wheel zooms, as in every document viewer
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            delta = event.angleDelta().y()
            if delta > 0:
                self.zoom_in()
            elif delta < 0:
                self.zoom_out()
            event.accept()
            return
        # past the end of a page the wheel turns it, as in a single-page viewer; a pause between turns
        # keeps a trackpad's burst of events from flipping through many pages at once
        bar = self.verticalScrollBar()
        delta = event.angleDelta().y()
        if self._flip_clock.isValid() and self._flip_clock.elapsed() < 400:
            event.accept()
            return
        if delta < 0 and bar.value() >= bar.maximum() and self._page < self.page_count:
            self._flip_clock.start()
            self.next_page()
            event.accept()
            return
        if delta > 0 and bar.value() <= bar.minimum() and self._page > 1:
            self._flip_clock.start()
            self.previous_page()
            bar.setValue(bar.maximum())
            event.accept()
            return
        super().wheelEvent(event)

    def point_on_page(self, x: float, y: float) -> QPoint:
        """Where PDF point (x, y) of the shown page is, in viewport coordinates (tests, tooltips)."""
        on_canvas = QPointF(PAGE_MARGIN + x * self._zoom, PAGE_MARGIN + y * self._zoom)
        return self.canvas.mapTo(self.viewport(), on_canvas.toPoint())
