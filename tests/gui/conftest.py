"""GUI tests run on real Qt widgets, offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture
def open_window(qtbot, fake_openai, monkeypatch):
    """Opens a real MainWindow on `home`'s case `name`, set up for the scripted fake model (key in the
    environment, prices, a $1 cap); shut down after the test."""
    from rlm_script import PRICES, ROOT, SUB

    from rlm_desktop.gui.main_window import MainWindow
    from rlm_desktop.settings import Settings

    opened = []

    def open_(home, name, size=(1280, 720)):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-e2e")  # a key, not a word: redaction matches its pieces
        settings = Settings(
            base_url=fake_openai.base_url,
            root_model=ROOT,
            sub_model=SUB,
            cap_usd=1.0,
            prices=dict(p.split("=") for p in PRICES),
        )
        settings.save(home)
        win = MainWindow(home, settings)
        qtbot.addWidget(win)
        win.resize(*size)
        win.show()
        win.open_case(name)
        opened.append(win)
        return win

    yield open_
    for win in opened:
        win.shutdown()
