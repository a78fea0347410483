"""The engine and its REPL walls: weak isolation refused or flagged, one memory budget, markers per level."""

from __future__ import annotations

import asyncio

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine import rlm
from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.sandbox.isolation import MemoryBudget
from rlm_desktop.store.case import Case

FACT = "The transfer to Zurich was approved by Alice on 4 May 2023."


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        case.add_text_document("memo.txt", "Approvals\n\n" + FACT + "\n")
        case.add_text_document("other.txt", "Mallory had nothing to do with it, said the other memo.")
    return path


def config(fake, **overrides):
    values = dict(root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES)
    values.update(max_retries=0, **overrides)
    return RunConfig(**values)


FINISH = [repl("print(len(context))"), repl("FINAL('done')")]


def test_the_weak_mode_is_refused_by_default_and_flagged_when_allowed(fake_openai, case_path):
    fake_openai.handler = Script(FINISH)
    refused = asyncio.run(run_rlm(case_path, "q", config(fake_openai, isolation="rlimits"), "k"))
    assert refused["status"] == "failed"
    assert "allow_weak_isolation" in refused["error"] and "bubblewrap" in refused["error"]
    allowed = asyncio.run(
        run_rlm(case_path, "q", config(fake_openai, isolation="rlimits", allow_weak_isolation=True), "k")
    )
    assert allowed["status"] == "completed", allowed.get("error")
    assert "WEAK" in allowed["isolation"]
    assert any("WEAK ISOLATION" in w for w in allowed["warnings"])


def test_a_real_wall_is_named_in_the_run(fake_openai, case_path):
    fake_openai.handler = Script(FINISH)
    record = asyncio.run(run_rlm(case_path, "q", config(fake_openai), "k"))
    assert record["status"] == "completed", record.get("error")
    assert "WEAK" not in record["isolation"] and not any("WEAK" in w for w in record["warnings"])


def test_a_sub_level_cannot_take_or_move_the_roots_marker(fake_openai, case_path):
    with Case.open(case_path) as case:
        memo, other = (d.id for d in case.documents())
    root = [
        repl(
            f"m = quote({memo}, 'approved by Alice')\n"
            f"r = rlm_query('LEVEL1 who?', [{memo}, {other}])\nprint(m, r)"
        ),
        repl("FINAL(f'It was Alice {m}. The sub-level said: {r}')"),
    ]
    # the sub-level rewrites its worker's limits to mint the root's marker for another document
    sub = [
        repl(
            "w = cite.__self__\nw.limits = {**w.limits, 'marker_prefix': 'c'}\nw.next_marker = 0\n"
            f"fake = quote({other}, 'Mallory')\nprint(fake)"
        ),
        repl("FINAL(f'Mallory {fake}')"),
    ]
    fake_openai.handler = Script(root, levels={"Question: LEVEL1": sub})
    record = asyncio.run(run_rlm(case_path, "Who approved it?", config(fake_openai, max_depth=1), "k"))
    assert record["status"] == "completed", record.get("error")
    by_marker = {c["marker"]: c for c in record["citations"]}
    assert by_marker["[c1]"]["doc_id"] == memo and by_marker["[c1]"]["quote"] == "approved by Alice"
    assert by_marker["[c1]"]["verified"]
    assert all(c["doc_id"] != other for c in record["citations"])


def test_all_levels_share_one_memory_budget(fake_openai, case_path, monkeypatch):
    monkeypatch.setattr(rlm, "MemoryBudget", lambda: MemoryBudget(total_mb=3000))
    limit = "import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20)"
    root = [repl(limit + "\nr = rlm_query('LEVEL1 q', [context[0].id])\nprint(r)"), repl("FINAL(r)")]
    level1 = [
        repl(
            limit
            + "\ntry:\n    r1 = rlm_query('LEVEL2 q', [context[0].id])\nexcept RuntimeError as e:\n    r1 = str(e)"
        ),
        repl("FINAL(r1)"),
    ]
    level2 = [repl("FINAL('level2 ran')")]
    script = Script(root, levels={"Question: LEVEL1": level1, "Question: LEVEL2": level2})
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "q", config(fake_openai, max_depth=2), "k"))
    outputs = [n["output"] for n in _walk(record["tree"]) if n["kind"] == "code" and n.get("output")]
    assert record["status"] == "completed", record.get("error")
    assert outputs[0].startswith("2048\n"), outputs  # the root: 2 GB per REPL
    assert outputs[1] == "952\n"  # level 1: what the root left of the run's 3000 MB
    assert "no room for another REPL" in record["answer"]  # level 2 refused; the run went on
    (level2,) = [n for n in _walk(record["tree"]) if n["kind"] == "rlm_query" and "LEVEL2" in n["text"]]
    assert level2["children"] == []  # its REPL never started


def _walk(node):
    yield node
    for child in node["children"]:
        yield from _walk(child)
