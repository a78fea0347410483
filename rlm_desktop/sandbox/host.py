"""Asyncio host for the REPL worker: spawns it in the strongest isolation available and runs cells."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_desktop import frozen
from rlm_desktop.sandbox import protocol
from rlm_desktop.sandbox.worker import DEFAULT_LIMITS

WORKER_SCRIPT = Path(__file__).resolve().with_name("worker.py")
PACKAGE_DIR = WORKER_SCRIPT.parents[1]
ISOLATIONS = ("bwrap", "unshare", "rlimits")
# Seconds the host waits beyond the worker's own cell timeout before it kills an unresponsive worker.
KILL_GRACE_S = 5.0
START_TIMEOUT_S = 30.0
STDERR_KEEP_BYTES = 8192
SANDBOX_UID = 65534  # "nobody" inside the user namespace

RequestHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]

# Isolation modes that failed once in this process are not retried at every start.
_failed_isolations: set[str] = set()


class SandboxError(Exception):
    """The REPL worker could not be started or broke the protocol."""


@dataclass
class CellResult:
    """What one executed code cell produced, as returned to the engine."""

    output: str
    error: str | None = None
    final: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    output_chars_total: int = 0
    timed_out: bool = False
    state_lost: bool = False  # the worker died or was killed: its variables are gone
    killed: bool = False  # stopped by Sandbox.kill()

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> CellResult:
        citations = [
            {k: c.get(k) for k in ("marker", "doc_id", "start", "end", "quote")}
            for c in frame.get("citations") or []
            if isinstance(c, dict)
        ]
        return cls(
            output=str(frame.get("output") or ""),
            error=None if frame.get("error") is None else str(frame["error"]),
            final=None if frame.get("final") is None else str(frame["final"]),
            citations=citations,
            elapsed_s=float(frame.get("elapsed_s") or 0.0),
            output_chars_total=int(frame.get("output_chars_total") or 0),
            timed_out=bool(frame.get("timed_out")),
        )


def clean_environment(scratch_dir: str) -> dict[str, str]:
    """Only what Python needs: never API keys, tokens or anything else from the host."""
    return {"PATH": "/usr/bin:/bin", "HOME": scratch_dir, "LANG": "C.UTF-8"}


def _python_roots() -> list[str]:
    if frozen.is_frozen():
        # A desktop bundle: its executable and every file it runs lie inside one folder.
        return [str(frozen.bundle_root())]
    roots = []
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        for path in (prefix, os.path.realpath(prefix)):
            if path not in roots:
                roots.append(path)
    return roots


def bwrap_command(bwrap: str, python: str, case_path: str | None, scratch_dir: str) -> list[str]:
    """bubblewrap: new user/pid/net/ipc/uts namespaces, read-only system, only scratch writable."""
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID)]
    cmd += ["--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib32", "/lib64", "/sbin"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/localtime"):
        cmd += ["--ro-bind-try", etc, etc]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(16 << 20), "--tmpfs", "/tmp"]
    case_files: list[str] = []
    if case_path:
        case_dir = os.path.dirname(case_path)
        if case_dir != "/":
            # A private, writable directory around the read-only case so SQLite can make a -shm file
            # for a WAL database without write access to the real case folder.
            cmd += ["--perms", "0777", "--size", str(16 << 20), "--tmpfs", case_dir]
        case_files = [p for p in (case_path + s for s in ("", "-wal", "-shm")) if os.path.exists(p)]
    for root in _python_roots():
        cmd += ["--ro-bind", root, root]
    if not frozen.is_frozen():  # in a bundle the package is inside the bundle root bound above
        cmd += ["--ro-bind", str(PACKAGE_DIR), str(PACKAGE_DIR)]
    cmd += ["--bind", scratch_dir, scratch_dir]
    for path in case_files:
        cmd += ["--ro-bind", path, path]
    cmd += ["--chdir", scratch_dir, "--", *_worker_argv(python)]
    return cmd


def _worker_argv(python: str) -> list[str]:
    """`python -I -B worker.py`, or in a desktop bundle (no Python there) `rlm-desktop --sandbox-worker`."""
    if frozen.is_frozen():
        return frozen.worker_argv()
    return [python, "-I", "-B", str(WORKER_SCRIPT)]


def unshare_command(unshare: str, python: str) -> list[str]:
    """util-linux unshare: no network, own pid namespace; non-root user namespace where permitted."""
    cmd = [unshare, "--net", "--pid", "--fork", "--kill-child", "--ipc", "--uts"]
    if os.geteuid() == 0:
        cmd += ["--user", f"--map-user={SANDBOX_UID}", f"--map-group={SANDBOX_UID}"]
    else:
        cmd += ["--user", "--map-root-user"]
    return cmd + ["--", *_worker_argv(python)]


def worker_command(isolation: str, case_path: str | None, scratch_dir: str) -> list[str] | None:
    python = sys.executable
    if isolation == "bwrap":
        bwrap = shutil.which("bwrap")
        return bwrap_command(bwrap, python, case_path, scratch_dir) if bwrap else None
    if isolation == "unshare":
        unshare = shutil.which("unshare")
        return unshare_command(unshare, python) if unshare else None
    return _worker_argv(python)


ISOLATION_WARNINGS = {
    "unshare": "bubblewrap is not available: the REPL has no network and its own pid/user namespaces, but "
    "sees the host's file system (reads and writes are refused only by an in-process audit hook)",
    "rlimits": "no namespace isolation is available: the REPL runs with resource limits and an in-process "
    "audit hook only; install bubblewrap (apt-get install bubblewrap) for real isolation",
}


class Sandbox:
    """One REPL worker process holding a persistent namespace over the case corpus."""

    def __init__(self) -> None:
        self.isolation = "none"
        self.warnings: list[str] = []
        self.start_time_s = 0.0
        self.documents = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._on_request: RequestHandler | None = None
        self._limits: dict[str, Any] = dict(DEFAULT_LIMITS)
        self._args: tuple[Any, ...] = ()
        self._scratch_dir = ""
        self._own_scratch = False
        self._stderr_tail = bytearray()
        self._stderr_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._cell_id = 0
        self._dead: str | None = None
        self._killed = False

    # lifecycle ---------------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        case_path: str | Path | None,
        doc_ids: list[int] | None = None,
        limits: dict[str, Any] | None = None,
        on_request: RequestHandler | None = None,
        *,
        scratch_dir: str | Path | None = None,
        isolation: str = "auto",
    ) -> Sandbox:
        """Spawn a worker. isolation="auto" picks the strongest available; a mode name forces it.

        limits: output_chars, cell_timeout_s, memory_mb, cpu_s, file_mb, nproc, max_cite_chars (see
        worker.DEFAULT_LIMITS) and, host side, kill_grace_s. on_request(kind, payload) serves llm_query
        ({"prompt"}), llm_query_batched ({"prompts"}, returns a list) and rlm_query ({"question", "doc_ids"}).
        """
        sandbox = cls()
        sandbox._on_request = on_request
        sandbox._limits.update(limits or {})
        if scratch_dir is None:
            scratch_dir = tempfile.mkdtemp(prefix="rlm-scratch-")
            sandbox._own_scratch = True
        sandbox._scratch_dir = os.path.realpath(scratch_dir)
        os.makedirs(sandbox._scratch_dir, exist_ok=True)
        case = os.path.realpath(case_path) if case_path is not None else None
        if case is not None and not os.path.isfile(case):
            raise SandboxError(f"case file not found: {case}")
        sandbox._args = (case, doc_ids, isolation)
        await sandbox._spawn()
        return sandbox

    async def _spawn(self) -> None:
        case, doc_ids, isolation = self._args
        if isolation == "auto":
            candidates = [m for m in ISOLATIONS if m not in _failed_isolations] or ["rlimits"]
        elif isolation in ISOLATIONS:
            candidates = [isolation]
        else:
            raise ValueError(f"isolation must be 'auto' or one of {ISOLATIONS}")
        self.warnings = []
        failures = []
        for mode in candidates:
            cmd = worker_command(mode, case, self._scratch_dir)
            if cmd is None:
                failures.append(f"{mode}: not installed")
                continue
            started = time.perf_counter()
            try:
                ready = await self._launch(cmd, case, doc_ids)
            except _IsolationUnavailable as exc:
                failures.append(f"{mode}: {exc}")
                if isolation == "auto":
                    _failed_isolations.add(mode)
                continue
            self.start_time_s = time.perf_counter() - started
            self.isolation = mode
            self.documents = int(ready.get("documents") or 0)
            if mode in ISOLATION_WARNINGS:
                self.warnings.append(ISOLATION_WARNINGS[mode])
            self.warnings += [f"isolation {f}" for f in failures]
            self.warnings += [f"worker: {n}" for n in ready.get("notes") or []]
            self._dead = None
            self._killed = False
            return
        raise SandboxError("could not start the REPL worker: " + "; ".join(failures))

    async def _launch(self, cmd: list[str], case: str | None, doc_ids: list[int] | None) -> dict[str, Any]:
        self._stderr_tail = bytearray()
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_environment(self._scratch_dir),
            cwd=self._scratch_dir,
            start_new_session=True,
            close_fds=True,
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._proc))
        limits = {k: v for k, v in self._limits.items() if k in DEFAULT_LIMITS}
        try:
            await self._send(protocol.init_message(case, doc_ids, self._scratch_dir, limits))
            frame = await asyncio.wait_for(self._read(), START_TIMEOUT_S)
        except (EOFError, ConnectionError, protocol.ProtocolError, TimeoutError) as exc:
            self._kill_process()
            await self._reap()
            raise _IsolationUnavailable(
                f"{type(exc).__name__}: {self.stderr_tail()[-600:]}".strip()
            ) from None
        if frame.get("type") == protocol.FATAL:
            self._kill_process()
            await self._reap()
            raise SandboxError(f"the REPL worker failed to start:\n{frame.get('error')}")
        if frame.get("type") != protocol.READY:
            self._kill_process()
            await self._reap()
            raise SandboxError(f"the REPL worker sent {frame.get('type')!r} instead of ready")
        return frame

    async def restart(self) -> None:
        """Replace a dead or killed worker by a fresh one (empty namespace, same case and limits)."""
        self._kill_process()
        await self._reap()
        await self._spawn()

    async def close(self) -> None:
        """Ask the worker to exit, kill it if it does not, and remove a scratch dir we created."""
        proc = self._proc
        if proc is not None and proc.returncode is None and self._dead is None:
            with contextlib.suppress(Exception):
                await self._send({"type": protocol.SHUTDOWN})
                await asyncio.wait_for(proc.wait(), 1.0)
        self._dead = self._dead or "the REPL was closed"
        self._kill_process()
        await self._reap()
        if self._own_scratch:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the worker at once (the kill switch); safe to call from synchronous code, any number of times."""
        self._killed = True
        self._dead = "the REPL was stopped by the kill switch; its state was lost"
        self._kill_process()

    def _kill_process(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        # start_new_session made the worker (or bwrap/unshare) a group leader: one signal reaches them all.
        # The namespace launchers take everything inside their pid namespace down with them.
        for send in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send()

    async def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5.0)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(BaseException):
                await self._stderr_task

    @property
    def alive(self) -> bool:
        return self._dead is None and self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def scratch_dir(self) -> str:
        return self._scratch_dir

    def stderr_tail(self) -> str:
        """The last bytes the worker wrote to its diagnostics pipe (crashes, C-level writes)."""
        return self._stderr_tail.decode("utf-8", "replace")

    # cells -----------------------------------------------------------------------------------

    async def execute(self, code: str) -> CellResult:
        """Run one code cell in the persistent namespace; serves the worker's sub-call requests meanwhile."""
        async with self._lock:
            if not self.alive:
                return self._lost(self._dead or "the REPL worker is not running")
            self._cell_id += 1
            cell_id = self._cell_id
            grace = float(self._limits.get("kill_grace_s", KILL_GRACE_S))
            deadline = float(self._limits["cell_timeout_s"]) + grace
            try:
                await self._send(protocol.exec_message(cell_id, code))
                while True:
                    frame = await asyncio.wait_for(self._read(), deadline)
                    kind = frame.get("type")
                    if kind == protocol.RESULT and frame.get("id") == cell_id:
                        return CellResult.from_frame(frame)
                    if kind != protocol.REQUEST:
                        raise protocol.ProtocolError(f"unexpected frame {kind!r} during a cell")
                    reply = await self._serve_request(frame)
                    if self._killed:
                        return self._lost(self._dead or "killed")
                    await self._send(reply)
            except TimeoutError:
                self._kill_process()
                self._dead = (
                    f"the REPL did not answer within {deadline:g} s and was killed; its state was lost "
                    "(all variables are gone)"
                )
            except asyncio.CancelledError:
                # The worker may be blocked waiting for a reply that will never come: the protocol is out of
                # step, so the worker cannot be reused.
                self._kill_process()
                self._dead = (
                    self._dead or "the cell was cancelled; the REPL was stopped and its state was lost"
                )
                raise
            except (EOFError, ConnectionError, protocol.ProtocolError) as exc:
                self._kill_process()
                if not self._killed:
                    self._dead = f"the REPL worker died ({self._death_cause(exc)}); its state was lost"
            await self._reap()
            return self._lost(self._dead or "the REPL worker died")

    def _death_cause(self, exc: BaseException) -> str:
        code = self._proc.returncode if self._proc else None
        if isinstance(exc, protocol.ProtocolError):
            return f"protocol error: {exc}"
        tail = self.stderr_tail().strip().splitlines()[-3:]
        return f"exit status {code}" + (": " + " | ".join(tail) if tail else "")

    def _lost(self, reason: str) -> CellResult:
        return CellResult(output="", error=reason, state_lost=True, killed=self._killed)

    async def _serve_request(self, frame: dict[str, Any]) -> dict[str, Any]:
        request_id = frame.get("id")
        kind = frame.get("kind")
        payload = frame.get("payload")
        problem = _validate_request(kind, payload)
        if problem:
            return protocol.reply_message(request_id, error=problem)
        if self._on_request is None:
            return protocol.reply_message(request_id, error=f"{kind} is not available in this REPL")
        try:
            value = await self._on_request(kind, payload)
        except Exception as exc:  # noqa: BLE001 - the model sees why its sub-call failed
            return protocol.reply_message(request_id, error=f"{type(exc).__name__}: {exc}")
        return protocol.reply_message(request_id, value)

    # plumbing --------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(protocol.encode_frame(message))
        await self._proc.stdin.drain()

    async def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        return await protocol.read_frame_async(self._proc.stdout)

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            self._stderr_tail += chunk
            del self._stderr_tail[:-STDERR_KEEP_BYTES]


class _IsolationUnavailable(Exception):
    """The launcher failed before the worker answered: try a weaker isolation."""


def _validate_request(kind: Any, payload: Any) -> str | None:
    if kind not in protocol.REQUEST_KINDS or not isinstance(payload, dict):
        return f"unknown request {kind!r}"
    if kind == "llm_query" and not isinstance(payload.get("prompt"), str):
        return "llm_query needs a str prompt"
    if kind == "llm_query_batched":
        prompts = payload.get("prompts")
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            return "llm_query_batched needs a list of str prompts"
    if kind == "rlm_query":
        ids = payload.get("doc_ids")
        if not isinstance(payload.get("question"), str) or not isinstance(ids, list):
            return "rlm_query needs a str question and a list of document ids"
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return "rlm_query document ids must be ints"
    return None
