"""The extracted text of a document with a source span highlighted, and its PDF page numbers in a gutter."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRect, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QTextEdit, QWidget

from rlm_desktop.gui import theme
from rlm_desktop.store.pages import Page


def qt_position(text: str, offset: int) -> int:
    """The QTextDocument position of Python character `offset` in `text` shown as plain text.

    Qt counts UTF-16 units (a character outside the BMP takes two) and turns "\\r\\n" into one break.
    """
    offset = max(0, min(offset, len(text)))
    position = offset if text.isascii() else len(text[:offset].encode("utf-16-le")) // 2
    return position - text.count("\r\n", 0, offset)


INSERTED = QColor(26, 127, 55)  # tracked insertions: green, underlined
DELETED = QColor(179, 38, 30)  # tracked deletions: red, struck through


def _revision_tip(revision: dict[str, Any]) -> str:
    """ "Inserted by Anna Berg, 2024-03-05 09:30 UTC" from a DOCX revision."""
    verb = {"ins": "Inserted", "del": "Deleted"}.get(str(revision.get("kind")), "Changed")
    if revision.get("move"):
        verb = "Moved here" if revision.get("kind") == "ins" else "Moved away"
    when = str(revision.get("date") or "").replace("T", " ").replace("Z", " UTC").replace(":00 UTC", " UTC")
    who = str(revision.get("author") or "an unknown author")
    return f"{verb} by {who}" + (f", {when.strip()}" if when else "") + " (tracked change)"


class PageGutter(QWidget):
    """The strip left of a PDF's text that marks where each page starts ("p. 2")."""

    WIDTH = 44

    def __init__(self, view: SpanTextView):
        super().__init__(view)
        self.view = view
        self.setToolTip("Page numbers of the PDF this text was extracted from")

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), QColor(244, 246, 249))
        painter.setPen(QColor(213, 218, 225))
        painter.drawLine(self.width() - 1, 0, self.width() - 1, self.height())
        font = painter.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() - 1.5))
        painter.setFont(font)
        self.view.paint_page_marks(painter, self.width())
        painter.end()


class SpanTextView(QPlainTextEdit):
    """Read-only plain text with one span highlighted; for PDFs a gutter shows where each page starts."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() + 1)
        self.setFont(font)
        self.document().setDocumentMargin(12)
        self.text = ""
        self.span: tuple[int, int] | None = None
        self.unverified = False
        self._page_blocks: dict[int, int] = {}  # block number where a page starts -> page number
        # deleted text shown inline (DOCX tracked changes): (Qt position in the stored text, UTF-16 length)
        self._shifts: list[tuple[int, int]] = []
        self.revisions: list[dict[str, Any]] = []
        self._centre_pending = False
        self.gutter = PageGutter(self)
        self.gutter.hide()
        self.updateRequest.connect(self._update_gutter)

    def show_text(self, text: str, pages: list[Page], revisions: list[dict[str, Any]] | None = None) -> None:
        """Show `text`; `revisions` (a DOCX's tracked changes) underline the insertions and put each deletion's
        text back, struck through, where it stood, both with their author and date as a tooltip."""
        self.text = text
        self.span = None
        self._shifts = []
        # "\f" separates PDF pages: one position either way, but a line break reads better than a glyph
        self.setPlainText(text.replace("\f", "\n"))
        self.revisions = list(revisions or [])
        if self.revisions:
            self._show_revisions()
        document = self.document()
        self._page_blocks = {}
        if len(pages) > 1:
            for page in pages:
                block = document.findBlock(qt_position(text, page.start))
                self._page_blocks.setdefault(block.blockNumber(), page.number)
        self.gutter.setVisible(bool(self._page_blocks))
        self.setViewportMargins(PageGutter.WIDTH if self._page_blocks else 0, 0, 0, 0)
        self.setExtraSelections([])

    def _show_revisions(self) -> None:
        document = self.document()
        deletions = []
        for revision in self.revisions:
            start, end = int(revision.get("start", 0)), int(revision.get("end", 0))
            who = _revision_tip(revision)
            fmt = QTextCharFormat()
            fmt.setToolTip(who)
            if revision.get("kind") == "ins" and end > start:
                fmt.setForeground(INSERTED)
                fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
                fmt.setUnderlineColor(INSERTED)
                cursor = QTextCursor(document)
                cursor.setPosition(qt_position(self.text, start))
                cursor.setPosition(qt_position(self.text, end), QTextCursor.MoveMode.KeepAnchor)
                cursor.mergeCharFormat(fmt)
            elif revision.get("kind") == "del" and revision.get("text"):
                deletions.append((qt_position(self.text, start), str(revision["text"]), fmt))
        # deleted text goes in from the end backwards, so the positions still to come stay right
        for position, deleted, fmt in sorted(deletions, key=lambda d: d[0], reverse=True):
            fmt.setForeground(DELETED)
            fmt.setFontStrikeOut(True)
            cursor = QTextCursor(document)
            cursor.setPosition(position)
            cursor.insertText(deleted.replace("\f", "\n"), fmt)
            self._shifts.append((position, len(deleted.encode("utf-16-le")) // 2))
        self._shifts.sort()

    def _position(self, offset: int, end: bool = False) -> int:
        """The document position of Python offset `offset` in the stored text, past any deleted text shown
        before it (a span's end stops before deleted text that stood right after it)."""
        base = qt_position(self.text, offset)
        return base + sum(length for at, length in self._shifts if at < base or (at == base and not end))

    def revision_at(self, offset: int) -> str:
        """The tooltip shown over the stored text's character at `offset` (empty when it is no revision)."""
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._position(offset) + 1)
        return cursor.charFormat().toolTip()

    def highlight(self, start: int, end: int, unverified: bool = False) -> None:
        """Highlight text[start:end] (Python offsets) and bring it to the middle of the view.

        `unverified` marks it in red: it is what sits at a citation's offsets, not a checked quote.
        """
        self.span = (start, end)
        self.unverified = unverified
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._position(start))
        cursor.setPosition(self._position(end, end=True), QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(255, 205, 205) if unverified else theme.HIGHLIGHT_TEXT)
        fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
        fmt.setUnderlineColor(theme.UNVERIFIED if unverified else theme.HIGHLIGHT_ACTIVE)
        selection.format = fmt
        self.setExtraSelections([selection])
        self._centre_pending = True
        self.centre_span()
        QTimer.singleShot(0, self.centre_span)  # again once the layout knows the widget's real size

    def clear_highlight(self) -> None:
        self.span = None
        self.setExtraSelections([])

    def centre_span(self) -> None:
        if not self._centre_pending or self.span is None:
            return
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._position(self.span[0]))
        self.setTextCursor(cursor)
        self.centerCursor()
        if self.isVisible() and self.viewport().height() > 50:
            self._centre_pending = False

    def highlighted_text(self) -> str:
        """The text Qt shows under the highlight (as a Python string, line breaks as "\\n")."""
        selections = self.extraSelections()
        if not selections:
            return ""
        return selections[0].cursor.selectedText().replace("\u2029", "\n")

    def span_rect(self) -> QRect | None:
        """Where the highlight's first character is, in viewport coordinates."""
        if self.span is None:
            return None
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._position(self.span[0]))
        return self.cursorRect(cursor)

    def page_at_top(self) -> int | None:
        """The PDF page whose text is at the top of the view (None for a text without pages)."""
        if not self._page_blocks:
            return None
        number = self.firstVisibleBlock().blockNumber()
        starts = [block for block in self._page_blocks if block <= number]
        return self._page_blocks[max(starts)] if starts else None

    def paint_page_marks(self, painter: QPainter, width: int) -> None:
        """Draw "p. N" beside the first line of every page in view (called by the gutter)."""
        block = self.firstVisibleBlock()
        offset = self.contentOffset()
        height = self.viewport().height()
        while block.isValid():
            top = self.blockBoundingGeometry(block).translated(offset).top()
            if top > height:
                break
            page = self._page_blocks.get(block.blockNumber())
            if page is not None:
                line = round(top)
                painter.setPen(theme.MUTED)
                painter.drawText(
                    QRect(0, int(line), width - 6, self.fontMetrics().height()),
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                    f"p. {page}",
                )
                painter.setPen(QColor(200, 205, 212))
                painter.drawLine(4, int(line) - 1, width - 4, int(line) - 1)
            block = block.next()

    def _update_gutter(self, rect: QRect, dy: int) -> None:
        if self.gutter.isVisible():
            self.gutter.update()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        area = self.contentsRect()
        self.gutter.setGeometry(QRect(area.left(), area.top(), PageGutter.WIDTH, area.height()))

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.centre_span)
