"""Escape attempts from model code, in each real isolation mode this machine can build, judged by effect.

Every attack first switches off the worker's audit hook (it is a tripwire, never a wall), so what is tested
is the wall itself: namespaces, Landlock, seccomp, the pids cgroup and the host's own checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import secrets
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_desktop.sandbox import isolation as iso
from rlm_desktop.sandbox.host import PACKAGE_DIR, CellResult, Sandbox, scratch_usage
from rlm_desktop.store.case import Case

STRONG_MODES = [m for m in iso.ISOLATIONS if m not in iso.WEAK_MODES]
LIMITS = {"output_chars": 4000, "cell_timeout_s": 20, "kill_grace_s": 3, "nproc": 32}
DOC = "The transfer of $2.4M to Zurich was approved by Alice on 2021-03-04."

# The one-line bypass, completed: every check of the hook now passes.
BYPASS = """
g = cite.__func__.__globals__
g['DENIED_EVENTS'] = frozenset(); g['DENIED_IMPORTS'] = frozenset(); g['PATH_MUTATING_EVENTS'] = frozenset()
g['_is_under'] = lambda p, r: True
g['_check_sqlite_target'] = lambda *a: None
import os, sys, time, signal, socket, sqlite3, struct, json
"""


class Env:
    """One sandbox per mode, its own event loop, and the canaries an attacker goes after."""

    def __init__(self, mode: str, root: Path):
        self.mode = mode
        self.root = root
        self.secret = "sk-canary-" + secrets.token_hex(12)
        self.home = root / "home"
        (self.home / "cases").mkdir(parents=True)
        (self.home / "credentials.json").write_text(f'{{"api_key": "{self.secret}"}}')
        self.case_path = self.home / "cases" / "leak.sqlite"
        case = Case.open(self.case_path)
        self.doc = case.add_text_document("memo", DOC)
        self.other = case.add_text_document("other", "Nothing to see here at all.")
        case.close()
        self.outside = root / "outside"
        self.outside.mkdir()
        self.canary = self.outside / "canary.txt"
        self.canary.write_text(f"outside secret {self.secret}")
        self.pkg_canary = PACKAGE_DIR / f"_escape_canary_{os.getpid()}_{mode}.txt"
        self.pkg_canary.write_text("untouched")
        self.sentinel = subprocess.Popen(
            ["sleep", "600"], env={"RLM_CANARY_ENV": self.secret}, start_new_session=True
        )
        self.loop = asyncio.new_event_loop()
        self.sandbox: Sandbox | None = None

    def start(self, **limits: Any) -> Sandbox:
        return self.loop.run_until_complete(
            Sandbox.start(
                self.case_path,
                None,
                {**LIMITS, **limits},
                None,
                scratch_dir=self.root / "scratch",
                isolation=self.mode,
            )
        )

    def run(self, code: str, sandbox: Sandbox | None = None) -> CellResult:
        return self.loop.run_until_complete((sandbox or self.sandbox).execute(code))

    def close(self) -> None:
        if self.sandbox is not None:
            self.loop.run_until_complete(self.sandbox.close())
        self.loop.close()
        self.sentinel.kill()
        self.sentinel.wait()
        self.pkg_canary.unlink(missing_ok=True)

    def case_digest(self) -> str:
        digest = hashlib.sha256()
        for suffix in ("", "-wal", "-journal"):
            path = Path(str(self.case_path) + suffix)
            digest.update(path.read_bytes() if path.exists() else b"-")
        return digest.hexdigest()


@pytest.fixture(scope="module", params=STRONG_MODES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    mode = request.param
    problem = iso.mode_problem(mode)
    if problem:
        pytest.skip(f"isolation {mode} cannot be built here: {problem}")
    environment = Env(mode, tmp_path_factory.mktemp(f"escape-{mode}"))
    try:
        environment.sandbox = environment.start()
        yield environment
    finally:
        environment.close()


def received(result: CellResult) -> str:
    """Everything the host got back from a cell."""
    return f"{result.output}\n{result.error}\n{result.final}\n{result.citations}"


def fresh_cell(env: Env, sandbox: Sandbox | None = None) -> CellResult:
    """After a worker broke the protocol and exited: the next cell runs in a fresh worker (or fails cleanly,
    if the exit had not been seen yet, and the one after runs)."""
    result = env.run("print(1)", sandbox)
    if result.error:
        assert result.state_lost
        result = env.run("print(1)", sandbox)
    return result


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- reading what is not the case --------------------------------------------------------------------


def test_hook_bypass_then_reading_files_outside_the_allowed_roots(env):
    cell = BYPASS + (
        f"for p in [{str(env.canary)!r}, {str(env.home / 'credentials.json')!r}]:\n"
        "    try:\n        print(open(p).read())\n    except OSError as e:\n        print('refused', e)\n"
        # a symlink planted in scratch is followed by the kernel, so it must not help either
        f"try:\n    os.symlink({str(env.canary)!r}, 'link')\n    print(open('link').read())\n"
        "except OSError as e:\n    print('refused', e)\n"
    )
    result = env.run(cell)
    assert env.secret not in received(result)
    assert result.output.count("refused") == 3


def test_dir_fd_relative_opens_are_walled_too(env):
    rel = str(env.canary).lstrip("/")
    cell = BYPASS + (
        "for make in (lambda: os.open('/', os.O_RDONLY | os.O_DIRECTORY),"
        f" lambda: os.open({str(env.outside)!r}, os.O_RDONLY | os.O_DIRECTORY)):\n"
        "    try:\n        root = make()\n    except OSError as e:\n        print('refused', e); continue\n"
        f"    for name in ({rel!r}, 'canary.txt'):\n"
        "        try:\n            print(os.read(os.open(name, os.O_RDONLY, dir_fd=root), 200))\n"
        "        except OSError as e:\n            print('refused', e)\n"
        "        try:\n            os.write(os.open('planted.txt', os.O_CREAT | os.O_WRONLY, dir_fd=root), b'x')\n"
        "        except OSError as e:\n            print('refused', e)\n"
    )
    result = env.run(cell)
    assert env.secret not in received(result)
    assert not (env.outside / "planted.txt").exists() and not Path("/planted.txt").exists()


def test_proc_environ_of_the_app_and_of_other_processes(env):
    host_env = Path("/proc/self/environ").read_bytes().split(b"\0")
    distinctive = [v.decode(errors="replace") for v in host_env if v.startswith(b"PATH=")]
    cell = BYPASS + (
        f"for pid in ({os.getpid()}, os.getppid(), {env.sentinel.pid}, 1):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as e:\n        print('refused', e)\n"
    )
    result = env.run(cell)
    assert env.secret not in received(result)
    for value in distinctive:
        assert value not in received(result)


# --- writing the case, the package, the host -----------------------------------------------------------


def test_sqlite_uri_tricks_attach_and_vacuum_into_leave_the_case_unchanged(env):
    before = env.case_digest()
    case = str(env.case_path)
    copy = env.outside / "copy.sqlite"
    mallory = "UPDATE {db}documents SET text = replace(text, 'Alice', 'Mallory')"
    attacks = [
        f"c = sqlite3.connect('file:{case}?mode=rw&x=mode=ro', uri=True)\nc.execute({mallory.format(db='')!r})\nc.commit()",
        f"c = sqlite3.connect('file::memory:', uri=True)\nc.execute(\"ATTACH DATABASE 'file:{case}?mode=rw' AS k\")\n"
        f"c.execute({mallory.format(db='k.')!r})\nc.commit()",
        f"c = sqlite3.connect({case!r})\nc.execute({mallory.format(db='')!r})\nc.commit()",
        f"c = sqlite3.connect('file:{case}?mode=ro', uri=True)\nc.execute(\"VACUUM INTO '{copy}'\")",
        f"f = open({case!r}, 'r+b')\nf.seek(100)\nf.write(b'Mallory')\nf.close()",
        f"os.utime({case!r}, (0, 0))",
    ]
    results = [env.run(BYPASS + attack) for attack in attacks]
    assert all(r.error for r in results), [(r.output, r.error[-200:] if r.error else None) for r in results]
    assert env.case_digest() == before
    assert not copy.exists()
    assert os.stat(env.case_path).st_mtime > 0
    # and the REPL still reads the case
    assert env.run(f"print(context.by_id({env.doc}).text)").output == DOC + "\n"


def test_the_installed_package_cannot_be_changed(env):
    worker = PACKAGE_DIR / "sandbox" / "worker.py"
    mtime = worker.stat().st_mtime_ns
    planted = PACKAGE_DIR / f"evil_{env.mode}.py"
    cell = BYPASS + (
        f"for attempt in (lambda: open({str(env.pkg_canary)!r}, 'a').write('pwned'),\n"
        f"                lambda: open({str(planted)!r}, 'w').write('import os'),\n"
        f"                lambda: os.utime({str(worker)!r}, (0, 0)),\n"
        f"                lambda: os.rename({str(env.pkg_canary)!r}, {str(planted)!r})):\n"
        "    try:\n        attempt()\n    except OSError as e:\n        print('refused', e)\n"
    )
    env.run(cell)
    assert env.pkg_canary.read_text() == "untouched"
    assert not planted.exists()
    assert worker.stat().st_mtime_ns == mtime


# --- network ----------------------------------------------------------------------------------------------


def test_no_loopback_tcp_udp_ipv6_or_unix_socket_reaches_a_listener(env, tmp_path):
    listeners = []
    tcp4 = socket.create_server(("127.0.0.1", 0))
    listeners.append(tcp4)
    targets = [f"('AF_INET', 'SOCK_STREAM', ('127.0.0.1', {tcp4.getsockname()[1]}))"]
    if socket.has_ipv6:
        with contextlib.suppress(OSError):
            tcp6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
            listeners.append(tcp6)
            targets.append(f"('AF_INET6', 'SOCK_STREAM', ('::1', {tcp6.getsockname()[1]}))")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    targets.append(f"('AF_INET', 'SOCK_DGRAM', ('127.0.0.1', {udp.getsockname()[1]}))")
    path = str(tmp_path / "app.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(5)
    listeners.append(unix)
    abstract_name = "\0rlm-escape-" + secrets.token_hex(6)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(abstract_name)
    abstract.listen(5)
    listeners.append(abstract)
    targets += [f"('AF_UNIX', 'SOCK_STREAM', {path!r})", f"('AF_UNIX', 'SOCK_STREAM', {abstract_name!r})"]
    try:
        cell = BYPASS + (
            f"for fam, kind, addr in [{', '.join(targets)}]:\n"
            "    for make in (socket.socket, __import__('_socket').socket):\n"
            "        try:\n"
            "            s = make(getattr(socket, fam), getattr(socket, kind))\n"
            "            s.settimeout(1)\n"
            "            s.connect(addr)\n"
            "            s.send(b'leak')\n"
            "            print('CONNECTED', addr)\n"
            "        except OSError as e:\n"
            "            print('refused', e)\n"
        )
        result = env.run(cell)
        readable, _, _ = select.select([*listeners, udp], [], [], 0.3)
        assert readable == []  # not one connection, not one datagram
        assert "CONNECTED" not in result.output
    finally:
        for s in [*listeners, udp]:
            s.close()


# --- processes --------------------------------------------------------------------------------------------


def test_no_subprocess_or_exec(env):
    marker = env.outside / f"ran-{env.mode}"
    cell = BYPASS + (
        "import subprocess\n"
        f"for attempt in (lambda: subprocess.run(['/bin/sh', '-c', 'touch {marker}']),\n"
        f"                lambda: os.posix_spawn('/usr/bin/touch', ['touch', {str(marker)!r}], {{}}),\n"
        f"                lambda: os.system('touch {marker}')):\n"
        "    try:\n        print(attempt())\n    except OSError as e:\n        print('refused', e)\n"
    )
    env.run(cell)
    time.sleep(0.2)
    assert not marker.exists()


def test_no_signal_reaches_the_app_or_another_process(env):
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    try:
        cell = BYPASS + (
            f"for attempt in (lambda: os.kill({os.getpid()}, signal.SIGUSR1),\n"
            f"                lambda: os.kill({env.sentinel.pid}, signal.SIGKILL),\n"
            f"                lambda: signal.pidfd_send_signal(os.pidfd_open({env.sentinel.pid}), signal.SIGKILL),\n"
            f"                lambda: signal.pidfd_send_signal(os.pidfd_open({os.getpid()}), signal.SIGUSR1),\n"
            f"                lambda: os.killpg({env.sentinel.pid}, signal.SIGKILL)):\n"
            "    try:\n        attempt()\n    except OSError as e:\n        print('refused', e)\n"
        )
        env.run(cell)
        time.sleep(0.3)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert got == []
    assert env.sentinel.poll() is None and alive(env.sentinel.pid)


def test_a_fork_bomb_stays_bounded_and_the_repl_goes_on(env):
    cell = BYPASS + (
        "made = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3)\n"
        "            os._exit(0)\n"
        "        made += 1\n"
        "except OSError as e:\n"
        "    print('stopped', e)\n"
        "print(made)"
    )
    result = env.run(cell)
    assert env.sandbox is not None and env.sandbox.pid is not None
    live = [p for p in iso.descendants(env.sandbox.pid) if alive(p)]
    assert len(live) <= LIMITS["nproc"]
    assert env.run("print('still here')").output.endswith("still here\n")
    assert result.error is None or "stopped" in result.output or result.state_lost


def test_no_process_outlives_the_sandbox(env):
    sandbox = env.start()
    cell = BYPASS + (
        "kids = []\n"
        "for _ in range(3):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as e:\n"
        "        print('refused', e); break\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "        os._exit(0)\n"
        "    kids.append(pid)\n"
        "print(kids)"
    )
    env.run(cell, sandbox)
    time.sleep(0.2)
    assert sandbox.pid is not None
    tree = [sandbox.pid, *iso.descendants(sandbox.pid)]
    cgroup = sandbox._cgroup.path if sandbox._cgroup is not None else None
    in_cgroup = sandbox._cgroup.pids() if sandbox._cgroup is not None else []
    env.loop.run_until_complete(sandbox.close())
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(alive(p) for p in {*tree, *in_cgroup}):
        time.sleep(0.05)
    assert not [p for p in {*tree, *in_cgroup} if alive(p)]
    assert cgroup is None or not os.path.exists(cgroup)


# --- resources --------------------------------------------------------------------------------------------


def test_a_3_gb_allocation_is_a_memory_error_and_the_repl_goes_on(env):
    result = env.run("x = bytearray(3 * 1024**3)")
    assert "MemoryError" in (result.error or "")
    assert env.run("print('after')").output.endswith("after\n")


def test_filling_scratch_past_256_mb_fails_the_cell(env):
    cell = (
        "import os\nchunk = b'\\0' * (10 << 20)\n"
        "for i in range(100):\n"
        "    with open(f'fill{i}.bin', 'wb') as f:\n"
        "        f.write(chunk)\n"
    )
    result = env.run(cell)
    assert result.error  # ENOSPC from the tmpfs, or the host stopped the worker
    if env.sandbox is not None and env.sandbox.walls.get("mount_ns") or env.mode == "bwrap":  # a tmpfs
        used = env.run(
            "import os\nprint(sum(os.lstat(f).st_size for f in os.listdir('.') if f.startswith('fill')))"
        )
        assert int(used.output.strip().splitlines()[-1]) <= 256 << 20
        env.run("import os\nfor f in os.listdir('.'):\n    if f.startswith('fill'):\n        os.remove(f)")
    else:
        assert result.state_lost
        assert scratch_usage(str(env.root / "scratch"))[0] < 600 << 20  # far from the 1 GB it tried
        after = env.run("import os\nprint(os.listdir('.'))")
        assert after.output.endswith("[]\n")  # a fresh REPL, its scratch emptied


# --- the protocol -----------------------------------------------------------------------------------------


def test_an_oversized_frame_written_to_the_protocol_fd_fails_only_that_cell(env):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cell = BYPASS + (
        "fd = cite.__self__.proto_out\n"
        'os.write(fd, struct.pack(\'>I\', 60_000_000) + b\'{"type":"result","id":0,"output":"\')\n'
        "chunk = b'A' * (1 << 20)\n"
        "for _ in range(60):\n"
        "    os.write(fd, chunk)\n"
    )
    result = env.run(cell)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.state_lost and "limit" in result.error
    assert len(result.output) < 100 and grown_mb < 30
    after = env.run("print('fresh')")
    assert after.output.endswith("fresh\n") and after.error is None


def test_a_forged_result_frame_is_cut_by_the_host(env):
    cell = BYPASS + (
        "cell_id = int(sys._getframe().f_code.co_filename[6:-1])\n"
        "body = json.dumps({'type': 'result', 'id': cell_id, 'output': 'A' * 1_000_000, 'error': 'E' * 500_000,"
        " 'citations': []}).encode()\n"
        "os.write(cite.__self__.proto_out, struct.pack('>I', len(body)) + body)\n"
        "os._exit(0)\n"
    )
    result = env.run(cell)
    assert len(result.output) <= LIMITS["output_chars"] + 64 and "characters cut" in result.output
    assert len(result.error or "") <= LIMITS["output_chars"] + 64
    assert fresh_cell(env).output.endswith("1\n")


def test_malformed_frames_fail_only_their_cell(env):
    frames = [
        "b'this is not json'",
        "json.dumps([1, 2, 3]).encode()",
        "json.dumps({'type': 'result', 'id': cell_id, 'output': ['not', 'text']}).encode()",
        "json.dumps({'type': 'surprise', 'id': cell_id}).encode()",
    ]
    for body in frames:
        cell = BYPASS + (
            "cell_id = int(sys._getframe().f_code.co_filename[6:-1])\n"
            f"body = {body}\n"
            "os.write(cite.__self__.proto_out, struct.pack('>I', len(body)) + body)\n"
            "time.sleep(30)\n"
        )
        result = env.run(cell)
        assert result.state_lost and "protocol error" in result.error, result.error
        assert fresh_cell(env).output.endswith("1\n")


def test_the_output_cut_holds_when_the_worker_is_told_otherwise(env):
    cell = "w = cite.__self__\nw.limits = {**w.limits, 'output_chars': 10**9}\nprint('x' * 1_000_000)"
    result = env.run(cell)
    assert len(result.output) <= LIMITS["output_chars"] + 64 and "characters cut" in result.output
    assert result.output_chars_total == 1_000_001


def test_a_sub_level_cannot_bind_or_rebind_markers_outside_its_own(env):
    sub = env.loop.run_until_complete(
        Sandbox.start(
            env.case_path,
            [env.doc],
            {**LIMITS, "marker_prefix": "c2."},
            None,
            scratch_dir=env.root / "sub-scratch",
            isolation=env.mode,
        )
    )
    try:
        own = env.run(f"print(cite({env.doc}, 0, 12))", sub)
        assert own.citations == [
            {"marker": "[c2.1]", "doc_id": env.doc, "start": 0, "end": 12, "quote": DOC[:12]}
        ]
        # 1. rewrite the worker's limits so its next marker is the root's [c1]
        rewritten = env.run(
            "w = cite.__self__\nw.limits = {**w.limits, 'marker_prefix': 'c'}\nw.next_marker = 0\n"
            f"print(cite({env.doc}, 44, 60))",
            sub,
        )
        # 2. forge citations: the root's marker, its own marker moved to another passage, a document outside
        #    this level's context, and a quote that is not the stored text
        forged = [
            {"marker": "[c1]", "doc_id": env.doc, "start": 44, "end": 60},
            {"marker": "[c2.1]", "doc_id": env.doc, "start": 44, "end": 60},
            {"marker": "[c2.7]", "doc_id": env.other, "start": 0, "end": 7},
            {"marker": "[c2.8]", "doc_id": env.doc, "start": 0, "end": 10_000},
            {"marker": "[c2.9]", "doc_id": env.doc, "start": 0, "end": 3, "quote": "approved by Mallory"},
        ]
        frame = BYPASS + (
            "cell_id = int(sys._getframe().f_code.co_filename[6:-1])\n"
            f"body = json.dumps({{'type': 'result', 'id': cell_id, 'output': '', 'citations': {forged!r}}}).encode()\n"
            "os.write(cite.__self__.proto_out, struct.pack('>I', len(body)) + body)\n"
            "os._exit(0)\n"
        )
        forged_result = env.run(frame, sub)
    finally:
        env.loop.run_until_complete(sub.close())
    assert rewritten.citations == [] and "[c1]" in rewritten.error and "dropped" in rewritten.error
    markers = {c["marker"]: c for c in forged_result.citations}
    assert "[c1]" not in markers and "[c2.1]" not in markers and "[c2.7]" not in markers
    assert "[c2.8]" not in markers
    assert markers["[c2.9]"]["quote"] == DOC[:3]  # the host's own reading of the case, not the worker's word
    assert forged_result.error.count("dropped") == 4


# --- the weak mode and refusals ---------------------------------------------------------------------------


def test_the_attacks_are_real_where_only_the_hook_stands(tmp_path):
    """The control: in the weak mode the same bypass reads the canary, so the walls above are what hold."""
    canary = tmp_path / "canary.txt"
    canary.write_text("weak-mode-canary")

    async def scenario():
        sandbox = await Sandbox.start(
            None, None, LIMITS, None, scratch_dir=tmp_path / "s", isolation="rlimits", allow_weak=True
        )
        try:
            blocked = await sandbox.execute(f"print(open({str(canary)!r}).read())")
            bypassed = await sandbox.execute(BYPASS + f"print(open({str(canary)!r}).read())")
            return sandbox, blocked, bypassed
        finally:
            await sandbox.close()

    sandbox, blocked, bypassed = asyncio.run(scenario())
    assert "weak-mode-canary" not in blocked.output and blocked.error  # the tripwire alone
    assert bypassed.output == "weak-mode-canary\n"  # ... is one line away from nothing
    assert sandbox.weak and "WEAK" in sandbox.isolation
    assert any("WEAK ISOLATION" in w for w in sandbox.warnings)
