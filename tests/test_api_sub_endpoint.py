"""The Python API with sub-calls on their own endpoint: the stored (or $RLM_SUB_API_KEY) sub key goes there, and
the root's key never does, with or without a sub key."""

from __future__ import annotations

import json

import keyring
import pytest
from fake_openai import FakeOpenAIServer
from keyring.backends import fail
from rlm_script import PRICES, ROOT, SUB, Script, repl

import rlm_desktop
from rlm_desktop.secrets import sub_key_store
from rlm_desktop.store.case import Case

ROOT_KEY, SUB_KEY = "sk-root-provider-key-4W", "sub-cluster-token-8K"


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch):
    monkeypatch.delenv("RLM_SUB_API_KEY", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


@pytest.mark.parametrize("sub_key", ["stored", "environment", None])
def test_the_api_sends_the_sub_key_to_the_sub_endpoint_and_the_root_key_nowhere_else(tmp_path, monkeypatch, sub_key):
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The transfer was approved by Alice.")
    if sub_key == "stored":
        sub_key_store(home).set(SUB_KEY)
    elif sub_key == "environment":
        monkeypatch.setenv("RLM_SUB_API_KEY", SUB_KEY)
    with FakeOpenAIServer(api_key=ROOT_KEY) as root, FakeOpenAIServer(api_key=SUB_KEY if sub_key else None) as sub:
        root.handler = sub.handler = Script([repl("print(llm_query('who approved?'))"), repl("FINAL('Alice.')")])
        opened = rlm_desktop.open_case(
            "default", home=home, api_key=ROOT_KEY, base_url=root.base_url, sub_base_url=sub.base_url,
            root_model=ROOT, sub_model=SUB, price_args=PRICES,
        )  # fmt: skip
        answer = opened.ask("Who approved it?", cap_usd=0.5, max_iterations=5)
    assert answer.completed, answer.record.get("error")
    assert len(sub.chat_requests) == 1 and {r.json["model"] for r in root.chat_requests} == {ROOT}
    assert not any(ROOT_KEY in json.dumps(r.headers) for r in sub.requests)
    if sub_key:
        assert sub.chat_requests[0].headers["authorization"] == f"Bearer {SUB_KEY}"
