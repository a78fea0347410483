"""Asyncio host for the REPL worker: spawns it behind the strongest walls available and trusts nothing it says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_desktop import frozen
from rlm_desktop.sandbox import functions, protocol
from rlm_desktop.sandbox import isolation as iso
from rlm_desktop.sandbox.isolation import (  # noqa: F401 - re-exported: the engine and tests import them here
    ISOLATIONS,
    SANDBOX_UID,
    WEAK_MODES,
    IsolationRefused,
    SandboxError,
)
from rlm_desktop.sandbox.worker import DEFAULT_LIMITS, cut_middle
from rlm_desktop.store import queries

WORKER_SCRIPT = Path(__file__).resolve().with_name("worker.py")
PACKAGE_DIR = WORKER_SCRIPT.parents[1]
# Seconds the host waits beyond the worker's own cell timeout before it kills an unresponsive worker.
KILL_GRACE_S = 5.0
START_TIMEOUT_S = 30.0
STDERR_KEEP_BYTES = 8192
CUT_MARKER_SLACK = 64  # "\n[... N characters cut ...]\n"
SCRATCH_POLL_S = 0.1
SCRATCH_MAX_ENTRIES = 100_000
REQUEST_FRAME_BYTES = protocol.MAX_FRAME_BYTES  # sub-call prompts; the engine bounds each prompt itself
# Read-only for the worker besides the interpreter, the package and the case: shared libraries, time zones,
# locales and the random device.
SYSTEM_READ_PATHS = (
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/lib",
    "/lib64",
    "/usr/share/zoneinfo",
    "/usr/lib/locale",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/null",
    "/dev/urandom",
    "/dev/zero",
)

RequestHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]

# Isolation modes that failed once in this process are not retried at every start.
_failed_isolations: set[str] = set()


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
    state_lost: bool = False  # the worker died, was killed or restarted: its variables are gone
    killed: bool = False  # stopped by Sandbox.kill()

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> CellResult:
        """Parse a result frame strictly: a field of the wrong type is a protocol error, not a guess."""

        def typed(name: str, kinds: tuple[type, ...], default: Any) -> Any:
            value = frame.get(name, default)
            if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
                raise protocol.ProtocolError(f"result field {name!r} is a {type(value).__name__}")
            return value

        citations = typed("citations", (list,), [])
        return cls(
            output=typed("output", (str,), ""),
            error=typed("error", (str, type(None)), None),
            final=typed("final", (str, type(None)), None),
            citations=list(citations),
            elapsed_s=float(typed("elapsed_s", (int, float), 0.0)),
            output_chars_total=int(typed("output_chars_total", (int,), 0)),
            timed_out=bool(typed("timed_out", (bool,), False)),
        )


def clean_environment(scratch_dir: str) -> dict[str, str]:
    """Only what Python needs: never API keys, tokens or anything else from the host."""
    return {"PATH": "/usr/bin:/bin", "HOME": scratch_dir, "TMPDIR": scratch_dir, "LANG": "C.UTF-8"}


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


def _case_files(case_path: str | None) -> list[str]:
    if not case_path:
        return []
    return [p for p in (case_path + s for s in ("", "-wal", "-shm")) if os.path.exists(p)]


def landlock_read_paths(case_path: str | None) -> list[str]:
    """What the worker may read under Landlock: the interpreter, the package, the case, system libraries."""
    paths = _python_roots()
    if not frozen.is_frozen():
        paths.append(str(PACKAGE_DIR))
    return [*paths, *SYSTEM_READ_PATHS, *_case_files(case_path)]


def bwrap_command(
    bwrap: str, python: str, case_path: str | None, scratch_dir: str, scratch_mb: int = 256
) -> list[str]:
    """bubblewrap: new user/pid/net/ipc/uts namespaces, read-only system, only a size-limited scratch writable."""
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
    if case_path:
        case_dir = os.path.dirname(case_path)
        if case_dir != "/":
            # A private, writable directory around the read-only case so SQLite can make a -shm file
            # for a WAL database without write access to the real case folder.
            cmd += ["--perms", "0777", "--size", str(16 << 20), "--tmpfs", case_dir]
    for root in _python_roots():
        cmd += ["--ro-bind", root, root]
    if not frozen.is_frozen():  # in a bundle the package is inside the bundle root bound above
        cmd += ["--ro-bind", str(PACKAGE_DIR), str(PACKAGE_DIR)]
    # Scratch is a tmpfs of its own inside the sandbox: writes past the size fail with "No space left".
    cmd += ["--perms", "0700", "--size", str(int(scratch_mb) << 20), "--tmpfs", scratch_dir]
    for path in _case_files(case_path):
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
    return [unshare, *iso.unshare_flags(), "--", *_worker_argv(python)]


def worker_command(
    isolation: str, case_path: str | None, scratch_dir: str, scratch_mb: int = 256
) -> list[str] | None:
    python = sys.executable
    if isolation == "bwrap":
        bwrap = shutil.which("bwrap")
        return bwrap_command(bwrap, python, case_path, scratch_dir, scratch_mb) if bwrap else None
    if isolation == "unshare":
        unshare = shutil.which("unshare")
        return unshare_command(unshare, python) if unshare else None
    return _worker_argv(python)


WEAK_WARNING = (
    "WEAK ISOLATION: model code ran with resource limits and an in-process audit hook only, which model code "
    "can switch off: it could read your files and keys, reach local services and keep processes running. "
    'Allowed by the setting "Run model code with weak isolation on this machine".'
)


def scratch_usage(path: str) -> tuple[int, int]:
    """(bytes allocated, entries) under path, not following symlinks; stops counting past the entry cap."""
    total = entries = 0
    stack = [path]
    while stack and entries <= SCRATCH_MAX_ENTRIES:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += (
                        max(st.st_size, st.st_blocks * 512) if entry.is_file(follow_symlinks=False) else 0
                    )
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total, entries


def _empty_dir(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


class Sandbox:
    """One REPL worker process holding a persistent namespace over the case corpus."""

    def __init__(self) -> None:
        self.mode = "none"  # bwrap, unshare, landlock or rlimits
        self.isolation = "none"  # the walls, as the run record states them
        self.weak = False
        self.walls: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.start_time_s = 0.0
        self.documents = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._cgroup: iso.PidsCgroup | None = None
        self._on_request: RequestHandler | None = None
        self._limits: dict[str, Any] = dict(DEFAULT_LIMITS)
        self._args: tuple[Any, ...] = ()
        self._allow_weak = False
        self._scratch_dir = ""
        self._own_scratch = False
        self._stderr_tail = bytearray()
        self._stderr_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._cell_id = 0
        self._dead: str | None = None
        self._terminal = False  # killed, cancelled or closed: never restarted
        self._killed = False
        self._marker_re: re.Pattern[str] = re.compile(r"\[c([1-9][0-9]{0,8})\]")
        self._registry: dict[str, tuple[int, int, int]] = {}
        self._next_marker = 1
        self._case_conn: sqlite3.Connection | None = None
        self._variables: dict[str, Any] = {}  # functions.REPL_VARIABLES, sent at every (re)start

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
        allow_weak: bool = False,
        variables: dict[str, Any] | None = None,
    ) -> Sandbox:
        """Spawn a worker. isolation="auto" picks the strongest real wall available; a mode name forces it.

        Without a real wall (bwrap, unshare or landlock) model code is refused with IsolationRefused, unless
        allow_weak (the "weak isolation" setting) lets the rlimits mode run it, flagged in isolation and
        warnings. A forced mode this machine cannot build is refused the same way.

        limits: output_chars, cell_timeout_s, memory_mb, cpu_s, file_mb, scratch_mb, nproc, max_cite_chars,
        max_citations, final_chars, marker_prefix (see worker.DEFAULT_LIMITS) and, host side, kill_grace_s.
        on_request(kind, payload) serves llm_query ({"prompt"}), llm_query_batched ({"prompts"}, returns a
        list) and rlm_query ({"question", "doc_ids"}). variables: the declared REPL variables (history).
        """
        if isolation != "auto" and isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be 'auto' or one of {ISOLATIONS}")
        sandbox = cls()
        sandbox._on_request = on_request
        sandbox._variables = _declared(variables)
        sandbox._allow_weak = allow_weak
        sandbox._limits.update(limits or {})
        prefix = str(sandbox._limits["marker_prefix"])
        if not re.fullmatch(r"c(\d+\.)*", prefix):
            raise ValueError(f"bad marker prefix {prefix!r}")
        sandbox._marker_re = re.compile(r"\[" + re.escape(prefix) + r"([1-9][0-9]{0,8})\]")
        if scratch_dir is None:
            scratch_dir = tempfile.mkdtemp(prefix="rlm-scratch-")
            sandbox._own_scratch = True
        sandbox._scratch_dir = os.path.realpath(scratch_dir)
        os.makedirs(sandbox._scratch_dir, exist_ok=True)
        case = os.path.realpath(case_path) if case_path is not None else None
        if case is not None and not os.path.isfile(case):
            raise SandboxError(f"case file not found: {case}")
        sandbox._args = (case, None if doc_ids is None else list(doc_ids), isolation)
        try:
            await sandbox._spawn(isolation)
        except BaseException:
            # Cancelled mid-start (the engine starts the worker while the first model call is in flight, and
            # Stop may come then): no half-started worker or scratch folder is left behind.
            sandbox.kill()
            with contextlib.suppress(BaseException):
                await asyncio.shield(sandbox.close())
            raise
        return sandbox

    async def _spawn(self, isolation: str) -> None:
        case, doc_ids, _ = self._args
        if isolation == "auto":
            candidates = [m for m in ISOLATIONS if m not in _failed_isolations or m in WEAK_MODES]
            if not self._allow_weak:
                candidates = [m for m in candidates if m not in WEAK_MODES]
        else:
            if isolation in WEAK_MODES and not self._allow_weak:
                raise IsolationRefused(
                    f"isolation {isolation!r} is weak (resource limits and an audit hook that model code can "
                    f"switch off), so model code is not run with it. {iso.WEAK_ADVICE}"
                )
            candidates = [isolation]
        self.warnings = []
        failures = []
        for mode in candidates:
            problem = iso.kernel_walls_problem() if mode == "landlock" else None
            cmd = None if problem else worker_command(mode, case, self._scratch_dir, self._scratch_mb)
            if cmd is None:
                failures.append(f"{mode}: {problem or 'not installed'}")
                continue
            started = time.perf_counter()
            try:
                ready = await self._launch(mode, cmd, case, doc_ids)
            except _IsolationUnavailable as exc:
                failures.append(f"{mode}: {exc}")
                if isolation == "auto" and mode not in WEAK_MODES:
                    _failed_isolations.add(mode)
                continue
            self.start_time_s = time.perf_counter() - started
            self._accept(mode, ready, failures)
            return
        if isolation != "auto":
            raise IsolationRefused(
                f"isolation {isolation!r} cannot be built on this machine: " + "; ".join(failures)
            )
        if not self._allow_weak:
            raise IsolationRefused(
                "model code was not run: this machine offers no real wall around the REPL ("
                + "; ".join(failures)
                + f"). {iso.WEAK_ADVICE}"
            )
        raise SandboxError("could not start the REPL worker: " + "; ".join(failures))

    def _accept(self, mode: str, ready: dict[str, Any], failures: list[str]) -> None:
        walls = ready.get("walls") or {}
        self.mode = mode
        self.walls = {
            "landlock": int(walls.get("landlock") or 0),
            "seccomp": bool(walls.get("seccomp")),
            "mount_ns": bool(walls.get("mount_ns")),
        }
        self.weak = mode in WEAK_MODES
        parts = [] if mode == "landlock" else [mode + (" (read-only root)" if self.walls["mount_ns"] else "")]
        if self.walls["landlock"]:
            parts.append(f"landlock ABI {self.walls['landlock']}")
        if self.walls["seccomp"]:
            parts.append("seccomp")
        if self._cgroup is not None:
            parts.append("pids cgroup")
        self.isolation = " + ".join(parts) + (" (WEAK: allowed by settings)" if self.weak else "")
        self.documents = int(ready.get("documents") or 0)
        if self.weak:
            self.warnings.append(WEAK_WARNING)
        self.warnings += [f"isolation {f}" for f in failures]
        self.warnings += [f"worker: {n}" for n in ready.get("notes") or []]
        self._dead = None
        self._killed = False

    @property
    def _scratch_mb(self) -> int:
        return int(self._limits["scratch_mb"])

    def _walls_wanted(self, mode: str, case: str | None) -> dict[str, Any]:
        if mode in WEAK_MODES:
            return {}
        return {
            "landlock": True,
            "seccomp": True,
            "read": landlock_read_paths(case),
            "write": [self._scratch_dir],
            "mount_ns": mode == "unshare",
            "case_files": _case_files(case),
            "nproc_rlimit": mode != "landlock",  # per user namespace only in bwrap and unshare
        }

    async def _launch(
        self, mode: str, cmd: list[str], case: str | None, doc_ids: list[int] | None
    ) -> dict[str, Any]:
        self._stderr_tail = bytearray()
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=clean_environment(self._scratch_dir),
                cwd=self._scratch_dir,
                start_new_session=True,
                close_fds=True,
            )
        )
        try:
            self._proc = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            # Cancelled while the process was being made (a Stop in a run's first milliseconds). Left to
            # itself, asyncio kills only bwrap and then waits for its pipes to close, which bwrap's half-set-up
            # child holds open while it waits forever for the bwrap that was killed: the run hung and the child
            # was orphaned. The spawn is let finish instead, and the caller kills its whole process group.
            with contextlib.suppress(Exception):
                self._proc = await spawn
            raise
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._proc))
        limits = {k: v for k, v in self._limits.items() if k in DEFAULT_LIMITS}
        init = protocol.init_message(
            case,
            doc_ids,
            self._scratch_dir,
            limits,
            self._walls_wanted(mode, case),
            self._next_marker,
            self._variables,
        )
        try:
            await self._send(init)
            frame = await asyncio.wait_for(self._read(), START_TIMEOUT_S)
        except (EOFError, ConnectionError, protocol.ProtocolError, TimeoutError) as exc:
            await self._stop_worker()
            raise _IsolationUnavailable(
                f"{type(exc).__name__}: {self.stderr_tail()[-600:]}".strip()
            ) from None
        if frame.get("type") == protocol.FATAL:
            await self._stop_worker()
            if frame.get("unavailable"):
                raise _IsolationUnavailable(str(frame.get("error"))[-600:])
            raise SandboxError(f"the REPL worker failed to start:\n{str(frame.get('error'))[-4000:]}")
        if frame.get("type") != protocol.READY:
            await self._stop_worker()
            raise SandboxError(f"the REPL worker sent {str(frame.get('type'))[:40]!r} instead of ready")
        walls = frame.get("walls") or {}
        kernel_walls = bool(walls.get("landlock") and walls.get("seccomp"))
        if (mode == "landlock" and not kernel_walls) or (
            mode == "unshare" and not (walls.get("mount_ns") or kernel_walls)
        ):
            # Without its walls this mode is no better than rlimits: never run model code in it.
            await self._stop_worker()
            raise _IsolationUnavailable(
                "its walls could not be built: " + "; ".join(str(n) for n in frame.get("notes") or [])
            )
        # Nothing inside has run model code yet, so nothing can fork while the tree moves into the cgroup.
        self._cgroup = iso.PidsCgroup.create(int(self._limits["nproc"]))
        if self._cgroup is not None:
            self._cgroup.adopt_tree(self._proc.pid)
        return frame

    def rebind(self, on_request: RequestHandler | None) -> None:
        """Serve the worker's sub-call requests with another handler: a kept REPL's next question."""
        self._on_request = on_request

    async def set_variables(self, variables: dict[str, Any]) -> None:
        """Set the declared REPL variables (history) in the live worker between cells; a restart keeps them."""
        self._variables = {**self._variables, **_declared(variables)}
        async with self._lock:
            if not self.alive:
                return  # a respawn sends them with its init
            try:
                await self._send(protocol.set_message(self._variables))
                frame = await asyncio.wait_for(self._read(), START_TIMEOUT_S)
                if frame.get("type") != protocol.SET_OK:
                    raise protocol.ProtocolError(f"unexpected frame {str(frame.get('type'))[:40]!r} after set")
            except (EOFError, ConnectionError, protocol.ProtocolError, TimeoutError) as exc:
                self._kill_process()  # out of step: the next cell gets a fresh worker, which gets the variables
                self._dead = f"the REPL worker died ({self._death_cause(exc)}); its state was lost"

    async def restart(self) -> None:
        """Replace a dead or killed worker by a fresh one (empty namespace, same case, limits and walls)."""
        self._terminal = False
        await self._respawn()

    async def _respawn(self) -> None:
        await self._stop_worker()  # whatever is left of the old worker, and its cgroup
        if not self._scratch_on_tmpfs:
            _empty_dir(self._scratch_dir)
        await self._spawn(self.mode if self.mode in ISOLATIONS else self._args[2])

    @property
    def _scratch_on_tmpfs(self) -> bool:
        return self.mode == "bwrap" or bool(self.walls.get("mount_ns"))

    async def close(self) -> None:
        """Ask the worker to exit, kill everything it started, and remove a scratch dir we created."""
        proc = self._proc
        if proc is not None and proc.returncode is None and self._dead is None:
            with contextlib.suppress(Exception):
                await self._send({"type": protocol.SHUTDOWN})
                await asyncio.wait_for(proc.wait(), 1.0)
        self._dead = self._dead or "the REPL was closed"
        self._terminal = True
        await self._stop_worker()
        if self._case_conn is not None:
            self._case_conn.close()
            self._case_conn = None
        if self._own_scratch:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kill the worker at once (the kill switch); safe to call from synchronous code, any number of times."""
        self._killed = True
        self._terminal = True
        self._dead = "the REPL was stopped by the kill switch; its state was lost"
        self._kill_process()

    def _kill_process(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            # start_new_session made the worker (or bwrap/unshare) a group leader: one signal reaches the
            # group. The namespace launchers take everything inside their pid namespace down with them.
            for send in (
                lambda: os.killpg(proc.pid, signal.SIGKILL),
                lambda: os.kill(proc.pid, signal.SIGKILL),
            ):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    send()
        if self._cgroup is not None:  # and whatever left the group (setsid) is still in the cgroup
            for pid in self._cgroup.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    async def _stop_worker(self) -> None:
        self._kill_process()
        await self._reap()
        if self._cgroup is not None:
            cgroup, self._cgroup = self._cgroup, None
            await asyncio.to_thread(cgroup.kill_all)

    async def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5.0)
            # Close the pipes now, on this loop: a transport left to the garbage collector after its loop
            # closed (a restarted worker's, in a long-lived event loop) complains from __del__.
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
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
        """Run one code cell in the persistent namespace; serves the worker's sub-call requests meanwhile.

        A worker that died, timed out or broke the protocol in an earlier cell is replaced first (its
        variables are gone, and the output says so); one stopped by kill(), a cancel or close() is not.
        """
        async with self._lock:
            note = ""
            await asyncio.sleep(0)  # let an exit of the worker since the last cell be noticed
            proc = self._proc
            if self._dead is None and proc is not None and proc.stdout is not None and proc.stdout.at_eof():
                self._dead = "the REPL worker exited between cells"
            if not self.alive:
                if self._terminal or self._proc is None:
                    return self._lost(self._dead or "the REPL worker is not running")
                reason = self._dead or "the REPL worker died"
                try:
                    await self._respawn()
                except SandboxError as exc:
                    self._terminal = True
                    return self._lost(f"{reason}; it could not be restarted: {exc}")
                note = f"[the REPL was restarted ({reason}); variables from earlier cells are gone]\n"
            result = await self._execute(code)
            if note:
                result.output = note + result.output
                result.state_lost = True
            return result

    async def _execute(self, code: str) -> CellResult:
        self._cell_id += 1
        cell_id = self._cell_id
        grace = float(self._limits.get("kill_grace_s", KILL_GRACE_S))
        deadline = float(self._limits["cell_timeout_s"]) + grace
        overflow: list[str] = []
        watcher = None if self._scratch_on_tmpfs else asyncio.create_task(self._watch_scratch(overflow))
        try:
            await self._send(protocol.exec_message(cell_id, code))
            while True:
                frame = await asyncio.wait_for(self._read(), deadline)
                kind = frame.get("type")
                if kind == protocol.RESULT and frame.get("id") == cell_id:
                    result = self._checked(CellResult.from_frame(frame))
                    if not overflow and not self._scratch_on_tmpfs:
                        await self._check_scratch(overflow)
                    if overflow:
                        raise _ScratchOverflow(overflow[0])
                    return result
                if kind != protocol.REQUEST:
                    raise protocol.ProtocolError(f"unexpected frame {str(kind)[:40]!r} during a cell")
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
            self._terminal = True
            self._dead = self._dead or "the cell was cancelled; the REPL was stopped and its state was lost"
            raise
        except _ScratchOverflow as exc:
            self._kill_process()
            self._dead = str(exc)
        except (EOFError, ConnectionError, protocol.ProtocolError) as exc:
            self._kill_process()
            if overflow:
                self._dead = overflow[0]
            elif not self._killed:
                self._dead = f"the REPL worker died ({self._death_cause(exc)}); its state was lost"
        finally:
            if watcher is not None:
                watcher.cancel()
        await self._stop_worker()
        return self._lost(self._dead or "the REPL worker died")

    async def _check_scratch(self, overflow: list[str]) -> bool:
        size, entries = await asyncio.to_thread(scratch_usage, self._scratch_dir)
        if size > self._scratch_mb << 20 or entries > SCRATCH_MAX_ENTRIES:
            overflow.append(
                f"the cell filled the scratch folder past its {self._scratch_mb} MB limit ({size >> 20} MB, "
                f"{entries} entries): the REPL was stopped, its variables and scratch files are gone"
            )
            return True
        return False

    async def _watch_scratch(self, overflow: list[str]) -> None:
        """Without a size-limited tmpfs, poll the scratch folder and stop the worker the moment it overflows."""
        while True:
            started = time.perf_counter()
            if await self._check_scratch(overflow):
                break
            # a folder of many small files takes longer to measure: never spend more than a third of the time
            await asyncio.sleep(max(SCRATCH_POLL_S, 2 * (time.perf_counter() - started)))
        self._kill_process()

    def _checked(self, result: CellResult) -> CellResult:
        """Apply the host's own limits to what the worker claims: output cut, final length, citations."""
        # The worker's own cut adds a one-line marker; anything longer than that was not cut by it.
        limit = int(self._limits["output_chars"])
        if len(result.output) > limit + CUT_MARKER_SLACK:
            result.output = cut_middle(result.output, limit)
        problems = []
        if result.error is not None and len(result.error) > limit + CUT_MARKER_SLACK:
            result.error = cut_middle(result.error, limit)
        if result.final is not None and len(result.final) > int(self._limits["final_chars"]):
            problems.append(
                f"FINAL refused: the answer is longer than {int(self._limits['final_chars']):,} characters"
            )
            result.final = None
        result.citations = self._checked_citations(result.citations, problems)
        if problems:
            result.error = "\n".join(filter(None, [result.error, *problems]))
        return result

    def _checked_citations(self, raw: list[Any], problems: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        most = int(self._limits["max_citations"])
        if len(raw) > most:
            problems.append(f"only the first {most} citations of this cell were kept")
        _, doc_ids, _ = self._args
        allowed = None if doc_ids is None else set(doc_ids)
        for entry in raw[:most]:
            if not isinstance(entry, dict):
                problems.append("a citation that is not an object was dropped")
                continue
            marker, doc_id, start, end = (entry.get(k) for k in ("marker", "doc_id", "start", "end"))
            shown = str(marker)[:40]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (doc_id, start, end)):
                problems.append(f"citation {shown!r} dropped: document id and offsets must be integers")
                continue
            match = self._marker_re.fullmatch(marker) if isinstance(marker, str) else None
            if match is None:
                problems.append(
                    f"citation {shown!r} dropped: this REPL's markers look like {self._marker_re.pattern}"
                )
                continue
            if allowed is not None and doc_id not in allowed:
                problems.append(f"citation {marker} dropped: document {doc_id} is not in this REPL's context")
                continue
            if not 0 <= start < end or end - start > int(self._limits["max_cite_chars"]):
                problems.append(f"citation {marker} dropped: bad span {start}..{end}")
                continue
            span = (doc_id, start, end)
            if self._registry.get(marker, span) != span:
                problems.append(f"citation {marker} dropped: that marker already stands for another passage")
                continue
            quote = self._stored_quote(doc_id, start, end)
            if quote is None:
                problems.append(
                    f"citation {marker} dropped: document {doc_id} has no characters {start}..{end}"
                )
                continue
            self._registry[marker] = span
            self._next_marker = max(self._next_marker, int(match.group(1)) + 1)
            out.append({"marker": marker, "doc_id": doc_id, "start": start, "end": end, "quote": quote})
        return out

    def registered(self) -> list[dict[str, Any]]:
        """Every marker this REPL's cells registered so far, with its span and the case's quote of it."""
        out = []
        for marker, (doc_id, start, end) in self._registry.items():
            quote = self._stored_quote(doc_id, start, end)
            if quote is not None:
                out.append({"marker": marker, "doc_id": doc_id, "start": start, "end": end, "quote": quote})
        return out

    def _stored_quote(self, doc_id: int, start: int, end: int) -> str | None:
        """The span as the case stores it, read by the host (never the worker's word for it)."""
        case = self._args[0]
        if case is None:
            return None
        if self._case_conn is None:
            uri = f"file:{urllib.parse.quote(case)}?mode=ro"
            self._case_conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return queries.text_slice(self._case_conn, doc_id, start, end)

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
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            raise protocol.ProtocolError("a request without an integer id")
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

    @property
    def frame_limit(self) -> int:
        """The most bytes the host reads for one result frame: twice the output cut, the answer, citations."""
        lim = self._limits
        chars = 2 * int(lim["output_chars"]) + int(lim["final_chars"])
        return (256 << 10) + 6 * chars + 160 * int(lim["max_citations"])

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(protocol.encode_frame(message))
        await self._proc.stdin.drain()

    async def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        return await protocol.read_frame_async(self._proc.stdout, self.frame_limit, REQUEST_FRAME_BYTES)

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            self._stderr_tail += chunk
            del self._stderr_tail[:-STDERR_KEEP_BYTES]


class _ScratchOverflow(Exception):
    """The cell wrote more into scratch than its limit."""


class _IsolationUnavailable(Exception):
    """The launcher failed before the worker answered: try a weaker isolation."""


def _declared(variables: dict[str, Any] | None) -> dict[str, Any]:
    unknown = set(variables or {}) - functions.VARIABLE_NAMES
    if unknown:
        raise ValueError(f"not a declared REPL variable: {sorted(unknown)}")
    return dict(variables or {})


def _validate_request(kind: Any, payload: Any) -> str | None:
    return functions.check_request(kind, payload)
