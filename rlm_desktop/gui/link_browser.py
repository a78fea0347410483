"""A read-only text browser whose link tooltips are computed by the widget, not stored in the HTML."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint
from PySide6.QtWidgets import QTextBrowser, QToolTip


class TooltipBrowser(QTextBrowser):
    """Subclasses say what the tooltip is at a viewport position (None for no tooltip)."""

    def tooltip_at(self, pos: QPoint) -> str | None:
        raise NotImplementedError

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ToolTip:
            tip = self.tooltip_at(event.pos())
            if tip:
                QToolTip.showText(event.globalPos(), tip, self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)
