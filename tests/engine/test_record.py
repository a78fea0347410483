"""The typed run record: its dict form is the contract's JSON, and replay shows a saved run as a live one."""

from __future__ import annotations

import json

import pytest
from sample_case import build_sample_case

from rlm_desktop.engine.events import CostChanged, NodeFinished, NodeStarted, RunFinished, RunStarted
from rlm_desktop.engine.record import NodeRecord, RunRecord, replay
from rlm_desktop.engine.runs import load_run
from rlm_desktop.store.case import Case
from tests.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    with FakeOpenAIServer() as fake:
        built = build_sample_case(tmp_path_factory.mktemp("record"), fake)
    with Case.open(built.case_path) as case:
        return load_run(case, built.run_id)


def test_dict_form_round_trips_exactly(record):
    typed = RunRecord.from_dict(record)
    assert json.dumps(typed.to_dict(), sort_keys=True) == json.dumps(
        {
            **record,
            "follows": record.get("follows"),
            "cost_held_estimate_usd": record["cost_held_estimate_usd"],
        },
        sort_keys=True,
    )
    assert typed.citations[0].verified and typed.tree is not None and typed.tree.kind == "root"
    assert typed.cost_billed_usd + typed.cost_held_usd == pytest.approx(typed.cost_usd)


def test_replay_emits_what_a_live_run_would(record):
    events = list(replay(record))
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    started = [e.node.id for e in events if isinstance(e, NodeStarted)]
    all_ids = [n["id"] for n in _walk(record["tree"])]
    assert [events[0].root.id, *started] == all_ids  # parents before children, siblings in order
    finished = {e.node.id: e.node for e in events if isinstance(e, NodeFinished)}
    assert set(finished) == set(all_ids)
    sub = next(n for n in _walk(record["tree"]) if n["kind"] == "llm_query")
    assert finished[sub["id"]].detail["response"] == sub["response"]
    (cost,) = [e for e in events if isinstance(e, CostChanged)]
    assert cost.spent_usd == record["cost_usd"] and cost.calls == sum(
        u["calls"] for u in record["usage"].values()
    )
    assert events[-1].record == record


def test_an_old_record_without_billed_or_held_counts_all_as_billed():
    old = {"run_id": "x", "question": "q", "status": "completed", "cost_usd": 0.25, "usage": {}, "tree": None}
    typed = RunRecord.from_dict(old)
    assert typed.cost_billed_usd == 0.25 and typed.cost_held_usd == 0.0
    assert [type(e).__name__ for e in replay(old)] == [
        "RunStarted",
        "CostChanged",
        "NodeFinished",
        "RunFinished",
    ]


def test_node_walk_gives_parents():
    tree = NodeRecord.from_dict(
        {
            "id": "a",
            "kind": "root",
            "children": [{"id": "b", "kind": "iteration", "children": [{"id": "c", "kind": "code"}]}],
        }
    )
    assert [(n.id, p) for n, p in tree.walk()] == [("a", None), ("b", "a"), ("c", "b")]


def _walk(node):
    yield node
    for child in node.get("children", []):
        yield from _walk(child)
