"""Window sizes that fit the screen the window opens on: the first size, and a check used by tests."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

PREFERRED = QSize(1400, 900)
SHARE_OF_BIG_SCREEN = 0.85  # a screen bigger than PREFERRED gets a window this share of it
FRAME_ALLOWANCE = QSize(16, 40)  # a title bar and borders the window manager adds around the window


def available_geometry(widget: QWidget | None = None) -> QRect | None:
    """The screen area left by panels and docks, of the widget's screen (else the primary screen)."""
    screen = widget.screen() if widget is not None else None
    screen = screen or QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else None


def first_size(widget: QWidget | None = None, preferred: QSize = PREFERRED) -> QSize:
    """`preferred` (or 85% of a bigger screen), shrunk to fit the available screen with the window frame."""
    area = available_geometry(widget)
    if area is None or area.isEmpty():
        return QSize(preferred)
    width = max(preferred.width(), int(area.width() * SHARE_OF_BIG_SCREEN))
    height = max(preferred.height(), int(area.height() * SHARE_OF_BIG_SCREEN))
    return QSize(
        min(width, area.width() - FRAME_ALLOWANCE.width()),
        min(height, area.height() - FRAME_ALLOWANCE.height()),
    )
