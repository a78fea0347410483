"""The run tree model: grows live from events without resets, buffers orphans, loads saved runs alike."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtTest import QAbstractItemModelTester
from sample_case import QUESTION, answer_script, build_sample_case, run_config

from rlm_desktop.engine.events import (
    CostChanged,
    NodeFinished,
    NodeStarted,
    NodeUpdated,
    NodeView,
    RunFinished,
    RunStarted,
)
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.runs import load_run
from rlm_desktop.gui.run_tree_model import (
    COST,
    MODEL,
    NODE_ROLE,
    STATUS,
    STEP,
    TIME,
    TOKENS,
    RunTreeModel,
    step_label,
)
from rlm_desktop.store.case import Case

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def node(node_id: str, parent: str | None, kind: str, text: str = "", **changes) -> NodeView:
    values = dict(
        id=node_id,
        parent_id=parent,
        kind=kind,
        model=None,
        status="running",
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        started=at(0),
        ended=None,
        text=text,
        detail={},
        spans=(),
    )
    values.update(changes)
    return NodeView(**values)


def done(view: NodeView, seconds: float, **changes) -> NodeView:
    return replace(view, status=changes.pop("status", "done"), ended=at(seconds), **changes)


def rows(model: RunTreeModel, parent=None) -> list[list[str]]:
    """Every row's display texts, depth first, with the depth as a prefix of the step."""
    from PySide6.QtCore import QModelIndex

    out: list[list[str]] = []

    def visit(index, depth: int) -> None:
        for row in range(model.rowCount(index)):
            child = model.index(row, 0, index)
            texts = [model.data(model.index(row, c, index)) for c in range(model.columnCount())]
            out.append(["  " * depth + texts[0], *texts[1:]])
            visit(child, depth + 1)

    visit(parent or QModelIndex(), 0)
    return out


def full_check(model: RunTreeModel) -> None:
    """Qt's model tester walks the whole model once (its failures are Qt warnings: marked tests fail on them)."""
    tester = QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Warning)
    del tester


def check_store(model: RunTreeModel) -> None:
    """Every node is found by id at the row its parent lists it at."""
    for view in model.views():
        index = model.index_of(view.id)
        assert index.isValid() and model.node(index) is view
        parent = model.parent(index)
        assert model.index(index.row(), 0, parent) == index
        if view.parent_id is None:
            assert not parent.isValid()
        else:
            assert model.node(parent).id == view.parent_id


def scripted_events() -> list[object]:
    root = node("n0", None, "root", QUESTION, started=at(0))
    it1 = node("n1", "n0", "iteration", model="gpt-5", started=at(0.1), detail={"number": 1, "depth": 0})
    it1_text = replace(
        it1,
        text="```repl\nhits = search('Rotterdam')\n```",
        prompt_tokens=1234,
        completion_tokens=56,
        cost_usd=0.0021,
    )
    code = node(
        "n2", "n1", "code", "hits = search('Rotterdam')\nprint(hits)", started=at(0.5), detail={"block": 1}
    )
    sub = node(
        "n4",
        "n3",
        "llm_query",
        "When did the shipment leave? Text: Harbour report …",
        model="gpt-5-mini",
        started=at(0.7),
    )
    rlm = node("n3", "n1", "rlm_query", "Who signed the report?", model="gpt-5", started=at(0.6))
    return [
        RunStarted("r1", QUESTION, root),
        NodeStarted("r1", it1),
        NodeUpdated("r1", it1_text),
        NodeStarted("r1", code),
        CostChanged("r1", 0.0021, 0.0, 1.0, 1, 1234, 56, 0.4),
        NodeFinished("r1", done(code, 0.55, detail={"block": 1, "output": "[hit]\n", "error": None})),
        NodeStarted("r1", sub),  # its parent (n3) is not known yet
        NodeUpdated("r1", replace(sub, text=sub.text + " (updated while waiting)")),
        NodeStarted("r1", rlm),
        NodeFinished("r1", done(sub, 1.9, prompt_tokens=53, completion_tokens=3, cost_usd=0.00002)),
        NodeFinished("r1", done(rlm, 2.0, detail={"answer": "the harbour master"})),
        NodeFinished("r1", done(it1_text, 2.1)),
        NodeFinished("r1", done(root, 2.2, status="completed", prompt_tokens=1287, completion_tokens=59)),
    ]


@pytest.mark.qt_log_level_fail("WARNING")
def test_scripted_run_grows_without_resets_and_passes_the_model_tester(qapp, qtmodeltester):
    model = RunTreeModel()
    qtmodeltester.check(model, force_py=True)  # re-checks the whole model on every signal
    resets = []
    events = scripted_events()
    model.apply(events[0])
    model.modelAboutToBeReset.connect(lambda: resets.append(1))
    persistent = QPersistentModelIndex(model.index_of("n0"))
    for event in events[1:]:
        model.apply(event)
        full_check(model)
        check_store(model)
        if isinstance(event, NodeStarted) and event.node.id == "n3":
            # the sub-call that waited for this parent arrived with the update it got while waiting
            assert model.node_by_id("n4").text.endswith("(updated while waiting)")
    assert not resets, "the model must never reset during a run"
    assert persistent.isValid() and persistent.row() == 0
    assert model.pending == 0 and len(model) == 5
    table = rows(model)
    assert [r[0] for r in table] == [
        "Root: When did the shipment leave Rotterdam, and what happened…",
        "  Iteration 1",
        "    Code: hits = search('Rotterdam')  (+1 line)",
        "    Sub-RLM: Who signed the report?",
        "      Sub-call: When did the shipment leave? Text: Harbour…",
    ]
    iteration = table[1]
    assert iteration[STATUS] == "done" and iteration[MODEL] == "gpt-5"
    assert iteration[TOKENS] == "1,234 in / 56 out" and iteration[COST] == "$0.0021"
    assert iteration[TIME] == "2.0 s"
    assert table[2][TOKENS] == "" and table[2][COST] == ""  # code calls no model
    assert table[4][COST] == "<$0.0001" and table[4][TIME] == "1.2 s"
    assert model.node_by_id("n4").status == "done"
    icon = model.data(model.index_of("n1", STATUS), Qt.ItemDataRole.DecorationRole)
    assert not icon.isNull()


def test_orphans_wait_for_their_parent_in_order(qapp, qtmodeltester):
    model = RunTreeModel()
    qtmodeltester.check(model, force_py=True)
    model.apply(RunStarted("r", "q", node("n0", None, "root", "q")))
    model.apply(NodeStarted("r", node("n3", "n2", "llm_query", "first")))
    model.apply(NodeStarted("r", node("n4", "n2", "llm_query", "second")))
    model.apply(NodeStarted("r", node("n5", "n4", "llm_query", "grandchild of a late parent")))
    model.apply(NodeUpdated("r", node("n3", "n2", "llm_query", "first, updated")))
    assert model.pending == 3 and len(model) == 1
    assert not model.index_of("n3").isValid()
    model.apply(NodeStarted("r", node("n2", "n0", "code", "x = 1")))
    assert model.pending == 0 and len(model) == 5
    code = model.index_of("n2")
    assert [model.node(model.index(r, 0, code)).id for r in range(model.rowCount(code))] == ["n3", "n4"]
    assert model.node_by_id("n3").text == "first, updated"
    assert model.node(model.parent(model.index_of("n5"))).id == "n4"
    check_store(model)


def test_events_of_another_run_are_ignored_and_a_new_run_starts_afresh(qapp, qtmodeltester):
    model = RunTreeModel()
    qtmodeltester.check(model, force_py=True)
    model.apply(RunStarted("a", "first", node("n0", None, "root", "first")))
    model.apply(NodeStarted("a", node("n1", "n0", "iteration", detail={"number": 1})))
    model.apply(NodeStarted("old", node("n9", "n0", "iteration", detail={"number": 9})))
    assert len(model) == 2 and "n9" not in model
    model.apply(RunStarted("b", "second", node("n0", None, "root", "second")))
    assert len(model) == 1 and model.run_id == "b"
    assert model.data(model.index_of("n0")) == "Root: second"
    model.apply(NodeStarted("a", node("n1", "n0", "iteration", detail={"number": 1})))  # late event of run a
    assert len(model) == 1
    model.clear()
    assert len(model) == 0 and model.rowCount() == 0 and model.run_id is None


def test_running_steps_count_their_time_and_run_finished_closes_leftovers(qtbot, qtmodeltester):
    model = RunTreeModel()
    qtmodeltester.check(model, force_py=True)
    started = datetime.now(UTC) - timedelta(seconds=3)
    root = node("n0", None, "root", "q", started=started.isoformat())
    it1 = node("n1", "n0", "iteration", started=started.isoformat(), detail={"number": 1})
    model.apply(RunStarted("r", "q", root))
    model.apply(NodeStarted("r", it1))
    shown = model.data(model.index_of("n1", TIME))
    assert shown.endswith(" s") and 2.5 <= float(shown.split()[0]) < 30
    ticks = []
    model.dataChanged.connect(lambda tl, br, roles=(): ticks.append((tl.column(), br.column())))
    qtbot.waitUntil(lambda: (TIME, TIME) in ticks, timeout=3000)  # the clock refreshes by itself
    # the engine ends leftovers with a NodeFinished each, then the run
    ended = datetime.now(UTC).isoformat()
    model.apply(NodeFinished("r", replace(it1, status="cancelled", ended=ended)))
    model.apply(NodeFinished("r", replace(root, status="cancelled", ended=ended)))
    model.apply(RunFinished("r", "cancelled", {"run_id": "r"}))
    assert model.data(model.index_of("n1", STATUS)) == "cancelled"
    assert model.data(model.index_of("n0", STATUS)) == "cancelled"
    assert not model.live


def test_saved_run_with_a_running_node_shows_no_growing_time(qapp, qtmodeltester):
    model = RunTreeModel()
    qtmodeltester.check(model, force_py=True)
    tree = {"id": "n0", "kind": "root", "status": "failed", "started": at(0), "ended": None, "text": "q"}
    tree["children"] = [{"id": "n1", "kind": "iteration", "status": "running", "started": at(1), "number": 1}]
    model.load_record({"run_id": "x", "tree": tree})
    assert model.data(model.index_of("n1", TIME)) == ""
    assert model.data(model.index_of("n1", STEP)) == "Iteration 1"


@pytest.mark.qt_log_level_fail("WARNING")
def test_thousands_of_nodes_grow_and_load_quickly(qapp):
    model = RunTreeModel()
    model.apply(RunStarted("big", "q", node("n0", None, "root", "q")))
    count = 0
    begin = time.perf_counter()
    for i in range(1, 51):
        it = node(f"i{i}", "n0", "iteration", detail={"number": i})
        model.apply(NodeStarted("big", it))
        code = node(f"c{i}", f"i{i}", "code", f"llm_query_batched(chunks[{i}])")
        model.apply(NodeStarted("big", code))
        for j in range(60):
            sub = node(f"s{i}.{j}", f"c{i}", "llm_query", f"Summarise chunk {j}", model="gpt-5-mini")
            model.apply(NodeStarted("big", sub))
            model.apply(NodeFinished("big", done(sub, 1, prompt_tokens=900, completion_tokens=40)))
            count += 1
    elapsed = time.perf_counter() - begin
    assert len(model) == 1 + 50 * 62
    assert elapsed < 5, f"{count} live sub-calls took {elapsed:.1f} s"
    index = model.index_of("s37.59")
    assert index.row() == 59 and model.node(model.parent(index)).id == "c37"
    record = {"run_id": "big", "tree": _as_record(model)}
    begin = time.perf_counter()
    model.load_record(record)
    assert time.perf_counter() - begin < 3
    assert len(model) == 1 + 50 * 62
    full_check(model)  # the Python tester would take too long on every insert here


def _as_record(model: RunTreeModel) -> dict:
    nodes: dict[str, dict] = {}
    root = None
    for view in model.views():
        data = {
            "id": view.id,
            "kind": view.kind,
            "model": view.model,
            "status": view.status,
            "prompt_tokens": view.prompt_tokens,
            "completion_tokens": view.completion_tokens,
            "cost_usd": view.cost_usd,
            "started": view.started,
            "ended": view.ended,
            "text": view.text,
            "spans": [],
            "children": [],
            **view.detail,
        }
        nodes[view.id] = data
        if view.parent_id is None:
            root = data
        else:
            nodes[view.parent_id]["children"].append(data)
    return root


def test_step_labels_cover_every_kind():
    assert step_label(node("a", None, "iteration", detail={"number": 3, "final_request": True})) == (
        "Iteration 3 (asked for the final answer)"
    )
    long_prompt = "When did the shipment leave Rotterdam and who signed for the forty containers?"
    assert (
        step_label(node("b", "a", "llm_query", long_prompt))
        == "Sub-call: When did the shipment leave Rotterdam and who…"
    )
    assert step_label(node("c", "a", "code", "\n\nx = 1\n")) == "Code: x = 1"


class Bridge(QObject):
    """Carries engine events to the GUI thread (a queued connection), as the window's bridge does."""

    event = Signal(object)


def test_live_and_saved_runs_look_identical(qtbot, qtmodeltester, tmp_path, fake_openai):
    sample = build_sample_case(tmp_path)  # documents only; the run happens live below
    fake_openai.handler = answer_script()
    live = RunTreeModel()
    qtmodeltester.check(live, force_py=True)
    bridge = Bridge()
    seen: list[object] = []
    bridge.event.connect(live.apply, Qt.ConnectionType.QueuedConnection)
    bridge.event.connect(seen.append, Qt.ConnectionType.QueuedConnection)
    handle = RunHandle(sample.case_path, QUESTION, run_config(fake_openai), "sk-test")
    handle.subscribe(lambda event: bridge.event.emit(event))
    resets = []
    live.modelAboutToBeReset.connect(lambda: resets.append(1))
    handle.start()
    qtbot.waitUntil(lambda: any(isinstance(e, RunFinished) for e in seen), timeout=30_000)
    assert len(resets) == 1  # only the RunStarted of this new run
    assert handle.wait(5)["status"] == "completed"
    kinds = [v.kind for v in live.views()]
    assert kinds == ["root", "iteration", "code", "iteration", "code", "llm_query", "llm_query"]

    saved = RunTreeModel()
    qtmodeltester.check(saved, force_py=True)
    with Case.open(sample.case_path) as case:
        saved.load_record(load_run(case, handle.run_id))
    assert rows(saved) == rows(live)
    sub = saved.node(saved.index_of("n5"))
    assert sub.detail["prompt_spans"][0]["doc_id"] == sub.spans[0][0]
    assert saved.data(saved.index_of("n5"), NODE_ROLE) is sub


def test_emitting_signals_never_drops_references_to_true(qapp):
    """PySide6 6.12.0 drops a reference to True on every emit until Python 3.11 aborts (bool_dealloc);
    pyproject.toml excludes it. This fails, instead of crashing a later test, if such a build comes back."""
    model = RunTreeModel()
    before = sys.getrefcount(True)
    for _ in range(500):
        model.dataChanged.emit(model.index(0, 0), model.index(0, 0))
    assert sys.getrefcount(True) >= before - 50  # other code may drop a few; a leak would drop 500
