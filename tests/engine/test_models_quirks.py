"""ModelClient against each quirk real servers show: the real openai SDK over HTTP to the fake server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from rlm_desktop.engine.budget import SpendLedger, upper_bound_cost
from rlm_desktop.engine.models import (
    ContextTooLong,
    ModelClient,
    ModelRequestError,
    ModelUnavailableError,
    TextStreamed,
    read_usage,
)
from rlm_desktop.engine.pricing import DEFAULT_PRICES, PriceTable
from tests.fake_openai import Reply

MINI = DEFAULT_PRICES["gpt-4o-mini"]
HI = [{"role": "user", "content": "hi"}]


def call(base_url, *, cap=1.0, stream=False, messages=HI, max_tokens=50, model="gpt-4o-mini", **options):
    ledger = SpendLedger(cap)
    deltas: list[tuple[str, str]] = []
    options = {"timeout_s": 5.0, "max_retries": 2, "backoff_base_s": 0.01, **options}

    async def main():
        async with ModelClient(base_url, "sk-test", PriceTable(), ledger, stream=stream, **options) as client:
            return await client.complete(
                model, messages, max_tokens, on_delta=lambda t, r: deltas.append((t, r))
            )

    return asyncio.run(main()), ledger, deltas


@pytest.mark.parametrize("mode", ["none", "null", "zero", "total_only"])
def test_unknown_usage_is_held_not_zero(fake_openai, mode):
    fake_openai.queue(Reply(text="an answer", usage_mode=mode))
    result, ledger, _ = call(fake_openai.base_url)
    bound = upper_bound_cost(MINI, HI, 50)
    assert not result.usage_reported and ledger.billed == 0.0
    assert ledger.held == pytest.approx(bound) and result.held_usd == pytest.approx(bound)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0  # estimated with the tokenizer


def test_usage_reader_accepts_anthropic_style_and_refuses_nonsense():
    assert read_usage({"input_tokens": 10, "output_tokens": 3}) == (10, 3, 0)
    assert read_usage({"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": None}) == (
        10,
        3,
        0,
    )
    assert read_usage({"prompt_tokens": True, "completion_tokens": 3}) is None
    assert read_usage({"total_tokens": 13}) is None and read_usage(None) is None


def test_streams_text_and_reads_usage_from_the_last_chunk(fake_openai):
    fake_openai.queue(
        Reply(text="streamed " * 20, reasoning="I think", prompt_tokens=30, completion_tokens=40)
    )
    result, ledger, deltas = call(fake_openai.base_url, stream=True)
    assert result.streamed and result.text == "streamed " * 20 and result.reasoning == "I think"
    assert result.usage_reported and ledger.billed == pytest.approx(MINI.cost(30, 40))
    assert deltas[-1] == ("streamed " * 20, "I think")
    sent = fake_openai.chat_requests[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_stream_options_refused_falls_back_silently(fake_openai):
    fake_openai.stream_options_refused = True
    result, ledger, _ = call(fake_openai.base_url, stream=True)
    assert result.text == "ok" and result.streamed
    assert not result.usage_reported and ledger.held > 0  # no usage when streaming without it: held
    assert [r.status for r in fake_openai.chat_requests] == [400, 200]


def test_streaming_refused_falls_back_to_whole_replies(fake_openai):
    fake_openai.streaming = "no"
    result, ledger, _ = call(fake_openai.base_url, stream=True)
    assert result.text == "ok" and not result.streamed and result.usage_reported
    assert "stream" not in fake_openai.chat_requests[-1].json


def test_streaming_only_server_is_read_as_a_stream(fake_openai):
    fake_openai.streaming = "only"
    fake_openai.queue(Reply(text="from a stream"))
    result, ledger, _ = call(fake_openai.base_url, stream=False)
    assert result.text == "from a stream" and result.streamed and result.usage_reported


def test_html_200_names_the_cause_and_costs_nothing(fake_openai):
    fake_openai.queue(
        Reply(raw_body="<!DOCTYPE html><html><head><title>Sign in</title></head><body>x</body></html>")
    )
    with pytest.raises(ModelRequestError, match="HTML page titled 'Sign in'.*base URL") as info:
        call(fake_openai.base_url)
    assert "AttributeError" not in str(info.value)
    assert len(fake_openai.chat_requests) == 1  # not retried: a web page will not turn into a model


def test_error_shaped_200_keeps_the_servers_words_and_holds(fake_openai):
    fake_openai.handler = lambda req: Reply(
        raw_body='{"error": {"message": "upstream provider overloaded", "code": 502}}',
        raw_content_type="application/json",
    )
    with pytest.raises(ModelUnavailableError, match="upstream provider overloaded") as info:
        call(fake_openai.base_url, max_retries=1)
    assert "n1" not in str(info.value)


def test_error_shaped_200_with_a_client_code_is_not_retried(fake_openai):
    fake_openai.queue(
        Reply(
            raw_body='{"error": {"message": "model not allowed", "code": 403}}',
            raw_content_type="application/json",
        )
    )
    with pytest.raises(ModelRequestError, match="model not allowed"):
        call(fake_openai.base_url)
    assert len(fake_openai.chat_requests) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_reset_mid_body_is_held_and_retried(fake_openai, stream):
    fake_openai.queue(Reply(text="x" * 400, reset_mid_body=True), Reply(text="second try"))
    result, ledger, _ = call(fake_openai.base_url, stream=stream)
    assert result.text == "second try"
    bound = upper_bound_cost(MINI, HI, 50)
    assert ledger.held == pytest.approx(bound)  # the broken attempt may have run: held, not spent
    assert ledger.billed == pytest.approx(result.cost_usd)


def test_tool_calls_with_null_content_are_named(fake_openai):
    fake_openai.queue(
        Reply(
            content_null=True,
            finish_reason="tool_calls",
            tool_calls=[
                {"id": "t1", "type": "function", "function": {"name": "search_web", "arguments": "{}"}}
            ],
        )
    )
    result, _, _ = call(fake_openai.base_url)
    assert result.text == "" and result.tool_calls == ("search_web",) and result.finish_reason == "tool_calls"


@pytest.mark.parametrize("style", ["openai", "fastapi"])
def test_token_parameter_is_chosen_per_model(fake_openai, style):
    fake_openai.refuse_params = {"local-llama": {"max_completion_tokens"}}
    fake_openai.refusal_style = style
    ledger = SpendLedger(None)

    async def main():
        async with ModelClient(fake_openai.base_url, "k", PriceTable(), ledger, timeout_s=5) as client:
            a = await client.complete("local-llama", "hi", 20)
            b = await client.complete("gpt-4o-mini", "hi", 20)
            c = await client.complete("local-llama", "again", 20)
            return a, b, c

    asyncio.run(main())
    sent = [(r.json["model"], "max_tokens" in r.json, r.status) for r in fake_openai.chat_requests]
    assert sent == [
        ("local-llama", False, 422 if style == "fastapi" else 400),
        ("local-llama", True, 200),
        ("gpt-4o-mini", False, 200),  # the other model keeps max_completion_tokens
        ("local-llama", True, 200),  # learned once
    ]


def test_context_window_refusal_is_read(fake_openai):
    fake_openai.context_window = 8192
    with pytest.raises(ContextTooLong) as info:
        call(fake_openai.base_url, max_tokens=8000, messages=[{"role": "user", "content": "word " * 2000}])
    assert info.value.window == 8192 and info.value.prompt_tokens > 2000


def test_cancel_mid_stream_is_fast_and_holds(fake_openai):
    fake_openai.queue(Reply(text="slow " * 100, chunk_delay_s=0.2))
    ledger = SpendLedger(1.0)

    async def main():
        async with ModelClient(
            fake_openai.base_url, "k", PriceTable(), ledger, timeout_s=5, stream=True
        ) as client:
            seen = asyncio.Event()
            task = asyncio.create_task(
                client.complete("gpt-4o-mini", "hi", 500, on_delta=lambda t, r: seen.set())
            )
            await asyncio.wait_for(seen.wait(), 3)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert elapsed < 0.25
    assert ledger.held == pytest.approx(upper_bound_cost(MINI, HI, 500)) and ledger.reserved == 0


def test_stream_idle_timeout_is_per_chunk_not_per_call(fake_openai):
    fake_openai.queue(Reply(text="tick " * 12, chunk_delay_s=0.3))  # 1.5 s in all, 0.3 s between chunks
    result, _, _ = call(fake_openai.base_url, stream=True, timeout_s=1.0)
    assert result.text == "tick " * 12


def test_a_stream_that_stalls_ends_one_idle_timeout_after_its_last_data(fake_openai):
    fake_openai.queue(Reply(text="tick " * 3, chunk_delay_s=1.5))  # a chunk, then 1.5 s of nothing
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="timeout: no data within 0.4 s"):
        call(fake_openai.base_url, stream=True, timeout_s=0.4, max_retries=0)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.4, elapsed  # not before 0.4 s of silence, and not waiting for the next chunk


def test_text_streamed_event_is_a_frozen_dataclass():
    event = TextStreamed("n1", "a", "b")
    with pytest.raises(AttributeError):
        event.text = "c"  # type: ignore[misc]


def test_llama_cpp_context_error_gives_its_n_ctx(fake_openai):
    fake_openai.queue(
        Reply(
            status=400,
            error={
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 4096,
                }
            },
        )
    )
    with pytest.raises(ContextTooLong) as info:
        call(fake_openai.base_url)
    assert (info.value.window, info.value.prompt_tokens) == (4096, 5000)


def test_anthropic_style_prompt_too_long_is_a_context_error(fake_openai):
    fake_openai.queue(Reply(status=400, error="prompt is too long: 210000 tokens > 200000 maximum"))
    with pytest.raises(ContextTooLong) as info:
        call(fake_openai.base_url)
    assert info.value.window == 200000 and info.value.prompt_tokens == 210000


def test_sse_without_its_content_type_is_still_read(fake_openai):
    chunk = {"choices": [{"index": 0, "delta": {"content": "plain text SSE"}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n"
    fake_openai.queue(Reply(raw_body=body, raw_content_type="text/plain"))
    result, ledger, _ = call(fake_openai.base_url)
    assert result.text == "plain text SSE" and result.usage_reported and ledger.billed == pytest.approx(MINI.cost(9, 3))


def test_replies_are_read_as_json_reads_them():
    """The fast JSON reader gives way to json's where orjson refuses (NaN, its errors). An integer past 64 bits
    comes as a float: as a token count it is not one, so such usage is refused and the call held, not billed."""
    import json
    import math

    from rlm_desktop.engine.models import _json_loads

    assert _json_loads('{"choices": [{"delta": {"content": "é"}}]}') == {"choices": [{"delta": {"content": "é"}}]}
    assert math.isnan(_json_loads('{"x": NaN}')["x"])
    huge = _json_loads('{"prompt_tokens": 123456789012345678901234567890, "completion_tokens": 5}')
    assert read_usage(huge) is None
    with pytest.raises(json.JSONDecodeError):
        _json_loads("{not json")
