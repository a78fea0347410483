"""A question thread's home between its runs: one event loop on its own thread and the thread's kept REPL."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_desktop.engine.rlm import ReplKeeper

IDLE_CLOSE_S = 600.0  # a thread's REPL is closed after this long without a question


class ThreadSession:
    """Runs a thread's questions one after another on one loop, so its REPL worker (an asyncio subprocess,
    tied to the loop that started it) outlives each run and keeps its variables. The REPL is closed when the
    thread has been idle for `idle_close_s`, and everything when `close()` is called (case change, quit)."""

    def __init__(self, idle_close_s: float = IDLE_CLOSE_S):
        from rlm_desktop.engine.rlm import ReplKeeper

        self.idle_close_s = idle_close_s
        self.keeper: ReplKeeper = ReplKeeper()
        self.last_run_id: str | None = None  # the thread's newest run: the next question follows it
        self._loop = asyncio.new_event_loop()
        self._idle: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None  # an idle close under way
        self._busy = 0
        self._closed = False
        self.idle_since = time.monotonic()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rlm-thread-session", daemon=True)
        self._thread.start()

    @property
    def repl_alive(self) -> bool:
        sandbox = self.keeper.sandbox
        return sandbox is not None and sandbox.alive

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, job: Callable[[ReplKeeper], Awaitable[Any]]) -> Future[Any]:
        """Run `job(keeper)` on the session's loop, after the thread's earlier jobs (one question at a time)."""
        if self._closed:
            raise RuntimeError("this question thread was closed")
        return asyncio.run_coroutine_threadsafe(self._serial(job), self._loop)

    async def _serial(self, job: Callable[[ReplKeeper], Awaitable[Any]]) -> Any:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._busy += 1
        try:
            return await job(self.keeper)
        finally:
            self._busy -= 1
            self.idle_since = time.monotonic()
            if self._busy == 0 and self.keeper.sandbox is not None:
                self._idle = self._loop.call_later(self.idle_close_s, self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        if self._busy == 0:
            self._closing = self._loop.create_task(self.keeper.close())

    def close(self, timeout: float = 3.0) -> None:
        """Close the thread's REPL and stop its loop (waits up to `timeout` s); safe to call twice."""
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            if self._idle is not None:
                self._idle.cancel()
            if self._closing is not None:
                await self._closing  # its worker is reaped on this loop, before the loop stops
            await self.keeper.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
