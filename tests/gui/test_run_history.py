"""Run history: the case's saved runs, newest first; open one or ask for its report."""

from __future__ import annotations

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
    """The sample case's real run plus two older runs saved through the engine's RunStore."""
    with FakeOpenAIServer() as server:
        sample = build_sample_case(tmp_path_factory.mktemp("history"), server)
    store = RunStore(sample.case_path)
    now = datetime.now(UTC)
    for run_id, question, status, cost, age in (
        (
            "capped000001",
            "Who approved the payments to Blue Heron Ltd?",
            "cap_reached",
            2.0,
            timedelta(days=1),
        ),
        ("stopped00002", "List every email about the invoice", "cancelled", 0.0042, timedelta(days=40)),
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
            },
            [],
        )
    store.close()
    return sample


@pytest.fixture
def case(sample):
    with Case.open(sample.case_path) as opened:
        yield opened


def test_model_lists_the_runs_newest_first(qapp, qtmodeltester, sample, case):
    model = RunHistoryModel()
    qtmodeltester.check(model, force_py=True)
    model.refresh(case)
    assert model.rowCount() == 3 and model.columnCount() == 4
    assert model.run_ids() == [sample.run_id, "capped000001", "stopped00002"]
    text = [[model.data(model.index(row, column)) for column in range(4)] for row in range(3)]
    assert text[0][STARTED].startswith("Today ")
    assert text[0][QUESTION_COLUMN] == QUESTION
    assert text[0][STATUS] == "completed" and text[0][COST] == f"${sample.record['cost_usd']:.4f}"
    assert text[1][STARTED].startswith("Yesterday ") and text[1][STATUS] == "cap reached"
    assert text[1][COST] == "$2.00"
    assert text[2][STATUS] == "stopped" and text[2][COST] == "$0.0042"
    assert not model.data(model.index(0, STATUS), Qt.ItemDataRole.DecorationRole).isNull()
    assert model.data(model.index(2, COST), RUN_ID_ROLE) == "stopped00002"
    assert model.headerData(QUESTION_COLUMN, Qt.Orientation.Horizontal) == "Question"
    model.refresh(None)
    assert model.rowCount() == 0


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
    assert view.stack.currentWidget() is view.table
    rect = view.table.visualRect(view.model.index(1, QUESTION_COLUMN))
    qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # a real double
    with qtbot.waitSignal(view.run_activated, timeout=1000) as blocker:  # click starts with a press
        qtbot.mouseDClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == ["capped000001"]
    view.select_run(sample.run_id)
    view.table.setFocus()
    with qtbot.waitSignal(view.run_activated, timeout=1000) as blocker:
        qtbot.keyClick(view.table, Qt.Key.Key_Return)
    assert blocker.args == [sample.run_id]


def test_context_menu_opens_or_exports(qtbot, case):
    view = make_view(qtbot, case)
    rect = view.table.visualRect(view.model.index(2, STARTED))
    menu = view.context_menu_for(rect.center())
    assert [a.text() for a in menu.actions()] == ["Open run", "Export report…"]
    with qtbot.waitSignal(view.export_requested, timeout=1000) as blocker:
        menu.actions()[1].trigger()
    assert blocker.args == ["stopped00002"]
    with qtbot.waitSignal(view.run_activated, timeout=1000) as blocker:
        menu.actions()[0].trigger()
    assert blocker.args == ["stopped00002"]
    below_rows = QPoint(5, view.table.viewport().height() - 3)
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
