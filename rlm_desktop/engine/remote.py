"""A question thread whose runs happen in a child process, so the window's process only draws.

Why a process: the engine's Python (HTTP, provenance, saving) and the window's Python share one GIL in one
process, and every call the window's views make into Python (a tree's `data()`, `index()`, `parent()`, a
slot) then waits for the engine's thread to hand it over. A busy run froze the window for 100-400 ms at a
time that way, though the window's own work was a fraction of it.

The child (`python -m rlm_desktop.engine.remote --fd N`, or the bundle's `--engine-worker`) keeps one
`ThreadSession`, so the thread's REPL stays alive between its questions as in-process. Messages are pickled
over a socket pair: the parent sends `("run", run_id, kwargs)`, `("cancel", run_id)` and `("close",)`; the
child sends `("event", run_id, event)` (the frozen dataclasses of `events.py`), `("ended", run_id, record,
error, repl)` and `("repl", alive, pid)`. The API key travels in the run message only, never in the child's
arguments or environment. The engine saves the run every half second as it goes, so a child that dies (or is
killed because it did not stop) leaves its trajectory in the case; the parent then ends the run there, `failed`
(or `cancelled` when a Stop needed the kill), its cost counting what its calls in flight had reserved.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rlm_desktop.engine.events import CostChanged, RunEvent, RunFinished
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.models import warm_up
from rlm_desktop.engine.record import RunRecord
from rlm_desktop.engine.rlm import RunConfig
from rlm_desktop.engine.runs import load_run
from rlm_desktop.engine.session import IDLE_CLOSE_S, ThreadSession
from rlm_desktop.frozen import ENGINE_WORKER_FLAG, is_frozen
from rlm_desktop.redact import redact
from rlm_desktop.store.case import Case
from rlm_desktop.store.runs import end_abandoned_run

log = logging.getLogger(__name__)

STOP_KILL_S = 5.0  # a Stop the child has not honoured by then ends the child (its run is saved as far as it got)
CLOSE_WAIT_S = 3.0
REPL_REPORT_S = 1.0  # how often the child tells whether the thread's REPL is still alive (it closes when idle)


def engine_argv() -> list[str]:
    """The command that starts an engine child: this Python with the module, or the bundle's executable."""
    if is_frozen():
        return [os.path.realpath(sys.executable), ENGINE_WORKER_FLAG]
    return [sys.executable, "-m", "rlm_desktop.engine.remote"]


class RemoteRunHandle(RunHandle):
    """A run in a `RemoteSession`'s child: the same interface as `RunHandle` (subscribe, start, cancel, join,
    wait, record, error); subscribers are called on the session's reader thread."""

    def __init__(
        self,
        case_path: str | Path,
        question: str,
        config: RunConfig,
        api_key: str,
        follows: str | None = None,
        session: RemoteSession | None = None,
        sub_api_key: str | None = None,
    ):
        if session is None:
            raise ValueError("a remote run needs its RemoteSession")
        super().__init__(case_path, question, config, api_key, follows=follows, sub_api_key=sub_api_key)
        self.remote = session
        self.last_cost: CostChanged | None = None  # newer than the run's last save, if its child dies

    def start(self) -> RemoteRunHandle:
        self.check()  # usage errors in the caller's thread, as in-process
        self.remote.begin(
            self,
            {
                "case_path": str(self.case_path),
                "question": self.question,
                "config": self.config,
                "api_key": self._api_key,
                "follows": self.follows,
                "sub_api_key": self._sub_api_key,
            },
        )
        return self

    def cancel(self) -> None:
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.monotonic()
        self._cancel_requested.set()
        if not self.done:
            self.remote.cancel(self.run_id)

    def _emit(self, event: RunEvent) -> None:
        if isinstance(event, CostChanged):
            self.last_cost = event
        super()._emit(event)

    def _ended(self, record: dict[str, Any] | None, error: str | None) -> None:
        if self.done:
            return
        self.record = record
        self.error = RuntimeError(redact(error, self._secrets)) if error else None
        self.finished_at = time.monotonic()
        self._done.set()


class RemoteSession:
    """The window's side of one question thread run in a child process (the interface of `ThreadSession`
    the window uses: `last_run_id`, `repl_alive`, `closed`, `close()`)."""

    def __init__(self, idle_close_s: float = IDLE_CLOSE_S, stop_kill_s: float = STOP_KILL_S):
        self.idle_close_s = idle_close_s
        self.stop_kill_s = stop_kill_s
        self.last_run_id: str | None = None
        self.repl_pid: int | None = None  # the kept REPL worker's pid (in the child), when there is one
        self._closed = False
        self._close_sent = False
        self._handles: dict[str, RemoteRunHandle] = {}
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [*engine_argv(), "--fd", str(theirs.fileno()), "--idle-close", repr(idle_close_s)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._reader = threading.Thread(target=self._read, name="rlm-engine-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def repl_alive(self) -> bool:
        return self.repl_pid is not None and self.alive

    def _send(self, message: tuple[Any, ...]) -> bool:
        with self._lock:
            try:
                self._conn.send(message)
                return True
            except (OSError, ValueError):  # the child is gone: the reader ends its runs
                return False

    def begin(self, handle: RemoteRunHandle, kwargs: dict[str, Any]) -> None:
        if self._closed or not self.alive:
            raise RuntimeError("this question thread was closed")
        self._handles[handle.run_id] = handle
        if not self._send(("run", handle.run_id, kwargs)):
            self._handles.pop(handle.run_id, None)
            raise RuntimeError("the engine process for this question thread has ended")

    def cancel(self, run_id: str) -> None:
        self._send(("cancel", run_id))
        # the engine stops within milliseconds; one that does not is ended with its process
        timer = threading.Timer(self.stop_kill_s, self._kill_if_running, args=(run_id,))
        timer.daemon = True
        timer.start()

    def _kill_if_running(self, run_id: str) -> None:
        handle = self._handles.get(run_id)
        if handle is not None and not handle.done and self.alive:
            log.warning("run %s did not stop within %g s: ending its engine process", run_id, self.stop_kill_s)
            self._proc.kill()

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # an event that would not unpickle must not end the thread's reading
                log.exception("an engine message could not be read")
                continue
            kind = message[0]
            if kind == "event":
                handle = self._handles.get(message[1])
                if handle is not None:
                    handle._emit(message[2])
            elif kind == "ended":
                _, run_id, record, error, repl_pid = message
                self.repl_pid = repl_pid
                handle = self._handles.pop(run_id, None)
                if handle is not None:
                    handle._ended(record, error)
            elif kind == "repl":
                self.repl_pid = message[2] if message[1] else None
        # the child is gone: runs it had not finished end here (what they did is saved in the case)
        self._closed = True
        self.repl_pid = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(1.0)
        code = self._proc.returncode
        for run_id, handle in list(self._handles.items()):
            self._handles.pop(run_id, None)
            if handle.cancel_requested_at is not None:
                reason = f"stopped: the engine process did not stop within {self.stop_kill_s:g} s and was ended"
                self._end_abandoned(handle, "cancelled", reason + "; the run is saved as far as it got")
            else:
                reason = f"the engine process ended unexpectedly (exit code {code})"
                self._end_abandoned(handle, "failed", reason + "; the run is saved as far as it got")
        with contextlib.suppress(OSError):
            self._conn.close()

    @staticmethod
    def _end_abandoned(handle: RemoteRunHandle, status: str, reason: str) -> None:
        """End a run its child left unfinished, in the case and for the window: its status and reason saved,
        its cost brought up to the last the child reported, with what its calls in flight had reserved
        counted as held (the server may bill them). A Stop that needed the kill ends `cancelled`, as the user
        asked, with the events a stopped run sends; a crash ends `failed`, with the reason as its error."""
        cost = handle.last_cost
        record = None
        try:
            with Case.open(handle.case_path) as case:
                end_abandoned_run(
                    case,
                    handle.run_id,
                    status,
                    reason,
                    (cost.billed_usd, cost.held_usd, cost.held_estimate_usd) if cost is not None else None,
                    cost.reserved_usd if cost is not None else 0.0,
                )
                if status == "cancelled":
                    record = load_run(case, handle.run_id)
        except Exception:  # the window still learns the run ended; the case says what it could save
            log.exception("run %s: could not record how it ended", handle.run_id)
        if record is None:
            handle._ended(None, reason)
            return
        handle._emit(RunRecord.from_dict(record).cost_event())
        handle._emit(RunFinished(handle.run_id, status, record))
        handle._ended(record, None)

    def request_close(self) -> None:
        """Tell the child to cancel its run, close its REPL and end, without waiting (see `close`)."""
        if not self._close_sent:
            self._close_sent = self._closed = True
            self._send(("close",))

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Close the thread: its runs are cancelled, its REPL and child process end (killed after `timeout`).
        Several threads close together when each is asked first (`request_close`) and then waited for."""
        if self._closed and not self.alive:
            return
        self.request_close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(2.0)
        self._reader.join(timeout)


# ---- the child ---------------------------------------------------------------------------------------------


def serve(conn: Connection, idle_close_s: float) -> None:
    """Be the engine of one question thread until told to close or the window's process goes away."""
    # the HTTP stack's one-time set-up now, while the user types, not in the first run's first request
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    session = ThreadSession(idle_close_s)
    handles: dict[str, RunHandle] = {}
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock, contextlib.suppress(OSError, ValueError):
            conn.send(message)

    def repl_pid() -> int | None:
        sandbox = session.keeper.sandbox
        return sandbox.pid if sandbox is not None and sandbox.alive else None

    def watch(handle: RunHandle) -> None:
        handle.join()
        handles.pop(handle.run_id, None)
        error = None
        if handle.record is None and handle.error is not None:
            error = f"{type(handle.error).__name__}: {handle.error}"
        send(("ended", handle.run_id, handle.record, error, repl_pid()))

    stopped = threading.Event()

    def report_repl() -> None:  # an idle thread's REPL closes by itself: the window's follow-up bar says so
        last = repl_pid()
        while not stopped.wait(REPL_REPORT_S):
            now = repl_pid()
            if now != last:
                last = now
                send(("repl", now is not None, now))

    threading.Thread(target=report_repl, name="rlm-repl-report", daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the window's process is gone: stop what runs, save it, leave
        kind = message[0]
        if kind == "run":
            _, run_id, kwargs = message
            handle = RunHandle(session=session, **kwargs)
            handle.run_id = run_id
            handle.subscribe(lambda event, run_id=run_id: send(("event", run_id, event)))
            try:
                handle.start()
            except BaseException as exc:  # noqa: BLE001 - the parent checked; whatever is left is reported
                send(("ended", run_id, None, f"{type(exc).__name__}: {exc}", repl_pid()))
                continue
            handles[run_id] = handle
            threading.Thread(target=watch, args=(handle,), name=f"rlm-watch-{run_id}", daemon=True).start()
        elif kind == "cancel":
            found = handles.get(message[1])
            if found is not None:
                found.cancel()
        elif kind == "close":
            break
    stopped.set()
    for handle in list(handles.values()):
        handle.cancel()
    for handle in list(handles.values()):
        handle.join(CLOSE_WAIT_S)
    session.close()
    with contextlib.suppress(OSError):
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The engine of one question thread of the window (internal).")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the window's process")
    parser.add_argument("--idle-close", type=float, default=IDLE_CLOSE_S)
    args = parser.parse_args(argv)
    serve(Connection(args.fd), args.idle_close)
    return 0


def _main_and_leave() -> None:
    code = main()
    # Everything is closed and saved by now: skip tearing the interpreter down module by module, which took
    # a few hundred milliseconds of a window's quit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _main_and_leave()
