"""End to end through the real window: drop a folder, ingest, ask against the fake server, watch the tree fill,
click a citation to its highlighted page, and stop a run with Esc."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from rlm_script import Script, repl
from sample_case import PDF_PHRASE, QUESTION, answer_script, write_documents

from rlm_desktop.engine.events import NodeStarted, RunFinished
from rlm_desktop.gui.main_window import MainWindow


@pytest.fixture
def window(tmp_path, open_window):
    return open_window(tmp_path / "home", "e2e", size=(1400, 900))


def drop(window: MainWindow, target, *paths) -> None:
    """What a file manager's drag delivers to the widget under the pointer: DragEnter, then Drop.

    Qt discards drop events sent without a platform drag session, so the events go through the window's
    application-wide event filter directly, as QApplication::notify hands them to it during a real drag.
    """
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(
        QPoint(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    assert window.eventFilter(target, enter) and enter.isAccepted()
    event = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    assert window.eventFilter(target, event) and event.isAccepted()


def test_drop_ask_watch_cite(qtbot, window, tmp_path, fake_openai):
    folder = write_documents(tmp_path / "dropped")
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000) as finished:
        drop(window, window.ask_panel.question.viewport(), folder)  # even over a text box, it ingests
    assert window.ask_panel.question.toPlainText() == ""
    report = finished.args[0]
    assert report.documents_added >= 6 and not report.failed
    assert window.case.count_documents() >= 6
    # the document list is rebuilt on a worker thread after the ingest, then shown
    qtbot.waitUntil(lambda: window.browser.model.rowCount() == 4, timeout=10_000)  # pdf, docx, txt, thread
    assert "documents" in window.case_label.text()

    fake_openai.handler = answer_script()
    qtbot.keyClicks(window.ask_panel.question, QUESTION)
    started = []
    window.ask_panel.bridge.run_event.connect(
        lambda e: started.append(e) if isinstance(e, NodeStarted) else None
    )
    with qtbot.waitSignal(window.ask_panel.bridge.run_ended, timeout=60_000):
        qtbot.keyClick(window.ask_panel.question, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert any(e.node.kind == "llm_query" for e in started), "the tree must have grown live"
    tree = window.ask_panel.tree.model
    assert tree.rowCount() == 1  # the root
    root = tree.index(0, 0)
    assert tree.rowCount(root) == 2  # two iterations
    record = window.ask_panel.bridge.handle.record
    assert record["status"] == "completed"
    pdf_citation = next(c for c in record["citations"] if c["kind"] == "pdf")

    window.ask_panel.answer.activate_citation(pdf_citation["marker"])
    viewer = window.viewer
    assert viewer.current_doc_id == pdf_citation["doc_id"]
    assert viewer.current_page == 2
    assert viewer.highlighted_span == (pdf_citation["start"], pdf_citation["end"])
    assert [list(r) for r in viewer.highlight_rects] == [list(r) for r in pdf_citation["rects"]]
    assert window.case.text(pdf_citation["doc_id"])[pdf_citation["start"] : pdf_citation["end"]] == PDF_PHRASE

    # the run is in the history, and opening it again shows the same answer
    window.history.refresh()
    assert window.open_run(record["run_id"])["answer"] == record["answer"]


def test_escape_stops_a_run_and_keeps_the_partial_tree(qtbot, window, tmp_path, fake_openai):
    folder = write_documents(tmp_path / "dropped")
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
        window.ingest_paths([folder])
    fake_openai.handler = Script(
        [repl("print(len(context))"), repl("rs = llm_query_batched([f'slow {i}' for i in range(4)])")],
        sub_delay_s=30,
    )
    events = []
    window.ask_panel.bridge.run_event.connect(events.append)
    window.ask_panel.ask("A question that will be stopped")
    qtbot.waitUntil(
        lambda: any(isinstance(e, NodeStarted) and e.node.kind == "llm_query" for e in events), timeout=30_000
    )
    window.activateWindow()
    window.ask_panel.question.setFocus()
    t0 = time.perf_counter()
    qtbot.keyClick(window.ask_panel.question, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: any(isinstance(e, RunFinished) for e in events), timeout=5_000)
    stop_s = time.perf_counter() - t0
    finished = next(e for e in events if isinstance(e, RunFinished))
    assert finished.status == "cancelled"
    assert stop_s < 2.0  # the 250 ms target is measured in benchmarks/gui_bench.py
    qtbot.waitUntil(lambda: not window.ask_panel.running, timeout=10_000)
    assert window.ask_panel.tree.model.rowCount() == 1  # the partial tree stays on screen
    assert window.ask_panel.run_button.isEnabled()


def _stopped_reads_as_stopped(panel) -> None:
    """The banner, the answer and every step say the user stopped the run: no failure, no exception name."""
    answer = panel.answer
    assert answer.banner.isVisible()
    assert answer.banner.text() == "Stopped by you — the answer so far is below"
    text = answer.browser.toPlainText()
    assert "Rotterdam [c1]" in text and "✓ verified" in text  # the partial answer keeps its citation
    assert "without an answer" not in text
    views = list(panel.tree.model.views())
    subcalls = [v for v in views if v.kind == "llm_query"]
    assert subcalls and all(v.status == "cancelled" for v in subcalls)
    assert all(v.detail.get("error") == "cancelled (stopped by you)" for v in subcalls)
    assert not any("CancelledError" in str(v.detail) for v in views)
    panel.tree.select_node(subcalls[0].id)
    shown = panel.tree.detail.secondary.view.toPlainText()
    assert "cancelled (stopped by you)" in shown and "CancelledError" not in shown


def test_stop_reads_as_stopped_live_and_reopened(qtbot, window, tmp_path, fake_openai):
    folder = write_documents(tmp_path / "dropped")
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
        window.ingest_paths([folder])
    fake_openai.handler = Script(
        [
            repl(f"h = grep({PDF_PHRASE!r})[0]\nm = quote(h.doc_id, {PDF_PHRASE!r})\nprint(m)"),
            "So far: the shipment left Rotterdam [c1].\n\n"
            + repl("rs = llm_query_batched([f'slow {i}' for i in range(3)])"),
        ],
        sub_delay_s=30,
    )
    events = []
    window.ask_panel.bridge.run_event.connect(events.append)
    window.ask_panel.ask("A question that will be stopped")
    qtbot.waitUntil(
        lambda: any(isinstance(e, NodeStarted) and e.node.kind == "llm_query" for e in events), timeout=30_000
    )
    window.act_stop.trigger()
    qtbot.waitUntil(lambda: not window.ask_panel.running, timeout=10_000)
    record = window.ask_panel.bridge.handle.record
    assert record["status"] == "cancelled" and record["citations"][0]["verified"]
    _stopped_reads_as_stopped(window.ask_panel)
    window.ask_panel.answer.clear()
    window.open_run(record["run_id"])
    _stopped_reads_as_stopped(window.ask_panel)
