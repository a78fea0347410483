"""Tests for ModelClient: the real openai SDK over HTTP against the fake server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from rlm_desktop.engine.budget import CapReached, SpendLedger, upper_bound_cost
from rlm_desktop.engine.models import (
    CallRetried,
    ModelAuthError,
    ModelCallError,
    ModelClient,
    ModelNotFoundError,
    ModelRequestError,
    ModelUnavailableError,
    UsageMissing,
)
from rlm_desktop.engine.pricing import DEFAULT_PRICES, Price, PriceTable, UnknownPrice
from tests.fake_openai import FakeOpenAIServer, Reply

MINI = DEFAULT_PRICES["gpt-4o-mini"]


def run_with_client(base_url, body, *, cap=1.0, api_key="sk-test", events=None, **options):
    """Run `body(client)` on a fresh loop with a client whose backoff is short for tests."""
    ledger = SpendLedger(cap)
    options = {"timeout_s": 5.0, "max_retries": 3, "backoff_base_s": 0.01, **options}

    async def main():
        client = ModelClient(
            base_url,
            api_key,
            PriceTable(),
            ledger,
            on_event=(events.append if events is not None else None),
            **options,
        )
        async with client:
            return await body(client)

    return asyncio.run(main()), ledger


def test_reads_usage_with_cached_tokens_and_prices_the_call(fake_openai):
    fake_openai.queue(Reply(text="The answer.", prompt_tokens=1000, completion_tokens=200, cached_tokens=400))
    messages = [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "What?"}]
    result, ledger = run_with_client(
        fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", messages, 300, label="root")
    )
    assert result.text == "The answer."
    assert (result.prompt_tokens, result.completion_tokens, result.cached_tokens) == (1000, 200, 400)
    expected = (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert ledger.spent == pytest.approx(expected) and ledger.reserved == 0.0
    assert result.retries == 0 and result.usage_reported and result.finish_reason == "stop"
    [request] = fake_openai.chat_requests
    assert request.json["messages"] == messages
    assert request.json["max_completion_tokens"] == 300 and "max_tokens" not in request.json
    assert request.headers["authorization"] == "Bearer sk-test"


def test_realistic_usage_stays_within_the_reservation(fake_openai):
    fake_openai.handler = lambda req: Reply(text="word " * 500)
    prompt = "Summarise: " + "Lorem ipsum dolor sit amet. " * 200
    result, ledger = run_with_client(fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", prompt, 100))
    assert result.completion_tokens == 100  # the fake honours the limit like a real server
    assert 0 < result.cost_usd <= upper_bound_cost(MINI, prompt, 100)
    assert ledger.anomalies == []


def test_retries_429_honouring_retry_after_then_500_then_succeeds(fake_openai):
    fake_openai.queue(
        Reply(status=429, retry_after=0.3, error={"error": {"message": "Rate limit reached"}}),
        Reply(status=500),
        Reply(text="finally", prompt_tokens=10, completion_tokens=5),
    )
    events = []
    result, ledger = run_with_client(
        fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 50, label="sub-1"), events=events
    )
    assert result.text == "finally" and result.retries == 2
    assert [(e.label, e.attempt) for e in events] == [("sub-1", 1), ("sub-1", 2)]
    assert all(isinstance(e, CallRetried) for e in events)
    assert events[0].delay_s == pytest.approx(0.3) and "429" in events[0].reason
    assert "Rate limit reached" in events[0].reason
    assert "500" in events[1].reason and 0 < events[1].delay_s <= 0.02
    first, second, third = fake_openai.chat_requests
    assert [r.status for r in (first, second, third)] == [429, 500, 200]
    assert second.arrived - first.ended >= 0.25
    # The 429 was refused before any work (free); the 500 may have been billed, so it is charged.
    bound = upper_bound_cost(MINI, [{"role": "user", "content": "hi"}], 50)
    assert ledger.spent == pytest.approx(bound + MINI.cost(10, 5))


def test_retry_after_is_bounded(fake_openai):
    fake_openai.queue(Reply(status=429, retry_after=3600), Reply(text="ok"))
    events = []
    result, _ = run_with_client(
        fake_openai.base_url,
        lambda c: c.complete("gpt-4o-mini", "hi", 5),
        events=events,
        retry_after_max_s=0.05,
    )
    assert result.text == "ok" and events[0].delay_s == 0.05


def test_retry_after_ms_and_http_dates_are_understood(fake_openai):
    fake_openai.queue(
        Reply(status=429, headers={"retry-after-ms": "40"}),
        Reply(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),  # in the past: no wait
        Reply(text="ok"),
    )
    events = []
    result, _ = run_with_client(
        fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 5), events=events
    )
    assert result.retries == 2 and [e.delay_s for e in events] == [0.04, 0.0]


def test_value_out_of_range_is_not_mistaken_for_an_unsupported_parameter(fake_openai):
    fake_openai.queue(Reply(status=400, error="max_completion_tokens is too large: 999999"))
    with pytest.raises(ModelRequestError, match="too large"):
        run_with_client(fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 999_999), cap=None)
    assert len(fake_openai.chat_requests) == 1


def test_no_retry_on_bad_key(fake_openai):
    fake_openai.api_key = "sk-right"
    events = []
    with pytest.raises(ModelAuthError, match="rejected the API key") as info:
        run_with_client(
            fake_openai.base_url,
            lambda c: c.complete("gpt-4o-mini", "hi", 5),
            api_key="sk-wrong",
            events=events,
        )
    assert info.value.status == 401
    assert "sk-wrong" not in str(info.value)
    assert len(fake_openai.chat_requests) == 1 and events == []


def test_no_retry_on_unknown_model_or_bad_request(fake_openai):
    fake_openai.queue(
        Reply(status=404, error="The model `gpt-nope` does not exist"),
        Reply(status=400, error="messages must not be empty"),
    )
    with pytest.raises(ModelNotFoundError, match="gpt-nope"):
        run_with_client(fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 5))
    with pytest.raises(ModelRequestError, match="messages must not be empty"):
        run_with_client(fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 5))
    assert len(fake_openai.chat_requests) == 2


def test_timeout_then_retry_charges_the_timed_out_attempt(fake_openai):
    fake_openai.queue(
        Reply(text="slow", delay_s=3.0), Reply(text="fast", prompt_tokens=7, completion_tokens=3)
    )
    events = []
    started = time.monotonic()
    result, ledger = run_with_client(
        fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 20), events=events, timeout_s=0.3
    )
    assert time.monotonic() - started < 2.0
    assert result.text == "fast" and result.retries == 1
    assert events[0].reason.startswith("timeout")
    bound = upper_bound_cost(MINI, [{"role": "user", "content": "hi"}], 20)
    assert ledger.spent == pytest.approx(bound + MINI.cost(7, 3))
    assert fake_openai.wait_for_requests(2)
    slow = fake_openai.chat_requests[0]
    deadline = time.monotonic() + 2
    while slow.ended is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.client_disconnected and fake_openai.errors == []


def test_cap_reached_before_anything_is_sent(fake_openai):
    with pytest.raises(CapReached) as info:
        run_with_client(fake_openai.base_url, lambda c: c.complete("gpt-4o", "hi", 100_000), cap=0.01)
    assert info.value.requested > 0.01
    assert fake_openai.chat_requests == []


def test_unknown_price_is_refused_under_a_cap_and_unpriced_without(fake_openai):
    with pytest.raises(UnknownPrice, match="llama3.1:8b"):
        run_with_client(fake_openai.base_url, lambda c: c.complete("llama3.1:8b", "hi", 5), cap=1.0)
    assert fake_openai.chat_requests == []
    result, ledger = run_with_client(
        fake_openai.base_url, lambda c: c.complete("llama3.1:8b", "hi", 5), cap=None
    )
    assert result.cost_usd is None and result.prompt_tokens > 0 and ledger.spent == 0.0


def test_missing_usage_holds_the_reservation_and_estimates_the_cost(fake_openai):
    fake_openai.queue(Reply(text="no usage", omit_usage=True))
    events = []
    result, ledger = run_with_client(
        fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 40, label="x"), events=events
    )
    bound = upper_bound_cost(MINI, [{"role": "user", "content": "hi"}], 40)
    assert not result.usage_reported and result.held_usd == pytest.approx(bound)
    assert 0 < result.cost_usd < bound  # the tokenizer's estimate, for display
    assert ledger.held == pytest.approx(bound) and ledger.billed == 0.0 and ledger.spent == pytest.approx(bound)
    assert events == [UsageMissing("x", "gpt-4o-mini", pytest.approx(bound), pytest.approx(result.cost_usd))]


def test_falls_back_to_max_tokens_when_server_rejects_max_completion_tokens(fake_openai):
    def old_server(request):
        if "max_completion_tokens" in request:
            return Reply(status=400, error="Unrecognized request argument supplied: max_completion_tokens")
        return Reply(text="ok")

    fake_openai.handler = old_server
    events = []

    async def two_calls(client):
        return [await client.complete("gpt-4o-mini", "hi", 9), await client.complete("gpt-4o-mini", "hi", 9)]

    results, ledger = run_with_client(fake_openai.base_url, two_calls, events=events)
    assert [r.text for r in results] == ["ok", "ok"]
    sent = [r.json for r in fake_openai.chat_requests]
    assert "max_completion_tokens" in sent[0]
    assert [s.get("max_tokens") for s in sent[1:]] == [9, 9]
    assert len(events) == 1 and "max_tokens" in events[0].change  # an adjustment, not a failed attempt
    assert ledger.open_reservations == 0


def test_gives_up_after_max_retries(fake_openai):
    fake_openai.handler = lambda req: Reply(status=503, error="overloaded")
    events = []
    with pytest.raises(ModelUnavailableError, match="gave up after 3 attempts.*overloaded"):
        run_with_client(
            fake_openai.base_url, lambda c: c.complete("gpt-4o-mini", "hi", 5), events=events, max_retries=2
        )
    assert len(fake_openai.chat_requests) == 3 and len(events) == 2


def test_connection_errors_are_retried_then_reported(closed_port):
    port = closed_port
    events = []
    with pytest.raises(ModelUnavailableError, match="connection refused") as info:
        run_with_client(
            f"http://127.0.0.1:{port}/v1",
            lambda c: c.complete("gpt-4o-mini", "hi", 5),
            events=events,
            max_retries=1,
        )
    assert len(events) == 1 and events[0].reason.startswith("cannot connect: connection refused")
    assert "n1" not in str(info.value)


def test_a_call_that_never_reached_the_server_costs_nothing(closed_port):
    port = closed_port
    ledger = SpendLedger(0.5)

    async def main():
        async with ModelClient(f"http://127.0.0.1:{port}/v1", "sk", PriceTable(), ledger, timeout_s=2,
                               max_retries=3, backoff_base_s=0.01) as client:
            await client.complete("gpt-5", "hi" * 1000, 8000)

    with pytest.raises(ModelUnavailableError, match="connection refused"):
        asyncio.run(main())
    assert ledger.spent == 0.0 and ledger.held == 0.0 and ledger.reserved == 0.0


def test_cancelling_an_inflight_call_charges_its_reservation(fake_openai):
    fake_openai.queue(Reply(text="never seen", delay_s=5.0))

    async def cancel_midway(client):
        task = asyncio.create_task(client.complete("gpt-4o-mini", "long job", 500, label="doomed"))
        while not fake_openai.chat_requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        charged = client.ledger.spent
        after = await client.complete("gpt-4o-mini", "still works?", 5)
        return charged, after

    started = time.monotonic()
    (charged, after), ledger = run_with_client(fake_openai.base_url, cancel_midway)
    assert time.monotonic() - started < 3.0
    assert charged == pytest.approx(upper_bound_cost(MINI, [{"role": "user", "content": "long job"}], 500))
    assert after.text == "ok" and ledger.open_reservations == 0
    doomed = fake_openai.chat_requests[0]
    deadline = time.monotonic() + 2
    # The server counts a request done after writing its reply: the client may have read it a moment before.
    while (doomed.ended is None or fake_openai.in_flight) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert doomed.client_disconnected and doomed.status is None
    assert fake_openai.errors == [] and fake_openai.in_flight == 0


def test_concurrent_calls_never_pass_the_cap(fake_openai):
    fake_openai.handler = lambda req: Reply(text="x " * 200, delay_s=0.05)
    prompt = "Question about the documents. " * 20
    bound = upper_bound_cost(MINI, [{"role": "user", "content": prompt}], 400)
    cap = bound * 6.5

    async def many(client):
        calls = [client.complete("gpt-4o-mini", prompt, 400, label=f"sub-{i}") for i in range(30)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results, ledger = run_with_client(fake_openai.base_url, many, cap=cap)
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, CapReached)]
    assert len(done) + len(refused) == 30 and refused and len(done) >= 6
    assert ledger.spent <= cap
    assert ledger.spent == pytest.approx(sum(r.cost_usd for r in done))
    assert len(fake_openai.chat_requests) == len(done)  # refused calls never reached the server
    assert fake_openai.max_in_flight > 1


def test_connection_test_lists_models_and_reports_bad_keys(fake_openai):
    message, _ = run_with_client(fake_openai.base_url, lambda c: c.test_connection())
    assert "3 models" in message and "gpt-4o-mini" in message
    message, _ = run_with_client(fake_openai.base_url, lambda c: c.test_connection("gpt-9"))
    assert "'gpt-9' is not among" in message
    fake_openai.api_key = "sk-right"
    with pytest.raises(ModelAuthError):
        run_with_client(fake_openai.base_url, lambda c: c.test_connection())


def test_connection_test_reports_unreachable_server(closed_port):
    port = closed_port
    with pytest.raises(ModelCallError, match="cannot reach"):
        run_with_client(f"http://127.0.0.1:{port}/v1", lambda c: c.test_connection())


def test_connection_test_falls_back_to_a_one_token_call():
    with FakeOpenAIServer(models=None) as server:
        message, ledger = run_with_client(server.base_url, lambda c: c.test_connection("gpt-4o-mini"))
        assert "gpt-4o-mini answered" in message and ledger.spent > 0
        [call] = server.chat_requests
        assert call.json["max_completion_tokens"] == 16
        with pytest.raises(ModelCallError, match="has no model list"):
            run_with_client(server.base_url, lambda c: c.test_connection())


def test_price_overrides_flow_into_costs(fake_openai):
    fake_openai.queue(Reply(prompt_tokens=1_000_000, completion_tokens=0))
    ledger = SpendLedger(None)

    async def main():
        table = PriceTable(price_args=["local-model=2:4"])
        async with ModelClient(fake_openai.base_url, "", table, ledger, 5.0, 0) as client:
            return await client.complete("local-model", "hi", 5)

    assert asyncio.run(main()).cost_usd == pytest.approx(2.0)
    assert Price(2, 4).cost(1_000_000, 0) == ledger.spent


def test_warm_up_builds_the_processs_tls_context_ahead_of_the_first_request():
    # the window's engine child calls it while the user types; a run's first request then reuses the context
    import subprocess
    import sys

    script = (
        "from rlm_desktop.engine import models\n"
        "assert models.shared_ssl_context.cache_info().currsize == 0\n"
        "models.warm_up()\n"
        "assert models.shared_ssl_context.cache_info().currsize == 1\n"
        "import sys; assert 'anyio._backends._asyncio' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


LAZY_SDK_SCRIPT = """
import asyncio, gc, ssl, sys
from rlm_desktop.engine import models
from rlm_desktop.engine.budget import SpendLedger
from rlm_desktop.engine.pricing import PriceTable

def live_tls_contexts():
    return sum(isinstance(o, ssl.SSLContext) for o in gc.get_objects())

async def main(url):
    async with models.ModelClient(url, "sk-test", PriceTable(), SpendLedger(1.0), 5.0, 0) as client:
        before = live_tls_contexts()
        reply = await client.complete("gpt-4o-mini", "hi", 20)
        assert reply.text == "fine", reply
        # by effect: no TLS context was made for plain http, and neither the SDK nor its HTTP stack was loaded
        assert live_tls_contexts() == before, "a TLS context was built for an http endpoint"
        assert models.shared_ssl_context.cache_info().currsize == 0
        assert not {"openai", "httpx", "httpx2"} & set(sys.modules), sorted({"openai", "httpx", "httpx2"} & set(sys.modules))
        try:
            await client.complete("gpt-4o-mini", "again", 20)
        except models.ModelAuthError as exc:
            import openai
            cause = exc.__cause__
            assert type(cause) is openai.AuthenticationError, type(cause)
            assert cause.status_code == 401 and cause.body == {"message": "bad key sk-...3"}, cause.body
            assert cause.response.headers["x-request-id"] == "req-9"
        else:
            raise AssertionError("a 401 reply passed as a success")
    print("ok")

asyncio.run(main(sys.argv[1]))
"""


def test_a_run_over_http_needs_no_tls_context_and_no_sdk_until_an_error_reply(fake_openai):
    """The SDK (0.5-1.5 s to import) and a TLS context are built only when needed; an error reply still becomes
    the SDK's own exception class, with its status, body and headers. A fresh interpreter, as `ask` starts."""
    import subprocess
    import sys

    fake_openai.queue(
        Reply(text="fine"),
        Reply(status=401, error={"error": {"message": "bad key sk-...3"}}, headers={"x-request-id": "req-9"}),
    )
    proc = subprocess.run(
        [sys.executable, "-c", LAZY_SDK_SCRIPT, fake_openai.base_url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert len(fake_openai.chat_requests) == 2


def test_only_https_endpoints_and_proxies_speak_tls(monkeypatch):
    from rlm_desktop.engine.chat_http import ChatTransport

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def transport(url):
        return ChatTransport(url, {}, 5.0, ssl_context=lambda: None, errors=lambda: None)

    assert not transport("http://127.0.0.1:8000/v1/chat/completions").speaks_tls()
    assert transport("https://api.openai.com/v1/chat/completions").speaks_tls()
    assert transport("HTTPS://api.example.com/v1/chat/completions").speaks_tls()
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example:3128")
    assert transport("http://10.0.0.5:8000/v1/chat/completions").speaks_tls()  # TLS to the proxy


def test_live_text_is_passed_on_only_when_there_is_new_text_and_the_last_time_whole(fake_openai):
    """A streamed reply's keep-alive, role and usage chunks redraw nothing; the last delta is the whole reply."""
    deltas: list[tuple[str, str]] = []
    fake_openai.queue(Reply(text="one two three"))
    result, _ = run_with_client(
        fake_openai.base_url,
        lambda c: c.complete("gpt-4o-mini", "hi", 50, on_delta=lambda t, r: deltas.append((t, r))),
        stream=True,
    )
    assert result.text == "one two three"
    assert deltas and deltas[-1] == ("one two three", "")
    assert all(text for text, _ in deltas)  # never an empty redraw


def test_a_caller_showing_the_finished_reply_gets_no_final_redraw():
    """final_delta=False (the engine, which shows the finished reply at once): what came in the last piece is not
    passed on once more before the call returns; the reply itself is whole."""
    from rlm_desktop.engine.models import _StreamReader

    def chunk(text: str) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})

    for final_delta, expected in ((True, [("one", ""), ("one two", "")]), (False, [("one", "")])):
        deltas: list[tuple[str, str]] = []
        reader = _StreamReader(lambda t, r, deltas=deltas: deltas.append((t, r)), final_delta)
        reader.line(": keep-alive")
        reader.pass_on()  # a piece with no text: nothing to redraw
        reader.line(chunk("one"))
        reader.pass_on()
        reader.line(chunk(" two"))
        reader.line("data: [DONE]")
        assert reader.finish().content == "one two"
        assert deltas == expected, (final_delta, deltas)
