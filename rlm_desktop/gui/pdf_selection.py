"""Selecting words on a drawn PDF page by dragging: the selection is a span of the stored text, from the
word boxes recorded at ingest, so what is kept from it is exactly what `cite` would register."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QContextMenuEvent, QMouseEvent, QPainter
from PySide6.QtWidgets import QWidget

from rlm_desktop.gui.pdf_page_view import PAGE_MARGIN, PdfPageView
from rlm_desktop.store.pages import Page, span_rects

SELECTION_FILL = QColor(40, 110, 220, 70)
DRAG_START_PX = 4  # a click is not a selection: the pointer has to move this far first


class _Overlay(QWidget):
    """Paints the selection over the page, above the citation highlight; lets the mouse through."""

    def __init__(self, owner: PdfTextSelection):
        super().__init__(owner.canvas)
        self.owner = owner
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        rects = self.owner.rects()
        if not rects:
            return
        painter = QPainter(self)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(SELECTION_FILL)
        for rect in rects:
            painter.drawRect(self.owner.canvas.rect_on_widget(rect).adjusted(-1, -1, 1, 1))
        painter.end()


class PdfTextSelection(QObject):
    """Watches the page canvas of a PdfPageView: a drag selects whole words, in reading order, from the word
    under the press to the word under the pointer. `span` is the selection as stored-text offsets."""

    changed = Signal()
    menu_requested = Signal(QPoint)  # a right-click on the page, at this global position

    def __init__(self, view: PdfPageView):
        super().__init__(view)
        self.view = view
        self.canvas = view.canvas
        self.pages: dict[int, Page] = {}
        self.span: tuple[int, int] | None = None
        self._anchor: tuple[int, int] | None = None
        self._press: QPointF | None = None
        self._dragging = False
        self.overlay = _Overlay(self)
        self.canvas.installEventFilter(self)
        self.canvas.setCursor(Qt.CursorShape.IBeamCursor)
        view.page_changed.connect(lambda _page: self.clear())

    def set_pages(self, pages: list[Page]) -> None:
        """The word boxes of the document shown (none: nothing can be selected on its pages)."""
        self.pages = {page.number: page for page in pages}
        self.clear()

    def clear(self) -> None:
        if self.span is not None:
            self.span = None
            self.changed.emit()
        self._anchor, self._press, self._dragging = None, None, False
        self.overlay.update()

    def rects(self) -> list[list[float]]:
        """The selection's word rectangles (PDF points) on the page shown."""
        if self.span is None:
            return []
        page = self.view.page
        return [rect for number, rect in span_rects(list(self.pages.values()), *self.span) if number == page]

    def word_at(self, x: float, y: float) -> tuple[int, int] | None:
        """(start, end) of the word at PDF point (x, y) of the page shown, else of the nearest word on it."""
        page = self.pages.get(self.view.page)
        if page is None or not page.boxes:
            return None
        best, best_distance = None, float("inf")
        for start, end, x0, y0, x1, y1 in page.boxes:
            dx = max(x0 - x, 0.0, x - x1)
            dy = max(y0 - y, 0.0, y - y1)
            distance = dx * dx + 4 * dy * dy  # a word on the same line wins over one just above or below
            if distance < best_distance:
                best, best_distance = (int(start), int(end)), distance
                if distance == 0:
                    break
        return best

    def select_between(self, a: tuple[float, float], b: tuple[float, float]) -> tuple[int, int] | None:
        """Select from the word at PDF point `a` to the word at `b` on the page shown (what a drag does)."""
        first, last = self.word_at(*a), self.word_at(*b)
        if first is None or last is None:
            return None
        self.span = (min(first[0], last[0]), max(first[1], last[1]))
        self.overlay.update()
        self.changed.emit()
        return self.span

    def _pdf_point(self, pos: QPointF) -> tuple[float, float]:
        zoom = self.canvas.zoom or 1.0
        return (pos.x() - PAGE_MARGIN) / zoom, (pos.y() - PAGE_MARGIN) / zoom

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is not self.canvas:
            return False
        kind = event.type()
        if kind == QEvent.Type.Resize:
            self.overlay.setGeometry(QRectF(self.canvas.rect()).toRect())
        elif kind == QEvent.Type.MouseButtonPress and isinstance(event, QMouseEvent):
            if event.button() == Qt.MouseButton.LeftButton:
                self.clear()
                self._press = event.position()
        elif kind == QEvent.Type.MouseMove and isinstance(event, QMouseEvent) and self._press is not None:
            if event.buttons() & Qt.MouseButton.LeftButton:
                moved = (event.position() - self._press).manhattanLength()
                if self._dragging or moved >= DRAG_START_PX:
                    self._dragging = True
                    self.select_between(self._pdf_point(self._press), self._pdf_point(event.position()))
        elif kind == QEvent.Type.MouseButtonRelease:
            self._press, self._dragging = None, False
        elif kind == QEvent.Type.ContextMenu and isinstance(event, QContextMenuEvent):
            self.menu_requested.emit(event.globalPos())
            return True
        return False
