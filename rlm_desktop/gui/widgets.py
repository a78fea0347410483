"""Small generic widgets: a wrapping flow layout, a notice bar, a wrapped label, a label and a link button that
elide their text."""

from __future__ import annotations

import html
import re
from typing import Any

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QLabel,
    QLayout,
    QLayoutItem,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyleOptionButton,
    QStylePainter,
    QWidget,
)

NOTICE_STYLES = {
    # background, border, text
    "error": ("#fde8e8", "#c82828", "#8a1414"),
    "warning": ("#fff6d6", "#d9a400", "#5c4500"),
    "ok": ("#e7f4ea", "#1e823c", "#14532a"),
}


ZWSP = "\u200b"
_LONG_RUN = re.compile(r"\S{40,}")  # an email address or a word stays whole


def breakable(text: str, every: int = 20) -> str:
    """`text` with zero-width spaces where a word-wrapping label may break a long run without spaces
    (a file name like "statement_xxxx….pdf"): after _ - . / \\ and every `every` characters. Short
    words are left as they are."""

    def split(match: re.Match[str]) -> str:
        run = re.sub(r"([_\-./\\])", "\\1" + ZWSP, match.group(0))
        pieces = [piece[i : i + every] for piece in run.split(ZWSP) for i in range(0, len(piece), every)]
        return ZWSP.join(p for p in pieces if p)

    return _LONG_RUN.sub(split, text)


class FlowLayout(QLayout):
    """Lays widgets out left to right and wraps to the next line, like words (for attachment chips)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        return size

    def _arrange(self, rect: QRect, move: bool) -> int:
        x, y, line_height = rect.x(), rect.y(), 0
        for item in self._items:
            if item.widget() is not None and item.widget().isHidden():
                continue
            hint = item.sizeHint()
            # an item wider than the line gets the line (an elided button shortens its text to fit), so a
            # long file name never widens the window
            hint.setWidth(max(min(hint.width(), rect.width()), item.minimumSize().width()))
            if x + hint.width() > rect.right() + 1 and line_height:
                x, y, line_height = rect.x(), y + line_height + self.spacing(), 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self.spacing()
            line_height = max(line_height, hint.height())
        return y + line_height - rect.y()


class NoticeBar(QLabel):
    """A coloured strip above the document: red for an unverified citation, yellow for a fallback."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.level = ""
        self.plain_text = ""
        self.hide()

    def show_notice(self, text: str, level: str) -> None:
        """Show `text` (plain; its first line in bold) in the colours of `level`: error, warning or ok."""
        background, border, colour = NOTICE_STYLES[level]
        self.level = level
        self.plain_text = text
        self.setStyleSheet(
            f"QLabel {{ background: {background}; color: {colour}; border: 1px solid {border};"
            f" border-left: 5px solid {border}; border-radius: 3px; padding: 6px 8px; }}"
        )
        first, _, rest = text.partition("\n")
        body = f"<b>{html.escape(first)}</b>"
        if rest:
            body += "<br>" + html.escape(rest).replace("\n", "<br>")
        self.setText(body)
        self.show()

    def clear_notice(self) -> None:
        self.level = ""
        self.plain_text = ""
        self.setText("")
        self.hide()


class WrappedLabel(QLabel):
    """A word-wrapped label that asks for the height its text needs at its own width.

    QLabel's size hint for wrapped text guesses a narrow width and asks for the lines that would take, so a
    layout with height to spare hands it several empty lines and centres the text between blank bands."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        hint = super().sizeHint()
        if self.width() > 0 and self.text():
            hint.setHeight(self.heightForWidth(self.width()))
        return hint


class ElidedLabel(QLabel):
    """One line of text that shortens in the middle ("/home/…/file.pdf") when the widget is narrow."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.full_text = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text)
        self._elide()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(
            self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideMiddle, self.width())
        )


class ElidedButton(QPushButton):
    """A flat link-like button whose text shortens at the end ("Re: a very long sub…") when narrow.

    `text()` stays the full text; only the painting is elided, and its minimum width is small, so a long
    title never sets the width of the row (or the window) it sits in.
    """

    MIN_WIDTH = 60

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)  # may shrink below its text

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        hint = super().minimumSizeHint()
        return QSize(min(hint.width(), self.MIN_WIDTH), hint.height())

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        option = QStyleOptionButton()
        self.initStyleOption(option)
        room = self.style().subElementRect(QStyle.SubElement.SE_PushButtonContents, option, self).width()
        option.text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, max(0, room))
        painter = QStylePainter(self)
        painter.drawControl(QStyle.ControlElement.CE_PushButton, option)
