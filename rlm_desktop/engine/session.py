"""A question thread's home between its runs: one event loop on its own thread, the thread's kept REPL, and
what a follow-up's root model is told about the thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_desktop.engine.citations import Registered
from rlm_desktop.sandbox.host import Sandbox

if TYPE_CHECKING:
    from rlm_desktop.engine.rlm import Level

IDLE_CLOSE_S = 600.0  # a thread's REPL is closed after this long without a question
# A follow-up's opening shows the thread's earlier runs within these bounds; `history` in the REPL has them whole.
HISTORY_OPENING_CHARS = 12_000
HISTORY_ANSWER_CHARS = 3_000
HISTORY_CITATIONS = 12  # per earlier run
HISTORY_QUOTE_CHARS = 160
HISTORY_QUESTION_CHARS = 1_000


def _origin(item: dict[str, Any]) -> str:
    """Where an earlier turn came from: a run of the case, or a chat client's conversation (`serve`)."""
    return f"run {item['run_id']}" if item.get("run_id") else "earlier in the client's conversation"


def history_opening(history: list[dict[str, Any]], repl_kept: bool) -> list[str]:
    """The opening's lines about the thread's earlier runs, newest kept whole first, within HISTORY_OPENING_CHARS."""
    sections: list[str] = []
    used = 0
    left_out = 0
    for index in range(len(history) - 1, -1, -1):
        item = history[index]
        answer = str(item.get("answer") or "(no answer)")
        if len(answer) > HISTORY_ANSWER_CHARS:
            answer = (
                answer[:HISTORY_ANSWER_CHARS]
                + f"\n[... answer cut here: {len(answer) - HISTORY_ANSWER_CHARS:,} more characters are in "
                f"history[{index}]['answer'] in your REPL]"
            )
        cites = []
        for c in (item.get("citations") or [])[:HISTORY_CITATIONS]:
            quote = str(c.get("quote", ""))
            quote = quote if len(quote) <= HISTORY_QUOTE_CHARS else quote[:HISTORY_QUOTE_CHARS] + "…"
            cites.append(f"  {c.get('marker', '')} document {c['doc_id']}, characters {c['start']}-{c['end']}: {quote!r}")
        more = len(item.get("citations") or []) - HISTORY_CITATIONS
        if more > 0:
            cites.append(f"  (and {more} more in history[{index}]['citations'])")
        question = str(item.get("question") or "")
        if len(question) > HISTORY_QUESTION_CHARS:
            question = question[:HISTORY_QUESTION_CHARS] + f" [... cut: whole in history[{index}]['question']]"
        section = "\n".join(
            [
                f"history[{index}] ({_origin(item)}) question: {question}",
                f"Answer:\n{answer}",
                *(["Verified citations:", *cites] if cites else ["(no verified citations)"]),
            ]
        )
        if used + len(section) > HISTORY_OPENING_CHARS and sections:
            left_out = index + 1
            break
        sections.append(section)
        used += len(section)
    sections.reverse()
    repl = (
        "Your REPL is the one from the previous question: its variables are all still there (SHOW_VARS() lists "
        "them)."
        if repl_kept
        else "This is a fresh REPL: variables from earlier questions are gone."
    )
    lines = [
        f"This question follows up {len(history)} earlier question(s) in the same thread. They are in `history` "
        f"in your REPL (oldest first), with their whole answers and verified citations. {repl} Markers in "
        "earlier answers belong to those runs: to cite a passage in this answer, register it with `cite` again.",
    ]
    if left_out:
        lines.append(f"(history[0] to history[{left_out - 1}] are left out here for length; read them in the REPL)")
    return lines + ["", *sections]


class ReplKeeper:
    """A thread's root REPL, kept alive between its questions (the reference RLM's persistent mode).

    Used on one event loop (the thread's): a run takes the REPL when it starts and gives it back when it ends;
    the kill switch and any failure dispose of it instead. `close()` ends it (idle thread, case change, quit).
    """

    def __init__(self) -> None:
        self.sandbox: Sandbox | None = None
        self._key: tuple[Any, ...] = ()

    @staticmethod
    def _key_of(level: Level, limits: dict[str, Any]) -> tuple[Any, ...]:
        cfg = level.run_.config
        return (
            str(Path(level.run_.case_path).resolve()),
            level.run_.case_state,  # documents added or replaced since: the worker's catalogue is stale
            tuple(sorted((k, v) for k, v in limits.items() if k != "memory_mb")),
            cfg.isolation,
            cfg.allow_weak_isolation,
        )

    async def take(self, level: Level, limits: dict[str, Any], variables: dict[str, Any]) -> Sandbox | None:
        """The kept REPL for this run, rebound to it with its variables set; None when a fresh one is needed."""
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is None:
            return None
        if not sandbox.alive or self._key != self._key_of(level, limits):
            sandbox.kill()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sandbox.close(), 2.0)
            level.node.detail.setdefault("notes", []).append(
                "a fresh REPL: the thread's earlier one "
                + ("had stopped" if not sandbox.alive else "was for other settings or an older state of the case")
            )
            return None
        sandbox.rebind(level._on_request)
        await sandbox.set_variables(variables)
        if not sandbox.alive:  # it died taking them: a fresh one
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sandbox.close(), 2.0)
            return None
        level.repl_kept = True
        level.node.detail["repl_kept"] = True
        # Markers the REPL registered for earlier questions still stand for their spans in this answer.
        for c in sandbox.registered():
            level.run_.registry[c["marker"]] = Registered(c["marker"], c["doc_id"], c["start"], c["end"], c["quote"])
        return sandbox

    def keep(self, sandbox: Sandbox, level: Level, limits: dict[str, Any]) -> bool:
        """Hold the run's REPL for the thread's next question; False when it cannot be kept."""
        if not sandbox.alive:
            return False
        sandbox.rebind(None)  # between questions nothing may call the host
        self.sandbox = sandbox
        self._key = self._key_of(level, limits)
        return True

    def forget(self, sandbox: Sandbox) -> None:
        if self.sandbox is sandbox:
            self.sandbox = None

    async def close(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            sandbox.kill()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(sandbox.close(), 2.0)


class ThreadSession:
    """Runs a thread's questions one after another on one loop, so its REPL worker (an asyncio subprocess,
    tied to the loop that started it) outlives each run and keeps its variables. The REPL is closed when the
    thread has been idle for `idle_close_s`, and everything when `close()` is called (case change, quit)."""

    def __init__(self, idle_close_s: float = IDLE_CLOSE_S):
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
