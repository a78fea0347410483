"""Kernel walls the REPL worker raises around itself before any cell runs: Landlock and seccomp (Linux)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any

# Landlock: a hand-written ctypes layer over the three syscalls (same numbers on x86_64 and aarch64). The
# `landlock` package on PyPI covers file system rules only; we also need TCP rules (ABI 4) and the signal
# and abstract-socket scopes (ABI 6).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

FILE_ONLY_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ_RIGHTS = FS_READ_FILE | FS_READ_DIR
# Scratch: everything but running programs and making device nodes or sockets.
SCRATCH_RIGHTS = (
    FS_WRITE_FILE
    | FS_READ_FILE
    | FS_READ_DIR
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_FIFO
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
)

# seccomp: refused outright (EPERM). Sockets: the protocol runs over inherited pipes, so nothing in the REPL
# needs a new socket of any family. Programs, tracing, other processes' memory, new namespaces and mounts,
# io_uring (its opcodes bypass the socket filter) and kernel keyrings are never needed by model code.
DENIED_SYSCALLS = (
    "socket",
    "socketpair",
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "tkill",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "kcmp",
    "quotactl",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "iopl",
    "ioperm",
    "uselib",
    # Landlock does not cover a file's metadata: owner, mode, times and extended attributes stay refused here
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    # and what root's capabilities would allow if dropping them ever failed
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "setrlimit",
)
CLONE_THREAD = 0x00010000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
FS_IOC_SETFLAGS = 0x40086602  # chattr +i on a file it can read would lock the app out of its case
FS_IOC_FSSETXATTR = 0x401C5820
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or disabled (or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes

        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        version = libc.syscall(
            ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
        )
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def seccomp_problem() -> str | None:
    """Why seccomp filters cannot be installed here, or None when they can (kernel and libseccomp)."""
    if not sys.platform.startswith("linux"):
        return "seccomp exists only on Linux"
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            if not any(line.startswith("Seccomp:") for line in status):
                return "the kernel has no seccomp support"
    except OSError as exc:
        return f"cannot read /proc/self/status: {exc}"
    try:
        _seccomp_module()
    except (ImportError, OSError, RuntimeError) as exc:
        return f"libseccomp is not usable ({exc}); install libseccomp2 and the pyseccomp package"
    return None


def preload() -> None:
    """Load libseccomp now, while the file system still has everything needed to find it."""
    with contextlib.suppress(ImportError, OSError, RuntimeError):
        _seccomp_module()


def _seccomp_module():
    # The maintained C library through its Python API: Debian's python3-seccomp when Python can see it,
    # else pyseccomp (the same API over libseccomp.so.2 via ctypes, installable into a venv).
    try:
        import seccomp  # type: ignore[import-not-found]
    except ImportError:
        import pyseccomp as seccomp  # type: ignore[import-untyped]
    return seccomp


def _rights_for_abi(abi: int) -> int:
    handled = (1 << 13) - 1
    if abi >= 2:
        handled |= FS_REFER
    if abi >= 3:
        handled |= FS_TRUNCATE
    if abi >= 5:
        handled |= FS_IOCTL_DEV
    return handled


def apply_landlock(read_paths: list[str], write_paths: list[str], abi: int | None = None) -> int:
    """Restrict this process (and all it starts) to reading read_paths and writing write_paths.

    Also denies every TCP bind/connect (ABI 4+), signals and abstract unix sockets reaching outside
    (ABI 6+). Paths that do not exist are skipped. Returns the ABI used; raises OSError on failure.
    """
    import ctypes

    abi = landlock_abi() if abi is None else abi
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available in this kernel")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    handled = _rights_for_abi(abi)
    attr = RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        attr.net = NET_BIND_TCP | NET_CONNECT_TCP  # handled with no rule: no TCP at all
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24

    def check(result: int, what: str) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{what}: {os.strerror(code)}")
        return result

    ruleset = check(
        libc.syscall(
            ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        ),
        "landlock_create_ruleset",
    )
    try:
        for paths, rights in ((read_paths, READ_RIGHTS), (write_paths, SCRATCH_RIGHTS)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = rights & handled
                    if not os.path.isdir(path):
                        allowed &= FILE_ONLY_RIGHTS
                    rule = PathBeneath(allowed, fd)
                    check(
                        libc.syscall(
                            ctypes.c_long(SYS_LANDLOCK_ADD_RULE),
                            ctypes.c_int(ruleset),
                            ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                            ctypes.byref(rule),
                            ctypes.c_uint32(0),
                        ),
                        f"landlock_add_rule {path}",
                    )
                finally:
                    os.close(fd)
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        check(
            libc.syscall(
                ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)
            ),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)
    return abi


def apply_seccomp() -> None:
    """Install the worker's seccomp filter (no new privileges is set with it). Raises on failure."""
    seccomp = _seccomp_module()
    pid = os.getpid()
    deny = seccomp.ERRNO(errno.EPERM)
    filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            filt.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):
            pass  # a syscall this architecture does not have (fork and vfork on aarch64, iopl, ...)
    # New threads yes (clone with CLONE_THREAD), new processes no. clone3 passes its flags in memory a
    # filter cannot read: ENOSYS makes glibc fall back to clone, which is checked.
    filt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    filt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # Signals only to itself (the timer, raise()); never to the app or any other process.
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        filt.add_rule(deny, name, seccomp.Arg(0, seccomp.NE, pid))
    for request in (TIOCSTI, TIOCLINUX, FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR):  # terminal typing, chattr
        filt.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.EQ, request))
    # Limits can be read (prlimit64 with no new value) but never changed.
    filt.add_rule(deny, "prlimit64", seccomp.Arg(2, seccomp.NE, 0))
    filt.load()


def drop_capabilities() -> None:
    """Give up every capability (what running as root grants), for good: bounding, ambient, effective set."""
    import ctypes

    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    data = (Data * 2)()
    if libc.capset(ctypes.byref(Header(LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"capset: {os.strerror(code)}")


def capabilities_left() -> int:
    """The effective capability mask of this process (0 when it holds none)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def confine(read_paths: list[str], write_paths: list[str], want: dict[str, Any]) -> dict[str, Any]:
    """Apply the walls asked for (want: {"landlock": bool, "seccomp": bool}); report what holds.

    Returns {"landlock": abi or 0, "seccomp": bool, "notes": [why a wall is missing]}. Drops the modules it
    loaded from sys.modules so cell code finds no ctypes or subprocess preloaded (the audit hook's tripwire
    stays sharp).
    """
    report: dict[str, Any] = {"landlock": 0, "seccomp": False, "notes": []}
    before = set(sys.modules)
    # Checked first: Landlock would then hide /proc from the check itself.
    problem = seccomp_problem() if want.get("seccomp") else None
    if want.get("landlock") or want.get("seccomp"):
        try:
            if capabilities_left():
                drop_capabilities()
            report["capabilities"] = capabilities_left()
        except OSError as exc:
            report["notes"].append(f"capabilities not dropped: {exc}")
    if want.get("landlock"):
        try:
            report["landlock"] = apply_landlock(read_paths, write_paths)
        except OSError as exc:
            report["notes"].append(f"Landlock not applied: {exc}")
    if want.get("seccomp"):
        if problem:
            report["notes"].append(f"seccomp not applied: {problem}")
        else:
            try:
                apply_seccomp()
                report["seccomp"] = True
            except (OSError, RuntimeError, ValueError) as exc:
                report["notes"].append(f"seccomp not applied: {exc}")
    for name in set(sys.modules) - before:  # ctypes, ctypes.util's subprocess, pyseccomp
        del sys.modules[name]
    return report
