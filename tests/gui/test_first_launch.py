"""A first launch (no key, no endpoint, no documents) says what to set up before the first Ask, and the note
goes away step by step as each is done."""

from __future__ import annotations

import pytest

from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.gui.tasks import tasks
from rlm_desktop.settings import Settings


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    win = MainWindow(tmp_path / "fresh-home")
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    win.open_case("default")
    yield win
    win.shutdown()


def test_first_launch_says_what_to_set_up_before_the_first_ask(qtbot, window, tmp_path, monkeypatch):
    notice = window.ask_panel.notice
    qtbot.waitUntil(notice.isVisible, timeout=10_000)
    text = notice.text()
    assert "Before you can ask a question" in text
    assert 'href="settings"' in text and "API key" in text and "drop files or folders" in text
    assert len(window.ask_panel.setup_steps) == 2
    window.grab().save(str(tmp_path / "first-launch.png"))

    opened = []
    window.ask_panel.settings_requested.disconnect()
    window.ask_panel.settings_requested.connect(lambda: opened.append(True))
    notice.linkActivated.emit("settings")  # the link in the note opens Settings
    assert opened

    # a local server needs no key: saving its address leaves only the documents to add
    window._settings_saved(
        Settings(base_url="http://127.0.0.1:11434/v1", root_model="qwen3", sub_model="qwen3")
    )
    qtbot.waitUntil(lambda: len(window.ask_panel.setup_steps) == 1, timeout=10_000)
    assert "API key" not in notice.text() and "drop files or folders" in notice.text()

    note = tmp_path / "note.txt"
    note.write_text("The first document.\n", encoding="utf-8")
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
        window.ingest_paths([note])
    tasks().wait(10)
    qtbot.waitUntil(lambda: not window.ask_panel.setup_steps, timeout=10_000)
    assert not notice.isVisible()
