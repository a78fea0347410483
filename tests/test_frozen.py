"""Frozen-mode plumbing without building a bundle: the worker command, bind mounts, resources, the entry point.

packaging/smoke.sh tests the real bundle; this runs in every test run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_desktop import frozen
from rlm_desktop.sandbox import host


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What PyInstaller's bootloader sets up: sys.frozen, sys._MEIPASS = <bundle>/_internal, sys.executable."""
    root = tmp_path / "rlm-desktop"
    (root / "_internal" / "resources" / "prompts").mkdir(parents=True)
    exe = root / "rlm-desktop"
    exe.write_bytes(b"")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(root / "_internal"), raising=False)
    monkeypatch.setattr(sys, "executable", str(exe))
    return root


def test_outside_a_bundle_resources_are_the_checkouts():
    assert not frozen.is_frozen()
    assert (frozen.resources_dir() / "prompts" / "rlm_system.md").is_file()
    assert frozen.resources_dir() == Path(__file__).resolve().parents[1] / "resources"


def test_in_a_bundle_resources_and_the_root_are_the_bundles(bundle: Path):
    assert frozen.is_frozen()
    assert frozen.resources_dir() == bundle / "_internal" / "resources"
    assert frozen.bundle_root() == bundle  # holds the executable and _internal


def test_in_a_bundle_every_isolation_starts_the_bundles_executable(bundle: Path, tmp_path: Path):
    worker = [str(bundle / "rlm-desktop"), "--sandbox-worker"]
    assert host.worker_command("rlimits", None, str(tmp_path)) == worker
    assert host.unshare_command("/usr/bin/unshare", sys.executable)[-2:] == worker
    cmd = host.bwrap_command("/usr/bin/bwrap", sys.executable, None, str(tmp_path))
    assert cmd[-2:] == worker
    binds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--ro-bind"]
    assert str(bundle) in binds  # the whole bundle, read-only
    assert str(host.PACKAGE_DIR) not in binds and sys.base_prefix not in binds  # no Python from the machine


def test_outside_a_bundle_the_worker_is_run_by_python(tmp_path: Path):
    assert host.worker_command("rlimits", None, str(tmp_path)) == [
        sys.executable,
        "-I",
        "-B",
        str(host.WORKER_SCRIPT),
    ]


def test_the_entry_point_runs_a_real_worker_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`python -m rlm_desktop --sandbox-worker` is the worker (what `rlm-desktop --sandbox-worker` runs frozen)."""
    monkeypatch.setattr(
        host, "_worker_argv", lambda python: [python, "-m", "rlm_desktop", "--sandbox-worker"]
    )

    async def scenario():
        sandbox = await host.Sandbox.start(None, scratch_dir=tmp_path / "scratch", isolation="rlimits", allow_weak=True)
        try:
            return await sandbox.execute("import statistics\nprint(statistics.mean([1, 2, 6]))")
        finally:
            await sandbox.close()

    result = asyncio.run(scenario())
    assert result.error is None and result.output == "3\n"


def test_the_entry_point_is_still_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("rlm-desktop ")
