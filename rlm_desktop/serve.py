"""`rlm-desktop serve`: an OpenAI-compatible chat API over the user's cases (Starlette on uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rlm_desktop.api import Case
from rlm_desktop.paths import InvalidCaseName, case_path, list_cases, make_private_dirs
from rlm_desktop.secrets import KeyStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MODEL_PREFIX = "rlm:"
TOKEN_NAME, TOKEN_FILE = "serve-token", "serve-token.json"  # stored like the API key (keyring, else a 0600 file)
SPEND_FILE = "serve-spend.json"  # what the server's runs spent today: the daily cap survives a restart
RETRY_AFTER_S = 10  # told to a client past the concurrency limit
HEARTBEAT_S = 1.0  # an SSE comment this often while a run is quiet: a client gone is noticed within it
STEP_CHARS = 160  # one progress line of the tree


class ServeError(Exception):
    """A request the server refuses: an OpenAI-style error body with this status."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 402: "insufficient_quota", 404: "invalid_request_error",
                429: "rate_limit_error"}.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        body = {"error": {"message": self.message, "type": kind, "code": self.code, "param": None}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def token_store(home: Path) -> KeyStore:
    return KeyStore(home, name=TOKEN_NAME, file_name=TOKEN_FILE)


def load_or_create_token(home: Path) -> tuple[str, bool]:
    """The server's bearer token and whether it was just made (32 random bytes, URL-safe)."""
    store = token_store(home)
    token = store.get()
    if token:
        return token, False
    token = secrets.token_urlsafe(32)
    store.set(token)
    return token, True


class DailyLedger:
    """What the server's runs spent this UTC day, kept in `<home>/serve-spend.json`, and the caps of the runs
    in flight: a run's cap is what the day has left, so the day's cap holds even when runs end at their cap."""

    def __init__(self, home: Path):
        self.path = Path(home) / SPEND_FILE
        self._lock = threading.Lock()
        self.reserved = 0.0

    @staticmethod
    def today() -> str:
        return datetime.now(UTC).date().isoformat()

    def spent(self) -> float:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0.0
        if not isinstance(data, dict) or data.get("day") != self.today():
            return 0.0
        value = data.get("spent_usd")
        return float(value) if isinstance(value, int | float) else 0.0

    def admit(self, daily_cap: float | None, run_cap: float | None) -> float | None:
        """The cap for a new run (the settings' cap within what the day has left), reserved until settle();
        ServeError 402 when the day's cap is used up."""
        with self._lock:
            if daily_cap is None:
                return run_cap
            left = daily_cap - self.spent() - self.reserved
            if left <= 0:
                raise ServeError(
                    402,
                    f"the server's daily cap of ${daily_cap:.2f} is reached (spent ${self.spent():.4f} today, UTC; "
                    f"${self.reserved:.4f} held by runs in progress): raise it in settings (serve_daily_cap_usd) "
                    "or wait until tomorrow",
                    "daily_cap_reached",
                )
            cap = left if run_cap is None else min(run_cap, left)
            self.reserved += cap
            return cap

    def settle(self, reserved: float | None, spent: float) -> None:
        with self._lock:
            if reserved is not None:
                self.reserved = max(0.0, self.reserved - reserved)
            total = self.spent() + spent
            make_private_dirs(self.path.parent)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"day": self.today(), "spent_usd": round(total, 8)}), encoding="utf-8")
            os.replace(tmp, self.path)


@dataclass
class ServeState:
    """What every request shares: the home, the token, the endpoint overrides and the runs in flight."""

    home: Path
    token: str
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig fields from the command line
    api_key: str | None = None
    ledger: DailyLedger | None = None
    active: set[Any] = field(default_factory=set)  # RunHandles whose runs have not ended
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ledger = self.ledger or DailyLedger(self.home)

    def settings(self):
        from rlm_desktop.settings import Settings, serve_problems

        try:
            settings = Settings.load(self.home)  # read per request: a cap changed in the window applies at once
        except (ValueError, TypeError) as exc:
            raise ServeError(500, str(exc), "settings_unreadable") from None
        if problems := serve_problems(settings):
            raise ServeError(500, "; ".join(problems), "settings_unusable")
        return settings

    def stop_runs(self) -> None:
        """Cancel every run in flight (quick: safe in a signal handler); each is saved as cancelled."""
        for handle in list(self.active):
            handle.cancel()

    def cancel_all(self, timeout_s: float = 5.0) -> None:
        self.stop_runs()
        for handle in list(self.active):
            handle.join(timeout_s)


# --- requests ---------------------------------------------------------------------------------------------


class BearerAuth:
    """Every request needs `Authorization: Bearer <token>` (compared in constant time), else 401."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
        if not hmac.compare_digest(given, self.expected):
            message = "a bearer token is required (Authorization: Bearer <token>; `rlm-desktop serve --show-token`)"
            if given:
                message = "wrong bearer token (`rlm-desktop serve --show-token` prints the right one)"
            error = ServeError(401, message, "invalid_api_key", {"WWW-Authenticate": "Bearer"})
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass
class Question:
    case: str
    text: str
    stream: bool
    turns: list[dict[str, Any]]  # earlier user/assistant messages (role, text, rlm_run_id)
    follows: str | None  # asked for explicitly (`rlm_follows`, or an assistant message's `rlm_run_id`)


def parse_request(body: Any) -> Question:
    if not isinstance(body, dict):
        raise ServeError(400, "the request body must be a JSON object", "invalid_request")
    model = body.get("model")
    if not isinstance(model, str) or not model.startswith(MODEL_PREFIX) or len(model) == len(MODEL_PREFIX):
        raise ServeError(404, f"model must be {MODEL_PREFIX}<case> (GET /v1/models lists them), not {model!r}",
                         "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ServeError(400, "messages must be a non-empty list of {role, content} objects", "invalid_request")
    last = messages[-1]
    question = _text(last.get("content")).strip()
    if last.get("role") != "user" or not question:
        raise ServeError(400, "the last message must be the user's question, with text", "invalid_request")
    turns = [
        {"role": m["role"], "text": _text(m.get("content")), "rlm_run_id": m.get("rlm_run_id")}
        for m in messages[:-1]
        if m.get("role") in ("user", "assistant")  # a system prompt is the RLM's own: the client's is not used
    ]
    explicit = body.get("rlm_follows")
    for m in reversed(turns):
        if m["role"] == "assistant":
            explicit = explicit or m["rlm_run_id"]
            break
    return Question(model[len(MODEL_PREFIX):], question, bool(body.get("stream")), turns,
                    explicit if isinstance(explicit, str) and explicit else None)


def _thread_of(case: Case, q: Question) -> tuple[str | None, list[dict[str, Any]] | None]:
    """(follows, history): the run whose answer is the conversation's last assistant message, else the earlier
    turns as history for a fresh run (a client that edited an answer, or a conversation from elsewhere)."""
    from rlm_desktop.store.case import Case as CaseFile
    from rlm_desktop.store.runs import run_row

    answers = [m for m in q.turns if m["role"] == "assistant"]
    with CaseFile.open(case.path) as db:
        if q.follows is not None:
            try:
                return run_row(db, q.follows).run_id, None
            except KeyError as exc:
                raise ServeError(400, str(exc).strip('"'), "unknown_run") from None
        if answers:
            text = answers[-1]["text"].strip()
            row = db.conn.execute(
                "SELECT run_id FROM runs WHERE trim(answer, char(32, 9, 10, 13)) = ? ORDER BY started DESC LIMIT 1", (text,)
            ).fetchone()
            if row is not None:
                return row[0], None
    history: list[dict[str, Any]] = []
    pending: list[str] = []
    for m in q.turns:
        if m["role"] == "user":
            pending.append(m["text"])
        elif m["role"] == "assistant":
            history.append({"run_id": None, "question": "\n\n".join(pending), "answer": m["text"], "status": "",
                            "citations": []})
            pending = []
    if pending:  # user turns no answer followed: still part of what was asked
        history.append({"run_id": None, "question": "\n\n".join(pending), "answer": "", "status": "", "citations": []})
    return None, history or None


def _step(event: Any) -> str | None:
    """A tree step as one short line for a streaming client (`delta.reasoning`)."""
    from rlm_desktop.engine.events import NodeFinished, NodeStarted

    if not isinstance(event, NodeStarted | NodeFinished):
        return None
    node = event.node
    first = " ".join((node.text or "").split())
    if len(first) > STEP_CHARS:
        first = first[: STEP_CHARS - 1] + "…"
    depth = node.detail.get("depth") or 0
    where = f" (sub-RLM depth {depth})" if depth else ""
    if isinstance(event, NodeStarted):
        if node.kind == "iteration":
            return f"Root model, turn {node.detail.get('number', '?')}{where}…"
        if node.kind == "rlm_query":
            return f"Sub-RLM over {len(node.detail.get('doc_ids') or [])} document(s): {first}"
        if node.kind == "compaction":
            return "Compacting the conversation…"
        return None
    if node.kind == "code":
        outcome = "error" if node.detail.get("error") else node.status
        return f"Ran code ({outcome}): {first}"
    if node.kind == "llm_query":
        return f"Sub-call to {node.model} ({node.status}, {node.prompt_tokens:,} in / {node.completion_tokens:,} out)"
    return None


def _usage(record: dict[str, Any]) -> dict[str, Any]:
    models = record.get("usage") or {}
    prompt = sum(int(u.get("prompt_tokens") or 0) for u in models.values())
    completion = sum(int(u.get("completion_tokens") or 0) for u in models.values())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": record.get("cost_usd", 0.0),  # billed + held (OpenRouter's name for it)
        "cost_billed_usd": record.get("cost_billed_usd", 0.0),
        "cost_held_usd": record.get("cost_held_usd", 0.0),
        "calls": sum(int(u.get("calls") or 0) for u in models.values()),
        "models": models,
    }


def _citations(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "marker": c.get("marker"),
            "doc_id": c.get("doc_id"),
            "title": c.get("title"),
            "path": c.get("path"),
            "page": c.get("page"),
            "start": c.get("start"),
            "end": c.get("end"),
            "quote": c.get("quote"),
            "verified": bool(c.get("verified")),
            "problem": c.get("problem"),  # why an unverified one is not
        }
        for c in record.get("citations") or []
    ]


def _finish_reason(record: dict[str, Any]) -> str:
    return "stop" if record.get("status") == "completed" else "length"  # a cap or limit cut it short


def _extras(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "rlm_run_id": record["run_id"],
        "rlm_status": record.get("status"),
        "rlm_follows": record.get("follows"),
        "rlm_error": record.get("error"),
        "rlm_warnings": record.get("warnings") or [],
        "rlm_citations": _citations(record),
    }


class _RunStream(StreamingResponse):
    """A streamed answer whose run is cancelled when the response ends early (the client went away)."""

    def __init__(self, content: AsyncIterator[bytes], handle: Any):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.handle.done:
                self.handle.cancel()


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def chat_completions(request: Request) -> Response:
    state: ServeState = request.app.state.serve
    try:
        try:
            body = await request.json()
        except ValueError:
            raise ServeError(400, "the request body is not valid JSON", "invalid_json") from None
        q = parse_request(body)
        try:
            path = case_path(state.home, q.case)
        except InvalidCaseName as exc:
            raise ServeError(404, str(exc), "model_not_found") from None
        if not path.is_file():
            raise ServeError(404, f"no case {q.case!r} (GET /v1/models lists them)", "model_not_found")
        settings = state.settings()
        if len(state.active) >= settings.serve_concurrency:
            raise ServeError(
                429,
                f"{len(state.active)} run(s) in progress, the most this server runs at once (serve_concurrency in "
                f"settings): try again in {RETRY_AFTER_S} s",
                "too_many_runs",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        case = Case(path, state.home, api_key=state.api_key, **state.overrides)
        follows, history = await asyncio.to_thread(_thread_of, case, q)
        try:
            run_cap = case.config().cap_usd  # the settings' cap (and limits) for every request
        except ValueError as exc:
            raise ServeError(400, f"the server's settings cannot run: {exc}", "settings_unusable") from None
        assert state.ledger is not None
        cap = state.ledger.admit(settings.serve_daily_cap_usd, run_cap)
        try:
            try:
                config = case.config(cap_usd=cap)
            except ValueError as exc:
                if cap != run_cap:  # what the day has left cannot pay one root call
                    raise ServeError(402, f"the server's daily cap is nearly used up: {exc}", "daily_cap_reached") from None
                raise ServeError(400, f"the server's settings cannot run: {exc}", "settings_unusable") from None
            loop = asyncio.get_running_loop()
            events: asyncio.Queue[Any] = asyncio.Queue()
            handle = _start(case, q, follows, history, config, lambda e: loop.call_soon_threadsafe(events.put_nowait, e))
        except BaseException:
            state.ledger.settle(cap, 0.0)
            raise
    except ServeError as exc:
        return exc.response()
    state.active.add(handle)
    ended = _ended(handle)
    task = asyncio.create_task(_release(state, handle, ended, cap))
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)
    model = f"{MODEL_PREFIX}{q.case}"
    if q.stream:
        return _RunStream(_stream(handle, ended, events, model), handle)
    return await _answer(request, handle, ended, model)


def _start(case: Case, q: Question, follows: str | None, history: Any, config: Any, on_event: Callable[[Any], None]):
    from rlm_desktop.engine.handle import RunHandle
    from rlm_desktop.sandbox.isolation import IsolationRefused, check_isolation

    try:
        check_isolation(config.isolation, config.allow_weak_isolation)
        key = case.api_key(config.base_url)
    except (IsolationRefused, ValueError) as exc:
        raise ServeError(500, str(exc), "server_not_ready") from None
    handle = RunHandle(
        case.path, q.text, config, key, follows=follows, history=history, sub_api_key=case.sub_api_key(config)
    )
    handle.subscribe(on_event)
    try:
        return handle.start()
    except ValueError as exc:
        raise ServeError(400, str(exc), "unknown_run") from None


def _ended(handle: Any) -> asyncio.Future[None]:
    """A future of this loop that is done when the run has ended and saved its record (one small thread
    waits for it: the loop's default executor is too small to hold a thread per run in flight)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def wait() -> None:
        handle.join()
        with contextlib.suppress(RuntimeError):  # the loop closed (server stopped)
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

    threading.Thread(target=wait, name=f"serve-wait-{handle.run_id}", daemon=True).start()
    return future


async def _release(state: ServeState, handle: Any, ended: asyncio.Future[None], cap: float | None) -> None:
    """When the run ends (answered, or cancelled because the client left): free its slot, count its cost."""
    await ended
    state.active.discard(handle)
    spent = float((handle.record or {}).get("cost_usd") or 0.0)
    assert state.ledger is not None
    await asyncio.to_thread(state.ledger.settle, cap, spent)


async def _answer(request: Request, handle: Any, ended: asyncio.Future[None], model: str) -> Response:
    """Wait for the run; a client that disconnects first cancels it (saved as cancelled)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.create_task(disconnected())
    done, _ = await asyncio.wait({watcher, ended}, return_when=asyncio.FIRST_COMPLETED)
    if ended not in done:
        handle.cancel()
        await asyncio.shield(ended)
        return Response(status_code=499)  # nobody reads it: the client is gone
    watcher.cancel()
    record = handle.record
    if record is None or (record.get("status") == "failed" and not record.get("answer")):
        error = (record or {}).get("error") or repr(handle.error)
        run = f" (run {record['run_id']})" if record else ""
        return ServeError(502, f"the run failed{run}: {error}", "run_failed").response()
    body = {
        "id": f"chatcmpl-rlm-{record['run_id']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"rlm-{record['run_id']}",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": record.get("answer") or ""},
                "finish_reason": _finish_reason(record),
            }
        ],
        "usage": _usage(record),
        **_extras(record),
    }
    return JSONResponse(body)


async def _stream(
    handle: Any, ended: asyncio.Future[None], events: asyncio.Queue[Any], model: str
) -> AsyncIterator[bytes]:
    """SSE: the tree's steps as `delta.reasoning`, cost as comments, then the answer, citations and usage."""
    from rlm_desktop.engine.events import CostChanged, RunFinished

    base = {
        "id": f"chatcmpl-rlm-{handle.run_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"rlm-{handle.run_id}",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    yield chunk({"role": "assistant", "content": ""}, rlm_run_id=handle.run_id)
    while True:
        try:
            event = await asyncio.wait_for(events.get(), HEARTBEAT_S)
        except TimeoutError:
            yield b": running\n\n"  # a client that left makes this write fail, which cancels the run
            continue
        if isinstance(event, RunFinished):
            break
        if isinstance(event, CostChanged):
            cap = f" of ${event.cap_usd:.4f}" if event.cap_usd is not None else ""
            yield f": cost ${event.spent_usd:.4f}{cap}, {event.calls} calls\n\n".encode()
            continue
        step = _step(event)
        if step:
            yield chunk({"reasoning": step + "\n"})
    await asyncio.shield(ended)
    record = handle.record or {"run_id": handle.run_id, "status": "failed", "answer": "", "error": repr(handle.error)}
    answer = record.get("answer") or ""
    if not answer and record.get("status") == "failed":
        answer = f"(the run failed: {record.get('error')})"
    for start in range(0, len(answer), 400):
        yield chunk({"content": answer[start : start + 400]})
    yield chunk({}, _finish_reason(record), **_extras(record))
    yield _sse({**base, "choices": [], "usage": _usage(record)})
    yield b"data: [DONE]\n\n"


def _models(home: Path) -> list[dict[str, Any]]:
    data = []
    for name in list_cases(home):
        with contextlib.suppress(OSError):
            created = int(case_path(home, name).stat().st_mtime)
            data.append({"id": f"{MODEL_PREFIX}{name}", "object": "model", "created": created,
                         "owned_by": "rlm-desktop"})
    return data


async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": _models(request.app.state.serve.home)})


async def get_model(request: Request) -> Response:
    wanted = request.path_params["model"]
    for model in _models(request.app.state.serve.home):
        if model["id"] == wanted:
            return JSONResponse(model)
    return ServeError(404, f"no model {wanted!r} (GET /v1/models lists them)", "model_not_found").response()


def create_app(state: ServeState) -> BearerAuth:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(state.cancel_all)  # stopping: runs still going are cancelled and saved as such

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        ]
    )
    app.state.serve = state
    return BearerAuth(app, state.token)


# --- the command ------------------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (bound here, so port 0 can be reported before serving)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


def run(
    home: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    token: str | None = None,
    overrides: dict[str, Any] | None = None,
    api_key: str | None = None,
    out: Any = None,
) -> int:
    """Serve until SIGINT/SIGTERM; runs still going then are cancelled and saved. ValueError for bad options."""
    import uvicorn

    out = out or sys.stderr
    if not is_loopback(host) and not allow_remote:
        raise ValueError(f"--host {host} is reachable from other machines: add --allow-remote to mean it")
    created = False
    if token is None:
        token, created = load_or_create_token(home)
    state = ServeState(home, token, dict(overrides or {}), api_key)
    try:
        state.settings()
    except ServeError as exc:
        raise ValueError(exc.message) from None
    Case(home / "cases", home, api_key=api_key, **state.overrides).config()  # bad settings or flags: say so now
    from rlm_desktop.redact import remember_secret

    remember_secret(token)  # never in a log line or a saved run
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if not is_loopback(host):
        print(f"WARNING: serving on {host}, reachable from other machines: anyone with the token can spend "
              "your API budget and read your cases' documents through answers.", file=out)
    cases = list_cases(home)
    print(f"rlm-desktop serve: http://{shown}:{actual}/v1 (models: "
          f"{', '.join(MODEL_PREFIX + c for c in cases) or 'none yet: ingest into a case first'})", file=out)
    if created:
        print(f"A bearer token was made and stored ({token_store(home).backend}): {token}", file=out)
    print("Clients send `Authorization: Bearer <token>`; `rlm-desktop serve --show-token` prints it.", file=out,
          flush=True)
    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.stop_runs()  # at once: streams then end with the partial answer, and shutdown need not wait
            super().handle_exit(sig, frame)

    config = uvicorn.Config(  # named, not "auto": the modules uvicorn imports by name are known to the bundle
        create_app(state), loop="asyncio", http="h11", ws="none", lifespan="on", log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = Server(config)
    try:
        server.run(sockets=[sock])  # SIGTERM ends the process once the runs are saved (uvicorn re-raises it)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the same orderly stop
    finally:
        state.cancel_all()
        sock.close()
    return 0
