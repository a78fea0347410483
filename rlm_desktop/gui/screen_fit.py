"""Window sizes that fit the screen the window opens on: the first size, and a check used by tests."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

PREFERRED = QSize(1400, 900)
FRAME_ALLOWANCE = QSize(16, 40)  # a title bar and borders the window manager adds around the window


def available_geometry(widget: QWidget | None = None) -> QRect | None:
    """The screen area left by panels and docks, of the widget's screen (else the primary screen)."""
    screen = widget.screen() if widget is not None else None
    screen = screen or QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else None


def first_size(widget: QWidget | None = None, preferred: QSize = PREFERRED) -> QSize:
    """`preferred`, shrunk to fit the available screen with the window frame around it."""
    area = available_geometry(widget)
    if area is None or area.isEmpty():
        return QSize(preferred)
    return QSize(
        min(preferred.width(), area.width() - FRAME_ALLOWANCE.width()),
        min(preferred.height(), area.height() - FRAME_ALLOWANCE.height()),
    )
