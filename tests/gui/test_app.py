"""`rlm-desktop gui --screenshot`: starts, renders the window with a run open, saves the PNG, exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtGui import QImage
from sample_case import build_sample_case

from rlm_desktop.gui import theme


def rlm_desktop(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "RLM_DESKTOP_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "rlm_desktop", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_screenshot_of_a_run_shows_its_first_citation_highlighted(tmp_path, fake_openai, qapp):
    sample = build_sample_case(tmp_path, fake_openai)
    out = tmp_path / "shots" / "window.png"
    proc = rlm_desktop(
        "gui", "--case", "sample", "--open-run", sample.run_id[:6], "--screenshot", str(out), home=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1400, 900)
    # the PDF citation is open on its page: the highlight colour is on screen
    highlight = theme.HIGHLIGHT
    hits = sum(
        1
        for x in range(0, image.width(), 3)
        for y in range(0, image.height(), 3)
        if _near(image.pixelColor(x, y), highlight)
    )
    assert hits > 20


def test_screenshot_refuses_an_unknown_case_or_run(tmp_path, qapp):
    build_sample_case(tmp_path)
    proc = rlm_desktop("gui", "--case", "nope", "--screenshot", str(tmp_path / "x.png"), home=tmp_path)
    assert proc.returncode == 2 and "no case 'nope'" in proc.stderr
    proc = rlm_desktop(
        "gui",
        "--case",
        "sample",
        "--open-run",
        "ffffff",
        "--screenshot",
        str(tmp_path / "x.png"),
        home=tmp_path,
    )
    assert proc.returncode == 2 and "ffffff" in proc.stderr
    assert not (tmp_path / "x.png").exists()


def _near(colour, target, tolerance: int = 40) -> bool:
    """A translucent highlight over white paper: compare against the blended colour."""
    alpha = target.alpha() / 255
    blended = [round(c * alpha + 255 * (1 - alpha)) for c in (target.red(), target.green(), target.blue())]
    rgb = (colour.red(), colour.green(), colour.blue())
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, blended, strict=True))
