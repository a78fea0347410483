"""The REPL starts while the first root call is in flight; a REPL that cannot start stops that call at once."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from fake_openai import Reply
from rlm_script import PRICES, ROOT, SUB, repl

from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.sandbox import host
from rlm_desktop.store.case import Case


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        case.add_text_document("memo.txt", "The transfer was approved by Alice.")
    return path


def config(fake, **overrides):
    values = dict(root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES)
    values.update(max_retries=0, **overrides)
    return RunConfig(**values)


def test_a_repl_that_cannot_start_stops_the_call_in_flight_and_counts_it(fake_openai, case_path, monkeypatch):
    slow = Reply(repl("print(1)"), delay_s=20)
    fake_openai.handler = lambda request: slow
    # A machine whose worker dies at start (a real process that exits after 0.3 s without a word), so the
    # failure comes while the first root call is in flight.
    monkeypatch.setattr(host, "_failed_isolations", set())  # what this start learns must not outlive the test
    monkeypatch.setattr(host, "worker_command", lambda *a, **k: [sys.executable, "-c", "import time; time.sleep(0.3)"])
    started = time.monotonic()
    record = asyncio.run(run_rlm(case_path, "q", config(fake_openai), "k"))
    elapsed = time.monotonic() - started
    assert record["status"] == "failed"
    assert "no real wall around the REPL" in record["error"], record["error"]
    assert elapsed < 10, "the root call was waited for instead of stopped"
    assert len(fake_openai.chat_requests) == 1  # it was in flight ...
    assert record["cost_held_usd"] > 0  # ... so its cost is held against the cap, not forgotten

