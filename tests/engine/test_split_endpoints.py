"""Sub-calls on their own endpoint with their own key, and a limit on requests in flight per endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from fake_openai import FakeOpenAIServer
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.store.case import Case

ROOT_KEY, SUB_KEY = "sk-root-provider-key", "sub-cluster-token"
FAN_OUT = [repl("rs = llm_query_batched([f'part {i}' for i in range(12)])\nprint(len(rs))"), repl("FINAL('done')")]


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        case.add_text_document("memo.txt", "The transfer was approved by Alice.")
    return path


@pytest.fixture
def servers():
    with FakeOpenAIServer(api_key=ROOT_KEY) as root, FakeOpenAIServer(api_key=SUB_KEY) as sub:
        script = Script(FAN_OUT, sub_delay_s=0.05)
        root.handler = sub.handler = script
        yield root, sub


def test_sub_calls_go_to_their_endpoint_with_their_key_and_its_in_flight_limit(servers, case_path):
    root, sub = servers
    config = RunConfig(
        root_model=ROOT, sub_model=SUB, base_url=root.base_url, sub_base_url=sub.base_url, cap_usd=1.0,
        price_args=PRICES, max_retries=0, concurrency=8, sub_max_in_flight=3,
    )
    record = asyncio.run(run_rlm(case_path, "q", config, ROOT_KEY, sub_api_key=SUB_KEY))
    assert record["status"] == "completed", record.get("error")
    assert {r.json["model"] for r in root.chat_requests} == {ROOT}
    assert [r.json["model"] for r in sub.chat_requests] == [SUB] * 12
    # the root's key never went to the other endpoint: every request there carried only its own
    assert all(r.headers.get("authorization") == f"Bearer {SUB_KEY}" for r in sub.requests)
    assert not any(ROOT_KEY in json.dumps(r.headers) for r in sub.requests)
    assert sub.max_in_flight <= 3  # the endpoint's limit, below the run's sub-call concurrency of 8
    assert record["usage"][SUB]["calls"] == 12  # one ledger: both endpoints' calls are counted
    assert config.public()["sub_base_url"].startswith("http://127.0.0.1:")


def test_ask_takes_a_sub_endpoint_and_sends_the_root_key_nowhere_else(servers, tmp_path):
    root, sub = servers
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting is on 12 June.")
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": ROOT_KEY}
    env.pop("RLM_SUB_API_KEY", None)
    args = [
        sys.executable, "-m", "rlm_desktop", "ask", "When?", "--json", "--base-url", root.base_url,
        "--sub-base-url", sub.base_url, "--root-model", ROOT, "--sub-model", SUB, "--sub-max-in-flight", "2",
        *(a for p in PRICES for a in ("--price", p)),
    ]
    sub.api_key = None  # a local server that needs no key
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "completed"
    assert len(sub.chat_requests) == 12 and sub.max_in_flight <= 2
    assert not any(ROOT_KEY in json.dumps(r.headers) for r in sub.requests)  # no key given: none sent


def test_the_engine_never_falls_back_to_the_root_key_for_another_endpoint(servers, case_path):
    # a caller that forgets the sub key (the window, serve and bench once did) sends none, not the root's
    root, sub = servers
    sub.api_key = None  # a local server that needs no key
    config = RunConfig(
        root_model=ROOT, sub_model=SUB, base_url=root.base_url, sub_base_url=sub.base_url, cap_usd=1.0,
        price_args=PRICES, max_retries=0,
    )
    record = asyncio.run(run_rlm(case_path, "q", config, ROOT_KEY))
    assert record["status"] == "completed", record.get("error")
    assert len(sub.chat_requests) == 12
    assert not any(ROOT_KEY in json.dumps(r.headers) for r in sub.requests)
