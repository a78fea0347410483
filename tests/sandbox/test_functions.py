"""REPL functions that call the host: one declaration makes the worker's stub, the host's check and the prompt."""

from __future__ import annotations

import pytest

from rlm_desktop.engine.rlm import Level
from rlm_desktop.sandbox import functions, protocol


def test_every_declared_function_has_a_host_handler_and_a_request_kind():
    names = [fn.name for fn in functions.REPL_FUNCTIONS]
    assert set(Level.HANDLERS) == set(names) and tuple(names) == protocol.REQUEST_KINDS


def test_stubs_check_arguments_and_answers_before_and_after_the_host():
    sent = []

    def host(kind, payload):
        sent.append((kind, payload))
        return ["a", "b"] if kind == "llm_query_batched" else 42

    stubs = {fn.name: functions.make_stub(fn, host) for fn in functions.REPL_FUNCTIONS}

    class Doc:
        id = 7

    assert stubs["llm_query"]("hi") == "42"
    assert stubs["llm_query_batched"](("x", "y")) == ["a", "b"]
    assert stubs["llm_query_batched"]([]) == []  # nothing to ask: no request at all
    assert stubs["rlm_query"]("who?", [Doc(), 3]) == "42"
    assert stubs["rlm_query"]("who?", Doc()) == "42"
    assert sent == [
        ("llm_query", {"prompt": "hi"}),
        ("llm_query_batched", {"prompts": ["x", "y"]}),
        ("rlm_query", {"question": "who?", "doc_ids": [7, 3]}),
        ("rlm_query", {"question": "who?", "doc_ids": [7]}),
    ]
    with pytest.raises(TypeError, match=r"llm_query\(prompt\): prompt must be a str"):
        stubs["llm_query"](b"bytes")
    with pytest.raises(TypeError, match="list of str"):
        stubs["llm_query_batched"]("not a list")
    with pytest.raises(RuntimeError, match="wrong number of answers"):
        stubs["llm_query_batched"](["only one"])
    assert stubs["llm_query"].__name__ == "llm_query" and "sub-model" in stubs["llm_query"].__doc__


@pytest.mark.parametrize(
    ("kind", "payload", "problem"),
    [
        ("llm_query", {"prompt": "ok"}, None),
        ("llm_query", {"prompt": 1}, "llm_query needs a str prompt"),
        ("llm_query", {"prompt": "x", "extra": 1}, "llm_query got the wrong arguments"),
        ("llm_query_batched", {"prompts": ["a", 2]}, "llm_query_batched needs a list of str prompts"),
        ("rlm_query", {"question": "q", "doc_ids": [1, True]}, "rlm_query needs a list of int document ids"),
        ("open_file", {"path": "/etc/passwd"}, "unknown request 'open_file'"),
        ("llm_query", ["not", "a", "dict"], "unknown request 'llm_query'"),
    ],
)
def test_the_host_checks_every_request_the_worker_sends(kind, payload, problem):
    assert functions.check_request(kind, payload) == problem


def test_the_prompt_table_lists_every_function():
    table = functions.prompt_table()
    assert all(f"`{fn.signature}`" in table for fn in functions.REPL_FUNCTIONS)
    assert "`rlm_query(question, docs)`" in table


def test_the_system_prompt_lists_the_declared_functions():
    from rlm_desktop.engine.rlm import system_prompt

    prompt = system_prompt()
    assert "{repl_functions}" not in prompt
    assert functions.prompt_table() in prompt
