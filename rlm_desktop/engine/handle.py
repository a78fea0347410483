"""Run an investigation on its own thread's asyncio loop; start, cancel and subscribe from any thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rlm_desktop.engine.events import (
    CallRetriedEvent,
    NodeFinished,
    NodeStarted,
    NodeUpdated,
    RunEvent,
    RunFinished,
)
from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.engine.session import ReplKeeper, ThreadSession
from rlm_desktop.redact import redact, redact_record, remember_secret

Subscriber = Callable[[RunEvent], None]


class RunHandle:
    """One run. Subscribers are called on the engine thread: they must be quick and never touch widgets
    (a Qt adapter re-emits events through a queued signal)."""

    def __init__(
        self,
        case_path: str | Path,
        question: str,
        config: RunConfig,
        api_key: str,
        follows: str | None = None,
        session: ThreadSession | None = None,
        sub_api_key: str | None = None,
        history: list[dict[str, Any]] | None = None,
    ):
        """follows: the run this question follows up. session: the thread's loop and kept REPL (the window);
        without one the run gets its own thread and a fresh REPL. sub_api_key: the key of a separate sub-call
        endpoint (`config.sub_base_url`). history: earlier turns that are not runs of the case (see run_rlm)."""
        self.case_path = Path(case_path)
        self.question = question
        self.config = config
        self.follows = follows
        self.session = session
        self.history = history
        self._api_key = api_key
        self._sub_api_key = sub_api_key
        self._secrets = tuple(k for k in (api_key, sub_api_key) if k)
        for key in self._secrets:
            remember_secret(key)  # every redaction in this process (run records, errors, reports) removes it
        self.run_id = uuid.uuid4().hex[:12]
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._cancel_requested = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.record: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.cancel_requested_at: float | None = None
        self.finished_at: float | None = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: RunEvent) -> None:
        # The window shows what events carry: as redacted as what is saved (an error may echo the key).
        if isinstance(event, RunFinished):
            event = dataclasses.replace(event, record=redact_record(event.record, self._secrets))
        elif isinstance(event, NodeStarted | NodeUpdated | NodeFinished) and event.node.detail.get("error"):
            detail = {**event.node.detail, "error": redact(str(event.node.detail["error"]), self._secrets)}
            event = dataclasses.replace(event, node=dataclasses.replace(event.node, detail=detail))
        elif isinstance(event, CallRetriedEvent):
            event = dataclasses.replace(event, reason=redact(event.reason, self._secrets))
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken subscriber must not break the run
                import logging

                logging.getLogger(__name__).exception("run event subscriber failed")

    def start(self) -> RunHandle:
        self.check()
        if self.session is not None:
            self.session.submit(self._in_session)
            return self
        self._thread = threading.Thread(target=self._main, name=f"rlm-run-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def check(self) -> None:
        """Raise ValueError for a usage error (bad limits, a run to follow that is not in the case): in the
        caller's thread, before any thread or process starts."""
        self.config.check()
        if self.follows is not None:  # a run to follow that is not in the case is a usage error, here too
            from rlm_desktop.store.case import Case
            from rlm_desktop.store.runs import run_row

            with Case.open(self.case_path) as case:
                try:
                    run_row(case, self.follows)
                except KeyError as exc:
                    raise ValueError(str(exc).strip('"')) from None

    def _coroutine(self, keeper: ReplKeeper | None = None) -> Coroutine[Any, Any, dict[str, Any]]:
        return run_rlm(
            self.case_path,
            self.question,
            self.config,
            self._api_key,
            self._emit,
            self.run_id,
            follows=self.follows,
            keeper=keeper,
            sub_api_key=self._sub_api_key,
            history=self.history,
        )

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._coroutine())
            if self._cancel_requested.is_set():
                self._task.cancel()
            self.record = redact_record(loop.run_until_complete(self._task), self._secrets)
        except BaseException as exc:  # noqa: BLE001 - reported through .error and wait()
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self._done.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _in_session(self, keeper: ReplKeeper) -> None:
        """The run on its thread session's loop, with the thread's kept REPL."""
        self._loop = asyncio.get_running_loop()
        try:
            self._task = asyncio.current_task()  # type: ignore[assignment]
            if self._cancel_requested.is_set() and self._task is not None:
                self._task.cancel()  # the run sees it at its first wait and ends as cancelled, saved
            self.record = redact_record(await self._coroutine(keeper), self._secrets)
        except BaseException as exc:  # noqa: BLE001 - reported through .error and wait()
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self._done.set()

    def cancel(self) -> None:
        """The kill switch: in-flight requests are cancelled, workers killed, the run saved as cancelled."""
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.monotonic()
        self._cancel_requested.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop closed in between: the run is already over

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for the run to end; whether it has."""
        return self._done.wait(timeout)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still running after {timeout} s")
        if self.record is None:
            raise RuntimeError(f"run {self.run_id} failed to produce a record") from self.error
        return self.record
