"""The isolation part of doctor: each wall is tried for real, and a missing one is named."""

from __future__ import annotations

from rlm_desktop.doctor import doctor_text, isolation_report


def test_the_walls_that_work_here_are_reported_strongest_first():
    report = isolation_report()
    modes = {m["mode"]: m for m in report["modes"]}
    assert list(modes) == ["bwrap", "unshare", "landlock", "rlimits"]
    assert modes["rlimits"]["available"] and modes["rlimits"]["strength"] == "weak"
    if modes["bwrap"]["available"]:
        assert report["best"] == "bwrap" and report["warning"] is None and not report["refused"]
    for mode in modes.values():
        assert mode["detail"]  # "works", or why not


def test_without_bwrap_and_unshare_the_kernel_walls_or_a_refusal_remain_and_that_is_said(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither launcher can be found
    report = isolation_report()
    modes = {m["mode"]: m for m in report["modes"]}
    assert not modes["bwrap"]["available"] and "bubblewrap" in modes["bwrap"]["detail"]
    assert not modes["unshare"]["available"]
    if modes["landlock"]["available"]:  # Linux 5.13+ with libseccomp: still a real wall
        assert report["best"] == "landlock" and not report["refused"]
    else:
        assert report["best"] is None and report["refused"] and "bubblewrap" in report["warning"]
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
    assert "bwrap     ✗ strong" in text and "weak isolation allowed in settings: no" in text
    if report["best"] is None:
        assert "model code is refused unless weak isolation is allowed" in text and "⚠ Install bubblewrap" in text
    else:
        assert f"runs use: {report['best']}" in text
