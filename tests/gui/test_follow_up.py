"""Follow-up questions in the window: the thread's REPL stays alive between its questions, the history groups
the thread, and "Ask again" puts a question back in its thread."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt
from rlm_script import Script, repl
from sample_case import build_sample_case

FIRST = [
    repl("hits = search('Rotterdam')\nsecret_total = 40 + 2\nprint(hits[0].doc_id)"),
    repl("m = quote(hits[0].doc_id, 'left Rotterdam on 4 May 2023')\nFINAL(f'It left on 4 May 2023 {m}.')"),
]
SECOND = [
    repl("print('kept', secret_total, len(history), history[0]['answer'])"),
    repl("FINAL('Forty-two, as computed before.')"),
]


@pytest.fixture
def window(tmp_path, open_window):
    home = tmp_path / "home"
    build_sample_case(home, name="follow")
    return open_window(home, "follow")


def ask_and_wait(qtbot, window, question):
    panel = window.ask_panel
    panel.question.setPlainText(question)
    with qtbot.waitSignal(panel.bridge.run_ended, timeout=60_000):
        qtbot.keyClick(panel.question, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    record = panel.bridge.handle.record
    assert record is not None and record["status"] == "completed", record and record.get("error")
    return record


def test_a_follow_up_in_the_window_keeps_the_threads_repl(qtbot, window, fake_openai):
    panel = window.ask_panel
    assert not panel.follow_button.isVisible()  # nothing to follow up yet
    fake_openai.handler = Script(FIRST)
    first = ask_and_wait(qtbot, window, "When did the shipment leave?")
    (session,) = panel.sessions
    assert session.repl_alive and session.last_run_id == first["run_id"]
    worker = session.repl_pid  # the REPL worker, in the thread's engine process (not the window's)
    assert worker is not None and _parent_of(worker) != os.getpid()
    engine = session.pid

    assert panel.follow_button.isVisible() and panel.follow_button.isEnabled()
    qtbot.mouseClick(panel.follow_button, Qt.MouseButton.LeftButton)
    assert panel.follow_target == first["run_id"] and panel.follow_bar.isVisible()
    assert "When did the shipment leave?" in panel.follow_bar.text() and "variables carry over" in panel.follow_bar.text()
    assert panel.run_button.text() == "Ask follow-up" and panel.question.toPlainText() == ""
    assert not panel.follow_button.isVisible()

    script = Script(SECOND)
    fake_openai.handler = script
    second = ask_and_wait(qtbot, window, "What was the total?")
    assert second["follows"] == first["run_id"]
    opening = script.root_requests[0]["messages"][1]["content"]
    assert "It left on 4 May 2023 [c1]." in opening  # the first answer, in the follow-up's root request
    output = script.root_requests[1]["messages"][-1]["content"]
    assert "kept 42 1 It left on 4 May 2023 [c1]." in output  # run 1's variable, read in run 2
    assert panel.sessions == [session] and session.repl_pid == worker
    assert not panel.follow_bar.isVisible() and panel.follow_target is None
    assert panel.thread_label.isVisible() and "When did the shipment leave?" in panel.thread_label.full_text
    window.open_run(first["run_id"])
    assert not panel.thread_label.isVisible()
    window.open_run(second["run_id"])  # a saved follow-up says which question it followed
    assert panel.thread_label.full_text == "↳ A follow-up to “When did the shipment leave?”"

    # the history shows the follow-up under the first run of its thread
    model = window.history.model
    thread = model.index_of(first["run_id"])
    assert model.rowCount(thread) == 1 and model.index_of(second["run_id"]).parent() == thread
    assert "2 runs" in window.case_label.text()

    # another case: the thread's REPL is closed (its worker process is gone)
    window.open_case("other")
    qtbot.waitUntil(lambda: session.closed and session.repl_pid is None, timeout=10_000)
    qtbot.waitUntil(lambda: not _alive(worker) and not _alive(engine), timeout=10_000)


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().split(")")[-1].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting to be reaped no longer runs anything
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ask_again_puts_a_follow_up_back_in_its_thread(qtbot, window, fake_openai):
    fake_openai.handler = Script(FIRST)
    first = ask_and_wait(qtbot, window, "When did the shipment leave?")
    window.ask_panel.start_follow_up()
    fake_openai.handler = Script(SECOND)
    second = ask_and_wait(qtbot, window, "What was the total?")
    window.ask_panel.clear_run()

    window.ask_again(second["run_id"])
    panel = window.ask_panel
    assert panel.question.toPlainText() == "What was the total?"
    assert panel.follow_target == first["run_id"] and panel.follow_bar.isVisible()
    window.ask_again(first["run_id"])
    assert panel.question.toPlainText() == "When did the shipment leave?" and panel.follow_target is None

    # following up an older run of the thread starts another thread from it, with a fresh REPL
    window.follow_up(first["run_id"])
    assert "a fresh REPL" in panel.follow_bar.text() and panel.run_id == first["run_id"]
    # deleting the run a follow-up is aimed at cancels the follow-up
    window.history.select_run(first["run_id"])
    window.history.confirm = lambda title, text: True
    assert window.history.delete_current()
    assert panel.follow_target is None and panel.run_id is None
