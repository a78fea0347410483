"""The one way the window does work off the GUI thread: a shared pool, results delivered on the GUI thread.

In the style of Anki's `aqt/taskman.py`: `run_in_background(fn, on_done, on_error)` runs `fn` on a
worker thread and calls `on_done(result)` or `on_error(exc)` on the GUI thread, through a queued
signal, so it works under the qasync loop and in tests alike. Coroutines running on the qasync loop
can `await tasks().run(fn, ...)` instead. A callback whose `owner` widget was deleted meanwhile is
dropped, never called on a dead object.

Why callbacks stay on this side: a worker thread must never hold the last reference to a widget
(PySide would then destroy it off the GUI thread and crash). The worker sees only a number; the
callbacks wait here under that number. For the same reason `fn` itself must not hold a widget.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot

T = TypeVar("T")
log = logging.getLogger(__name__)


class TaskManager(QObject):
    """A thread pool whose results come back on the thread that owns this object (the GUI thread)."""

    _finished = Signal(int)  # the number of a task whose future is done

    def __init__(self, parent: QObject | None = None, max_workers: int = 8):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rlm-gui-task")
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Future[Any], Any, Any, QObject | None]] = {}
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def run_in_background(
        self,
        fn: Callable[[], T],
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        *,
        owner: QObject | None = None,
    ) -> Future[T]:
        """Run `fn()` on a worker thread; `on_done(result)` or `on_error(exc)` follow on the GUI thread."""
        number = next(self._ids)
        future = self._pool.submit(fn)
        self._pending[number] = (future, on_done, on_error, owner)
        signal = self._finished
        future.add_done_callback(lambda _: signal.emit(number))  # on the worker thread: only a number
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Await `fn(*args)` on the pool from a coroutine on the qasync loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def busy(self) -> int:
        """Tasks not yet delivered."""
        return len(self._pending)

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Block until every submitted task has finished, or `timeout_s` in all has passed (shutdown and
        tests); whether all finished. Callbacks are not run."""
        deadline = time.monotonic() + timeout_s
        for future, *_ in list(self._pending.values()):
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                return False
            except BaseException:  # noqa: S110 - the callback reports it; here we only wait
                pass
        return True

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @Slot(int)
    def _deliver(self, number: int) -> None:
        entry = self._pending.pop(number, None)
        if entry is None:
            return
        future, on_done, on_error, owner = entry
        if owner is not None and not shiboken6.isValid(owner):
            return  # the widget that asked is gone
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            if on_done is not None:
                on_done(future.result())
        elif on_error is not None:
            on_error(error)
        else:
            log.error("background task failed", exc_info=error)


_manager: TaskManager | None = None


def tasks() -> TaskManager:
    """The application's task manager (made on first use, owned by the QApplication)."""
    global _manager
    if _manager is None or not shiboken6.isValid(_manager):
        app = QCoreApplication.instance()
        _manager = TaskManager(app)
    return _manager


def run_in_background(
    fn: Callable[[], T],
    on_done: Callable[[T], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    *,
    owner: QObject | None = None,
) -> Future[T]:
    return tasks().run_in_background(fn, on_done, on_error, owner=owner)
