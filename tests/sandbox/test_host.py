"""The REPL worker in real subprocesses, in every isolation mode this machine offers."""

from __future__ import annotations

import asyncio
import os
import resource
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_desktop.sandbox.host import ISOLATIONS, CellResult, Sandbox, SandboxError

FAST = {"output_chars": 2000, "cell_timeout_s": 5, "kill_grace_s": 2}


async def _start(mode: str, tmp_path: Path, on_request: Any = None, case: Path | None = None, **limits: Any):
    try:
        return await Sandbox.start(
            case,
            None,
            {**FAST, **limits},
            on_request,
            scratch_dir=tmp_path / "scratch",
            isolation=mode,
            allow_weak=mode == "rlimits",  # the weak mode is still tested, where a user allows it
        )
    except SandboxError as exc:
        pytest.skip(f"isolation {mode} is not available here: {exc}")


def run_cells(mode: str, tmp_path: Path, cells: list[str], on_request: Any = None, **limits: Any):
    """Start a sandbox, run the cells in order, close it; returns (results, sandbox)."""

    async def scenario():
        sandbox = await _start(mode, tmp_path, on_request, **limits)
        try:
            return [await sandbox.execute(code) for code in cells], sandbox
        finally:
            await sandbox.close()

    return asyncio.run(scenario())


@pytest.fixture(params=ISOLATIONS)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def test_state_persists_and_the_chosen_isolation_is_reported(mode, tmp_path):
    results, sandbox = run_cells(
        mode, tmp_path, ["x = 40", "def f(y):\n    return x + y", "print(f(2))", "f(3)"]
    )
    assert [r.output for r in results] == ["", "", "42\n", "43\n"]
    assert all(r.error is None for r in results)
    assert sandbox.mode == mode
    assert (mode == "rlimits") == sandbox.weak == ("WEAK" in sandbox.isolation)
    assert (mode == "rlimits") == any(
        "WEAK ISOLATION" in w for w in sandbox.warnings
    )  # the weak mode says so
    assert sandbox.start_time_s < 2.0


def test_auto_picks_the_strongest_mode_available(tmp_path):
    results, sandbox = run_cells("auto", tmp_path, ["1"])
    assert results[0].output == "1\n"
    assert sandbox.mode in ISOLATIONS and sandbox.mode != "rlimits"  # never the weak mode unless allowed
    if os.path.exists("/usr/bin/bwrap"):
        assert sandbox.mode == "bwrap"


def test_output_is_cut_head_and_tail_with_a_marker(tmp_path):
    results, _ = run_cells("auto", tmp_path, ["print('a' * 5000 + 'b' * 5000)"], output_chars=1000)
    out = results[0].output
    assert out.startswith("a" * 500 + "\n[... 9001 characters cut ...]\n")
    assert out.endswith("b" * 499 + "\n")
    assert results[0].output_chars_total == 10001


def test_huge_print_is_cut_in_the_worker_and_host_memory_stays_bounded(tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cells = ["print('x' * 200_000_000)", "for _ in range(200):\n    print('y' * 1_000_000)"]
    results, _ = run_cells("auto", tmp_path, cells)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    for result in results:
        assert result.error is None
        assert len(result.output) < 2100
        assert "characters cut ..." in result.output
    assert results[0].output_chars_total == 200_000_001
    assert grown_mb < 50


def test_timeout_stops_the_cell_and_keeps_the_namespace(mode, tmp_path):
    cells = ["kept = 'still here'", "while True:\n    pass", "print(kept)"]
    results, _ = run_cells(mode, tmp_path, cells, cell_timeout_s=0.5)
    assert results[1].timed_out and "wall-clock limit" in results[1].error
    assert 0.45 < results[1].elapsed_s < 2
    assert results[2].output == "still here\n" and not results[2].state_lost


def test_a_worker_that_swallows_the_timeout_is_killed_and_reports_lost_state(tmp_path):
    stubborn = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"

    async def scenario():
        sandbox = await _start("auto", tmp_path, cell_timeout_s=0.3, kill_grace_s=0.5)
        try:
            started = time.monotonic()
            lost = await sandbox.execute(stubborn)
            elapsed = time.monotonic() - started
            after = await sandbox.execute("1")
            await sandbox.restart()
            fresh = await sandbox.execute("print('fresh')")
            return lost, elapsed, after, fresh
        finally:
            await sandbox.close()

    lost, elapsed, after, fresh = asyncio.run(scenario())
    assert lost.state_lost and "state was lost" in lost.error and elapsed < 3
    assert after.state_lost
    assert fresh.output == "fresh\n"


def test_memory_bombs_fail_inside_the_worker_not_the_host(mode, tmp_path):
    cells = [
        "x = 'a' * 10**11",
        "grow = []\nwhile True:\n    grow.append(bytearray(10**6))",
        "del grow\nprint('alive')",
    ]
    results, _ = run_cells(mode, tmp_path, cells, memory_mb=400)
    assert "MemoryError" in results[0].error
    assert results[1].state_lost or "MemoryError" in results[1].error
    if not results[1].state_lost:
        assert results[2].output == "alive\n"


def test_fork_bomb_is_contained_and_the_next_cell_runs(mode, tmp_path):
    results, _ = run_cells(mode, tmp_path, ["import os\nwhile True:\n    os.fork()", "print('ok')"])
    assert "not allowed" in results[0].error
    assert results[1].output == "ok\n"


def test_subprocess_and_ctypes_routes_around_the_hook_are_refused(tmp_path):
    cells = [
        "import subprocess",
        "import ctypes",
        "import os\nos.system('true')",
        "import os\nos.posix_spawn('/bin/true', ['true'], {})",
    ]
    cells.append("import sys\nprint(sorted(m for m in sys.modules if 'subprocess' in m or 'ctypes' in m))")
    results, _ = run_cells("auto", tmp_path, cells)
    assert all(r.error and "not allowed" in r.error for r in results[:4])
    assert results[4].output == "[]\n"  # nothing preloaded that user code could reach through sys.modules


def test_namespace_task_limit_holds_even_without_the_audit_hook(mode, tmp_path):
    # Threads are tasks too: with the per-namespace RLIMIT_NPROC they run out long before 500.
    cell = (
        "import threading\nstop = threading.Event()\nstarted = 0\n"
        "try:\n    for _ in range(500):\n        threading.Thread(target=stop.wait).start()\n        started += 1\n"
        "finally:\n    stop.set()\nprint(started)"
    )
    results, sandbox = run_cells(mode, tmp_path, [cell], nproc=32)
    if "pids cgroup" not in sandbox.isolation:
        if mode == "rlimits" and os.geteuid() == 0:
            pytest.skip(
                "root ignores RLIMIT_NPROC without a user namespace, and no pids cgroup is writable here"
            )
        if mode == "landlock":
            pytest.skip("no user namespace and no writable pids cgroup: threads are bounded by memory only")
    assert "can't start new thread" in results[0].error


def test_files_outside_the_case_cannot_be_read(mode, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is swordfish")
    cells = [f"print(open({str(secret)!r}).read())", f"import os\nprint(os.path.exists({str(secret)!r}))"]
    results, _ = run_cells(mode, tmp_path, cells)
    assert "swordfish" not in results[0].output and results[0].error
    if mode in ("bwrap", "unshare"):
        assert results[1].output == "False\n"  # not merely refused: absent from the sandbox's file system


def test_writes_only_inside_scratch(mode, tmp_path):
    outside = tmp_path / "outside.txt"
    cells = [
        f"open({str(outside)!r}, 'w').write('x')",
        f"import os\nos.rename('a', {str(outside)!r})",
        "open('notes.txt', 'w').write('kept')",
        "import os\nos.makedirs('sub/dir')\nprint(os.listdir('.'))",
    ]
    results, sandbox = run_cells(mode, tmp_path, cells)
    assert results[0].error and results[1].error
    assert not outside.exists()
    assert results[2].error is None and results[3].error is None
    if mode not in ("bwrap", "unshare"):  # there scratch is a tmpfs of the sandbox's own, invisible from here
        assert (tmp_path / "scratch" / "notes.txt").read_text() == "kept"


def test_no_network_even_to_a_local_listener(mode, tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    try:
        cells = [
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
            f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))",
        ]
        results, _ = run_cells(mode, tmp_path, cells)
        assert all(r.error for r in results)
        readable, _, _ = select.select([listener], [], [], 0.2)
        assert readable == []  # no connection ever arrived
    finally:
        listener.close()


def test_worker_sees_a_clean_environment(mode, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret")
    cells = ["import os\nprint(sorted(os.environ))", "import os\nprint('sk-test' in str(os.environ))"]
    results, _ = run_cells(mode, tmp_path, cells)
    assert "OPENAI_API_KEY" not in results[0].output and "GITHUB_TOKEN" not in results[0].output
    assert results[1].output == "False\n"


def test_sub_calls_reach_the_host_callback_and_return_its_replies(tmp_path):
    calls: list[tuple[str, dict]] = []

    async def on_request(kind: str, payload: dict) -> Any:
        calls.append((kind, payload))
        await asyncio.sleep(0.01)
        if kind == "llm_query":
            return f"answer to {payload['prompt']}"
        if kind == "llm_query_batched":
            return [p.upper() for p in payload["prompts"]]
        if payload["question"] == "fail":
            raise RuntimeError("budget exhausted")
        return f"rlm over {payload['doc_ids']}"

    cells = [
        "print(llm_query('q1'))",
        "print(llm_query_batched(['a', 'b', 'c']))",
        "print(rlm_query('who?', [3, 5]))",
        "rlm_query('fail', [1])",
    ]
    results, _ = run_cells("auto", tmp_path, cells, on_request)
    assert [r.output for r in results[:3]] == ["answer to q1\n", "['A', 'B', 'C']\n", "rlm over [3, 5]\n"]
    assert "budget exhausted" in results[3].error
    assert calls[1] == ("llm_query_batched", {"prompts": ["a", "b", "c"]})  # one frame for the batch
    assert calls[2] == ("rlm_query", {"question": "who?", "doc_ids": [3, 5]})


def test_time_waiting_for_the_host_does_not_count_against_the_cell_timeout(tmp_path):
    async def slow(kind: str, payload: dict) -> str:
        await asyncio.sleep(0.8)
        return "late"

    results, _ = run_cells(
        "auto", tmp_path, ["print(llm_query('x'))"], slow, cell_timeout_s=0.5, kill_grace_s=0.2
    )
    assert results[0].output == "late\n" and results[0].error is None


def test_final_and_final_var(tmp_path):
    cells = ["FINAL('done [c1]')", "FINAL_VAR('missing')", "answer = 42\nFINAL_VAR('answer')", "print(1)"]
    results, _ = run_cells("auto", tmp_path, cells)
    assert results[0].final == "done [c1]"
    assert results[1].final is None and "no variable" in results[1].error and "NameError" in results[1].error
    assert results[2].final == "42"
    assert results[3].final is None


def test_show_vars_lists_the_models_variables(tmp_path):
    results, _ = run_cells("auto", tmp_path, ["notes = ['a', 'b']\ncount = 3", "SHOW_VARS()"])
    assert results[1].output == "notes: list, len 2\ncount: int\n"


def test_syntax_errors_and_tracebacks_show_the_cell_not_the_worker(tmp_path):
    results, _ = run_cells("auto", tmp_path, ["def broken(:", "def f():\n    return 1 / 0\nf()"])
    assert "SyntaxError" in results[0].error
    assert 'File "<cell-2>", line 2, in f' in results[1].error and "worker.py" not in results[1].error


def test_kill_is_immediate_and_the_pending_cell_reports_it(tmp_path):
    async def scenario():
        sandbox = await _start("auto", tmp_path)
        pending = asyncio.create_task(sandbox.execute("while True:\n    pass"))
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        sandbox.kill()
        kill_s = time.perf_counter() - started
        result: CellResult = await asyncio.wait_for(pending, 5)
        await sandbox.close()
        return kill_s, result, sandbox

    kill_s, result, sandbox = asyncio.run(scenario())
    assert kill_s < 0.05
    assert result.killed and result.state_lost
    assert not sandbox.alive


def test_file_size_limit_is_an_error_not_a_crash(tmp_path):
    cell = "with open('big.bin', 'wb') as f:\n    f.write(b'0' * (3 * 1024 * 1024))"
    results, _ = run_cells(
        "auto", tmp_path, [cell, "import os\nprint(os.path.getsize('big.bin'))"], file_mb=1
    )
    assert "File too large" in results[0].error
    assert int(results[1].output) <= 1024 * 1024


def test_cancelling_a_cell_stops_the_worker_instead_of_desynchronising_it(tmp_path):
    async def never(kind: str, payload: dict) -> str:
        await asyncio.sleep(60)
        return "unreachable"

    async def scenario():
        sandbox = await _start("auto", tmp_path, never)
        task = asyncio.create_task(sandbox.execute("llm_query('x')"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await sandbox.execute("1")
        await sandbox.close()
        return after

    after = asyncio.run(scenario())
    assert after.state_lost and "cancelled" in after.error


def test_a_case_that_cannot_be_opened_fails_start_with_the_reason(tmp_path):
    with pytest.raises(SandboxError, match="case file not found"):
        asyncio.run(Sandbox.start(tmp_path / "missing.sqlite", None, FAST, None))


def _processes_naming(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("launcher", ["bwrap", "unshare"])
def test_a_start_cancelled_while_its_process_is_made_ends_at_once_and_leaves_nothing(launcher, tmp_path):
    """A Stop in a run's first milliseconds cancels the REPL's start while its launcher is being spawned.
    asyncio alone killed only bwrap and then waited for pipes its half-set-up child held open forever: the
    run hung and the child was orphaned (5 in 80 such cancels here). Each cancel must end within seconds and
    leave no process behind; the cancels are spread over the first 6 ms, where the spawn is."""

    async def scenario() -> list[str]:
        outcomes = []
        for i in range(60):
            scratch = tmp_path / f"s{i}"
            task = asyncio.ensure_future(
                Sandbox.start(None, None, dict(FAST), None, scratch_dir=scratch, isolation=launcher)
            )
            await asyncio.sleep((i % 12) * 0.0005)
            task.cancel()
            try:
                sandbox = await asyncio.wait_for(asyncio.shield(task), 8)
            except asyncio.CancelledError:
                outcomes.append("cancelled")
            except SandboxError as exc:
                pytest.skip(f"isolation {launcher} is not available here: {exc}")
            except TimeoutError:
                outcomes.append("hung")
            else:
                outcomes.append("started")  # the cancel came after the start ended: an ordinary close
                await sandbox.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert "hung" not in outcomes
    deadline = time.monotonic() + 5
    while _processes_naming(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_naming(str(tmp_path)) == []  # no launcher or worker naming these scratch folders
