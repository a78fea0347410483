"""What this machine can wall the REPL with, the refusals when it cannot, the run's memory budget, cgroups."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rlm_script import ROOT, SUB, Script, repl

from rlm_desktop.sandbox import confine
from rlm_desktop.sandbox import isolation as iso
from rlm_desktop.sandbox.host import IsolationRefused, Sandbox
from rlm_desktop.store.case import Case

LIMITS = {"output_chars": 2000, "cell_timeout_s": 5, "kill_grace_s": 2}


def test_weak_isolation_is_refused_unless_allowed(tmp_path):
    with pytest.raises(IsolationRefused, match="allow_weak_isolation"):
        asyncio.run(Sandbox.start(None, None, LIMITS, None, scratch_dir=tmp_path / "s", isolation="rlimits"))
    with pytest.raises(IsolationRefused, match="weak"):
        iso.check_isolation("rlimits", allow_weak=False)
    iso.check_isolation("rlimits", allow_weak=True)


def test_without_any_real_wall_model_code_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(iso, "mode_problem", lambda mode: None if mode == "rlimits" else f"no {mode} here")
    with pytest.raises(IsolationRefused, match="bubblewrap") as refused:
        iso.check_isolation("auto", allow_weak=False)
    assert "Settings" in str(refused.value)
    with pytest.raises(IsolationRefused, match="cannot be built on this machine: no landlock here"):
        iso.check_isolation("landlock", allow_weak=False)
    assert iso.walls()["modes"]["rlimits"]["weak"]


def test_a_forced_mode_the_machine_cannot_build_is_refused_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(iso, "kernel_walls_problem", lambda: "the kernel has no Landlock")
    with pytest.raises(IsolationRefused, match="cannot be built on this machine.*no Landlock"):
        asyncio.run(Sandbox.start(None, None, LIMITS, None, scratch_dir=tmp_path / "s", isolation="landlock"))


def test_walls_reports_this_machine():
    import rlm_desktop.sandbox

    report = rlm_desktop.sandbox.walls()
    assert set(report["modes"]) == set(iso.ISOLATIONS)
    assert report["landlock"]["abi"] == iso.confine.landlock_abi()
    assert report["refused"] == (report["auto"] is None)
    if report["auto"]:
        assert not report["modes"][report["auto"]]["weak"] and report["advice"] == ""


def test_the_run_memory_budget_is_shared_by_all_levels():
    budget = iso.MemoryBudget(total_mb=5000)
    assert budget.take(2048) == 2048
    assert budget.take(2048) == 2048
    assert budget.take(2048) == 904  # what is left
    with pytest.raises(iso.SandboxError, match="memory budget"):
        budget.take(2048)
    budget.give_back(2048)
    assert budget.take(4096) == 2048
    assert iso.MemoryBudget().total_mb == iso.total_ram_mb() // 4


def test_each_real_mode_states_its_walls(tmp_path):
    """The run record's `isolation` names every wall that went up, so a reader knows what held."""
    seen = {}
    for mode in ("bwrap", "unshare", "landlock"):
        if iso.mode_problem(mode):
            continue

        async def scenario(mode=mode):
            sandbox = await Sandbox.start(
                None, None, LIMITS, None, scratch_dir=tmp_path / mode, isolation=mode
            )
            await sandbox.close()
            return sandbox

        seen[mode] = asyncio.run(scenario())
    if not seen:
        pytest.skip("no real isolation mode can be built here")
    for sandbox in seen.values():
        assert not sandbox.weak and "WEAK" not in sandbox.isolation
        if confine.landlock_abi() and confine.seccomp_problem() is None:
            assert sandbox.walls["landlock"] == confine.landlock_abi() and sandbox.walls["seccomp"]
            assert (
                f"landlock ABI {confine.landlock_abi()}" in sandbox.isolation
                and "seccomp" in sandbox.isolation
            )
    if "unshare" in seen:
        assert seen["unshare"].walls["mount_ns"] and "read-only root" in seen["unshare"].isolation


def _ask(home, *args, path=None):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "ask", "What happened?", "--no-cap", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "Nothing happened.")
    return home


def test_ask_refuses_the_weak_mode_and_an_unbuildable_mode_with_exit_2(home, tmp_path, fake_openai):
    local = ("--base-url", fake_openai.base_url)  # were the refusal ever to fail, no call leaves this machine
    weak = _ask(home, "--isolation", "rlimits", *local)
    assert weak.returncode == 2 and "allow_weak_isolation" in weak.stderr and "bubblewrap" in weak.stderr
    empty = tmp_path / "empty-path"
    empty.mkdir()
    missing = _ask(home, "--isolation", "bwrap", *local, path=str(empty))  # no bwrap on this PATH
    assert missing.returncode == 2
    assert "'bwrap' cannot be built on this machine: bubblewrap is not installed" in missing.stderr


def test_the_weak_setting_lets_ask_run_and_the_record_says_weak(home, fake_openai):
    (home / "settings.json").write_text(json.dumps({"allow_weak_isolation": True}))
    fake_openai.handler = Script([repl("print(len(context))"), repl("FINAL('done')")])
    models = ["--root-model", ROOT, "--sub-model", SUB, "--base-url", fake_openai.base_url]
    allowed = _ask(home, "--isolation", "rlimits", "--json", *models)
    assert allowed.returncode == 0, allowed.stderr
    record = json.loads(allowed.stdout)
    assert "WEAK" in record["isolation"] and any("WEAK ISOLATION" in w for w in record["warnings"])


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_pids_cgroup_bounds_and_kills_everything_inside():
    cgroup = iso.PidsCgroup.create(limit=5)
    if cgroup is None:
        pytest.skip(f"no writable pids cgroup here: {iso.pids_cgroup_base()[1]}")
    # a shell that detaches a sleeper with setsid, the way a lingering child escapes a process group
    shell = subprocess.Popen(["sh", "-c", "setsid sleep 60 & sleep 60"], start_new_session=True)
    try:
        time.sleep(0.2)
        assert cgroup.adopt_tree(shell.pid) >= 2
        with open(os.path.join(cgroup.path, "pids.max"), encoding="ascii") as f:
            assert f.read().strip() == "5"
        inside = cgroup.pids()
        assert shell.pid in inside and len(inside) >= 2
        cgroup.kill_all()
        shell.wait(5)
        time.sleep(0.1)
        assert not [pid for pid in inside if _running(pid)]
        assert not os.path.exists(cgroup.path)
    finally:
        shell.kill()
        shell.wait()


def test_restarts_and_close_leave_no_cgroup_behind(tmp_path):
    base, why = iso.pids_cgroup_base()
    if base is None:
        pytest.skip(f"no writable pids cgroup here: {why}")

    def mine() -> set[str]:
        return {n for n in os.listdir(base) if n.startswith(f"rlm-desktop-{os.getpid()}-")}

    before = mine()

    async def scenario():
        sandbox = await Sandbox.start(None, None, LIMITS, None, scratch_dir=tmp_path / "s")
        died = await sandbox.execute("import os\nos._exit(3)")
        later = [await sandbox.execute(f"print({i})") for i in range(2)]
        during = mine() - before
        await sandbox.close()
        return died, later, during

    died, later, during = asyncio.run(scenario())
    assert died.state_lost and later[-1].output.endswith("1\n")
    assert len(during) == 1  # the dead worker's cgroup went with it
    assert mine() == before


UNAVAILABLE_WORKER = """
import sys
sys.path.insert(0, {root!r})
from rlm_desktop.sandbox import protocol
protocol.read_frame_fd(0)
protocol.write_frame_fd(1, {{"type": "fatal", "error": "no mount namespace here", "unavailable": True}})
"""


def test_auto_falls_back_when_a_modes_walls_cannot_be_built(tmp_path, monkeypatch):
    if iso.mode_problem("landlock"):
        pytest.skip(f"the landlock mode cannot be built here: {iso.mode_problem('landlock')}")
    from rlm_desktop.sandbox import host

    real = host.worker_command
    fake = [sys.executable, "-c", UNAVAILABLE_WORKER.format(root=str(host.PACKAGE_DIR.parent))]

    def command(mode, *args, **kwargs):
        return fake if mode in ("bwrap", "unshare") else real(mode, *args, **kwargs)

    monkeypatch.setattr(host, "worker_command", command)
    monkeypatch.setattr(host, "_failed_isolations", set())

    async def scenario():
        sandbox = await Sandbox.start(None, None, LIMITS, None, scratch_dir=tmp_path / "s")
        try:
            return sandbox, await sandbox.execute("print('walled')")
        finally:
            await sandbox.close()

    sandbox, result = asyncio.run(scenario())
    assert sandbox.mode == "landlock" and result.output == "walled\n"
    assert any("unshare: no mount namespace here" in w for w in sandbox.warnings)


def test_a_dead_apps_leftover_sandbox_processes_are_killed_when_the_next_sandbox_starts():
    """A host killed outright (SIGKILL, a crash) cannot close its sandbox: what is left in its cgroup has
    nobody to serve. The next sandbox's start kills it and removes the cgroup; a live app's cgroup stays."""
    base, why = iso.pids_cgroup_base()
    if base is None:
        pytest.skip(f"no writable pids cgroup here: {why}")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is no longer running stands for the dead host
    stale = os.path.join(base, f"rlm-desktop-{gone.pid}-1")
    live_owner = subprocess.Popen(["sleep", "60"])
    live = os.path.join(base, f"rlm-desktop-{live_owner.pid}-1")
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    kept = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        for path, proc in ((stale, leftover), (live, kept)):
            os.mkdir(path)
            with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(proc.pid))
        cgroup = iso.PidsCgroup.create(limit=5)
        assert cgroup is not None
        cgroup.kill_all()
        assert leftover.wait(5) == -signal.SIGKILL and not os.path.exists(stale)
        assert kept.poll() is None and os.path.exists(live)  # its app is alive: not touched
    finally:
        for proc in (leftover, kept, live_owner):
            proc.kill()
            proc.wait()
        iso.PidsCgroup(live).kill_all()
        iso.PidsCgroup(stale).kill_all()
