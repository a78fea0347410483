"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests of model calls.

Besides tidy replies it can be switched to each quirk real servers show: reasoning inline or
in a field, missing/null/zero/total-only usage, parameter refusals (OpenAI 400 or FastAPI 422
style, per model), a small context window, streaming refused or streaming only, stream_options
refused, HTML or error-shaped 200 bodies, a connection reset mid-body, tool calls, refusals.
"""

from __future__ import annotations

import collections
import json
import math
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-5-mini")


@dataclass
class Reply:
    """What the server answers to one chat completion request.

    Token counts left as None are derived from the request (about 4 bytes per token, the
    completion limited by the request's max_completion_tokens / max_tokens).
    """

    text: str = "ok"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    status: int = 200
    error: dict | str | None = None
    retry_after: float | str | None = None
    delay_s: float = 0.0
    omit_usage: bool = False
    model: str | None = None
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    # quirks of one reply
    content_null: bool = False  # "content": null (with tool calls or a refusal)
    reasoning: str | None = None  # sent in a reasoning field (see FakeOpenAIServer.reasoning_field)
    usage_mode: str = "full"  # full, none (no key), null, zero, total_only
    tool_calls: list[dict] | None = None
    refusal: str | None = None
    raw_body: str | None = None  # sent as is with status 200 (an HTML page, an error-shaped JSON)
    raw_content_type: str = "text/html; charset=utf-8"
    reset_mid_body: bool = False  # headers and half the body, then the connection is cut
    chunk_delay_s: float = 0.0  # between streamed chunks


@dataclass
class RecordedRequest:
    """One request as the server saw it; times are time.monotonic() seconds."""

    method: str
    path: str
    json: dict | None
    headers: dict[str, str]
    arrived: float
    started: float
    ended: float | None = None
    status: int | None = None
    client_disconnected: bool = False
    response: dict | None = None  # the JSON body sent back (usage included), for tests that audit costs
    usage_sent: dict | None = None  # the usage object the client actually received (what a provider bills)


def approx_tokens(text: str) -> int:
    """About four UTF-8 bytes per token, like real tokenizers on English."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


def _request_text(request_json: dict) -> str:
    parts = []
    for message in request_json.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def default_handler(request_json: dict) -> Reply:
    return Reply(text="ok")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a fan-out opening 16 connections at once overflowed it, and a
    # dropped connect is retried by the kernel only after 1 s (a whole second added to a 0.7 s benchmark).
    # Real servers listen with hundreds (uvicorn 2048, nginx 511).
    request_queue_size = 512

    def __init__(self, owner: FakeOpenAIServer):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        # Nagle plus delayed ACK would add ~40 ms to every request and make the engine look slow.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client hanging up (a cancelled call, a timeout) is normal; anything else is a bug
        # in a test's handler and is kept for the test to see instead of printed.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            self.owner.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # idle keep-alive connections end on their own

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def parse_request(self) -> bool:
        self._arrived = time.monotonic()
        return super().parse_request()

    def do_GET(self):
        owner = self.server.owner
        record = owner._begin(self, None)
        try:
            if owner.models is None or not self.path.rstrip("/").endswith("/v1/models"):
                return self._send_json(record, 404, _error_body("not found", "invalid_request_error"))
            if not owner._authorized(self):
                return self._send_json(
                    record, 401, _error_body("Incorrect API key provided", "invalid_api_key")
                )
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in owner.models]
            self._send_json(record, 200, {"object": "list", "data": models})
        finally:
            owner._end(record)

    def do_POST(self):
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        record = owner._begin(self, body)
        try:
            if not self.path.rstrip("/").endswith("/v1/chat/completions"):
                return self._send_json(record, 404, _error_body("not found", "invalid_request_error"))
            if body is None:
                return self._send_json(record, 400, _error_body("body is not JSON", "invalid_request_error"))
            if not owner._authorized(self):
                return self._send_json(
                    record, 401, _error_body("Incorrect API key provided", "invalid_api_key")
                )
            refusal = owner._refusal(body)
            if refusal is not None:
                return self._send_json(record, *refusal)
            try:
                reply = owner._next_reply(body)
            except Exception as exc:  # a bug in the test's handler: keep it, answer 500
                owner.errors.append(exc)
                return self._send_json(record, 500, _error_body(f"handler failed: {exc!r}", "server"))
            if reply.delay_s > 0 and not self._wait_or_disconnect(reply.delay_s):
                record.client_disconnected = True
                self.close_connection = True
                return
            headers = dict(reply.headers)
            if reply.retry_after is not None:
                headers["Retry-After"] = str(reply.retry_after)
            if reply.status != 200:
                error = (
                    reply.error if reply.error is not None else _error_body(f"error {reply.status}", "server")
                )
                if isinstance(error, str):
                    error = _error_body(error, "invalid_request_error")
                return self._send_json(record, reply.status, error, headers)
            if reply.raw_body is not None:
                return self._send_raw(record, reply.raw_body.encode("utf-8"), reply.raw_content_type, headers)
            completion = _completion_body(body, reply, owner.reasoning_field)
            price = owner.report_cost.get(completion["model"])
            if price is not None and isinstance(completion.get("usage"), dict):  # OpenRouter's usage.cost
                usage = completion["usage"]
                usage["cost"] = (usage.get("prompt_tokens", 0) * price[0] + usage.get("completion_tokens", 0) * price[1]) / 1e6
            if owner.streaming == "only" or (body.get("stream") and owner.streaming == "yes"):
                return self._send_stream(record, body, completion, reply, headers)
            if reply.reset_mid_body:
                data = json.dumps(completion).encode("utf-8")
                return self._send_cut(record, data, headers)
            self._send_json(record, 200, completion, headers)
        finally:
            owner._end(record)

    def _send_raw(self, record: RecordedRequest, data: bytes, content_type: str, headers: dict):
        record.status = 200
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            record.client_disconnected = True
            self.close_connection = True

    def _send_cut(self, record: RecordedRequest, data: bytes, headers: dict):
        """Promise the whole body, send half, then reset the connection."""
        record.status = 200
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True

    def _send_stream(
        self, record: RecordedRequest, request: dict, completion: dict, reply: Reply, headers: dict
    ):
        """The completion as SSE chunks: reasoning, then content in small pieces, then usage if asked."""
        record.status = 200
        record.response = completion
        base = {k: completion[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        message = completion["choices"][0]["message"]
        chunks: list[dict] = [
            {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        ]
        for key in ("reasoning_content", "reasoning"):
            if message.get(key):
                chunks += [
                    {"choices": [{"index": 0, "delta": {key: piece}, "finish_reason": None}]}
                    for piece in _pieces(message[key])
                ]
        if message.get("content"):
            chunks += [
                {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                for piece in _pieces(message["content"])
            ]
        if message.get("tool_calls"):
            chunks.append(
                {
                    "choices": [
                        {"index": 0, "delta": {"tool_calls": message["tool_calls"]}, "finish_reason": None}
                    ]
                }
            )
        if message.get("refusal"):
            chunks.append(
                {"choices": [{"index": 0, "delta": {"refusal": message["refusal"]}, "finish_reason": None}]}
            )
        chunks.append(
            {
                "choices": [
                    {"index": 0, "delta": {}, "finish_reason": completion["choices"][0]["finish_reason"]}
                ]
            }
        )
        wants_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        usage_chunk = "usage" in completion and (wants_usage or request.get("stream") is not True)
        if usage_chunk:
            chunks.append({"choices": [], "usage": completion["usage"]})
        # Most servers (OpenAI, vLLM) send SSE chunked and keep the connection; some close it after the stream.
        chunked = self.server.owner.chunked_streams

        def write(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            write(b": keep-alive comment\n\n")
            for number, chunk in enumerate(chunks):
                if reply.reset_mid_body and number == len(chunks) // 2:
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                write(b"data: " + json.dumps({**base, **chunk}).encode("utf-8") + b"\n\n")
                self.wfile.flush()
                if reply.chunk_delay_s and not self._wait_or_disconnect(reply.chunk_delay_s):
                    record.client_disconnected = True
                    self.close_connection = True
                    return
            write(b"data: [DONE]\n\n")
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            if usage_chunk and isinstance(completion["usage"], dict):
                record.usage_sent = completion["usage"]
        except OSError:
            record.client_disconnected = True
            self.close_connection = True
        if not chunked:
            self.close_connection = True

    def _wait_or_disconnect(self, seconds: float) -> bool:
        """Sleep like a slow model; False as soon as the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        stopping = self.server.owner._stopping
        while (left := deadline - time.monotonic()) > 0:
            if stopping.is_set():
                return False
            readable, _, _ = select.select([self.connection], [], [], min(0.02, left))
            if readable:
                try:
                    peek = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    return False
                if peek == b"":
                    return False
                # Data rather than a hang-up (not expected from HTTP/1.1 clients): just wait.
                return not stopping.wait(max(0.0, deadline - time.monotonic()))
        return True

    def _send_json(self, record: RecordedRequest, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode("utf-8")
        record.status = status
        record.response = body
        if status == 200 and isinstance(body.get("usage"), dict):
            record.usage_sent = body["usage"]
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (ConnectionError, OSError):
            record.client_disconnected = True
            self.close_connection = True


def _error_body(message: str, code: str) -> dict:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _completion_body(request_json: dict, reply: Reply, reasoning_field: str = "reasoning_content") -> dict:
    limit = request_json.get("max_completion_tokens") or request_json.get("max_tokens")
    completion = reply.completion_tokens
    if completion is None:
        completion = approx_tokens(reply.text)
        if limit:
            completion = min(completion, int(limit))
    prompt = (
        reply.prompt_tokens if reply.prompt_tokens is not None else approx_tokens(_request_text(request_json))
    )
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or request_json.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None if reply.content_null else reply.text},
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    message = body["choices"][0]["message"]
    if reply.reasoning is not None:
        message[reasoning_field] = reply.reasoning
        if reply.completion_tokens is None:
            completion += approx_tokens(reply.reasoning)
            if limit:
                completion = min(completion, int(limit))
    if reply.tool_calls is not None:
        message["tool_calls"] = reply.tool_calls
    if reply.refusal is not None:
        message["refusal"] = reply.refusal
    mode = "none" if reply.omit_usage else reply.usage_mode
    if mode == "full":
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reply.cached_tokens is not None:
            body["usage"]["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    elif mode == "null":
        body["usage"] = None
    elif mode == "zero":
        body["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    elif mode == "total_only":
        body["usage"] = {"total_tokens": prompt + completion}
    return body


class FakeOpenAIServer:
    """A real HTTP server in a background thread answering like an OpenAI-compatible API.

    Replies come first from `queue(...)` (in order), then from `handler(request_json)`.
    Use as a context manager; `base_url` is "http://127.0.0.1:PORT/v1".
    """

    def __init__(
        self,
        handler: Callable[[dict], Reply] | None = None,
        *,
        models: Iterable[str] | None = DEFAULT_MODELS,
        api_key: str | None = None,
    ):
        self.handler = handler or default_handler
        self.models = None if models is None else list(models)  # None: no /v1/models endpoint
        self.api_key = api_key
        # Server-wide quirks, switched by tests.
        self.refuse_params: dict[str, set[str]] = {}  # model ("*" for all) -> parameters refused with a 400
        self.refusal_style = "openai"  # "openai" (400 error.message) or "fastapi" (422 {"detail": [...]})
        self.context_window: int | None = None  # prompt + max tokens beyond this is refused (vLLM's words)
        self.streaming = "yes"  # "yes": as asked; "no": stream=true refused; "only": always SSE
        self.stream_options_refused = False
        self.report_cost: dict[str, tuple[float, float]] = {}  # model -> USD per M in/out: usage.cost sent
        self.chunked_streams = False  # True: SSE chunked on a kept connection; False: SSE until the server closes
        self.reasoning_field = "reasoning_content"
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def queue(self, *replies: Reply) -> None:
        """Answer the next chat requests with these replies, in order."""
        with self._lock:
            self._queue.extend(replies)

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.chat_requests) >= count:
                return True
            time.sleep(0.005)
        return False

    def start(self) -> FakeOpenAIServer:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        return self.api_key is None or handler.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _refusal(self, body: dict) -> tuple[int, dict] | None:
        """(status, body) when a server-wide quirk refuses this request before the model runs."""
        model = body.get("model", "")
        refused = self.refuse_params.get(model, set()) | self.refuse_params.get("*", set())
        for param in sorted(refused):
            if param in body:
                if self.refusal_style == "fastapi":
                    return 422, {
                        "detail": [
                            {
                                "type": "extra_forbidden",
                                "loc": ["body", param],
                                "msg": "Extra inputs are not permitted",
                                "input": body[param],
                            }
                        ]
                    }
                return 400, _error_body(
                    f"Unsupported parameter: '{param}' is not supported with this model.",
                    "invalid_request_error",
                )
        if body.get("stream") and self.streaming == "no":
            return 400, _error_body("streaming is not supported by this server", "invalid_request_error")
        if body.get("stream") and self.stream_options_refused and "stream_options" in body:
            return 400, _error_body(
                "Unrecognized request argument supplied: stream_options", "invalid_request_error"
            )
        if self.context_window is not None:
            prompt = approx_tokens(_request_text(body))
            wanted = int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
            if prompt + wanted > self.context_window:
                return 400, _error_body(
                    f"This model's maximum context length is {self.context_window} tokens. However, you requested "
                    f"{wanted} output tokens and your prompt contains at least {prompt} input tokens, for a total "
                    f"of at least {prompt + wanted} tokens. Please reduce the length of the input prompt or the "
                    "number of requested output tokens.",
                    "context_length_exceeded",
                )
        return None

    def _next_reply(self, body: dict) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.handler(body)

    def _begin(self, handler: BaseHTTPRequestHandler, body: dict | None) -> RecordedRequest:
        now = time.monotonic()
        record = RecordedRequest(
            method=handler.command,
            path=handler.path,
            json=body,
            headers={k.lower(): v for k, v in handler.headers.items()},
            arrived=getattr(handler, "_arrived", now),
            started=now,
        )
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return record

    def _end(self, record: RecordedRequest) -> None:
        record.ended = time.monotonic()
        with self._lock:
            self._in_flight -= 1
