"""The window's one background mechanism: results and errors come back on the GUI thread, never to a dead widget."""

from __future__ import annotations

import threading

from PySide6.QtWidgets import QLabel

from rlm_desktop.gui.tasks import TaskManager, tasks


def test_results_and_errors_come_back_on_the_gui_thread(qtbot):
    manager = TaskManager()
    seen: list[tuple[str, object, threading.Thread]] = []
    worker_threads = []

    def work() -> int:
        worker_threads.append(threading.current_thread())
        return 42

    def fail() -> int:
        raise ValueError("no such run")

    manager.run_in_background(work, lambda r: seen.append(("done", r, threading.current_thread())))
    manager.run_in_background(fail, None, lambda e: seen.append(("error", e, threading.current_thread())))
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=5000)
    assert {(kind, str(value)) for kind, value, _ in seen} == {("done", "42"), ("error", "no such run")}
    assert all(thread is threading.main_thread() for _, _, thread in seen)
    assert worker_threads[0] is not threading.main_thread() and manager.busy == 0
    manager.shutdown()


def test_a_callback_for_a_deleted_widget_is_dropped(qtbot):
    gate = threading.Event()
    label = QLabel()
    called = []
    future = tasks().run_in_background(lambda: gate.wait(5), lambda _: called.append(label.text()), owner=label)
    label.deleteLater()
    qtbot.waitUntil(lambda: not _alive(label), timeout=2000)
    gate.set()
    future.result(5)
    qtbot.wait(50)
    assert called == [] and tasks().busy == 0


def _alive(widget) -> bool:
    import shiboken6

    return shiboken6.isValid(widget)
