"""The ask panel through a real run against the fake server: the tree keeps following the newest step."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from rlm_script import PRICES, ROOT, SUB, Script, repl
from sample_case import write_documents

from rlm_desktop.engine.events import NodeStarted, RunFinished
from rlm_desktop.gui.ask_panel import AskPanel
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case

STEPS = 30


@pytest.fixture
def panel(qtbot, tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-follow")
    home = tmp_path / "home"
    settings = Settings(
        base_url=fake_openai.base_url,
        root_model=ROOT,
        sub_model=SUB,
        cap_usd=5.0,
        max_iterations=STEPS + 5,
        prices=dict(p.split("=") for p in PRICES),
    )
    settings.save(home)
    path = home / "cases" / "follow.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    case = Case.open(path)
    ingest(case, [write_documents(tmp_path / "docs")], jobs=1)
    widget = AskPanel(home, settings=lambda: settings)
    qtbot.addWidget(widget)
    widget.resize(600, 700)
    widget.show()
    widget.set_case(case)
    yield widget
    if widget.bridge.running:
        widget.bridge.cancel()
    case.close()


def many_steps() -> Script:
    turns = [repl(f"step_{i} = {i}\nprint(step_{i})") for i in range(STEPS)]
    return Script([*turns, repl("FINAL('done after many steps')")])


def test_follow_stays_on_through_a_long_run(qtbot, panel, fake_openai):
    """It once unticked itself as each run started (the root was selected as if by the user)."""
    fake_openai.handler = many_steps()
    unticked_at: list[str] = []

    def check(event: object) -> None:
        if isinstance(event, NodeStarted) and not panel.tree.follow.isChecked():
            unticked_at.append(event.node.id)

    panel.bridge.run_event.connect(check)
    with qtbot.waitSignal(panel.bridge.run_ended, timeout=60_000):
        assert panel.ask("Count the steps") is not None
    qtbot.wait(150)  # the follow timer settles on the last step
    views = list(panel.tree.model.views())
    assert len(views) > 2 * STEPS
    assert unticked_at == []
    assert panel.tree.follow.isChecked()
    newest = max(views, key=lambda v: v.started)
    assert panel.tree.selected_node().id == newest.id
    tree = panel.tree.tree
    assert tree.visualRect(tree.currentIndex()).intersects(tree.viewport().rect())  # scrolled into view


def test_scrolling_or_clicking_the_tree_stops_following(qtbot, panel, fake_openai):
    fake_openai.handler = Script(
        [repl(f"print({i})") for i in range(STEPS)] + [repl("FINAL('x')")], sub_delay_s=0
    )
    started: list[NodeStarted] = []
    panel.bridge.run_event.connect(lambda e: started.append(e) if isinstance(e, NodeStarted) else None)
    done: list[RunFinished] = []
    panel.bridge.run_event.connect(lambda e: done.append(e) if isinstance(e, RunFinished) else None)
    panel.ask("Scroll while it runs")
    qtbot.waitUntil(lambda: len(started) > 12, timeout=30_000)
    tree = panel.tree.tree
    assert panel.tree.follow.isChecked()
    wheel = QWheelEvent(
        tree.viewport().rect().center().toPointF(),
        tree.viewport().mapToGlobal(tree.viewport().rect().center()).toPointF(),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(tree.viewport(), wheel)  # the user scrolls up to read an earlier step
    assert not panel.tree.follow.isChecked()
    position = tree.verticalScrollBar().value()
    qtbot.waitUntil(lambda: bool(done), timeout=60_000)
    qtbot.wait(150)
    assert tree.verticalScrollBar().value() == position  # later steps did not pull the view away
    # ticking it again follows; a click in the tree stops it again
    panel.tree.follow.setChecked(True)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    assert not panel.tree.follow.isChecked()


def test_answer_tree_and_step_share_a_splitter_whose_sizes_are_kept(qtbot, tmp_path, panel):
    """The user's sizes survive a restart (a new panel on the same home); code that sets sizes saves nothing."""
    split = panel.split
    assert [split.widget(i) for i in range(split.count())] == [
        panel.answer,
        panel.tree.tree_pane,
        panel.tree.detail,
    ]
    qtbot.waitUntil(lambda: split.sizes()[1] > 0)
    tree_before = split.sizes()[1]
    split.moveSplitter(split.sizes()[0] + 80, 1)  # what dragging the first handle down does
    dragged = split.sizes()
    assert dragged[1] < tree_before
    again = AskPanel(panel.home, settings=panel._settings)
    qtbot.addWidget(again)
    again.resize(panel.size())
    again.show()
    qtbot.waitExposed(again)
    assert again.split.sizes() == dragged
    fresh = AskPanel(tmp_path / "another-home", settings=panel._settings)
    qtbot.addWidget(fresh)
    fresh.resize(600, 700)
    fresh.show()
    qtbot.waitExposed(fresh)
    answer, tree, detail = fresh.split.sizes()
    assert tree > answer > 0 and tree > detail > 0  # the tree gets the most room at first
