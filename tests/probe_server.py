"""An OpenAI-compatible server on 127.0.0.1 with switchable quirks of real servers, for endpoint probes."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# FastAPI's answer to a field its pydantic model forbids (vLLM, LiteLLM-style proxies).
FASTAPI_EXTRA = {"type": "extra_forbidden", "msg": "Extra inputs are not permitted"}


@dataclass
class Quirks:
    """How the server misbehaves; the defaults are a tidy OpenAI-like server."""

    models: list[str] | None = field(default_factory=lambda: ["tidy-model", "other-model"])
    # extra fields per listed model, e.g. {"m": {"max_model_len": 8192}} (vLLM) or {"context_length": ...}
    model_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse_max_completion_tokens: str | None = None  # None, "400" (OpenAI-style) or "422" (FastAPI detail)
    refuse_max_tokens: bool = False  # OpenAI reasoning models: "use max_completion_tokens instead"
    usage: str = "full"  # "full", "none" (null), "missing" (no key), "zero", "total_only"
    stream: str = (
        "ok"  # "ok", "refused" (400 on stream=true), "no_options" (422 on stream_options), "ignored"
    )
    stream_usage: bool = True  # with include_usage, a last chunk carries usage
    streaming_only: bool = False  # non-streaming requests are refused
    reasoning: str | None = None  # "reasoning_content", "reasoning" or "think"
    reply_text: str = "OK"
    api_key: str | None = None  # when set, requests must carry it
    echo_key_on_401: bool = False  # the 401 names the key it got, like some gateways do
    unknown_models_404: bool = True  # chat with a model not in `models` is a 404
    props_n_ctx: int | None = None  # llama.cpp /props default_generation_settings.n_ctx
    lmstudio_context: dict[str, int] | None = None  # LM Studio /api/v0/models max_context_length
    prompt_tokens: int = 12
    completion_tokens: int = 2


@dataclass
class Seen:
    method: str
    path: str
    json: dict | None
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: ProbeServer):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10

    def setup(self) -> None:
        super().setup()
        # Small JSON and SSE writes must not wait for Nagle: the probe measures nothing but replies fast.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    # ---- GET: model lists and server facts ---------------------------------------------------------

    def do_GET(self) -> None:
        owner = self.server.owner
        q = owner.quirks
        path = self.path.split("?")[0].rstrip("/")
        owner._seen(self, None)
        if path == "/v1/models":
            if q.models is None:
                return self._json(404, {"detail": "Not Found"})
            if not self._authorized():
                return
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "probe", **q.model_fields.get(m, {})}
                for m in q.models
            ]
            return self._json(200, {"object": "list", "data": data})
        if path == "/props" and q.props_n_ctx is not None:
            return self._json(
                200, {"default_generation_settings": {"n_ctx": q.props_n_ctx}, "total_slots": 1}
            )
        if path == "/api/v0/models" and q.lmstudio_context is not None:
            data = [
                {"id": m, "object": "model", "type": "llm", "max_context_length": n}
                for m, n in q.lmstudio_context.items()
            ]
            return self._json(200, {"object": "list", "data": data})
        return self._json(404, {"detail": "Not Found"})

    # ---- POST: chat completions ---------------------------------------------------------------------

    def do_POST(self) -> None:
        owner = self.server.owner
        q = owner.quirks
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        owner._seen(self, body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._json(404, {"detail": "Not Found"})
        if not isinstance(body, dict):
            return self._json(400, {"detail": "body is not JSON"})
        if not self._authorized():
            return
        model = body.get("model")
        if q.unknown_models_404 and q.models is not None and model not in q.models:
            return self._openai_error(404, f"The model `{model}` does not exist.", "model_not_found")
        if "max_completion_tokens" in body and q.refuse_max_completion_tokens == "400":
            return self._openai_error(
                400,
                "Unrecognized request argument supplied: max_completion_tokens",
                "invalid_request_error",
                param="max_completion_tokens",
            )
        if "max_completion_tokens" in body and q.refuse_max_completion_tokens == "422":
            detail = [{**FASTAPI_EXTRA, "loc": ["body", "max_completion_tokens"], "input": 32}]
            return self._json(422, {"detail": detail})
        if "max_tokens" in body and q.refuse_max_tokens:
            return self._openai_error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "unsupported_parameter",
                param="max_tokens",
            )
        streaming = bool(body.get("stream"))
        if streaming and q.stream == "refused":
            return self._openai_error(
                400, "Streaming is not supported by this server", "invalid_request_error"
            )
        if streaming and q.stream == "no_options" and "stream_options" in body:
            detail = [{**FASTAPI_EXTRA, "loc": ["body", "stream_options"], "input": body["stream_options"]}]
            return self._json(422, {"detail": detail})
        if not streaming and q.streaming_only:
            return self._openai_error(400, "This server only supports stream=true", "invalid_request_error")
        if streaming and q.stream != "ignored":
            return self._stream(body)
        return self._json(200, self._completion(body))

    def _authorized(self) -> bool:
        q = self.server.owner.quirks
        if q.api_key is None:
            return True
        got = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if got == q.api_key:
            return True
        shown = f": {got}" if q.echo_key_on_401 else ""
        self._openai_error(401, f"Incorrect API key provided{shown}", "invalid_api_key")
        return False

    def _usage(self) -> dict | None:
        q = self.server.owner.quirks
        p, c = q.prompt_tokens, q.completion_tokens
        return {
            "full": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            "zero": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "total_only": {"total_tokens": p + c},
            "none": None,
        }.get(q.usage)

    def _text_and_reasoning(self) -> tuple[str, dict]:
        q = self.server.owner.quirks
        if q.reasoning == "think":
            return f"<think>The user wants OK.</think>{q.reply_text}", {}
        if q.reasoning in ("reasoning_content", "reasoning"):
            return q.reply_text, {q.reasoning: "The user wants OK."}
        return q.reply_text, {}

    def _completion(self, body: dict) -> dict:
        text, extra = self._text_and_reasoning()
        out: dict[str, Any] = {
            "id": "chatcmpl-probe",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, **extra},
                    "finish_reason": "stop",
                }
            ],
        }
        if self.server.owner.quirks.usage != "missing":
            out["usage"] = self._usage()
        return out

    def _stream(self, body: dict) -> None:
        q = self.server.owner.quirks
        text, extra = self._text_and_reasoning()
        base = {
            "id": "chatcmpl-probe",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model"),
        }
        chunks: list[dict] = []
        if extra:
            chunks.append({**base, "choices": [{"index": 0, "delta": {"role": "assistant", **extra}}]})
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            chunks.append(
                {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if wants_usage and q.stream_usage:
            chunks.append({**base, "choices": [], "usage": self._usage()})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _openai_error(self, status: int, message: str, code: str, param: str | None = None) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        self._json(status, {"error": error})

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ProbeServer:
    """`with ProbeServer(Quirks(...)) as server:` serves `server.base_url` until the block ends."""

    def __init__(self, quirks: Quirks | None = None):
        self.quirks = quirks or Quirks()
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST"]

    def _seen(self, handler: _Handler, body: dict | None) -> None:
        with self._lock:
            self.requests.append(Seen(handler.command, handler.path, body, dict(handler.headers)))

    def __enter__(self) -> ProbeServer:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="probe-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
