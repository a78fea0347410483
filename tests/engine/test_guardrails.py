"""Guardrails end to end: the cap never exceeded under concurrency, the kill switch, crash-safe trajectories."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.events import CostChanged, NodeFinished, NodeStarted, RunFinished
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.pricing import PriceTable
from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.engine.runs import list_runs, load_run
from rlm_desktop.sandbox.host import WORKER_SCRIPT
from rlm_desktop.store.case import Case


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        for i in range(20):
            case.add_text_document(f"doc {i}", f"Document {i} talks about invoices and payments. " * 200)
    return path


def config(fake, **overrides):
    values = dict(
        root_model=ROOT,
        sub_model=SUB,
        base_url=fake.base_url,
        cap_usd=1.0,
        price_args=PRICES,
        max_retries=0,
        root_max_output_tokens=1000,
        sub_max_output_tokens=500,
    )
    values.update(overrides)
    return RunConfig(**values)


@pytest.mark.parametrize("seed", range(6))
def test_recorded_spend_never_exceeds_the_cap(fake_openai, case_path, seed):
    rng = random.Random(seed)
    batches = [rng.randint(4, 30) for _ in range(6)]
    turns = [repl("print(len(context))")]
    for b, n in enumerate(batches):
        size = rng.randint(200, 6000)
        turns.append(
            repl(
                f"rs = llm_query_batched([f'batch {b} item {{i}}: ' + context[i % len(context)].text[:{size}]"
                f" for i in range({n})])\nprint(len(rs))"
            )
        )
    turns.append(repl("FINAL('all read')"))
    script = Script(turns, sub=lambda p: "x" * rng.randint(10, 3000), sub_delay_s=rng.choice([0, 0.01, 0.05]))
    fake_openai.handler = script
    cap = rng.choice([0.02, 0.04, 0.08])
    seen: list[float] = []
    record = asyncio.run(
        run_rlm(
            case_path,
            "Q",
            # a reply limit that leaves the smallest cap room for more than one root call's bound
            config(fake_openai, cap_usd=cap, concurrency=rng.randint(1, 8), root_max_output_tokens=600),
            "k",
            emit=lambda e: seen.append(e.spent_usd) if isinstance(e, CostChanged) else 0,
        )
    )
    assert record["cost_usd"] <= cap
    assert max(seen) <= cap
    # what the server says it served, priced independently, also stays under the cap
    prices = PriceTable(price_args=PRICES)
    served = 0.0
    for r in fake_openai.chat_requests:
        if r.status == 200:
            usage = r.response["usage"]
            served += prices.cost(r.json["model"], usage["prompt_tokens"], usage["completion_tokens"])
    assert served <= record["cost_usd"] + 1e-9 <= cap + 1e-9
    assert record["status"] in {"cap_reached", "completed"}
    if record["status"] == "cap_reached":
        assert "spending cap" in record["error"]
    assert sum(u["cost_usd"] for u in record["usage"].values()) == pytest.approx(record["cost_usd"], abs=1e-6)


def test_cancel_ends_the_run_within_250_ms_and_keeps_the_trajectory(fake_openai, case_path):
    script = Script(
        [
            repl("print(len(context))"),
            repl("rs = llm_query_batched([f'slow {i}' for i in range(4)])\nprint(rs)"),
        ],
        sub_delay_s=30,
    )
    fake_openai.handler = script
    handle = RunHandle(case_path, "Q", config(fake_openai), "k")
    in_flight = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, NodeStarted) and event.node.kind == "llm_query":
            in_flight.set()

    handle.subscribe(on_event)
    handle.start()
    assert in_flight.wait(20)
    fake_openai.wait_for_requests(2 + 4, timeout_s=10)  # 2 root turns and the 4 sub-calls arrived
    started = time.monotonic()
    handle.cancel()
    record = handle.wait(5)
    latency = time.monotonic() - started
    assert latency < 0.25, latency
    assert record["status"] == "cancelled"
    assert isinstance(events[-1], RunFinished)
    subs = [n for n in _walk(record["tree"]) if n["kind"] == "llm_query"]
    assert len(subs) == 4 and all(n["status"] == "cancelled" for n in subs)
    # every step the stop ended was announced, so a live view ends exactly like the saved record
    ended = {e.node.id: e.node.status for e in events if isinstance(e, NodeFinished)}
    assert all(ended.get(n["id"]) == n["status"] for n in _walk(record["tree"]))
    with Case.open(case_path) as case:
        saved = load_run(case, record["run_id"])
    assert saved["status"] == "cancelled" and len(list(_walk(saved["tree"]))) == len(
        list(_walk(record["tree"]))
    )
    time.sleep(0.2)
    # this checkout's workers only: other checkouts on the machine may be running their own tests
    workers = subprocess.run(["pgrep", "-af", str(WORKER_SCRIPT)], capture_output=True, text=True)
    assert workers.stdout.strip() == "", "a REPL worker outlived the cancelled run"


def _walk(node):
    yield node
    for child in node["children"]:
        yield from _walk(child)


def test_a_killed_ask_process_leaves_a_readable_partial_run(fake_openai, case_path, tmp_path):
    script = Script(
        [repl("print(len(context))"), repl("r = llm_query('slow question')\nprint(r)")], sub_delay_s=60
    )
    fake_openai.handler = script
    home = case_path.parent
    (home / "cases").mkdir()
    os.replace(case_path, home / "cases" / "default.sqlite")
    env = {**os.environ, "OPENAI_API_KEY": "sk-secret-test", "RLM_DESKTOP_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlm_desktop",
            "ask",
            "Q",
            "--base-url",
            fake_openai.base_url,
            "--root-model",
            ROOT,
            "--sub-model",
            SUB,
            *(a for p in PRICES for a in ("--price", p)),
            "--cap",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        fake_openai.wait_for_requests(3, timeout_s=30)  # two root turns and the slow sub-call
        time.sleep(0.7)  # past the save interval
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.communicate()  # closes the pipes
    with Case.open(home / "cases" / "default.sqlite") as case:
        (run_id,) = [r[0] for r in case.conn.execute("SELECT run_id FROM runs")]
        record = load_run(case, run_id)
        (summary,) = list_runs(case)
        billed_at_save = json.loads(case.conn.execute("SELECT record FROM runs").fetchone()[0])["cost_usd"]
    assert record["status"] == summary.status == "failed" and "interrupted" in record["error"]
    # the sub-call in flight when it died may be billed: its reservation is held, in the run and the list
    assert record["cost_held_usd"] > 0 and record["cost_usd"] > billed_at_save
    assert summary.cost_usd == pytest.approx(record["cost_usd"])
    kinds = [n["kind"] for n in _walk(record["tree"])]
    assert kinds.count("iteration") == 2 and "code" in kinds
    assert "sk-secret-test" not in json.dumps(record)


def test_cap_reached_inside_code_that_swallows_errors_ends_the_run_at_once(fake_openai, case_path):
    script = Script(
        [
            repl("print(len(context))"),
            repl(
                "i = 0\nwhile True:\n    i += 1\n    try:\n        llm_query(f'q{i} ' + 'z' * 4000)\n"
                "    except Exception:\n        pass"
            ),
        ]
    )
    fake_openai.handler = script
    started = time.monotonic()
    cfg = config(fake_openai, cap_usd=0.02, cell_timeout_s=120, root_max_output_tokens=600)
    record = asyncio.run(run_rlm(case_path, "Q", cfg, "k"))
    assert record["status"] == "cap_reached" and record["cost_usd"] <= 0.02
    assert time.monotonic() - started < 10  # not the 120 s cell timeout


def test_wall_clock_limit_stops_a_slow_run(fake_openai, case_path):
    script = Script([repl("print(1)"), repl("r = llm_query('a very slow question')")], sub_delay_s=30)
    fake_openai.handler = script
    started = time.monotonic()
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai, max_wall_s=1.5), "k"))
    assert record["status"] == "limit_reached" and "wall-clock" in record["error"]
    assert time.monotonic() - started < 5
    (sub,) = [n for n in _walk(record["tree"]) if n["kind"] == "llm_query"]
    assert sub["status"] == "cancelled"
