"""Which walls this machine can build around the REPL, the run's memory budget, and per-worker pids cgroups."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from rlm_desktop.sandbox import confine

# Strongest first. "rlimits" is weak: resource limits and an audit hook that model code can switch off.
ISOLATIONS = ("bwrap", "unshare", "landlock", "rlimits")
WEAK_MODES = frozenset({"rlimits"})
MIN_REPL_MB = 256  # below this a Python REPL over a case is not worth starting
SANDBOX_UID = 65534  # "nobody" inside a user namespace

WEAK_ADVICE = (
    "Install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces, or use a Linux "
    'kernel with Landlock (5.13+) and libseccomp; or, accepting the risk, turn on "Run model code with weak '
    'isolation on this machine" in Settings (allow_weak_isolation in settings.json).'
)


class SandboxError(Exception):
    """The REPL worker could not be started or broke the protocol."""


class IsolationRefused(SandboxError):
    """No acceptable wall can be built for model code here (or the forced mode cannot be built)."""


# --- probes ---------------------------------------------------------------------------------------------


@functools.cache
def _probe(argv: tuple[str, ...]) -> str | None:
    """None when the command runs and exits 0 within 10 s, else why not."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}")[-300:]
    return None


def bwrap_problem() -> str | None:
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bubblewrap is not installed"
    true = shutil.which("true") or "/bin/true"
    argv = (
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        true,
    )
    return _probe(argv)


def unshare_problem() -> str | None:
    unshare = shutil.which("unshare")
    if not unshare:
        return "util-linux unshare is not installed"
    true = shutil.which("true") or "/bin/true"
    return _probe((unshare, *unshare_flags(), "--mount-proc", "--", true))


def unshare_flags() -> list[str]:
    """New user (root inside, to build the mount namespace; the worker then drops every capability), mount,
    pid, network, ipc and uts namespaces."""
    return [
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--net",
        "--pid",
        "--fork",
    ] + [
        "--kill-child",
        "--ipc",
        "--uts",
    ]


def kernel_walls_problem() -> str | None:
    """Why Landlock plus seccomp cannot both be applied here, or None."""
    if not sys.platform.startswith("linux"):
        return f"Landlock and seccomp exist only on Linux (this is {sys.platform})"
    if confine.landlock_abi() < 1:
        return "the kernel has no Landlock (Linux 5.13+ with landlock in the lsm= list)"
    return confine.seccomp_problem()


def mode_problem(mode: str) -> str | None:
    """Why this isolation mode cannot be built here as a real wall, or None."""
    if mode == "bwrap":
        return bwrap_problem()
    if mode == "unshare":
        return unshare_problem()
    if mode == "landlock":
        return kernel_walls_problem()
    if mode == "rlimits":
        return None if os.name == "posix" else "resource limits need a POSIX system"
    return f"unknown isolation {mode!r}"


def walls() -> dict[str, Any]:
    """What this machine can wall the REPL with (for `rlm-desktop doctor` and the settings dialog).

    {"platform", "bwrap": {"usable", "detail"}, "unshare": {...}, "landlock": {"abi", "tcp", "scopes"},
     "seccomp": {"usable", "detail"}, "pids_cgroup": {"usable", "detail"},
     "modes": {mode: {"usable", "weak", "detail"}}, "auto": strongest usable real wall or None,
     "refused": True when model code is refused unless weak isolation is allowed, "advice": str}
    """
    abi = confine.landlock_abi()
    seccomp = confine.seccomp_problem()
    cgroup_base, cgroup_problem = pids_cgroup_base()
    modes = {}
    for mode in ISOLATIONS:
        problem = mode_problem(mode)
        modes[mode] = {"usable": problem is None, "weak": mode in WEAK_MODES, "detail": problem or "ok"}
    strong = [m for m in ISOLATIONS if modes[m]["usable"] and not modes[m]["weak"]]
    bw, un = bwrap_problem(), unshare_problem()
    return {
        "platform": sys.platform,
        "bwrap": {"usable": bw is None, "detail": bw or "ok"},
        "unshare": {"usable": un is None, "detail": un or "ok"},
        "landlock": {"abi": abi, "tcp": abi >= 4, "scopes": abi >= 6},
        "seccomp": {"usable": seccomp is None, "detail": seccomp or "ok"},
        "pids_cgroup": {"usable": cgroup_base is not None, "detail": cgroup_base or cgroup_problem},
        "modes": modes,
        "auto": strong[0] if strong else None,
        "refused": not strong,
        "advice": "" if strong else WEAK_ADVICE,
    }


# --- memory ---------------------------------------------------------------------------------------------


def total_ram_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return 8192


class MemoryBudget:
    """One memory budget for all REPLs of a run: a quarter of RAM, handed out as levels start."""

    def __init__(self, total_mb: int | None = None):
        self.total_mb = total_ram_mb() // 4 if total_mb is None else total_mb
        self.left_mb = self.total_mb

    def take(self, want_mb: int) -> int:
        """Reserve up to want_mb for a new REPL; raises SandboxError when too little is left."""
        got = min(int(want_mb), self.left_mb)
        if got < MIN_REPL_MB:
            raise SandboxError(
                f"the run's REPLs already hold {self.total_mb - self.left_mb} MB of its {self.total_mb} MB memory "
                f"budget (a quarter of this machine's RAM): no room for another REPL; work in the current one"
            )
        self.left_mb -= got
        return got

    def give_back(self, mb: int) -> None:
        self.left_mb = min(self.total_mb, self.left_mb + mb)


# --- pids cgroups: a process count that holds even for root, and a kill that reaches every descendant ----

_counter = itertools.count(1)


def pids_cgroup_base() -> tuple[str | None, str]:
    """(a writable cgroup directory with the pids controller, "") or (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, "cgroups exist only on Linux"
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError as exc:
        return None, f"cannot read /proc/self/cgroup: {exc}"
    candidates = []
    for _hier, controllers, path in lines:
        if "pids" in controllers.split(","):
            candidates.append(os.path.normpath(os.path.join("/sys/fs/cgroup/pids", path.lstrip("/"))))
            candidates.append("/sys/fs/cgroup/pids")
        elif controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            candidates.append(os.path.normpath(os.path.join("/sys/fs/cgroup", path.lstrip("/"))))
            candidates.append("/sys/fs/cgroup")
    for base in candidates:
        if os.path.isdir(base) and os.access(base, os.W_OK):
            controllers_file = os.path.join(base, "cgroup.subtree_control")
            if os.path.exists(controllers_file):  # v2: the child gets pids only if the parent hands it down
                try:
                    with open(controllers_file, encoding="ascii") as f:
                        if "pids" not in f.read().split():
                            continue
                except OSError:
                    continue
            return base, ""
    return None, "no writable pids cgroup (needs root or a delegated cgroup)"


class PidsCgroup:
    """A cgroup holding one worker and everything it starts: at most `limit` tasks, all killed on close."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def create(cls, limit: int) -> PidsCgroup | None:
        base, _ = pids_cgroup_base()
        if base is None:
            return None
        _sweep_stale(base)
        path = os.path.join(base, f"rlm-desktop-{os.getpid()}-{next(_counter)}")
        try:
            os.mkdir(path)
            with open(os.path.join(path, "pids.max"), "w", encoding="ascii") as f:
                f.write(str(int(limit)))
        except OSError:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return None
        return cls(path)

    def adopt_tree(self, root_pid: int) -> int:
        """Move root_pid and all its descendants in; returns how many moved. Call while none of them forks."""
        moved = 0
        for pid in [root_pid, *descendants(root_pid)]:
            try:
                with open(os.path.join(self.path, "cgroup.procs"), "w", encoding="ascii") as f:
                    f.write(str(pid))
                moved += 1
            except OSError:
                pass  # exited meanwhile, or a thread id
        return moved

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs"), encoding="ascii") as f:
                return [int(line) for line in f if line.strip()]
        except OSError:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process inside (including ones that left the session with setsid), then remove it."""
        kill_file = os.path.join(self.path, "cgroup.kill")
        for _ in range(100):
            pids = self.pids()
            if not pids:
                break
            if os.path.exists(kill_file):
                with contextlib.suppress(OSError), open(kill_file, "w", encoding="ascii") as f:
                    f.write("1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # the last zombies are still being reaped


def _sweep_stale(base: str) -> None:
    """Remove cgroups left by app processes that died before closing their sandboxes, killing what is still
    inside: a worker, or a bubblewrap caught mid-setup, whose host is gone has nobody to serve and would
    otherwise sleep forever (one such orphan was seen after a killed `ask`)."""
    try:
        names = [n for n in os.listdir(base) if n.startswith("rlm-desktop-")]
    except OSError:
        return
    for name in names:
        try:
            owner = int(name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if owner != os.getpid() and name not in _swept and not os.path.exists(f"/proc/{owner}"):
            _swept.add(name)  # tried once per process: one that cannot be emptied must not slow every start
            PidsCgroup(os.path.join(base, name)).kill_all()


_swept: set[str] = set()


def descendants(root_pid: int) -> list[int]:
    """Every live process below root_pid (a /proc scan)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [root_pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def check_isolation(isolation: str, allow_weak: bool) -> None:
    """Raise IsolationRefused, before a run starts, when its model code could not run with this setting here."""
    if isolation == "auto":
        if allow_weak or any(mode_problem(m) is None for m in ISOLATIONS if m not in WEAK_MODES):
            return
        reasons = "; ".join(f"{m}: {mode_problem(m)}" for m in ISOLATIONS if m not in WEAK_MODES)
        raise IsolationRefused(
            f"model code is not run: this machine offers no real wall ({reasons}). {WEAK_ADVICE}"
        )
    if isolation not in ISOLATIONS:
        raise IsolationRefused(f"unknown isolation {isolation!r}: use auto or one of {', '.join(ISOLATIONS)}")
    if isolation in WEAK_MODES and not allow_weak:
        raise IsolationRefused(
            f"isolation {isolation!r} is weak (resource limits and an audit hook that model code can switch off), "
            f"so model code is not run with it. {WEAK_ADVICE}"
        )
    problem = mode_problem(isolation)
    if problem:
        raise IsolationRefused(f"isolation {isolation!r} cannot be built on this machine: {problem}")
