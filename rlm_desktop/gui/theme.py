"""Shared look: colours for highlights and statuses, small status icons, monospace font."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QIcon, QPainter, QPixmap

# a source span highlighted in any viewer (PDF rectangles, text, excerpts)
HIGHLIGHT = QColor(255, 214, 0, 110)
HIGHLIGHT_TEXT = QColor(255, 232, 120)
# the span the user navigated to, drawn over the ordinary highlights
HIGHLIGHT_ACTIVE = QColor(255, 140, 0, 150)
UNVERIFIED = QColor(200, 40, 40)
VERIFIED = QColor(30, 130, 60)
MUTED = QColor(110, 110, 110)

STATUS_COLOURS = {
    "running": QColor(40, 110, 220),
    "done": QColor(30, 150, 70),
    "completed": QColor(30, 150, 70),
    "error": QColor(210, 50, 50),
    "failed": QColor(210, 50, 50),
    "refused": QColor(210, 120, 20),
    "flagged": QColor(210, 120, 20),  # a sub-call whose answer came back empty, filtered or cut off
    "cancelled": QColor(140, 140, 140),
    "cap_reached": QColor(210, 120, 20),
    "limit_reached": QColor(210, 120, 20),
}


@cache
def status_icon(status: str, size: int = 12) -> QIcon:
    """A filled circle in the status's colour (hollow while running)."""
    colour = STATUS_COLOURS.get(status, MUTED)
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    if status == "running":
        pen = painter.pen()
        pen.setColor(colour)
        pen.setWidth(2)
        painter.setPen(pen)
        painter.drawEllipse(2, 2, size - 4, size - 4)
    else:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawEllipse(1, 1, size - 2, size - 2)
    painter.end()
    return QIcon(pixmap)


def monospace() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


def money(usd: float | None) -> str:
    """Dollars with enough digits to see a cheap sub-call: $0.0042, $1.23."""
    if usd is None:
        return "—"
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"
