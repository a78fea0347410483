"""The extracted text of a document with a source span highlighted, and its PDF page numbers in a gutter."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
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


def qt_positions(text: str, offsets: Sequence[int]) -> dict[int, int]:
    """qt_position for many offsets at once, in one pass over the text (a find may have thousands)."""
    crlf = [m.start() for m in re.finditer("\r\n", text)] if "\r" in text else []
    positions: dict[int, int] = {}
    previous = units = 0
    for offset in sorted({max(0, min(o, len(text))) for o in offsets}):
        piece = text[previous:offset]
        units += len(piece) if piece.isascii() else len(piece.encode("utf-16-le")) // 2
        previous = offset
        positions[offset] = units - bisect_right(crlf, offset - 2)
    return positions


FIND_SHOWN_MAX = 2000  # matches lit at once around the current one; painting more slows scrolling
FIND_MATCH = QColor(190, 222, 255)  # every find match: blue, apart from a citation's yellow
FIND_CURRENT = QColor(255, 150, 50)  # the current one stands out


def python_offset(text: str, position: int) -> int:
    """The Python character offset of QTextDocument `position` in `text` (the inverse of qt_position): the
    first offset whose Qt position is not before it."""
    if text.isascii() and "\r\n" not in text:
        return max(0, min(position, len(text)))
    lo, hi = 0, len(text)
    while lo < hi:  # qt_position only grows with the offset
        mid = (lo + hi) // 2
        if qt_position(text, mid) < position:
            lo = mid + 1
        else:
            hi = mid
    if 0 < lo < len(text) and text[lo - 1] == "\r" and text[lo] == "\n":
        lo += 1  # between the two characters of a CRLF, which Qt shows as one break: after it
    return lo


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
        self._span_selections: list[QTextEdit.ExtraSelection] = []
        self._find_selections: list[QTextEdit.ExtraSelection] = []
        self.find_current: tuple[int, int] | None = None
        self._hidden_until = 0
        self.gutter = PageGutter(self)
        self.gutter.hide()
        self.updateRequest.connect(self._update_gutter)

    def show_text(self, text: str, pages: list[Page], revisions: list[dict[str, Any]] | None = None) -> None:
        """Show `text`; `revisions` (a DOCX's tracked changes) underline the insertions and put each deletion's
        text back, struck through, where it stood, both with their author and date as a tooltip."""
        self.text = text
        self.span = None
        self._hidden_until = 0  # a new document: every block visible again
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
        self._span_selections, self._find_selections, self.find_current = [], [], None
        self.setExtraSelections([])

    def hide_head(self, end: int) -> None:
        """Hide the lines before Python offset `end` (an email's header lines, shown above the text anyway);
        a highlight that starts inside them shows them again."""
        stop = qt_position(self.text, end)
        block = self.document().begin()
        while block.isValid() and block.position() < stop:
            block.setVisible(False)
            block = block.next()
        self._hidden_until = end if stop else 0
        self.document().markContentsDirty(0, stop)
        self.viewport().update()

    def show_head(self) -> None:
        if not self._hidden_until:
            return
        stop = qt_position(self.text, self._hidden_until)
        block = self.document().begin()
        while block.isValid() and block.position() < stop:
            block.setVisible(True)
            block = block.next()
        self._hidden_until = 0
        self.document().markContentsDirty(0, stop)
        self.viewport().update()

    @property
    def hidden_until(self) -> int:
        """The Python offset up to which lines are hidden (0: none)."""
        return self._hidden_until
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
        return self._shift(qt_position(self.text, offset), end)

    def _shift(self, base: int, end: bool = False) -> int:
        """A stored-text position (Qt units) moved past the deleted text shown before it."""
        if not self._shifts:
            return base
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
        if start < self._hidden_until:  # the passage is in the hidden header lines: show them
            self.show_head()
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
        self._span_selections = [selection]
        self._apply_selections()
        self._centre_pending = True
        self.centre_span()
        QTimer.singleShot(0, self.centre_span)  # again once the layout knows the widget's real size

    def clear_highlight(self) -> None:
        self.span = None
        self._span_selections = []
        self._apply_selections()

    def show_find(self, matches: Sequence[tuple[int, int]], current: int | None) -> None:
        """Light up find matches (Python offsets) around the current one, mark it, and scroll it into view."""
        self._find_selections = []
        self.find_current = matches[current] if current is not None else None
        if current is not None:
            low = max(0, current - FIND_SHOWN_MAX // 2)
            shown = list(matches[low : low + FIND_SHOWN_MAX])
            positions = qt_positions(self.text, [o for span in shown for o in span])
            for start, end in shown:
                mark = QTextCursor(self.document())
                mark.setPosition(self._shift(positions[max(0, min(start, len(self.text)))]))
                mark.setPosition(
                    self._shift(positions[max(0, min(end, len(self.text)))], end=True), QTextCursor.MoveMode.KeepAnchor
                )
                selection = QTextEdit.ExtraSelection()
                selection.cursor = mark
                fmt = QTextCharFormat()
                is_current = (start, end) == self.find_current
                fmt.setBackground(FIND_CURRENT if is_current else FIND_MATCH)
                selection.format = fmt
                self._find_selections.append(selection)
        self._apply_selections()
        if self.find_current is not None:
            if self.find_current[0] < self._hidden_until:
                self.show_head()  # a match in an email's hidden header lines shows them
            self._centre_pending = False  # the match, not the span, is what the reader is looking for
            cursor = QTextCursor(self.document())
            cursor.setPosition(self._position(self.find_current[0]))
            self.setTextCursor(cursor)
            self.centerCursor()

    def clear_find(self) -> None:
        self._find_selections, self.find_current = [], None
        self._apply_selections()

    def _apply_selections(self) -> None:
        # the span first: highlighted_text() reads it; find marks on top, so the current match shows
        self.setExtraSelections(self._span_selections + self._find_selections)

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
        if not self._span_selections:
            return ""
        return self._span_selections[0].cursor.selectedText().replace("\u2029", "\n")

    def selected_span(self) -> tuple[int, int] | None:
        """The user's selection as (start, end) offsets of the stored text, or None when nothing is selected."""
        cursor = self.textCursor()
        if not cursor.hasSelection():
            return None
        start = python_offset(self.text, self._unshifted(cursor.selectionStart()))
        end = python_offset(self.text, self._unshifted(cursor.selectionEnd()))
        return (start, end) if start < end else None

    def _unshifted(self, position: int) -> int:
        """A document position as a position in the stored text: deleted text shown before it (a DOCX's
        tracked deletions, which are not in the stored text) taken out; inside a deletion, its place."""
        stored = position
        for at, length in self._shifts:  # sorted by where they stand in the document as first built
            shown_at = at + sum(n for a, n in self._shifts if a < at)
            if position >= shown_at + length:
                stored -= length
            elif position > shown_at:
                stored -= position - shown_at
        return stored

    def select_span(self, start: int, end: int) -> None:
        """Select text[start:end] as the user would with the mouse (tests, the find bar)."""
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._position(start))
        cursor.setPosition(self._position(end, end=True), QTextCursor.MoveMode.KeepAnchor)
        self.setTextCursor(cursor)

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
