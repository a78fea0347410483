"""Chat completions against any OpenAI-compatible server: our own retries, streaming, and honest money.

Every attempt reserves its worst-case cost before it is sent and closes that reservation
in one of three ways (see budget.py): billed from reported usage, held when the cost is
unknown, or released when the request never reached the server. The reply body is read
by us, not parsed by the SDK, so the quirks of real servers (HTML or error-shaped 200s,
SSE where JSON was asked for, reasoning fields, tool calls, missing usage) each get a
plain message instead of an AttributeError.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import os
import random
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from rlm_desktop.engine.budget import SpendLedger, upper_bound_cost
from rlm_desktop.engine.chat_http import ChatTransport, SdkErrors
from rlm_desktop.engine.model_info import ModelCaps, default_token_param, requires_new_token_param
from rlm_desktop.engine.pricing import PriceTable, UnknownPrice
from rlm_desktop.engine.sdk_headers import chat_url, sdk_headers
from rlm_desktop.engine.tokens import count_message_tokens, count_tokens, quick_count

if TYPE_CHECKING:
    import openai

Messages = str | Sequence[Mapping[str, object]]
DELTA_INTERVAL_S = 0.1  # how often streamed text is passed on (the window redraws from it)
MAX_ADJUSTMENTS = 4  # parameter fallbacks per call (token parameter, stream options, streaming)


@dataclass(frozen=True)
class Completion:
    """One finished call. `model` is the name asked for (prices and usage are keyed by it);
    `served_model` is what the server says answered.

    `text` is the reply's content as sent (inline `<think>` included: the engine splits it);
    `reasoning` is what came in a reasoning field. `cost_usd` is the billed cost when usage was
    reported, else the tokenizer estimate (`usage_reported` False, and `held_usd` is what the
    cap still counts for it). None only when the model has no price and no cap is set.
    """

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float | None
    latency_s: float
    retries: int
    finish_reason: str | None = None
    served_model: str | None = None
    usage_reported: bool = True
    reasoning: str = ""
    refusal: str | None = None
    tool_calls: tuple[str, ...] = ()
    held_usd: float = 0.0
    streamed: bool = False
    max_output_tokens: int = 0


@dataclass(frozen=True)
class CallRetried:
    """Attempt number `attempt` (1 = first) failed for `reason`; the next starts after `delay_s`."""

    label: str
    attempt: int
    reason: str
    delay_s: float


@dataclass(frozen=True)
class ParameterAdjusted:
    """The server refused a request parameter and the call was resent without it (not a failure)."""

    label: str
    model: str
    change: str


@dataclass(frozen=True)
class UsageMissing:
    """The server reported no usable token usage: the reservation is held and the cost estimated."""

    label: str
    model: str
    charged_usd: float  # held against the cap
    estimated_usd: float | None = None


@dataclass(frozen=True)
class TextStreamed:
    """Streamed text so far for the call labelled `label` (throttled; the last one is complete)."""

    label: str
    text: str
    reasoning: str


class _NotRaised(Exception):
    """Stands in an `except` clause for an SDK exception class while the SDK is not imported."""


def sdk_error(name: str) -> type[Exception]:
    """The SDK's exception class `name`, for an `except` clause or isinstance, without importing the SDK (0.5-1.5 s)
    to catch what only code that had imported it can have raised: a class never raised while it is not loaded."""
    module = sys.modules.get("openai")
    return getattr(module, name, _NotRaised) if module is not None else _NotRaised


class ModelCallError(Exception):
    """A model call failed for good; the message says what to fix when we know."""

    def __init__(self, message: str, *, model: str | None = None, label: str = "", status: int | None = None):
        super().__init__(message)
        self.model, self.label, self.status = model, label, status


class ModelAuthError(ModelCallError):
    """401/403: the API key was rejected or lacks access."""


class ModelNotFoundError(ModelCallError):
    """404: the server does not know the model (or the base URL is wrong)."""


class ModelRequestError(ModelCallError):
    """Another 4xx, or a reply that is not a chat completion: the server refused or misunderstood."""


class ContextTooLong(ModelRequestError):
    """The request does not fit the model's context window (`window` tokens when the server said)."""

    def __init__(self, message: str, *, window: int | None = None, prompt_tokens: int | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.window, self.prompt_tokens = window, prompt_tokens


class ModelUnavailableError(ModelCallError):
    """Retries ran out on rate limits, server errors, timeouts or connection failures."""


def public_url(url: str | None) -> str:
    """The base URL as shown to people: no `user:secret@`, no query string (keys hide there)."""
    if not url:
        return "the default OpenAI endpoint"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the configured endpoint"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_detail(body: object, fallback: str = "") -> str:
    """The server's own words: OpenAI's error.message, FastAPI's `detail` (422 lists included), plain text."""
    if isinstance(body, Mapping):
        error = body.get("error", None)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            parts = []
            for item in detail:
                if isinstance(item, Mapping):
                    loc = ".".join(str(x) for x in item.get("loc") or () if x != "body")
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        if body.get("message"):
            return str(body["message"])
    if isinstance(body, str) and body.strip():
        return _describe_text_body(body)
    return fallback


def _describe_text_body(text: str) -> str:
    head = text.lstrip()[:200].lower()
    if head.startswith(("<!doctype", "<html")) or "<html" in head:
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        named = f" titled {title.group(1).strip()[:80]!r}" if title and title.group(1).strip() else ""
        return f"an HTML page{named}, not an API reply"
    return " ".join(text.split())[:300]


def status_message(exc: openai.APIStatusError) -> str:
    """What the server said with an error status, in its own words (the body read if the SDK did not)."""
    body = exc.body
    if body is None or (isinstance(body, str) and not body.strip()):
        try:
            body = exc.response.text
        except Exception:
            body = None
    return error_detail(body, exc.message)


_VALUE_COMPLAINT = re.compile(r"too large|at most|maximum|must be|less than|greater than", re.IGNORECASE)
_CONTEXT_COMPLAINT = re.compile(
    r"context[_ ]length|context window|context size|maximum context|prompt is too long|too many tokens|"
    r"exceeds? the (?:available )?context|n_ctx|reduce the length",
    re.IGNORECASE,
)
_WINDOW_NUMBER = re.compile(
    r"(?:maximum context length is|context length of(?: only)?|context window of|context size (?:is|of)|"
    r"n_ctx\D{0,5}|tokens? > )\s*(\d[\d,]*)",
    re.IGNORECASE,
)
_PROMPT_NUMBER = re.compile(
    r"(\d[\d,]*) (?:tokens )?in the messages|prompt contains at least (\d[\d,]*)|request has (\d[\d,]*) input|"
    r"prompt is too long: (\d[\d,]*)",
    re.IGNORECASE,
)


def _mentions_param(detail: str, name: str) -> bool:
    return re.search(rf"(?<![a-z_]){name}(?![a-z_])", detail) is not None


def _rejects_param(detail: str, name: str) -> bool:
    """True for "unsupported/unrecognized/extra max_tokens", not for a value out of range."""
    return _mentions_param(detail, name) and not _VALUE_COMPLAINT.search(detail)


def _context_complaint(detail: str, body: object) -> tuple[int | None, int | None] | None:
    """(window, prompt tokens) when an error says the request does not fit the context, else None."""
    code = ""
    if isinstance(body, Mapping):
        error = body.get("error", body)  # the SDK hands over the inner error object; others the whole body
        if isinstance(error, Mapping):
            code = f"{error.get('code', '')} {error.get('type', '')}"
            n_ctx = error.get("n_ctx")
            if isinstance(n_ctx, int):
                prompt = error.get("n_prompt_tokens")
                return n_ctx, prompt if isinstance(prompt, int) else None
    if "context_length_exceeded" not in code and "exceed_context" not in code and not _CONTEXT_COMPLAINT.search(detail):
        return None
    window = _WINDOW_NUMBER.search(detail)
    prompt = _PROMPT_NUMBER.search(detail)
    number = lambda m: int(next(g for g in m.groups() if g).replace(",", "")) if m else None  # noqa: E731
    return number(window), number(prompt)


def _json_loads(text: str) -> Any:
    """orjson where it reads the text (2-3x json's speed: this runs for every streamed token), else json's reading,
    so what is accepted (NaN, Infinity) and the errors raised stay json's. orjson reads an integer past 64 bits as
    a float: no real count is that large, and read_usage refuses a float count (the call is held, not billed)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class _BadReply(Exception):
    """A 200 whose body is not a usable chat completion; `retryable` when a retry may help."""

    def __init__(self, message: str, *, retryable: bool = False, billed_maybe: bool = False):
        super().__init__(message)
        self.retryable, self.billed_maybe = retryable, billed_maybe


@dataclass
class _Reply:
    content: str = ""
    reasoning: str = ""
    refusal: str | None = None
    tool_calls: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: object = None
    model: str | None = None
    streamed: bool = False


@dataclass
class _ModelState:
    """What we learned about one model on this endpoint during this client's life."""

    token_param: str
    stream: bool
    stream_usage: bool = True
    window: int | None = None


def _text_of(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


def _tool_names(tool_calls: object) -> list[str]:
    names = []
    for call in tool_calls or ():
        if isinstance(call, Mapping):
            function = call.get("function")
            name = function.get("name") if isinstance(function, Mapping) else None
            if name:
                names.append(str(name))
    return names


def read_usage(usage: object) -> tuple[int, int, int] | None:
    """(prompt, completion, cached) tokens, or None when usage is missing, null, zero or total-only."""
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (prompt, completion)):
        return None
    if prompt <= 0:  # every real request has prompt tokens: zeros are a server that does not count
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    if cached is None:
        cached = usage.get("cache_read_input_tokens")
    cached = cached if isinstance(cached, int) and not isinstance(cached, bool) and cached > 0 else 0
    return prompt, max(0, completion), cached


def _reply_from_json(data: object) -> _Reply:
    if not isinstance(data, Mapping):
        raise _BadReply(f"the reply was JSON but not a chat completion: {_describe_text_body(json.dumps(data))}")
    if "error" in data and not data.get("choices"):
        detail = error_detail(data, "an error")
        error = data.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        # A gateway that wraps an upstream refusal keeps its 4xx code; anything else may pass.
        client_fault = isinstance(code, int) and 400 <= code < 500 and code not in (408, 429)
        raise _BadReply(
            f"the server answered 200 with an error: {detail}", retryable=not client_fault, billed_maybe=True
        )
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], Mapping):
        raise _BadReply("the reply had no choices (not a chat completion)", billed_maybe=data.get("usage") is not None)
    choice = choices[0]
    message = choice.get("message") or {}
    if not isinstance(message, Mapping):
        message = {}
    return _Reply(
        content=_text_of(message.get("content")),
        reasoning=_text_of(message.get("reasoning_content") or message.get("reasoning")),
        refusal=_text_of(message.get("refusal")) or None,
        tool_calls=_tool_names(message.get("tool_calls")),
        finish_reason=choice.get("finish_reason"),
        usage=data.get("usage"),
        model=data.get("model") if isinstance(data.get("model"), str) else None,
    )


class _StreamReader:
    """Accumulates an SSE chat-completion stream, chunk by chunk."""

    def __init__(self, on_delta: Callable[[str, str], None] | None, final_delta: bool = True):
        self.reply = _Reply(streamed=True)
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.on_delta = on_delta
        self.final_delta = final_delta  # False: the caller shows the finished reply itself
        self.last_pass = 0.0  # the first piece's text is passed on at once
        self.passed = (0, 0)  # how many pieces of text and of reasoning were passed on last time
        self.done = False

    def line(self, line: str) -> None:
        # Called once per streamed token, so it is kept lean: JSON decodes objects to exactly `dict` and text to
        # exactly `str`, so those type checks stand for the Mapping/str checks of whole replies (_reply_from_json).
        line = line.strip()
        if not line.startswith("data:"):
            return  # keep-alive comments (": OPENROUTER PROCESSING"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = _json_loads(data)
        except json.JSONDecodeError:
            raise _BadReply(f"the stream carried a chunk that is not JSON: {data[:120]!r}") from None
        if type(chunk) is not dict:
            return
        choices = chunk.get("choices")
        if "error" in chunk and not choices:
            raise _BadReply(f"the stream ended with an error: {error_detail(chunk, 'an error')}", retryable=True,
                            billed_maybe=True)
        usage = chunk.get("usage")
        if usage is not None:
            self.reply.usage = usage
        model = chunk.get("model")
        if type(model) is str:
            self.reply.model = model
        for choice in choices or ():
            if type(choice) is not dict:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if type(delta) is dict:
                content = delta.get("content")
                if content:
                    self.content.append(content if type(content) is str else _text_of(content))
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                if thought:
                    self.reasoning.append(thought if type(thought) is str else _text_of(thought))
                if delta.get("refusal"):
                    self.reply.refusal = (self.reply.refusal or "") + _text_of(delta["refusal"])
                for call in delta.get("tool_calls") or ():
                    if type(call) is dict and type(call.get("function")) is dict:
                        name = call["function"].get("name")
                        if name:
                            self.reply.tool_calls.append(str(name))
            finish = choice.get("finish_reason")
            if finish:
                self.reply.finish_reason = finish

    def pass_on(self) -> None:
        """Pass the text so far on, at most every DELTA_INTERVAL_S: called once per piece of the body read,
        so a reply that came in one piece is passed on once, complete, by `finish`."""
        if not self.done:
            self._pass_on(force=False)

    def _pass_on(self, force: bool) -> None:
        if self.on_delta is None:
            return
        pieces = (len(self.content), len(self.reasoning))
        if pieces == self.passed:
            return  # nothing new since the last time (a keep-alive, the role chunk, usage): nothing to redraw
        now = time.monotonic()
        if force or now - self.last_pass >= DELTA_INTERVAL_S:
            self.last_pass, self.passed = now, pieces
            self.on_delta("".join(self.content), "".join(self.reasoning))

    def finish(self) -> _Reply:
        if not self.done and self.reply.finish_reason is None:
            raise _BadReply("the stream broke off before the reply was complete", retryable=True, billed_maybe=True)
        self.reply.content = "".join(self.content)
        self.reply.reasoning = "".join(self.reasoning)
        if self.final_delta:
            self._pass_on(force=True)
        return self.reply

    def partial_text(self) -> str:
        return "".join(self.content) + "".join(self.reasoning)


class _IdleDeadline:
    """Ends a call (through its asyncio timeout, so as a TimeoutError) once `seconds` passed with no data.

    The time of the last data is a float set per piece received (`last`); the timer is re-armed only when it fires
    and data came meanwhile. Rescheduling the asyncio timeout on every piece instead made and cancelled a timer
    each time (3-5 per sub-call, ~5% of a sub-call's CPU). The deadline is the same: `seconds` after the last data.
    """

    __slots__ = ("_loop", "_timeout", "_seconds", "last", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: asyncio.Timeout, seconds: float):
        self._loop, self._timeout, self._seconds = loop, timeout, seconds
        self.last = loop.time()
        self._handle = loop.call_at(self.last + seconds, self._check)

    def _check(self) -> None:
        due = self.last + self._seconds
        if self._loop.time() >= due:
            self._timeout.reschedule(due)  # already past: the timeout expires at once
        else:
            self._handle = self._loop.call_at(due, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


def error_chain(exc: BaseException) -> list[BaseException]:
    """An exception and its causes and contexts, outermost first."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and all(node is not seen for seen in chain):
        chain.append(node)
        node = node.__cause__ or node.__context__
    return chain


def never_reached(exc: BaseException) -> bool:
    """True when the request cannot have reached the server: refused, unresolvable, connect timeout."""
    names = (
        "ConnectError", "ConnectTimeout", "ConnectionRefusedError", "gaierror",  # httpx (the SDK), the socket
        "ClientConnectorError", "ConnectionTimeoutError",  # aiohttp (chat_http.py), subclasses included
    )
    return any(cls.__name__ in names for item in error_chain(exc) for cls in type(item).__mro__)


def _transport_error(exc: BaseException) -> bool:
    """An HTTP transport failure (aiohttp's or the SDK's HTTP stack's, raised raw once a request went out)."""
    module = type(exc).__module__
    return isinstance(exc, OSError | sdk_error("APIConnectionError")) or module.startswith(
        ("aiohttp", "httpx", "httpcore", "h11", "anyio")
    )


def transport_cause(exc: BaseException) -> str | None:
    """The root cause of a transport failure in plain words, or None when it is none we name."""
    for item in error_chain(exc):
        text = str(item)
        if isinstance(item, ConnectionRefusedError) or "onnection refused" in text or "Errno 111" in text:
            return "connection refused (is the server running, and is the port right?)"
        if isinstance(item, socket.gaierror) or "Name or service not known" in text:
            return f"the host name could not be resolved ({getattr(item, 'strerror', None) or item})"
        if isinstance(item, ssl.SSLError):
            return f"the TLS (https) handshake failed: {item.reason or item}"
        if isinstance(item, ConnectionResetError):
            return "the connection was reset by the server"
    return None


def _cause_text(exc: BaseException) -> str:
    named = transport_cause(exc)
    if named is not None:
        return named
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


DRAIN_S = 0.5  # how long the end of a finished stream is waited for, to keep its connection


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one reads the whole CA bundle (25-80 ms), once per client otherwise.

    It trusts what the SDK's default client trusts: certifi's bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    import certifi  # the SDK's HTTP stack depends on it

    return ssl.create_default_context(cafile=certifi.where())


def _httpx_module(client: object) -> Any:
    """The HTTP library under the SDK (httpx, or httpx2 in newer SDKs), for its exception classes."""
    for cls in type(client).__mro__:
        if cls.__name__ == "AsyncClient" and cls.__module__.split(".")[0].startswith("httpx"):
            return sys.modules[cls.__module__.split(".")[0]]
    raise RuntimeError(f"the OpenAI SDK's HTTP client is not httpx: {type(client).__mro__}")


def warm_up() -> None:
    """Build ahead of time what a process builds once for its model requests: the TLS context (an https endpoint's
    first request needs it) and the SDK's headers, then the SDK itself and its HTTP client classes, which only an
    error reply or a model list needs (about 1 s). The window's engine child does it while the user is still
    typing, so neither a run's first request nor its first error reply waits for them."""
    shared_ssl_context()
    sdk_headers("")
    client = http_client(1.0)
    with contextlib.suppress(Exception):
        asyncio.run(client.aclose())  # closing loads the async backend the first request would


def http_client(timeout_s: float) -> openai.DefaultAsyncHttpxClient:
    """The SDK's default HTTP client (its limits and redirects), on the process's one TLS context."""
    import openai  # not at the module's top: a run that meets no error never needs the SDK

    return openai.DefaultAsyncHttpxClient(verify=shared_ssl_context(), timeout=timeout_s)


class ModelClient:
    """Calls one OpenAI-compatible endpoint for both root and sub models.

    Per model it learns which output-limit parameter the server takes, whether it streams
    and accepts `stream_options`, and (from errors) its context window; `caps` from a probe
    (`rlm-desktop doctor`) seed what is learned. The SDK's own retries are off so every
    retry is ours and reported via `on_event`.
    """

    def __init__(
        self,
        base_url: str | None,
        api_key: str,
        price_table: PriceTable,
        ledger: SpendLedger,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        on_event: Callable[[object], None] | None = None,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 60.0,
        stream: bool = False,
        caps: Mapping[str, ModelCaps] | None = None,
        max_in_flight: int | None = None,
    ):
        self.base_url = base_url
        # At most this many requests to this endpoint at once (None: no limit of its own).
        self._in_flight = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.where = public_url(base_url)
        self.price_table = price_table
        self.ledger = ledger
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.on_event = on_event
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.stream = stream
        self.caps = dict(caps or {})
        self._api_key = api_key
        # What the SDK sends with every request (its version headers, organisation and project when set) and the
        # bearer key, to where it would send it; requests go out on aiohttp (see _post). The SDK's client itself
        # (and its HTTP client and TLS context: ~125 ms, and 0.5-1.5 s to import the SDK) is made only when an
        # error reply or the model list needs it (`sdk_client`).
        try:
            in_loop = asyncio.get_running_loop() is not None
        except RuntimeError:
            in_loop = False
        self._headers = sdk_headers(api_key, in_event_loop=in_loop)
        self._url = chat_url(base_url)
        self._sdk: openai.AsyncOpenAI | None = None
        self._chat = ChatTransport(self._url, self._headers, timeout_s, shared_ssl_context, self._sdk_errors)
        self._models: dict[str, _ModelState] = {}
        self._random = random.Random()

    def sdk_client(self) -> openai.AsyncOpenAI:
        """The SDK's client for this endpoint (its own retries off), made on first use."""
        if self._sdk is None:
            import openai

            self._sdk = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key or "not-needed",  # local servers often accept any key; the SDK insists
                max_retries=0,
                timeout=self.timeout_s,
                http_client=http_client(self.timeout_s),
            )
        return self._sdk

    def _sdk_errors(self) -> SdkErrors:
        client = self.sdk_client()
        return SdkErrors(client._make_status_error_from_response, _httpx_module(client._client))

    async def aclose(self) -> None:
        await self._chat.aclose()
        if self._sdk is not None:
            await self._sdk.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    def state(self, model: str) -> _ModelState:
        state = self._models.get(model)
        if state is None:
            caps = self.caps.get(model)
            stream = self.stream and (caps is None or caps.streaming is not False)
            state = _ModelState(
                token_param=default_token_param(model, caps),
                stream=stream,
                stream_usage=caps is None or caps.stream_usage is not False,
                window=caps.context_window if caps is not None else None,
            )
            self._models[model] = state
        return state

    def learned_window(self, model: str) -> int | None:
        state = self._models.get(model)
        return state.window if state is not None else None

    async def complete(
        self,
        model: str,
        messages: Messages,
        max_output_tokens: int,
        label: str = "",
        *,
        on_delta: Callable[[str, str], None] | None = None,
        final_delta: bool = True,
    ) -> Completion:
        """One chat completion; raises CapReached, UnknownPrice, ModelCallError or CancelledError.

        `on_delta(text, reasoning)` gets the text so far while a reply streams, when there is new text, and last
        the whole reply (unless `final_delta` is False: a caller that shows the Completion's text itself).
        """
        if max_output_tokens < 1:
            raise ValueError("max_output_tokens must be >= 1")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        messages = list(messages)
        price = self.price_table.get(model)
        if price is None and self.ledger.cap_usd is not None:
            raise UnknownPrice(model)
        state = self.state(model)
        bound = 0.0 if price is None else upper_bound_cost(price, messages, max_output_tokens)
        started = time.monotonic()
        attempt = retries = adjustments = 0
        while True:
            attempt += 1
            # The endpoint's in-flight limit is taken before the reservation: a call queued for its turn
            # holds no money against the cap.
            if self._in_flight is not None:
                await self._in_flight.acquire()
            try:
                reservation = self.ledger.reserve(bound, label)  # CapReached: nothing is sent
                reader = _StreamReader(on_delta, final_delta) if state.stream else None
                try:
                    reply = await self._send(model, messages, max_output_tokens, state, reader)
                except asyncio.CancelledError:
                    estimate = self._estimate(price, messages, reader.partial_text() if reader else "", bound, quick=True)
                    self.ledger.hold(reservation, estimate)
                    raise
                except sdk_error("APIStatusError") as exc:
                    status, detail = exc.status_code, status_message(exc)
                    # A 4xx is a refusal before the model ran, which providers do not bill; a 5xx
                    # or 408 may come after it ran, so its reservation is held.
                    if status >= 500 or status == 408:
                        self.ledger.hold(reservation)
                    else:
                        self.ledger.settle(reservation, 0.0)
                    if status in (400, 422) and adjustments < MAX_ADJUSTMENTS:
                        change = self._adjust(model, state, detail)
                        if change:
                            adjustments += 1
                            self._emit(ParameterAdjusted(label, model, change))
                            continue
                    if status in (400, 413, 422):
                        fit = _context_complaint(detail, exc.body)
                        if fit is not None:
                            window, prompt = fit
                            if window:
                                state.window = window
                            raise ContextTooLong(
                                f"{model} at {self.where}: the request does not fit the model's context "
                                f"window{f' of {window:,} tokens' if window else ''}: {detail}",
                                window=window,
                                prompt_tokens=prompt,
                                model=model,
                                label=label,
                                status=status,
                            ) from exc
                    if status not in (408, 409, 429) and status < 500:
                        raise self._status_error(status, detail, model, label) from exc
                    reason = f"HTTP {status}: {detail}"
                    retry_after = _retry_after_s(exc.response.headers)
                except _BadReply as exc:
                    if exc.billed_maybe:
                        self.ledger.hold(reservation)
                    else:
                        self.ledger.release(reservation)
                    if not exc.retryable:
                        raise ModelRequestError(
                            f"{model} at {self.where}: {exc}{self._url_hint(str(exc))}", model=model, label=label
                        ) from None
                    reason, retry_after = str(exc), None
                except (sdk_error("APITimeoutError"), TimeoutError) as exc:
                    if never_reached(exc):
                        self.ledger.release(reservation)
                        reason = f"cannot connect: no answer within {self.timeout_s:g} s"
                    else:
                        self.ledger.hold(reservation, self._estimate(price, messages, "", bound))
                        idle = "no data" if state.stream else "no answer"
                        reason = f"timeout: {idle} within {self.timeout_s:g} s"
                    retry_after = None
                except Exception as exc:
                    if not _transport_error(exc):
                        self.ledger.hold(reservation)
                        raise
                    if never_reached(exc):
                        self.ledger.release(reservation)
                        reason = f"cannot connect: {_cause_text(exc)}"
                    else:  # reset or cut off after the request went out: it may have run
                        self.ledger.hold(reservation, self._estimate(price, messages, "", bound))
                        reason = f"the connection broke during the reply: {_cause_text(exc)}"
                    retry_after = None
                except BaseException:
                    self.ledger.hold(reservation)
                    raise
                else:
                    return self._finish(model, label, price, messages, reply, reservation, bound, started, retries,
                                        max_output_tokens)
            finally:
                if self._in_flight is not None:
                    self._in_flight.release()
            if retries >= self.max_retries:
                raise ModelUnavailableError(
                    f"{model}: gave up after {attempt} attempts at {self.where}: {reason}",
                    model=model,
                    label=label,
                )
            retries += 1
            delay = self._delay(retries, retry_after)
            self._emit(CallRetried(label, attempt, reason, delay))
            await asyncio.sleep(delay)

    async def _send(
        self, model: str, messages: list, max_output_tokens: int, state: _ModelState, reader: _StreamReader | None
    ) -> _Reply:
        body: dict[str, Any] = {"model": model, "messages": messages, state.token_param: max_output_tokens}
        if reader is not None:
            body["stream"] = True
            if state.stream_usage:
                body["stream_options"] = {"include_usage": True}
        loop = asyncio.get_running_loop()
        # Not streaming: the whole call must finish in time. Streaming: each chunk must come in time.
        async with asyncio.timeout(None) as deadline:
            idle = _IdleDeadline(loop, deadline, self.timeout_s)
            try:
                async with self._post(body) as response:
                    content_type = response.headers.get("content-type", "")
                    if "text/event-stream" in content_type:
                        reader = reader or _StreamReader(None)  # a server that streams unasked
                        return await self._read_stream(response, reader, state, idle, loop)
                    raw = await response.aread()
            finally:
                idle.cancel()
        text = raw.decode("utf-8", "replace")
        if text.lstrip().startswith("data:"):  # SSE without its content type
            reader = _StreamReader(reader.on_delta, reader.final_delta) if reader else _StreamReader(None)
            for line in text.splitlines():
                reader.line(line)
            return reader.finish()
        if not text.strip():
            raise _BadReply("the server answered 200 with an empty body", retryable=True)
        try:
            data = _json_loads(text)
        except json.JSONDecodeError:
            raise _BadReply(
                f"the server answered 200 with {_describe_text_body(text)} ({content_type or 'no content type'})"
            ) from None
        return _reply_from_json(data)

    async def _read_stream(
        self, response: Any, reader: _StreamReader, state: _ModelState, idle: _IdleDeadline, loop: Any
    ) -> _Reply:
        batches = response.line_batches()
        async for batch in batches:
            idle.last = loop.time()  # data came: the idle deadline counts from here
            for line in batch:
                reader.line(line)
                if reader.done:
                    break
            if reader.done:
                break
            reader.pass_on()
        if reader.done and not response.at_eof():
            # Read the stream's end too, so its connection goes back to the pool: otherwise every
            # call opens a new one. A server that keeps the stream open after [DONE] is left.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    async for _ in batches:
                        pass
        if not state.stream:
            state.stream = True  # it only streams: ask for it from now on
        return reader.finish()

    def _post(self, body: dict[str, Any]):
        """POST a chat request with the SDK's headers; an error status raises the SDK's own error class.

        Not through the SDK's request path (`chat.completions.create`: options, a type-driven transform of every
        message, response wrappers, about 1.5 ms of event-loop time per call) nor its httpx stack (1.6-1.9 ms
        more): with 16 sub-calls in flight that time was the fan-out's bottleneck (issue 15). The body here is
        plain JSON of plain strings, so nothing the SDK would transform is lost; see chat_http.py.
        """
        # orjson: the same JSON (compact, UTF-8 as json.dumps(ensure_ascii=False) would send it) in a fraction of
        # the time; a root call's body is its whole conversation, encoded anew every iteration.
        return self._chat.post(orjson.dumps(body))

    def _adjust(self, model: str, state: _ModelState, detail: str) -> str | None:
        """Change one request parameter a server refused; a description of the change, or None."""
        if state.token_param == "max_completion_tokens" and _rejects_param(detail, "max_completion_tokens"):
            if requires_new_token_param(model):
                return None
            state.token_param = "max_tokens"
            return "server rejected max_completion_tokens; sending max_tokens"
        if state.token_param == "max_tokens" and _rejects_param(detail, "max_tokens"):
            state.token_param = "max_completion_tokens"
            return "server rejected max_tokens; sending max_completion_tokens"
        if state.stream and state.stream_usage and _mentions_param(detail, "stream_options"):
            state.stream_usage = False
            return "server rejected stream_options; streaming without usage"
        if state.stream and re.search(r"stream(ing)?\b", detail, re.IGNORECASE):
            state.stream = False
            return "server rejected streaming; asking for whole replies"
        if not state.stream and re.search(r"stream(ing)?\b", detail, re.IGNORECASE):
            state.stream = True
            return "server asks for streaming; streaming"
        return None

    def _estimate(
        self, price, messages: list, completion_text: str, bound: float, quick: bool = False
    ) -> float | None:
        if price is None:
            return None
        try:
            if quick:  # a cancel must not wait for the tokenizer
                estimate = price.cost(quick_count(messages), quick_count(completion_text))
            else:
                estimate = price.cost(count_message_tokens(messages), count_tokens(completion_text))
        except Exception:
            return None
        return min(estimate, bound)

    def _finish(
        self, model, label, price, messages, reply: _Reply, reservation, bound, started, retries, max_output_tokens
    ) -> Completion:
        usage = read_usage(reply.usage)
        held = 0.0
        if usage is None:
            prompt_tokens = count_message_tokens(messages)
            completion_tokens = count_tokens(reply.content) + count_tokens(reply.reasoning)
            cached_tokens = 0
            cost = None if price is None else min(bound, price.cost(prompt_tokens, completion_tokens))
            self.ledger.hold(reservation, cost)
            held = reservation.amount
            self._emit(UsageMissing(label, model, reservation.amount, cost))
        else:
            prompt_tokens, completion_tokens, cached_tokens = usage
            cost = None if price is None else price.cost(prompt_tokens, completion_tokens, cached_tokens)
            self.ledger.settle(reservation, cost or 0.0)
        return Completion(
            text=reply.content,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            cost_usd=cost,
            latency_s=time.monotonic() - started,
            retries=retries,
            finish_reason=reply.finish_reason,
            served_model=reply.model,
            usage_reported=usage is not None,
            reasoning=reply.reasoning,
            refusal=reply.refusal,
            tool_calls=tuple(reply.tool_calls),
            held_usd=held,
            streamed=reply.streamed,
            max_output_tokens=max_output_tokens,
        )

    def _url_hint(self, message: str) -> str:
        if "HTML page" in message:
            return f"; check the base URL {self.where} (for most servers it ends in /v1)"
        return ""

    def _delay(self, retry_number: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter, or the server's Retry-After within our bound."""
        if retry_after_s is not None:
            return min(retry_after_s, self.retry_after_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry_number - 1))
        # Jitter spreads out the many parallel sub-calls that hit a rate limit together.
        return self._random.uniform(ceiling / 2, ceiling)

    def _status_error(self, status: int, detail: str, model: str, label: str) -> ModelCallError:
        where = f"{self.where} (HTTP {status})"
        if status in (401, 403):
            return ModelAuthError(
                f"the server rejected the API key: {where}: {detail}. Check OPENAI_API_KEY or the key "
                "in settings.",
                model=model,
                label=label,
                status=status,
            )
        if status == 404:
            return ModelNotFoundError(
                f"unknown model {model!r} or wrong base URL: {where}: {detail}",
                model=model,
                label=label,
                status=status,
            )
        return ModelRequestError(
            f"{model}: request refused by {where}: {detail}", model=model, label=label, status=status
        )

    def _emit(self, event: object) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def test_connection(self, model: str | None = None) -> str:
        """A one-line description of the server for a settings dialog; raises ModelCallError.

        Lists the models; if the server has no model list and `model` is given, makes a
        one-token call instead (charged to the ledger like any call).
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                page = await self.sdk_client().models.list(timeout=self.timeout_s)
        except sdk_error("APIStatusError") as exc:
            if exc.status_code in (404, 405, 501):
                if not model:
                    raise ModelCallError(
                        f"{self.where} has no model list (HTTP {exc.status_code}); check the base URL "
                        "(it usually ends in /v1) or name a model to try",
                        status=exc.status_code,
                    ) from exc
                # Reasoning models can fail on a 1-token limit, so allow a few tokens.
                reply = await self.complete(model, "Reply with OK.", 16, label="connection test")
                return f"Connected to {self.where}: {model} answered ({reply.prompt_tokens} tokens in)."
            raise self._status_error(
                exc.status_code, status_message(exc), model or "", "connection test"
            ) from exc
        except (sdk_error("APITimeoutError"), TimeoutError) as exc:
            raise ModelCallError(f"no answer from {self.where} within {self.timeout_s:g} s") from exc
        except sdk_error("APIConnectionError") as exc:
            raise ModelCallError(f"cannot reach {self.where}: {exc.__cause__ or exc}") from exc
        names = [m.id for m in page.data]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        if model and names and model not in names:
            return (
                f"Connected to {self.where}, but {model!r} is not among its {len(names)} models: {shown}"
            )
        return f"Connected to {self.where}: {len(names)} models ({shown})."

