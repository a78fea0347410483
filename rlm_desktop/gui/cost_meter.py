"""Dollars billed and held against the cap, tokens, calls and elapsed time of a run, with the Stop button."""

from __future__ import annotations

import time

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from rlm_desktop.engine.events import CostChanged, RunFinished, RunStarted
from rlm_desktop.gui import theme

TICK_MS = 200
SPENT = QColor(40, 110, 220)
SPENT_WARN = QColor(220, 130, 20)  # past 80 % of the cap
SPENT_FULL = QColor(200, 40, 40)
TRACK = QColor(228, 230, 234)
STOP_STYLE = """
QPushButton { background: #d23232; color: white; font-weight: bold; border: 1px solid #a82020;
              border-radius: 5px; padding: 6px 18px; }
QPushButton:hover { background: #e04040; }
QPushButton:pressed { background: #b02525; }
QPushButton:disabled { background: #e6e6e6; color: #9a9a9a; border: 1px solid #d0d0d0; }
"""


def elapsed_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class CostBar(QWidget):
    """Billed (solid), held for calls of unknown cost (striped) and reserved for calls in flight (light)
    as parts of the cap; empty without a cap."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.spent = 0.0  # billed + held
        self.held = 0.0
        self.reserved = 0.0
        self.cap: float | None = None
        self.setMinimumHeight(12)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(220, 12)

    def set_values(self, spent: float, reserved: float, cap: float | None, held: float = 0.0) -> None:
        if (self.spent, self.reserved, self.cap, self.held) != (spent, reserved, cap, held):
            self.spent, self.reserved, self.cap, self.held = spent, reserved, cap, held
            self.update()

    def fraction(self) -> tuple[float, float]:
        """(spent, spent + reserved) as fractions of the cap, each within 0..1."""
        if not self.cap:
            return 0.0, 0.0
        spent = min(1.0, max(0.0, self.spent / self.cap))
        return spent, min(1.0, max(spent, (self.spent + self.reserved) / self.cap))

    def colour(self) -> QColor:
        spent, _ = self.fraction()
        return SPENT_FULL if spent >= 0.999 else SPENT_WARN if spent >= 0.8 else SPENT

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = rect.height() / 2
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(TRACK)
        painter.drawRoundedRect(rect, radius, radius)
        spent, committed = self.fraction()
        colour = self.colour()
        if committed > spent:
            light = QColor(colour)
            light.setAlpha(80)
            painter.setBrush(light)
            painter.drawRoundedRect(
                QRectF(rect.x(), rect.y(), rect.width() * committed, rect.height()), radius, radius
            )
        if spent > 0:
            width = max(rect.height(), rect.width() * spent)  # a sliver stays visible as a round dot
            painter.setBrush(colour)
            painter.drawRoundedRect(QRectF(rect.x(), rect.y(), width, rect.height()), radius, radius)
            billed = min(spent, max(0.0, (self.spent - self.held) / self.cap)) if self.cap else spent
            if billed < spent:  # the held part: counted against the cap, but not known to be spent
                painter.setBrush(QBrush(colour.lighter(150), Qt.BrushStyle.BDiagPattern))
                x = rect.x() + rect.width() * billed
                painter.drawRect(QRectF(x, rect.y(), max(2.0, rect.width() * (spent - billed)), rect.height()))
        painter.end()


class CostMeter(QWidget):
    """Live cost of the run; the Stop button is red and enabled only while a run is going."""

    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.spent_usd = 0.0  # billed + held: what the cap counts
        self.billed_usd = 0.0
        self.held_usd = 0.0
        self.held_estimate_usd = 0.0
        self.reserved_usd = 0.0
        self.cap_usd: float | None = None
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.running = False
        self._elapsed_base = 0.0  # elapsed seconds at the last event...
        self._elapsed_at = time.monotonic()  # ...and when it arrived, so the clock ticks between events

        self.amount_label = QLabel()
        self.amount_label.setTextFormat(Qt.TextFormat.RichText)
        self.bar = CostBar()
        self.detail_label = QLabel()
        self.detail_label.setStyleSheet(f"color: {theme.MUTED.name()}")
        self.stop_button = QPushButton("■  Stop")
        self.stop_button.setToolTip("Stop the run (Esc)")
        self.stop_button.setStyleSheet(STOP_STYLE)
        self.stop_button.setMinimumHeight(34)
        self.stop_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.stop_button.clicked.connect(self._on_stop)

        numbers = QVBoxLayout()
        numbers.setSpacing(3)
        numbers.addWidget(self.amount_label)
        numbers.addWidget(self.bar)
        numbers.addWidget(self.detail_label)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(12)
        layout.addLayout(numbers, 1)
        layout.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignVCenter)

        self._ticker = QTimer(self)
        self._ticker.setInterval(TICK_MS)
        self._ticker.timeout.connect(self._show_numbers)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(0)
        self._redraw.timeout.connect(self._show_numbers)
        self.reset(None)

    # ---- public API ----------------------------------------------------------------------------------

    def reset(self, cap_usd: float | None) -> None:
        """Zero everything for a new run with this cap (None: no cap)."""
        self.spent_usd = self.reserved_usd = self.billed_usd = self.held_usd = self.held_estimate_usd = 0.0
        self.cap_usd = cap_usd
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self._elapsed_base, self._elapsed_at = 0.0, time.monotonic()
        self.set_running(False)
        self._show_numbers()

    def set_running(self, running: bool) -> None:
        if running and not self.running:
            self._elapsed_at = time.monotonic()
        elif not running and self.running:
            self._elapsed_base = self.elapsed_s
            self._elapsed_at = time.monotonic()
        self.running = running
        self.stop_button.setEnabled(running)
        self.stop_button.setText("■  Stop")
        if running:
            self._ticker.start()
        else:
            self._ticker.stop()
        self._show_numbers()

    def apply(self, event: object) -> None:
        if isinstance(event, CostChanged):
            self.spent_usd = event.spent_usd
            self.billed_usd, self.held_usd = event.billed_usd, event.held_usd
            self.held_estimate_usd = event.held_estimate_usd
            if not self.billed_usd and not self.held_usd:  # an event from an older producer
                self.billed_usd = self.spent_usd
            self.reserved_usd = event.reserved_usd
            self.cap_usd = event.cap_usd
            self.calls = event.calls
            self.prompt_tokens = event.prompt_tokens
            self.completion_tokens = event.completion_tokens
            self._elapsed_base, self._elapsed_at = event.elapsed_s, time.monotonic()
            if self.running:  # a burst of sub-calls is drawn once, when the event loop next turns
                if not self._redraw.isActive():
                    self._redraw.start()
            else:
                self._show_numbers()
        elif isinstance(event, RunStarted):
            if not self.running:
                self._elapsed_base = 0.0
                self.set_running(True)
        elif isinstance(event, RunFinished):
            record = event.record or {}
            if isinstance(record.get("cost_usd"), int | float):
                self.spent_usd = float(record["cost_usd"])
                self.billed_usd = float(record.get("cost_billed_usd", self.spent_usd))
                self.held_usd = float(record.get("cost_held_usd", 0.0))
                self.held_estimate_usd = float(record.get("cost_held_estimate_usd", 0.0))
            self.reserved_usd = 0.0  # nothing is in flight once the run has ended
            self.set_running(False)

    @property
    def elapsed_s(self) -> float:
        if self.running:
            return self._elapsed_base + (time.monotonic() - self._elapsed_at)
        return self._elapsed_base

    # ---- display -------------------------------------------------------------------------------------

    def _on_stop(self) -> None:
        if not self.running:
            return
        self.stop_button.setEnabled(False)  # one press is enough; the run saves what it has, then ends
        self.stop_button.setText("Stopping…")
        self.stop_requested.emit()

    def _show_numbers(self) -> None:
        self._redraw.stop()
        billed = theme.money(self.billed_usd if (self.billed_usd or self.held_usd) else self.spent_usd)
        held = ""
        held_tip = ""
        if self.held_usd:
            estimate = f", probably about {theme.money(self.held_estimate_usd)}" if self.held_estimate_usd else ""
            held = f" + <span style='color:{theme.STATUS_COLOURS['cap_reached'].name()}'>{theme.money(self.held_usd)} held</span>"
            held_tip = (
                f"; {theme.money(self.held_usd)} held: calls whose cost the server did not report (a timeout, an "
                f"error after sending, or no usage in the reply), counted at their worst case against the cap{estimate}"
            )
        if self.cap_usd:
            amount = f"<b style='font-size:large'>{billed}</b>{held} of {theme.money(self.cap_usd)} cap"
            percent = 100 * self.spent_usd / self.cap_usd
            tip = f"{percent:.1f} % of the spending cap used: {billed} billed by the provider{held_tip}"
            if self.reserved_usd:
                tip += (
                    f"; {theme.money(self.reserved_usd)} reserved for calls in flight (light part of the bar)"
                )
        else:
            amount = (
                f"<b style='font-size:large'>{billed}</b>{held} spent · "
                f"<span style='color:{theme.MUTED.name()}'>no cap</span>"
            )
            tip = f"No spending cap is set for this run: {billed} billed{held_tip}"
        # setting the same text again still relays the label out and repaints it
        if amount != self.amount_label.text():
            self.amount_label.setText(amount)
        if tip != self.bar.toolTip():
            self.amount_label.setToolTip(tip)
            self.bar.setToolTip(tip)
        self.bar.set_values(self.spent_usd, self.reserved_usd, self.cap_usd, self.held_usd)
        detail = (
            f"{self.prompt_tokens:,} in / {self.completion_tokens:,} out tokens  ·  "
            f"{self.calls:,} call{'s' if self.calls != 1 else ''}  ·  {elapsed_text(self.elapsed_s)} elapsed"
        )
        if detail != self.detail_label.text():
            self.detail_label.setText(detail)
