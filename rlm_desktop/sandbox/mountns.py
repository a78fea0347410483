"""The unshare mode's file system: a new root of read-only binds, a size-limited scratch tmpfs and its own /proc.

The worker runs this on itself as root of a fresh user+mount+pid namespace (`unshare --map-root-user`), before
it opens the case or runs any cell; confine() then drops the capabilities that made it possible.
"""

from __future__ import annotations

import errno
import os

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
# statvfs flag -> mount flag: a remount inside a user namespace must keep the flags the host's mount has.
_KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


class _Mounter:
    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.libc = libc
        libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
        enc = [None if v is None else os.fsencode(v) for v in (source, target, fstype, data)]
        if self.libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
            code = self.ctypes.get_errno()
            raise OSError(code, f"mount {source} on {target}: {os.strerror(code)}")

    def bind_readonly(self, source: str, target: str) -> None:
        self.mount(source, target, None, MS_BIND | MS_REC)
        kept = 0
        try:
            host_flags = os.statvfs(source).f_flag
            kept = sum(flag for st, flag in _KEPT_FLAGS.items() if host_flags & st)
        except OSError:
            pass
        self.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)

    def pivot_root(self, new_root: str) -> None:
        # pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the new root.
        os.chdir(new_root)
        if self.libc.syscall(155 if os.uname().machine == "x86_64" else 41, b".", b".") != 0:
            code = self.ctypes.get_errno()
            raise OSError(code, f"pivot_root: {os.strerror(code)}")
        if self.libc.umount2(b".", MNT_DETACH) != 0:
            code = self.ctypes.get_errno()
            raise OSError(code, f"umount old root: {os.strerror(code)}")
        os.chdir("/")


def _make_target(root: str, path: str, is_dir: bool) -> str:
    target = root + path
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
    return target


def _symlink_chain(root: str, path: str, binds: list[str]) -> None:
    """Recreate a symlinked path (e.g. /lib -> usr/lib) in the new root and bind what it points to."""
    if os.path.islink(path):
        target = root + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
        real = os.path.realpath(path)
        if real not in binds:
            binds.append(real)
    elif path not in binds:
        binds.append(path)


def build_root(read_paths: list[str], case_files: list[str], scratch_dir: str, scratch_mb: int) -> None:
    """Replace this process's view of the file system; raises OSError when the namespace does not allow it."""
    m = _Mounter()
    m.mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The new root is a small tmpfs over the (unused) host scratch folder: from here the host's folders are
    # still reachable as bind sources, afterwards only what was bound.
    root = scratch_dir
    m.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    # /tmp first: anything bound below it (a case, a checkout) must land on top of it, not under it.
    m.mount("tmpfs", _make_target(root, "/tmp", True), "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    binds: list[str] = []
    for path in read_paths:
        if os.path.lexists(path) and path not in DEVICES:
            _symlink_chain(root, path, binds)
    done: list[str] = []
    for path in sorted(binds, key=len):
        if any(path == d or path.startswith(d.rstrip("/") + "/") for d in done) or not os.path.exists(path):
            continue  # already inside a bound folder
        m.bind_readonly(path, _make_target(root, path, os.path.isdir(path)))
        done.append(path)
    for device in DEVICES:
        if os.path.exists(device):
            target = _make_target(root, device, False)
            m.mount(device, target, None, MS_BIND)
    for case_dir in sorted({os.path.dirname(f) for f in case_files}):
        # Writable (in memory) around the read-only case so SQLite can make a -shm file for a WAL database.
        m.mount(
            "tmpfs", _make_target(root, case_dir, True), "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0777"
        )
    for path in case_files:
        m.bind_readonly(path, _make_target(root, path, False))
    scratch = _make_target(root, scratch_dir, True)
    m.mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(scratch_mb)}m,mode=0700")
    proc = _make_target(root, "/proc", True)
    m.mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    m.mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    m.pivot_root(root)
    os.chdir(scratch_dir)


def problem() -> str | None:
    """Why build_root cannot work in this process (no mount namespace privileges), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:") and not int(line.split()[1], 16) & (1 << 21):  # CAP_SYS_ADMIN
                    return "no CAP_SYS_ADMIN in this namespace"
    except OSError as exc:
        return os.strerror(exc.errno or errno.EIO)
    return None
