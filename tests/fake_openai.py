"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests of model calls."""

from __future__ import annotations

import collections
import json
import math
import select
import socket
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

    def __init__(self, owner: FakeOpenAIServer):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
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
            self._send_json(record, 200, _completion_body(body, reply), headers)
        finally:
            owner._end(record)

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


def _completion_body(request_json: dict, reply: Reply) -> dict:
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
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if not reply.omit_usage:
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reply.cached_tokens is not None:
            body["usage"]["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
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
