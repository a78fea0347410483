"""Probe an OpenAI-compatible endpoint: per model, the token parameter, streaming, usage, reasoning and context window."""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from rlm_desktop.engine.endpoints import effective_base_url, endpoint_key, load_caps, save_caps
from rlm_desktop.engine.model_info import ModelCaps, known_context_window
from rlm_desktop.engine.models import (
    error_chain,
    http_client,
    never_reached,
    read_usage,
    status_message,
    transport_cause,
)
from rlm_desktop.engine.pricing import PriceTable
from rlm_desktop.redact import redact_known

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "EndpointReport",
    "ModelReport",
    "describe_model",
    "load_caps",
    "probe_endpoint",
    "probe_endpoint_sync",
    "save_caps",
    "save_report",
]

DEFAULT_TIMEOUT_S = 20.0
PROBE_PROMPT = "Reply with the single word OK."
PROBE_MAX_TOKENS = 32  # enough for "OK" from a chat model; a reasoning model may use it all on thinking
TOKEN_PARAMS = ("max_completion_tokens", "max_tokens")
REASONING_FIELDS = ("reasoning_content", "reasoning")
# Where servers put a model's context window in their model lists: vLLM, OpenRouter/Together, LM Studio, Groq.
_WINDOW_KEYS = ("max_model_len", "context_length", "max_context_length", "context_window")
_VALUE_COMPLAINT = re.compile(
    r"too large|at most|maximum|must be|less than|greater than|exceeds", re.IGNORECASE
)
_NO_LIST_STATUSES = (404, 405, 501)


@dataclass
class ModelReport:
    """What the probe found for one model, with what the probe calls cost."""

    model: str
    caps: ModelCaps = field(default_factory=ModelCaps)
    answered: bool = False  # at least one chat call came back with a reply
    error: str | None = None  # why the model could not be used, in the server's own words where it gave any
    auth_failed: bool = False
    notes: list[str] = field(default_factory=list)  # fallbacks and oddities worth a sentence
    reply: str = ""  # the first reply's text, shortened
    latency_s: float | None = None  # of the first successful call
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None when the model has no known price
    cost_estimated: bool = False  # some call reported no usage, so its cost is an upper-bound estimate
    context_source: str | None = None  # "server" when the window came from the endpoint itself

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.answered and self.error is None,
            "error": self.error,
            "caps": self.caps.to_json(),
            "context_source": self.context_source,
            "notes": list(self.notes),
            "reply": self.reply,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "cost_estimated": self.cost_estimated,
        }


@dataclass
class EndpointReport:
    """The endpoint (shown without credentials) and each probed model."""

    base_url: str
    reachable: bool = False  # something answered HTTP at this URL
    error: str | None = None  # why the endpoint as a whole cannot be used
    listed: list[str] | None = None  # GET /models, None when the server has no list
    list_note: str | None = None
    models: list[ModelReport] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """The endpoint answered and every probed model replied."""
        return self.reachable and self.error is None and all(m.answered and not m.error for m in self.models)

    @property
    def problem(self) -> str | None:
        """The first reason the endpoint is not usable, as one sentence (None when ok)."""
        if self.error:
            return self.error
        for m in self.models:
            if m.error or not m.answered:
                return f"{m.model}: {m.error or 'no reply'}"
        return None

    @property
    def cost_usd(self) -> float:
        """What the probe calls cost, over the models with a known price (see `unpriced`)."""
        return sum(m.cost_usd for m in self.models if m.cost_usd is not None)

    @property
    def unpriced(self) -> list[str]:
        """Models that were called but have no known price, so their probe cost is not in cost_usd."""
        return [m.model for m in self.models if m.cost_usd is None]

    def model(self, name: str) -> ModelReport | None:
        return next((m for m in self.models if m.model == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.base_url,
            "ok": self.ok,
            "reachable": self.reachable,
            "error": self.error,
            "problem": self.problem,
            "models_listed": self.listed,
            "list_note": self.list_note,
            "models": [m.to_json() for m in self.models],
            "cost_usd": round(self.cost_usd, 8),
            "unpriced": self.unpriced,
            "cost_estimated": any(m.cost_estimated for m in self.models),
            "elapsed_s": round(self.elapsed_s, 3),
        }


# ---- errors in the server's own words, never with the key ----------------------------------------------


def redact(text: str, api_key: str | None) -> str:
    """`text` without the API key, nor any word that carries 8 or more of its characters in a row."""
    return redact_known(text, [api_key])


# What the server said with an error status: the model client's reading of OpenAI, FastAPI and plain bodies.
server_message = status_message


def _short(text: str, limit: int = 300) -> str:
    text = re.sub(r"<[^>]+>", " ", text)  # an HTML error page reads better without its tags
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException, timeout_s: float) -> tuple[str, bool]:
    """(a sentence naming the cause, whether the server was reached at all)."""
    if isinstance(exc, openai.APIStatusError):
        status, said = exc.status_code, server_message(exc)
        if status in (401, 403):
            return f"the server rejected the API key (HTTP {status}: {said})", True
        if status == 404:
            return f"HTTP 404: {said} (check the model name, and that the URL usually ends in /v1)", True
        return f"HTTP {status}: {said}", True
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return f"no answer within {timeout_s:g} s", False
    if isinstance(exc, openai.APIResponseValidationError):
        return f"the reply is not an OpenAI-style response: {_short(str(exc))}", True
    named = transport_cause(exc)  # refused, unresolvable, TLS, reset: the model client's words
    if named is not None:
        tls = any(isinstance(cause, ssl.SSLError) for cause in error_chain(exc))
        return named, not (never_reached(exc) or tls)
    if any(isinstance(cause, json.JSONDecodeError) for cause in error_chain(exc)):
        return "the reply is not JSON (is this an OpenAI-compatible URL? it usually ends in /v1)", True
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"could not connect: {cause or exc}", False
    return f"{type(exc).__name__}: {exc}", True


def _names_param(exc: openai.APIStatusError, param: str) -> bool:
    """A 400/422 that refuses `param` itself (not its value, like "must be at most 4096")."""
    if exc.status_code not in (400, 422):
        return False
    body = exc.body
    raw = json.dumps(body) if isinstance(body, Mapping | list) else str(body or "")
    text = f"{server_message(exc)} {raw}"
    return param in text and not _VALUE_COMPLAINT.search(server_message(exc))


# ---- the probe ---------------------------------------------------------------------------------------


def _valid_usage(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens, or None when usage is null, zero or total-only ("not reported"),
    by the model client's own reading of usage."""
    if usage is None:
        return None
    found = read_usage(usage.model_dump() if hasattr(usage, "model_dump") else usage)
    return None if found is None else found[:2]


def _reasoning_in(obj: Any) -> str | None:
    extra = getattr(obj, "model_extra", None) or {}
    for name in REASONING_FIELDS:
        if extra.get(name):
            return name
    return None


def _has_think_tags(text: str) -> bool:
    return "<think>" in text or "</think>" in text


def _window_from_entry(entry: Mapping[str, Any]) -> int | None:
    for key in _WINDOW_KEYS:
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    top = entry.get("top_provider")  # OpenRouter also nests it here
    if isinstance(top, Mapping):
        return _window_from_entry({k: top.get(k) for k in _WINDOW_KEYS})
    return None


def _server_root(base_url: str) -> str:
    """http://host:port/v1 -> http://host:port (where llama.cpp's /props and LM Studio's /api live)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass
class _Streamed:
    chunks: int = 0
    text: str = ""
    reasoning_field: str | None = None
    usage: tuple[int, int] | None = None
    finish_reason: str | None = None


class _Prober:
    def __init__(self, base_url: str, api_key: str, timeout_s: float, prices: PriceTable):
        self.base_url = base_url
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.prices = prices
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout_s,
            http_client=http_client(timeout_s),
        )

    def shown_reply(self, text: str) -> str:
        """The start of a reply, thinking left out, for a person to recognise (and never the key)."""
        return redact(_short(re.sub(r"(?s)^.*</think>", "", text).strip(), 80), self.api_key)

    async def close(self) -> None:
        await self.client.close()

    def error(self, exc: BaseException) -> tuple[str, bool]:
        message, reached = describe_error(exc, self.timeout_s)
        return redact(message, self.api_key), reached

    # -- GETs --

    async def get_json(self, url: str, timeout_s: float | None = None) -> Any:
        timeout = timeout_s or self.timeout_s
        async with asyncio.timeout(timeout):
            return await self.client.get(url, cast_to=object, options={"timeout": timeout})

    async def list_models(self, report: EndpointReport) -> dict[str, int] | None:
        """Fill report.listed; return the windows the list reports. Raises on connection failures and 401/403."""
        try:
            data = await self.get_json("/models")
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise
            report.reachable = True
            if exc.status_code in _NO_LIST_STATUSES:
                report.list_note = f"no model list (HTTP {exc.status_code}); the models are tried directly"
            else:
                report.list_note = redact(f"the model list failed: {self.error(exc)[0]}", self.api_key)
            return None
        report.reachable = True
        entries = data.get("data") if isinstance(data, Mapping) else data if isinstance(data, list) else None
        if not isinstance(entries, list):
            report.list_note = (
                "the model list is not in the OpenAI format (is the URL right? it usually ends in /v1)"
            )
            return None
        windows: dict[str, int] = {}
        listed: list[str] = []
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
                continue
            listed.append(entry["id"])
            if window := _window_from_entry(entry):
                windows[entry["id"]] = window
        report.listed = listed
        return windows

    async def extra_windows(self, models: Sequence[str]) -> dict[str, int]:
        """Context windows from servers that report them outside /v1/models: LM Studio, then llama.cpp."""
        root = _server_root(self.base_url)
        quick = min(self.timeout_s, 5.0)
        windows: dict[str, int] = {}
        try:
            data = await self.get_json(root + "/api/v0/models", quick)  # LM Studio
            for entry in data.get("data", []) if isinstance(data, Mapping) else []:
                if (
                    isinstance(entry, Mapping)
                    and entry.get("id") in models
                    and (w := _window_from_entry(entry))
                ):
                    windows[entry["id"]] = w
        except Exception:  # most servers have no such path: nothing learned, nothing wrong
            pass
        if len(windows) == len(models):
            return windows
        try:
            data = await self.get_json(
                root + "/props", quick
            )  # llama.cpp serves one model, whatever its name
            settings = data.get("default_generation_settings") if isinstance(data, Mapping) else None
            n_ctx = (settings or {}).get("n_ctx") if isinstance(settings, Mapping) else None
            if n_ctx is None and isinstance(data, Mapping):
                n_ctx = data.get("n_ctx")
            if isinstance(n_ctx, int) and n_ctx > 0:
                for model in models:
                    windows.setdefault(model, n_ctx)
        except Exception:
            pass
        return windows

    # -- chat calls --

    def _charge(self, report: ModelReport, usage: tuple[int, int] | None, max_tokens: int) -> None:
        if usage is None:
            # No usage: bound it like the spending cap would (about 4 bytes a token in, the whole limit out).
            prompt, completion = math.ceil(len(PROBE_PROMPT.encode()) / 4) + 8, max_tokens
            report.cost_estimated = True
        else:
            prompt, completion = usage
        report.prompt_tokens += prompt
        report.completion_tokens += completion
        price = self.prices.get(report.model)
        if price is None:
            report.cost_usd = None
        elif report.cost_usd is not None:
            report.cost_usd += price.cost(prompt, completion)

    async def _with_token_param(self, report: ModelReport, params: list[str], call):
        """Run call(param) with each token parameter until one is not refused by name."""
        last: openai.APIStatusError | None = None
        for param in params:
            try:
                return param, await call(param)
            except openai.APIStatusError as exc:
                if not _names_param(exc, param):
                    raise
                last = exc  # a refusal before the model ran: providers bill nothing for it
                if param != params[-1]:
                    said = redact(server_message(exc), self.api_key)
                    report.notes.append(
                        f"refused {param} (HTTP {exc.status_code}: {said}); sent {params[-1]}"
                    )
        assert last is not None
        raise last

    async def plain_call(self, report: ModelReport, param: str):
        report.calls += 1
        started = time.monotonic()
        async with asyncio.timeout(self.timeout_s):
            response = await self.client.chat.completions.create(
                model=report.model,
                messages=[{"role": "user", "content": PROBE_PROMPT}],
                **{param: PROBE_MAX_TOKENS},
            )
        return response, time.monotonic() - started

    async def stream_call(self, report: ModelReport, param: str, with_usage: bool) -> _Streamed:
        report.calls += 1
        out = _Streamed()
        kwargs: dict[str, Any] = {param: PROBE_MAX_TOKENS, "stream": True}
        if with_usage:
            kwargs["stream_options"] = {"include_usage": True}
        text: list[str] = []
        async with asyncio.timeout(self.timeout_s):
            stream = await self.client.chat.completions.create(
                model=report.model, messages=[{"role": "user", "content": PROBE_PROMPT}], **kwargs
            )
            try:
                async for chunk in stream:
                    out.chunks += 1
                    if getattr(chunk, "usage", None) is not None:
                        out.usage = _valid_usage(chunk.usage)
                    for choice in chunk.choices or []:
                        delta = choice.delta
                        if delta is not None:
                            if delta.content:
                                text.append(delta.content)
                            out.reasoning_field = out.reasoning_field or _reasoning_in(delta)
                        if choice.finish_reason:
                            out.finish_reason = choice.finish_reason
            finally:
                await stream.close()
        out.text = "".join(text)
        return out

    async def probe_model(
        self, model: str, listed: list[str] | None, windows: Mapping[str, int]
    ) -> ModelReport:
        report = ModelReport(model)
        caps: dict[str, Any] = {"probed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if listed is not None:
            caps["listed"] = model in listed
        if windows.get(model):
            caps["context_window"] = windows[model]
            report.context_source = "server"
        params = list(TOKEN_PARAMS)
        plain_error: str | None = None
        reasoning: str | None = None
        think = False

        # 1. A plain (non-streaming) call finds the token parameter, usage and reasoning fields.
        try:
            param, (response, latency) = await self._with_token_param(
                report, params, lambda p: self.plain_call(report, p)
            )
        except Exception as exc:
            plain_error, reached = self.error(exc)
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            report.auth_failed = status in (401, 403)
            # Unreachable, a rejected key or an unknown model: streaming would only say the same again.
            if not reached or status in (401, 403, 404):
                report.error = plain_error
                report.caps = ModelCaps(**caps)
                return report
        else:
            caps["token_param"] = param
            params = [param]
            report.answered, report.latency_s = True, latency
            usage = _valid_usage(getattr(response, "usage", None))
            caps["usage_reported"] = usage is not None
            self._charge(report, usage, PROBE_MAX_TOKENS)
            choices = getattr(response, "choices", None) or []
            message = choices[0].message if choices else None
            content = (message.content or "") if message is not None else ""
            reasoning = _reasoning_in(message) if message is not None else None
            think = _has_think_tags(content)
            report.reply = self.shown_reply(content)
            finish = choices[0].finish_reason if choices else None
            if not choices:
                report.notes.append("the reply had no choices")
            elif not content.strip() and finish == "length":
                report.notes.append(
                    f"used all {PROBE_MAX_TOKENS} probe output tokens before answering (a reasoning model "
                    "thinking; runs allow many more)"
                )

        # 2. Streaming, with usage in the last chunk where stream_options is accepted.
        streaming: bool | None = None
        stream_usage: bool | None = None
        stream_error: str | None = None
        streamed: _Streamed | None = None
        try:
            param, streamed = await self._with_token_param(
                report, params, lambda p: self.stream_call(report, p, with_usage=True)
            )
            stream_usage = streamed.usage is not None
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                report.auth_failed = True
                stream_error = self.error(exc)[0]
            elif exc.status_code in (400, 422):
                said = redact(server_message(exc), self.api_key)
                if _names_param(exc, "stream_options") or _names_param(exc, "include_usage"):
                    report.notes.append(f"refused stream_options (HTTP {exc.status_code}: {said})")
                try:
                    param, streamed = await self._with_token_param(
                        report, params, lambda p: self.stream_call(report, p, with_usage=False)
                    )
                    stream_usage = False
                except openai.APIStatusError as exc2:
                    streaming = False
                    said = redact(server_message(exc2), self.api_key)
                    report.notes.append(f"streaming refused (HTTP {exc2.status_code}: {said})")
                    stream_error = self.error(exc2)[0]
                except Exception as exc2:
                    stream_error = self.error(exc2)[0]
            else:
                stream_error = self.error(exc)[0]
        except Exception as exc:
            stream_error = self.error(exc)[0]
        if streamed is not None:
            if streamed.chunks == 0:
                streaming, stream_usage = False, False
                report.notes.append("asked to stream, the server sent no stream")
            else:
                streaming = True
                caps.setdefault("token_param", param)
                self._charge(report, streamed.usage, PROBE_MAX_TOKENS)
                if not report.answered:
                    report.answered = True
                    report.reply = self.shown_reply(streamed.text)
                reasoning = reasoning or streamed.reasoning_field
                think = think or _has_think_tags(streamed.text)
        elif streaming is False:
            stream_usage = False
        caps["streaming"] = streaming
        caps["stream_usage"] = stream_usage
        caps["reasoning_field"] = reasoning or ("think-tags" if think else None)
        report.caps = ModelCaps(**caps)
        if not report.answered:
            report.error = plain_error or stream_error or "no reply"
        elif plain_error and streaming:
            report.notes.append(f"plain requests failed ({plain_error}); streaming works")
        elif stream_error and streaming is None:
            report.notes.append(f"the streaming test failed: {stream_error}")
        return report


async def probe_endpoint(
    base_url: str | None,
    api_key: str | None,
    models: Sequence[str],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    prices: PriceTable | None = None,
) -> EndpointReport:
    """Find what `base_url` and each of `models` can do, with a few tiny calls (about 2-4 per model).

    Never raises for server trouble: an unreachable endpoint, a rejected key or a refused model
    is described in the report, in the server's own words where it gave any, without the key.
    """
    started = time.monotonic()
    url = effective_base_url(base_url)
    report = EndpointReport(base_url=endpoint_key(url))
    names = [m for m in dict.fromkeys(m.strip() for m in models) if m]
    prober = _Prober(url, api_key or "", timeout_s, prices or PriceTable())
    try:
        try:
            windows = await prober.list_models(report) or {}
        except Exception as exc:
            report.error, report.reachable = prober.error(exc)
            return report
        missing = [m for m in names if m not in windows]
        if missing and urlsplit(url).hostname != "api.openai.com":
            windows.update(await prober.extra_windows(missing))
        found = await asyncio.gather(*(prober.probe_model(m, report.listed, windows) for m in names))
        report.models = list(found)
        # /models may be open while chat needs the key: a refused key is the endpoint's problem, not a model's.
        refused = [m.error for m in report.models if m.auth_failed]
        if refused:
            report.error = refused[0]
        return report
    finally:
        await prober.close()
        report.elapsed_s = time.monotonic() - started


def probe_endpoint_sync(
    base_url: str | None,
    api_key: str | None,
    models: Sequence[str],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    prices: PriceTable | None = None,
) -> EndpointReport:
    """probe_endpoint for threads without an event loop (the settings dialog, the CLI)."""
    return asyncio.run(probe_endpoint(base_url, api_key, models, timeout_s, prices))


def save_report(home: Path, report: EndpointReport) -> Path | None:
    """Cache what the probe learned about each model that answered; None when nothing was learned."""
    learned = {m.model: m.caps for m in report.models if m.answered}
    if not learned:
        return None
    return save_caps(home, report.base_url, learned, listed=report.listed)


# ---- plain words ---------------------------------------------------------------------------------


def describe_model(
    report: ModelReport, context_windows: Mapping[str, int] | None = None
) -> list[tuple[str, str]]:
    """(topic, finding) lines for a person: what the model takes, streams, reports and holds."""
    caps = report.caps
    lines: list[tuple[str, str]] = []
    if report.error:
        lines.append(("status", f"not usable: {report.error}"))
    else:
        took = f" in {report.latency_s:.1f} s" if report.latency_s is not None else ""
        said = f" ({report.reply!r})" if report.reply else ""
        lines.append(("status", f"answered{took}{said}"))
    if caps.listed is False:
        lines.append(
            (
                "listed",
                "not in the server's model list (it answered anyway)"
                if report.answered
                else "not in the server's model list",
            )
        )
    if caps.token_param:
        lines.append(("output limit", f"takes {caps.token_param}"))
    if caps.streaming is True:
        lines.append(
            ("streaming", "yes, with token usage" if caps.stream_usage else "yes, but without token usage")
        )
    elif caps.streaming is False:
        lines.append(("streaming", "no: runs use plain requests"))
    if caps.usage_reported is True:
        lines.append(("usage", "reported: costs are exact"))
    elif caps.usage_reported is False:
        lines.append(("usage", "NOT reported: costs are estimated and held against the cap"))
    if caps.reasoning_field == "think-tags":
        lines.append(("reasoning", "in <think> tags in the text (kept apart, never run)"))
    elif caps.reasoning_field:
        lines.append(("reasoning", f"in the {caps.reasoning_field} field"))
    elif report.answered:
        lines.append(("reasoning", "none seen"))
    override = (context_windows or {}).get(report.model)
    if override:
        lines.append(("context window", f"{override:,} tokens (your setting)"))
    elif caps.context_window:
        lines.append(("context window", f"{caps.context_window:,} tokens (reported by the server)"))
    elif known := known_context_window(report.model):
        lines.append(("context window", f"{known:,} tokens (known for this model; not reported)"))
    else:
        lines.append(("context window", "not reported: set it in Settings if the server's is small"))
    for note in report.notes:
        lines.append(("note", note))
    if report.calls:
        if report.cost_usd is None:
            cost = "no price known"
        else:
            cost = f"${report.cost_usd:.6f}" + (
                " (estimated: no usage reported)" if report.cost_estimated else ""
            )
        calls = "1 call" if report.calls == 1 else f"{report.calls} calls"
        lines.append(("probe cost", f"{calls}, {cost}"))
    return lines
