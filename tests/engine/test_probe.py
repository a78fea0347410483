"""probe_endpoint over real HTTP, with the real openai client, against a server with switchable quirks."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from rlm_desktop.engine.endpoints import endpoint_key, endpoints_path, load_caps, save_caps
from rlm_desktop.engine.model_info import ModelCaps
from rlm_desktop.engine.pricing import Price, PriceTable
from rlm_desktop.engine.probe import (
    PROBE_MAX_TOKENS,
    describe_model,
    probe_endpoint_sync,
    redact,
    save_report,
)
from rlm_desktop.settings import Settings, run_config
from tests.probe_server import ProbeServer, Quirks

MODEL = "tidy-model"


def probe(quirks: Quirks, models=(MODEL,), key: str = "", **kwargs):
    with ProbeServer(quirks) as server:
        report = probe_endpoint_sync(server.base_url, key, list(models), timeout_s=5, **kwargs)
    return report, server


def chat_bodies(server: ProbeServer) -> list[dict]:
    return [r.json for r in server.chat_requests]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tidy_server_is_found_tidy_with_few_tiny_calls():
    prices = PriceTable(overrides={MODEL: "1:2"})
    report, server = probe(Quirks(), prices=prices)
    [m] = report.models
    assert report.ok and report.problem is None and report.listed == ["tidy-model", "other-model"]
    caps = m.caps
    assert caps.token_param == "max_completion_tokens"
    assert (caps.streaming, caps.stream_usage, caps.usage_reported) == (True, True, True)
    assert caps.reasoning_field is None and caps.listed is True and caps.probed_at
    bodies = chat_bodies(server)
    assert len(bodies) == m.calls == 2
    assert all(b["max_completion_tokens"] <= 64 and "max_tokens" not in b for b in bodies)
    assert "stream" not in bodies[0] and bodies[1]["stream_options"] == {"include_usage": True}
    # both calls billed from the usage the server reported (12 in, 2 out)
    assert m.cost_usd == pytest.approx(2 * Price(1, 2).cost(12, 2)) and not m.cost_estimated
    assert (m.prompt_tokens, m.completion_tokens) == (24, 4)
    assert m.reply == "OK" and m.latency_s is not None


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        ("400", "Unrecognized request argument supplied: max_completion_tokens"),
        ("422", "max_completion_tokens: Extra inputs are not permitted"),  # FastAPI's detail list, read
    ],
)
def test_a_refused_max_completion_tokens_falls_back_to_max_tokens(refusal, said):
    report, server = probe(Quirks(refuse_max_completion_tokens=refusal))
    [m] = report.models
    assert report.ok and m.caps.token_param == "max_tokens"
    assert any(said in note and f"HTTP {refusal}" in note for note in m.notes)
    bodies = chat_bodies(server)
    assert "max_completion_tokens" in bodies[0] and bodies[1]["max_tokens"] == PROBE_MAX_TOKENS
    # once known, the streaming test sends the parameter that works straight away
    assert all("max_tokens" in b for b in bodies[1:])
    assert ("output limit", "takes max_tokens") in describe_model(m)


def test_a_model_that_refuses_max_tokens_is_never_sent_it():
    report, server = probe(Quirks(refuse_max_tokens=True))
    assert report.models[0].caps.token_param == "max_completion_tokens"
    assert not any("max_tokens" in b for b in chat_bodies(server))


@pytest.mark.parametrize("usage", ["none", "missing", "zero", "total_only"])
def test_null_zero_or_total_only_usage_counts_as_not_reported(usage):
    prices = PriceTable(overrides={MODEL: "1:2"})
    report, _ = probe(Quirks(usage=usage, stream_usage=False), prices=prices)
    [m] = report.models
    assert m.caps.usage_reported is False and m.caps.stream_usage is False
    # unknown usage is estimated at an upper bound (the whole output limit), never as free
    assert m.cost_estimated and m.completion_tokens == 2 * PROBE_MAX_TOKENS
    assert m.cost_usd is not None and m.cost_usd > 2 * Price(1, 2).cost(12, 2)
    assert ("usage", "NOT reported: costs are estimated and held against the cap") in describe_model(m)


def test_usage_missing_only_from_the_stream_is_told_apart():
    report, _ = probe(Quirks(stream_usage=False))
    caps = report.models[0].caps
    assert (caps.usage_reported, caps.streaming, caps.stream_usage) == (True, True, False)


def test_streaming_refused():
    report, server = probe(Quirks(stream="refused"))
    [m] = report.models
    assert report.ok and (m.caps.streaming, m.caps.stream_usage) == (False, False)
    assert any("Streaming is not supported by this server" in n for n in m.notes)
    # tried with stream_options, then plainly, before concluding
    assert [("stream_options" in b, bool(b.get("stream"))) for b in chat_bodies(server)] == [
        (False, False),
        (True, True),
        (False, True),
    ]


def test_stream_options_refused_streams_without_usage():
    report, server = probe(Quirks(stream="no_options"))
    [m] = report.models
    assert (m.caps.streaming, m.caps.stream_usage) == (True, False)
    assert any("refused stream_options (HTTP 422: stream_options: Extra inputs" in n for n in m.notes)
    assert "stream_options" not in chat_bodies(server)[-1]


def test_a_server_that_ignores_stream_true_does_not_stream():
    report, _ = probe(Quirks(stream="ignored"))
    [m] = report.models
    assert report.ok and m.caps.streaming is False
    assert "asked to stream, the server sent no stream" in m.notes


def test_a_streaming_only_server_is_usable():
    report, _ = probe(Quirks(streaming_only=True))
    [m] = report.models
    assert report.ok and m.answered and m.reply == "OK"
    assert m.caps.streaming is True and m.caps.token_param == "max_completion_tokens"
    assert any("only supports stream=true" in n for n in m.notes)


@pytest.mark.parametrize(
    ("quirk", "found"),
    [("reasoning_content", "reasoning_content"), ("reasoning", "reasoning"), ("think", "think-tags")],
)
def test_reasoning_is_recognised(quirk, found):
    report, _ = probe(Quirks(reasoning=quirk))
    m = report.models[0]
    assert m.caps.reasoning_field == found
    assert m.reply == "OK"  # the reply shown leaves the thinking out


def test_no_model_list_is_fine():
    report, server = probe(Quirks(models=None), models=["any-name"])
    [m] = report.models
    assert report.ok and report.listed is None and m.caps.listed is None
    assert "no model list (HTTP 404)" in report.list_note
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize(
    ("quirks", "window"),
    [
        (Quirks(model_fields={MODEL: {"max_model_len": 8192}}), 8192),  # vLLM
        (Quirks(model_fields={MODEL: {"context_length": 131072}}), 131072),  # OpenRouter
        (Quirks(lmstudio_context={MODEL: 4096, "other-model": 9}), 4096),  # LM Studio /api/v0/models
        (Quirks(props_n_ctx=2048), 2048),  # llama.cpp /props
    ],
)
def test_the_context_window_the_server_reports_is_read(quirks, window):
    report, _ = probe(quirks)
    m = report.models[0]
    assert m.caps.context_window == window and m.context_source == "server"
    assert ("context window", f"{window:,} tokens (reported by the server)") in describe_model(m)
    # the user's own setting is what counts, and is said to be theirs
    assert ("context window", "1,234 tokens (your setting)") in describe_model(m, {MODEL: 1234})


def test_a_window_known_for_the_model_is_shown_when_the_server_says_nothing():
    report, _ = probe(Quirks(models=["qwen3:8b"]), models=["qwen3:8b"])
    lines = dict(describe_model(report.models[0]))
    assert report.models[0].caps.context_window is None
    assert lines["context window"] == "32,768 tokens (known for this model; not reported)"


def test_an_unknown_model_is_named_with_the_servers_words():
    report, _ = probe(Quirks(), models=[MODEL, "gpt-9"])
    bad = report.model("gpt-9")
    assert not report.ok and report.model(MODEL).answered
    assert bad.error.startswith("HTTP 404: The model `gpt-9` does not exist.")
    assert bad.caps.listed is False and bad.caps.streaming is None  # nothing guessed about it
    assert report.problem.startswith("gpt-9: HTTP 404")


def test_a_rejected_key_is_reported_without_the_key():
    key = "sk-proj-SECRET0123456789abcdef"
    report, server = probe(Quirks(api_key="sk-right", echo_key_on_401=True), key=key)
    assert not report.ok and report.reachable
    assert report.error.startswith("the server rejected the API key (HTTP 401: Incorrect API key provided")
    dumped = json.dumps(report.to_json())
    assert "SECRET0123" not in dumped and key not in dumped and "[REDACTED]" in dumped
    assert server.chat_requests == []  # no model is tried with a key the list already refused


def test_a_key_refused_only_by_chat_is_the_endpoints_problem():
    key = "sk-proj-SECRET0123456789abcdef"
    quirks = Quirks(api_key="sk-right", echo_key_on_401=True, models=None)
    report, _ = probe(quirks, key=key)
    assert not report.ok and "rejected the API key" in report.error
    assert key not in json.dumps(report.to_json())


def test_connection_refused_is_named_and_nothing_else_is_tried():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    report = probe_endpoint_sync(url, "", [MODEL], timeout_s=5)
    assert not report.ok and not report.reachable and report.models == []
    assert report.error.startswith("connection refused")
    assert report.to_json()["problem"] == report.error


def test_a_silent_server_times_out_in_plain_words():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        report = probe_endpoint_sync(url, "", [MODEL], timeout_s=0.3)
    assert not report.ok and report.error == "no answer within 0.3 s"
    assert report.elapsed_s < 3


def test_redact_hides_the_key_and_words_carrying_part_of_it():
    key = "sk-abcdefghijklmnopqrstuvwxyz"
    text = f"bad key {key}, also 'abcdefghijkl...' and sk-a***wxyz"
    out = redact(text, key)
    assert key not in out and "abcdefghijkl" not in out
    assert "sk-a***wxyz" in out  # a provider's own masked form keeps too little to matter


# ---- the cache ---------------------------------------------------------------------------------------


def test_findings_are_cached_per_endpoint_and_model_privately(tmp_path):
    report, server = probe(
        Quirks(refuse_max_completion_tokens="400", stream="refused"), models=[MODEL, "nope"]
    )
    path = save_report(tmp_path, report)
    assert path == endpoints_path(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # the same endpoint written with credentials, a trailing slash or another case finds the same entry
    url = server.base_url.replace("http://", "http://user:pw@").replace("127.0.0.1", "127.0.0.1") + "/"
    cached = load_caps(tmp_path, url)
    assert set(cached) == {MODEL}  # the model that did not answer taught nothing worth keeping
    caps = ModelCaps.from_json(cached[MODEL])
    assert (caps.token_param, caps.streaming) == ("max_tokens", False)
    text = path.read_text()
    assert "user:pw" not in text and "pw@" not in text
    assert endpoint_key(url) == server.base_url


def test_the_cache_merges_models_and_survives_a_broken_file(tmp_path):
    url = "http://127.0.0.1:9/v1"
    save_caps(tmp_path, url, {"a": ModelCaps(token_param="max_tokens")})
    save_caps(tmp_path, url, {"b": ModelCaps(streaming=False)}, listed=["a", "b"])
    assert set(load_caps(tmp_path, url)) == {"a", "b"}
    assert load_caps(tmp_path, "http://127.0.0.1:10/v1") == {}
    endpoints_path(tmp_path).write_text("{not json")
    assert load_caps(tmp_path, url) == {}  # a broken cache means probing again, never a crash
    save_caps(tmp_path, url, {"c": ModelCaps()})
    assert set(load_caps(tmp_path, url)) == {"c"}


def test_run_config_takes_the_cached_caps_of_its_models(tmp_path):
    url = "http://127.0.0.1:9/v1"
    save_caps(
        tmp_path,
        url,
        {
            "root-m": ModelCaps(token_param="max_tokens"),
            "sub-m": ModelCaps(streaming=False),
            "x": ModelCaps(),
        },
    )
    settings = Settings(base_url=url, root_model="root-m", sub_model="sub-m", cap_usd=None)
    config = run_config(settings, home=tmp_path)
    assert set(config.model_caps) == {"root-m", "sub-m"}
    assert config.model_caps["root-m"]["token_param"] == "max_tokens"
    assert run_config(settings).model_caps == {}  # without a home nothing is read
    # another endpoint given on the command line has nothing cached
    assert run_config(settings, home=tmp_path, base_url="http://127.0.0.1:10/v1").model_caps == {}


def test_with_no_model_chosen_only_the_list_is_read():
    report, server = probe(Quirks(), models=["", "  "])
    assert report.ok and report.models == [] and report.listed == ["tidy-model", "other-model"]
    assert server.chat_requests == []
