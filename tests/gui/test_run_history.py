"""Run history: the case's saved runs as threads, newest first; open, follow up, re-run, rename, delete, export."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import QPoint, Qt
from sample_case import QUESTION, build_sample_case

from rlm_desktop.engine.runs import RunStore
from rlm_desktop.gui.run_history import (
    COST,
    RUN_ID_ROLE,
    STARTED,
    STATUS,
    RunHistoryModel,
    RunHistoryView,
    local_time_text,
)
from rlm_desktop.gui.run_history import (
    QUESTION as QUESTION_COLUMN,
)
from rlm_desktop.store.case import Case
from tests.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample case's real run, two older runs saved through the engine's RunStore, and a follow-up of the
    older one (asked after the sample run: its thread is the newest)."""
    with FakeOpenAIServer() as server:
        sample = build_sample_case(tmp_path_factory.mktemp("history"), server)
    store = RunStore(sample.case_path)
    now = datetime.now(UTC)
    for run_id, question, status, cost, age, follows in (
        (
            "capped000001",
            "Who approved the payments to Blue Heron Ltd?",
            "cap_reached",
            2.0,
            timedelta(days=1),
            None,
        ),
        ("stopped00002", "List every email about the invoice", "cancelled", 0.0042, timedelta(days=40), None),
        ("follow000003", "And who signed the invoice?", "completed", 0.01, -timedelta(minutes=1), "stopped00002"),
    ):
        started = (now - age).isoformat(timespec="milliseconds")
        store.save(
            {
                "run_id": run_id,
                "question": question,
                "status": status,
                "started": started,
                "ended": started,
                "cost_usd": cost,
                "cap_usd": 2.0,
                "answer": "",
                "follows": follows,
            },
            [],
        )
    store.close()
    return sample


@pytest.fixture
def case(sample):
    with Case.open(sample.case_path) as opened:
        yield opened


def test_model_groups_threads_newest_first(qapp, qtmodeltester, sample, case):
    model = RunHistoryModel()
    model.refresh(case)
    qtmodeltester.check(model, force_py=True)  # with a thread of two levels; its resets are watched from here
    # the invoice thread has the newest run (its follow-up), so it comes first, the follow-up under its first run
    assert model.rowCount() == 3 and model.columnCount() == 4 and model.run_count() == 4
    assert [model.run(row).run_id for row in range(3)] == ["stopped00002", sample.run_id, "capped000001"]
    assert model.run_ids() == ["stopped00002", "follow000003", sample.run_id, "capped000001"]
    thread = model.index(0, 0)
    assert model.rowCount(thread) == 1 and model.rowCount(model.index(1, 0)) == 0
    follow_up = model.index(0, QUESTION_COLUMN, thread)
    assert model.data(follow_up) == "And who signed the invoice?" and model.parent(follow_up) == thread
    assert model.index_of("follow000003") == model.index(0, 0, thread) and model.row_of("follow000003") == 0
    assert "A follow-up of run stopped00002" in model.data(follow_up, Qt.ItemDataRole.ToolTipRole)
    text = [[model.data(model.index(row, column)) for column in range(4)] for row in range(3)]
    assert text[1][STARTED].startswith("Today ")
    assert text[1][QUESTION_COLUMN] == QUESTION
    assert text[1][STATUS] == "completed" and text[1][COST] == f"${sample.record['cost_usd']:.4f}"
    assert text[2][STARTED].startswith("Yesterday ") and text[2][STATUS] == "cap reached"
    assert text[2][COST] == "$2.00"
    assert text[0][STATUS] == "stopped" and text[0][COST] == "$0.0042"
    for column in (STATUS, QUESTION_COLUMN):  # the question shows the status too: its column may be hidden
        assert not model.data(model.index(1, column), Qt.ItemDataRole.DecorationRole).isNull()
    assert model.data(model.index(0, COST), RUN_ID_ROLE) == "stopped00002"
    assert model.headerData(QUESTION_COLUMN, Qt.Orientation.Horizontal) == "Question"
    model.refresh(None)
    assert model.rowCount() == 0
    model.refresh(case)
    assert model.run_count() == 4


def make_view(qtbot, case) -> RunHistoryView:
    view = RunHistoryView()
    qtbot.addWidget(view)
    view.resize(760, 220)
    view.set_case(case)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_double_click_and_enter_open_a_run(qtbot, sample, case):
    view = make_view(qtbot, case)
    assert view.stack.currentWidget() is view.tree
    rect = view.tree.visualRect(view.model.index(2, QUESTION_COLUMN))
    qtbot.mouseClick(view.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # a real double
    with qtbot.waitSignal(view.run_activated, timeout=1000) as blocker:  # click starts with a press
        qtbot.mouseDClick(view.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == ["capped000001"]
    view.select_run(sample.run_id)
    view.tree.setFocus()
    with qtbot.waitSignal(view.run_activated, timeout=1000) as blocker:
        qtbot.keyClick(view.tree, Qt.Key.Key_Return)
    assert blocker.args == [sample.run_id]


def test_context_menu_opens_follows_up_asks_again_or_exports(qtbot, case):
    view = make_view(qtbot, case)
    rect = view.tree.visualRect(view.model.index(0, STARTED))
    menu = view.context_menu_for(rect.center())
    named = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert named == ["Open run", "Ask a follow-up…", "Ask again", "Rename…", "Delete…", "Export report…"]
    for action, signal in (
        (view.export_action, view.export_requested),
        (view.open_action, view.run_activated),
        (view.follow_action, view.follow_up_requested),
        (view.rerun_action, view.rerun_requested),
    ):
        with qtbot.waitSignal(signal, timeout=1000) as blocker:
            action.trigger()
        assert blocker.args == ["stopped00002"]
    below_rows = QPoint(5, view.tree.viewport().height() - 3)
    assert view.context_menu_for(below_rows) is None  # no menu on empty space


def test_refresh_keeps_the_selection_and_no_case_shows_the_empty_state(qtbot, case):
    view = make_view(qtbot, case)
    view.select_run("capped000001")
    view.refresh()
    assert view.selected_run_id() == "capped000001"
    view.set_case(None)
    assert view.model.rowCount() == 0 and view.stack.currentWidget() is view.empty_label
    assert "No runs yet" in view.empty_label.text()


def test_local_time_text_is_readable():
    now = datetime(2025, 3, 10, 15, 0).astimezone()
    today = now.replace(hour=9, minute=5)
    assert local_time_text(today.isoformat(), now) == "Today 09:05"
    assert local_time_text((today - timedelta(days=1)).isoformat(), now) == "Yesterday 09:05"
    assert local_time_text((today - timedelta(days=5)).isoformat(), now) == "5 Mar 2025 09:05"
    assert local_time_text("not a date", now) == "not a date"


def test_the_question_column_stays_readable_in_a_narrow_pane(qtbot, case):
    view = make_view(qtbot, case)
    view.resize(320, 300)  # the left pane of a 1280x720 window
    qtbot.wait(10)
    assert view.tree.columnWidth(QUESTION_COLUMN) >= view.MIN_QUESTION_WIDTH
    assert view.tree.isColumnHidden(COST) and view.tree.isColumnHidden(STATUS)
    view.resize(760, 300)
    qtbot.wait(10)
    assert not any(view.tree.isColumnHidden(c) for c in (STARTED, STATUS, COST))
    assert view.tree.columnWidth(QUESTION_COLUMN) > 400


@pytest.fixture
def own_case(sample, tmp_path):
    """A copy of the sample case that a test may change."""
    with Case.open(sample.case_path) as opened:
        opened.checkpoint()
    path = tmp_path / "copy.sqlite"
    shutil.copy(sample.case_path, path)
    with Case.open(path) as opened:
        yield opened


def test_rename_and_delete_with_confirmation(qtbot, own_case):
    view = make_view(qtbot, own_case)
    view.select_run("stopped00002")
    view.ask_name = lambda current: None  # the dialog was cancelled
    assert not view.rename_current()
    view.ask_name = lambda current: "Invoice thread"
    with qtbot.waitSignal(view.run_renamed, timeout=1000):
        assert view.rename_current()
    assert view.model.data(view.model.index_of("stopped00002")) == "Invoice thread — List every email about the invoice"
    asked = []
    view.confirm = lambda title, text: asked.append(text) or False  # the user said Cancel
    assert not view.delete_current()
    assert "stopped00002" in view.model.run_ids()
    assert "“Invoice thread”" in asked[0] and "1 follow-up(s) stay in the thread" in asked[0]
    view.confirm = lambda title, text: True
    with qtbot.waitSignal(view.run_deleted, timeout=1000) as blocker:
        view.tree.setFocus()
        qtbot.keyClick(view.tree, Qt.Key.Key_Delete)
    assert blocker.args == ["stopped00002"]
    assert "stopped00002" not in view.model.run_ids()
    # the follow-up now starts its own thread; the case no longer holds the run or its steps
    assert view.model.index_of("follow000003").parent().isValid() is False
    assert own_case.conn.execute("SELECT count(*) FROM runs WHERE run_id = 'stopped00002'").fetchone()[0] == 0
