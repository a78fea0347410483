"""A read-only text view of a step: prose, code in monospace, and source passages that click through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QPoint, QUrl, Signal
from PySide6.QtGui import QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QWidget

from rlm_desktop.engine.replies import segments
from rlm_desktop.gui import theme
from rlm_desktop.gui.link_browser import TooltipBrowser

MAX_RENDER_CHARS = 200_000  # beyond this a text view would stall the window; the rest is noted, not drawn
VISIBLE = {0x0C: "\n", 0x0B: "\n", 0x00: "\ufffd"}
CODE_BACKGROUND = QColor(246, 246, 246)
ERROR_COLOUR = QColor(190, 30, 30)


def _code_block_format() -> QTextBlockFormat:
    fmt = QTextBlockFormat()
    fmt.setBackground(CODE_BACKGROUND)
    return fmt


class ExcerptView(TooltipBrowser):
    """Read-only text built piece by piece; highlighted source spans are links that emit span_activated.

    Every piece is capped so a 400k-character prompt never stalls the window."""

    span_activated = Signal(int, int, int)  # doc_id, start, end in the document's text

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setUndoRedoEnabled(False)
        self.anchorClicked.connect(self._on_anchor)
        self.document().setDocumentMargin(6)
        self._spans: list[tuple[int, int, int]] = []
        self._tooltips: list[str] = []
        # (position in this view's document, end position, index into _spans) of each drawn highlight
        self.highlights: list[tuple[int, int, int]] = []

    def clear(self) -> None:
        super().clear()
        self._spans, self._tooltips, self.highlights = [], [], []

    # ---- building ------------------------------------------------------------------------------------

    def _cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _format(
        self, *, mono: bool = False, colour: QColor | None = None, italic: bool = False
    ) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if mono:
            fmt.setFont(theme.monospace())
        if colour is not None:
            fmt.setForeground(colour)
        if italic:
            fmt.setFontItalic(True)
        return fmt

    def _insert(self, cursor: QTextCursor, text: str, fmt: QTextCharFormat, *, code: bool = False) -> None:
        """Insert text; code sits in grey paragraphs (a block background, even at the right edge)."""
        want = _code_block_format() if code else QTextBlockFormat()
        if cursor.blockFormat().background() != want.background():
            if cursor.block().length() > 1:  # the current paragraph has text: start a new one
                cursor.insertBlock(want, fmt)
            else:
                cursor.setBlockFormat(want)
        cursor.insertText(text, fmt)

    def _gap(self, cursor: QTextCursor) -> None:
        if not self.document().isEmpty():
            self._insert(cursor, "\n\n", QTextCharFormat())

    def add_heading(self, text: str) -> None:
        cursor = self._cursor()
        self._gap(cursor)
        fmt = QTextCharFormat()
        fmt.setFontWeight(QFont.Weight.Bold)
        fmt.setForeground(theme.MUTED)
        self._insert(cursor, text, fmt)
        self._insert(cursor, "\n", QTextCharFormat())

    def add_text(
        self, text: str, *, mono: bool = False, colour: QColor | None = None, italic: bool = False, gap=False
    ) -> None:
        cursor = self._cursor()
        if gap:
            self._gap(cursor)
        shown, note = _capped(text)
        self._insert(cursor, shown, self._format(mono=mono, colour=colour, italic=italic), code=mono)
        if note:
            self._insert(cursor, "\n" + note, self._format(colour=theme.MUTED, italic=True))

    def add_reply(self, text: str) -> None:
        """A root-model reply: prose as prose, its ```repl blocks in monospace."""
        shown, note = _capped(text)
        cursor = self._cursor()
        for piece, is_code in segments(shown):
            if is_code:
                self._insert(cursor, piece, self._format(mono=True), code=True)
            else:
                self._insert(cursor, piece, self._format())
        if note:
            self._insert(cursor, "\n" + note, self._format(colour=theme.MUTED, italic=True))

    def add_excerpt(
        self,
        text: str,
        prompt_spans: Sequence[dict[str, Any]],
        describe: Callable[[int, int, int], str] | None = None,
    ) -> None:
        """`text` with each prompt_spans range [prompt_start, prompt_end) highlighted as a clickable link."""
        shown, note = _capped(text)
        cursor = self._cursor()
        plain = self._format()
        position = 0
        ordered = sorted(
            (s for s in prompt_spans if int(s.get("prompt_end", 0)) > int(s.get("prompt_start", 0))),
            key=lambda s: int(s["prompt_start"]),
        )
        for span in ordered:
            start = max(int(span["prompt_start"]), position)  # overlapping spans: draw each character once
            end = min(int(span["prompt_end"]), len(shown))
            if start >= end:
                continue
            if start > position:
                self._insert(cursor, shown[position:start], plain)
            number = len(self._spans)
            doc_id, doc_start, doc_end = int(span["doc_id"]), int(span["start"]), int(span["end"])
            self._spans.append((doc_id, doc_start, doc_end))
            tip = (
                describe(doc_id, doc_start, doc_end)
                if describe
                else f"document {doc_id}, {doc_start}–{doc_end}"
            )
            self._tooltips.append(tip)
            fmt = QTextCharFormat()
            fmt.setBackground(theme.HIGHLIGHT_TEXT)
            fmt.setForeground(QColor(20, 20, 20))
            fmt.setAnchor(True)
            fmt.setAnchorHref(f"span:{number}")
            fmt.setToolTip(tip)
            fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.DotLine)
            fmt.setUnderlineColor(QColor(160, 120, 0))
            begin = cursor.position()
            self._insert(cursor, shown[start:end], fmt)
            self.highlights.append((begin, cursor.position(), number))
            position = end
        if position < len(shown):
            self._insert(cursor, shown[position:], plain)
        if note:
            self._insert(cursor, "\n" + note, self._format(colour=theme.MUTED, italic=True))

    # ---- interaction ---------------------------------------------------------------------------------

    @property
    def spans(self) -> list[tuple[int, int, int]]:
        return list(self._spans)

    def activate_span(self, number: int) -> None:
        doc_id, start, end = self._spans[number]
        self.span_activated.emit(doc_id, start, end)

    def _span_number(self, href: str) -> int | None:
        if href.startswith("span:"):
            try:
                number = int(href[5:])
            except ValueError:
                return None
            return number if 0 <= number < len(self._spans) else None
        return None

    def _on_anchor(self, url: QUrl) -> None:
        number = self._span_number(url.toString())
        if number is not None:
            self.activate_span(number)

    def tooltip_at(self, pos: QPoint) -> str | None:
        """The tooltip of the highlight under a viewport position, if any."""
        number = self._span_number(self.anchorAt(pos))
        return self._tooltips[number] if number is not None else None


def _capped(text: str) -> tuple[str, str | None]:
    """The part of `text` worth drawing, with control characters made visible one for one (offsets stay)."""
    text = text.translate(VISIBLE)
    if len(text) <= MAX_RENDER_CHARS:
        return text, None
    return text[:MAX_RENDER_CHARS], (
        f"[showing the first {MAX_RENDER_CHARS:,} of {len(text):,} characters; the rest is in the saved run]"
    )
