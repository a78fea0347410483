"""Carry a run's events from the engine thread to the GUI thread, and measure how long the GUI thread stalls."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from rlm_desktop.engine.events import CostChanged, NodeFinished, NodeUpdated, RunFinished
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.remote import RemoteRunHandle, RemoteSession
from rlm_desktop.engine.rlm import RunConfig
from rlm_desktop.engine.session import ThreadSession
from rlm_desktop.gui.tasks import run_in_background


class RunBridge(QObject):
    """Starts runs and re-emits their frozen events on the GUI thread; never touches a widget itself.

    `run_event` carries RunStarted, NodeStarted/Updated/Finished, CostChanged, CallRetriedEvent and RunFinished,
    in their order; while the window is behind, an update of a step that a later queued update or finish of that
    step supersedes, and a cost snapshot that a later one supersedes, are skipped (every step still comes with its
    NodeStarted and its NodeFinished). `run_ended` fires once per run after its thread is over, with the handle
    (its `.error` set if the engine raised instead of finishing with a record).
    """

    run_event = Signal(object)
    run_ended = Signal(object)
    _wake = Signal()

    # A batch of 100 sub-calls ends in a burst of hundreds of events; delivered back to back they would
    # freeze the window. Events wait in a queue and are handed on in slices of at most this many ms,
    # with the event loop (painting, input, Stop) running between slices.
    SLICE_MS = 12
    # ... and they are taken in at most once per frame: each batch costs the window a fixed price (the tree's
    # layout and repaint, the cost meter), so a run's 300 events a second arrive as 20 batches, not 300.
    # The run's end is taken in at once (Stop shows without waiting for the frame).
    FRAME_MS = 50

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.handle: RunHandle | None = None
        self._queue: deque[object] = deque()  # appended on the engine thread, taken on the GUI thread
        self._backlog: deque[object] = deque()  # the GUI thread's own: taken but not yet handed on
        self._wake_pending = threading.Event()
        self._urgent = False  # the run's end is queued: no waiting for the next frame
        self._next_drain = 0.0  # perf_counter time before which events wait for the next frame
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.setInterval(0)
        self._drain_timer.timeout.connect(self._drain)
        # Emitted on the engine thread; the explicit queued connection hops to this object's (GUI) thread.
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    @property
    def running(self) -> bool:
        return self.handle is not None and not self.handle.done

    def start(
        self,
        case_path: Path,
        question: str,
        config: RunConfig,
        api_key: str,
        follows: str | None = None,
        session: ThreadSession | RemoteSession | None = None,
        sub_api_key: str | None = None,
    ) -> RunHandle:
        """Start a run (a follow-up of `follows`, on a thread's `session`: a RemoteSession runs it in its child
        process); raises ValueError for a usage error (bad limits, a cap without a price, a run to follow that
        is gone)."""
        if self.running:
            raise RuntimeError("a run is already going; stop it first")
        kind = RemoteRunHandle if isinstance(session, RemoteSession) else RunHandle
        handle = kind(case_path, question, config, api_key, follows=follows, session=session, sub_api_key=sub_api_key)
        handle.subscribe(self._enqueue)
        handle.start()
        self.handle = handle
        # the run has its own thread and loop; a pool thread waits for its end and tells the GUI thread
        run_in_background(handle.join, lambda _: self._relay_end(handle), owner=self)
        return handle

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _enqueue(self, event: object) -> None:
        """On the engine thread: queue the event and wake the GUI thread once per batch, not per event."""
        self._queue.append(event)
        urgent = isinstance(event, RunFinished)
        if urgent:
            self._urgent = True
        if urgent or not self._wake_pending.is_set():
            self._wake_pending.set()
            self._wake.emit()

    @Slot()
    def _drain(self) -> None:
        wait_ms = (self._next_drain - time.perf_counter()) * 1000
        if wait_ms >= 1 and not self._urgent:
            if not self._drain_timer.isActive():
                self._drain_timer.start(math.ceil(wait_ms))  # this frame had its batch: the next one takes these
            return
        self._drain_timer.stop()
        self._wake_pending.clear()  # events queued from now on wake us again (or are taken in this slice)
        self._urgent = False
        self._take()
        deadline = time.perf_counter() + self.SLICE_MS / 1000
        while self._backlog:
            self.run_event.emit(self._backlog.popleft())
            if time.perf_counter() > deadline:
                break
        self._next_drain = time.perf_counter() + self.FRAME_MS / 1000
        if self._backlog or self._queue:
            self._drain_timer.start(self.FRAME_MS)  # the rest in the next frame, the event loop having had its turn

    def _take(self) -> None:
        """Move the queued events to the backlog and drop what later ones there supersede: a busy run's bursts
        of hundreds of events queue up faster than a frame's slice hands them on, and most of a step's updates
        (and most cost snapshots) would be drawn only to be overwritten a moment later."""
        queue, backlog = self._queue, self._backlog
        if not queue:
            return
        while queue:
            backlog.append(queue.popleft())
        kept: list[object] = []
        later: set[tuple[str, str]] = set()  # steps with an update or finish further on
        cost_later: set[str] = set()  # runs with a cost snapshot further on
        for event in reversed(backlog):
            if isinstance(event, NodeUpdated | NodeFinished):
                key = (event.run_id, event.node.id)
                if isinstance(event, NodeUpdated) and key in later:
                    continue
                later.add(key)
            elif isinstance(event, CostChanged):
                if event.run_id in cost_later:
                    continue
                cost_later.add(event.run_id)
            kept.append(event)
        if len(kept) < len(backlog):
            kept.reverse()
            self._backlog = deque(kept)

    def flush(self) -> None:
        """Deliver everything queued now (tests and shutdown)."""
        self._take()
        while self._backlog or self._queue:
            while self._backlog:
                self.run_event.emit(self._backlog.popleft())
            self._take()

    def _relay_end(self, handle: RunHandle) -> None:
        self.flush()  # the run's last events come before the news that it ended
        self.run_ended.emit(handle)


class Heartbeat(QObject):
    """A timer that should fire every `interval_ms`; any lateness is time the GUI thread was busy."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_s = interval_ms / 1000
        self.stalls_ms: list[float] = []
        self.stall_at_s: list[float] = []  # when each beat came, seconds after start()
        self._started = 0.0
        self._last: float | None = None
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._beat)

    def start(self) -> None:
        self.stalls_ms.clear()
        self.stall_at_s.clear()
        self._last = self._started = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _beat(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.stalls_ms.append(max(0.0, (now - self._last - self.interval_s) * 1000))
            self.stall_at_s.append(now - self._started)
        self._last = now

    def summary(self) -> dict[str, float]:
        values = sorted(self.stalls_ms) or [0.0]
        return {
            "beats": len(self.stalls_ms),
            "max_ms": round(values[-1], 1),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
            "over_50ms": sum(1 for v in values if v > 50),
            "worst_at_s": [
                round(at, 2)
                for _, at in sorted(zip(self.stalls_ms, self.stall_at_s, strict=True), reverse=True)[:3]
            ],
        }


def configure_gui_thread() -> None:
    """Hand the GIL back to the GUI thread sooner: engine and ingest threads run Python too, and with the
    default 5 ms switch interval a waiting GUI thread can sit behind several of their slices."""
    import sys

    sys.setswitchinterval(0.001)
