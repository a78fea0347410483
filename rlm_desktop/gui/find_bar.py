"""Find within the open document: a bar with the words to find, previous / next and "3 of 17"."""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from rlm_desktop.gui import theme

MAX_MATCHES = 10_000  # more than anyone steps through; keeps a one-letter search in a big text instant


def find_spans(text: str, needle: str, limit: int = MAX_MATCHES) -> list[tuple[int, int]]:
    """(start, end) of each place `needle` occurs in `text`, ignoring case; a space in `needle` matches any
    run of white space (a PDF's line breaks fall where the reader sees spaces). At most `limit`."""
    words = needle.split()
    if not words:
        return []
    pattern = re.compile(r"\s+".join(re.escape(word) for word in words), re.IGNORECASE)
    spans = []
    for found in pattern.finditer(text):
        spans.append(found.span())
        if len(spans) >= limit:
            break
    return spans


class FindBar(QWidget):
    """The words to find in one text, the matches, and which one is current.

    Enter / F3 go to the next match, Shift+Enter / Shift+F3 to the previous one (wrapping round); Escape
    closes the bar. `match_changed(start, end)` names the current match ((-1, -1): none).
    """

    match_changed = Signal(int, int)
    closed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("findBar")
        self._text = ""
        self.matches: list[tuple[int, int]] = []
        self.current: int | None = None
        self.anchor = 0  # where to look from when the words change: the first match at or after it

        self.edit = QLineEdit()
        self.edit.setPlaceholderText("Find in this document")
        self.edit.setClearButtonEnabled(True)
        self.edit.setToolTip("Find in this document (Ctrl+F). Enter: next match, Shift+Enter: previous")
        self.edit.textChanged.connect(self._words_changed)
        self.edit.installEventFilter(self)
        self.count_label = QLabel()
        self.count_label.setMinimumWidth(90)
        self.count_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.previous_button = self._button("▲", "Previous match (Shift+Enter, Shift+F3)", self.previous)
        self.next_button = self._button("▼", "Next match (Enter, F3)", self.next)
        self.close_button = self._button("✕", "Close (Esc)", self.close_bar)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(4)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.count_label)
        layout.addWidget(self.previous_button)
        layout.addWidget(self.next_button)
        layout.addWidget(self.close_button)
        self.setStyleSheet("#findBar { border-bottom: 1px solid #d5dae1; }")
        self._show_count()

    def _button(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.clicked.connect(slot)
        return button

    # ---- public API ----------------------------------------------------------------------------------

    def open(self, text: str, anchor: int = 0) -> None:
        """Show the bar over `text`, focused with its words selected, and find them again from `anchor`."""
        self._text = text
        self.anchor = anchor
        self.show()
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()
        self._words_changed(self.edit.text())

    def close_bar(self) -> None:
        if self.isHidden():
            return
        self.hide()
        self.matches, self.current = [], None
        self.closed.emit()

    def next(self) -> None:
        self._step(1)

    def previous(self) -> None:
        self._step(-1)

    @property
    def count_text(self) -> str:
        return self.count_label.text()

    # ---- internals -----------------------------------------------------------------------------------

    def _words_changed(self, words: str) -> None:
        self.matches = find_spans(self._text, words)
        starts = [start for start, _ in self.matches]
        at = bisect_left(starts, self.anchor)
        self.current = (at if at < len(self.matches) else 0) if self.matches else None
        self._announce()

    def _step(self, direction: int) -> None:
        if not self.matches:
            return
        current = -1 if self.current is None and direction > 0 else (self.current or 0)
        self.current = (current + direction) % len(self.matches)
        self.anchor = self.matches[self.current][0]
        self._announce()

    def _announce(self) -> None:
        self._show_count()
        if self.current is None:
            self.match_changed.emit(-1, -1)
        else:
            self.match_changed.emit(*self.matches[self.current])

    def _show_count(self) -> None:
        words = self.edit.text().strip()
        total = len(self.matches)
        if not words:
            text = ""
        elif not total:
            text = "No matches"
        else:
            more = "+" if total >= MAX_MATCHES else ""
            text = f"{(self.current or 0) + 1} of {total:,}{more}"
        self.count_label.setText(text)
        missing = bool(words) and not total
        self.edit.setStyleSheet("QLineEdit { background: #fde8e8; }" if missing else "")
        for button in (self.previous_button, self.next_button):
            button.setEnabled(total > 1)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.edit and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            key, shift = event.key(), bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.previous() if shift else self.next()
                return True
            if key == Qt.Key.Key_Escape:
                self.close_bar()
                return True
        return super().eventFilter(watched, event)
