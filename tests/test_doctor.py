"""The isolation part of doctor: each wall is tried for real, and a missing one is named."""

from __future__ import annotations

import shutil

from rlm_desktop.doctor import doctor_text, isolation_report


def test_the_walls_that_work_here_are_found_by_starting_python_behind_them():
    report = isolation_report()
    modes = {m["mode"]: m for m in report["modes"]}
    assert modes["rlimits"]["available"] and modes["rlimits"]["strength"] == "weak"
    if shutil.which("bwrap") and modes["bwrap"]["available"]:
        assert report["best"] == "bwrap" and report["warning"] is None
    for mode in modes.values():
        assert mode["detail"]  # "works", "not installed" or the launcher's own complaint


def test_without_bwrap_and_unshare_only_weak_walls_remain_and_that_is_said(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither launcher can be found
    report = isolation_report()
    modes = {m["mode"]: m for m in report["modes"]}
    assert modes["bwrap"] == {
        "mode": "bwrap",
        "strength": "strong",
        "keeps_out": modes["bwrap"]["keeps_out"],
        "available": False,
        "detail": "bwrap is not installed",
    }
    assert not modes["unshare"]["available"]
    assert report["best"] == "rlimits" and "install bubblewrap" in report["warning"]
    data = {
        "endpoint": "http://127.0.0.1:9/v1",
        "reachable": False,
        "error": "connection refused",
        "models": [],
        "isolation": report,
        "cost_estimated": False,
        "unpriced": [],
        "cost_usd": 0.0,
        "elapsed_s": 0.0,
        "ok": False,
        "problem": "connection refused",
        "allow_weak_isolation": False,
    }
    text = doctor_text(data)
    assert "bwrap    ✗ strong" in text and "runs use: rlimits" in text
    assert "weak isolation allowed in settings: no" in text and "⚠ no namespace isolation" in text
