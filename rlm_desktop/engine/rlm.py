"""The Recursive Language Model loop: a root model programs a sandboxed REPL over the case, sub-models read."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlm_desktop import __version__
from rlm_desktop.corpus import Corpus
from rlm_desktop.engine.budget import CapReached, LedgerSnapshot, SpendLedger, upper_bound_cost
from rlm_desktop.engine.citations import Registered, resolve
from rlm_desktop.engine.events import (
    CallRetriedEvent,
    CostChanged,
    NodeFinished,
    NodeStarted,
    NodeUpdated,
    RunEvent,
    RunFinished,
    RunStarted,
)
from rlm_desktop.engine.model_info import ModelCaps, context_window
from rlm_desktop.engine.models import (
    CallRetried,
    Completion,
    ContextTooLong,
    ModelCallError,
    ModelClient,
    ParameterAdjusted,
    TextStreamed,
    UsageMissing,
)
from rlm_desktop.engine.pricing import PriceTable, UnknownPrice
from rlm_desktop.engine.provenance import AttributionQueue, Attributor  # here, not in a run's start (~10 ms)
from rlm_desktop.engine.replies import ParsedReply, parse_reply, prose_final, strip_code
from rlm_desktop.engine.runs import RunStore, thread_history
from rlm_desktop.engine.session import ReplKeeper, history_opening
from rlm_desktop.engine.tokens import count_message_tokens
from rlm_desktop.engine.tree import Node, Tree, now_iso
from rlm_desktop.engine.untrusted import subcall_messages
from rlm_desktop.frozen import resources_dir
from rlm_desktop.sandbox.functions import prompt_table
from rlm_desktop.sandbox.host import Sandbox
from rlm_desktop.sandbox.isolation import MemoryBudget, check_isolation
from rlm_desktop.store.case import Case

RESOURCES = resources_dir()  # the checkout's resources/, or the bundle's copy (sys._MEIPASS) when frozen
SAVE_INTERVAL_S = 0.5
MIN_OUTPUT_TOKENS = 512  # a request with less room than this for the reply is not worth sending
COMPACT_AT = 0.85  # share of the context window at which the root conversation is compacted
MAX_COMPACTIONS = 3  # per level: more means the work itself no longer fits
OPENING_BYTES_BOUND = 4000  # the case summary sent with the question, for the cap check before a run
STREAM_UPDATE_S = 0.1
CANCELLED_TEXT = "cancelled (stopped by you)"  # a step the user's Stop ended, as the tree and reports show it


@functools.cache
def system_prompt() -> str:
    """The root model's instructions; the REPL functions that call the host come from their declarations."""
    text = (RESOURCES / "prompts" / "rlm_system.md").read_text(encoding="utf-8")
    return text.replace("{repl_functions}", prompt_table())


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs but the key. Limits are explicit and checked at every step."""

    root_model: str
    sub_model: str
    base_url: str | None = None
    # Sub-calls on their own endpoint (a local vLLM for subs, a provider for the root); None: the root's.
    sub_base_url: str | None = None
    # Requests in flight at once per endpoint (a serving cluster shared by many desktops); None: no limit
    # beyond `concurrency`, which bounds a run's sub-calls.
    max_in_flight: int | None = None
    sub_max_in_flight: int | None = None
    cap_usd: float | None = None
    max_depth: int = 1  # levels of rlm_query below the root; at the limit rlm_query falls back to llm_query
    max_iterations: int = 20  # root replies per REPL level
    max_subcalls: int = 500  # llm_query calls in the whole run, all levels
    concurrency: int = 8
    max_wall_s: float = 1800.0
    max_consecutive_errors: int = 5
    root_max_output_tokens: int = 8000
    sub_max_output_tokens: int = 4000
    sub_prompt_max_chars: int = 400_000
    output_chars: int = 20_000
    cell_timeout_s: float = 300.0
    memory_mb: int = 2048  # per REPL; all REPLs of a run share at most a quarter of RAM (MemoryBudget)
    isolation: str = "auto"
    request_timeout_s: float = 180.0  # a whole non-streaming call; the idle gap between chunks when streaming
    max_retries: int = 4
    context_windows: dict[str, int] = field(default_factory=dict)  # model -> tokens, the user's overrides
    model_caps: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> ModelCaps.to_json() from a probe
    stream: bool = True  # stream where the server allows it (falls back silently)
    allow_weak_isolation: bool = False  # run model code even where no real wall (namespaces, Landlock) exists
    price_overrides: dict[str, Any] = field(default_factory=dict)
    price_args: tuple[str, ...] = ()

    def prices(self) -> PriceTable:
        return PriceTable(overrides=self.price_overrides, price_args=self.price_args)

    def check(self) -> None:
        """Usage errors before anything runs: bad limits, a cap with a model whose price is unknown."""
        for name in (
            "max_iterations",
            "max_subcalls",
            "concurrency",
            "root_max_output_tokens",
            "sub_max_output_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_depth < 0:
            raise ValueError("max_depth must be 0 or more")
        for name in ("max_in_flight", "sub_max_in_flight"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (or unset)")
        if self.cap_usd is not None:
            if self.cap_usd <= 0:
                raise ValueError("the spending cap must be a positive amount of USD")
            prices = self.prices()
            prices.require(self.root_model, self.sub_model)
            price = prices.get(self.root_model)
            first = [
                {"role": "system", "content": system_prompt()},
                {"role": "user", "content": "x" * OPENING_BYTES_BOUND},
            ]
            bound = upper_bound_cost(price, first, self.root_max_output_tokens)
            if bound > self.cap_usd:
                raise ValueError(
                    f"a cap of ${self.cap_usd:.2f} cannot cover one root call of up to "
                    f"{self.root_max_output_tokens:,} output tokens at these prices ({self.root_model}: "
                    f"${price.input_per_m:g} in / ${price.output_per_m:g} out per million tokens; one call may "
                    f"cost up to ${bound:.4f}): raise the cap or lower the root max output tokens"
                )

    def public(self) -> dict[str, Any]:
        from rlm_desktop.engine.models import public_url

        out = asdict(self)
        out.pop("price_args")
        out["base_url"] = public_url(self.base_url) if self.base_url else None  # never credentials
        out["sub_base_url"] = public_url(self.sub_base_url) if self.sub_base_url else None
        return out

    @property
    def separate_sub_endpoint(self) -> bool:
        return bool(self.sub_base_url) and self.sub_base_url != self.base_url

    def caps(self, model: str) -> ModelCaps | None:
        data = self.model_caps.get(model)
        return ModelCaps.from_json(data) if data else None


def problem_of(completion: Completion, parsed: ParsedReply) -> str | None:
    """Why a reply has nothing to show, in plain words; None when it has text."""
    if not parsed.empty:
        return None
    if completion.tool_calls:
        names = ", ".join(dict.fromkeys(completion.tool_calls))
        return f"the model asked to call a tool ({names}), which this app does not offer"
    if completion.finish_reason == "content_filter":
        return "the provider's content filter blocked the reply"
    if completion.refusal:
        return f"the model refused: {completion.refusal.strip()[:300]}"
    if completion.finish_reason == "length":
        during = " while reasoning" if parsed.thinking else ""
        return f"the reply ran out of its {completion.max_output_tokens:,} output tokens{during} before any answer"
    if parsed.thinking:
        return "the model only reasoned and wrote no reply"
    return "the reply was empty"


def flag_of(completion: Completion, parsed: ParsedReply) -> str | None:
    """What the root must know about a sub-call's answer: empty, filtered, refused or cut off."""
    problem = problem_of(completion, parsed)
    if problem is not None:
        return problem
    if completion.finish_reason == "content_filter":
        return "cut short by the provider's content filter"
    if completion.refusal:
        return f"the model refused: {completion.refusal.strip()[:300]}"
    if completion.finish_reason == "length":
        return f"cut off at {completion.max_output_tokens:,} output tokens (the answer is incomplete)"
    return None


COMPACT_REQUEST = (
    "Your conversation is about to be compacted to fit the context window. Write a summary for yourself to "
    "continue from: what you have learned so far (facts, with the document ids and offsets they came from), "
    "which REPL variables hold what, which citation markers you registered and for which claims, what you "
    "tried that did not work, and your next steps. Plain text, no code; be complete but concise."
)


class StopRun(Exception):
    """A run-wide stop (cap, limit): finish the current step, then end the run with `status`."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Run:
    """State shared by every level of one run: tree, budget, limits used, citations, persistence."""

    def __init__(
        self,
        case_path: Path,
        question: str,
        config: RunConfig,
        api_key: str,
        emit: Callable[[RunEvent], None],
        run_id: str | None = None,
        follows: str | None = None,
        history: list[dict[str, Any]] | None = None,
        keeper: ReplKeeper | None = None,
        sub_api_key: str | None = None,
    ):
        self.case_path = case_path
        self.follows = follows
        self.history = history or []
        self.keeper = keeper
        self.case_state: tuple[Any, ...] = ()  # what the documents were at the start, for a kept REPL
        self.question = question
        self.config = config
        self.api_key = api_key
        self.emit = emit
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.tree = Tree(question)
        self.started = now_iso()
        self.t0 = time.monotonic()
        self.status = "running"
        self.answer = ""
        self.error: str | None = None
        self.stop: StopRun | None = None
        self.subcalls = 0
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage: dict[str, dict[str, Any]] = {}
        self.registry: dict[str, Registered] = {}
        self.code_seen: Counter[str] = Counter()
        self.prompts_seen: Counter[str] = Counter()
        self.warnings: list[str] = []
        self.isolation: str | None = None
        self.memory = MemoryBudget()
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.loop = asyncio.get_running_loop()
        self._closed_calls = 0  # ledger closes already announced
        self._cost_pending = False
        self.ledger = SpendLedger(config.cap_usd, on_change=self._ledger_changed)
        caps = {m: c for m in (config.root_model, config.sub_model) if (c := config.caps(m)) is not None}
        prices = config.prices()

        def client(base_url: str | None, key: str, max_in_flight: int | None) -> ModelClient:
            return ModelClient(
                base_url,
                key,
                prices,
                self.ledger,  # one ledger: the cap covers both endpoints
                timeout_s=config.request_timeout_s,
                max_retries=config.max_retries,
                on_event=self._model_event,
                stream=config.stream,
                caps=caps,
                max_in_flight=max_in_flight,
            )

        self.client = client(config.base_url, api_key, config.max_in_flight)
        self.sub_client = (
            # never the root's key: another host (a local vLLM, a gateway) must not receive it
            client(config.sub_base_url, sub_api_key or "", config.sub_max_in_flight)
            if config.separate_sub_endpoint
            else self.client
        )
        self.usage_missing: set[str] = set()
        self.last_stream_update: dict[str, float] = {}
        # code node id -> (the sub-call's number within that cell, what was wrong with its answer)
        self.subcall_flags: dict[str, list[tuple[int, str]]] = {}
        self.subcall_counts: dict[str, int] = {}
        self.store = RunStore(case_path)
        self.dirty: dict[str, Node] = {}
        self.last_save = 0.0
        self.levels = 0
        self.attributor_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlm-provenance")
        self.corpus = Corpus.open(case_path)  # host side: verification, provenance, metadata
        self.attributor = Attributor(self.corpus)
        self.attribution = AttributionQueue(self.attributor, self.attributor_pool, self.loop)

    # ---- events, cost and saving -------------------------------------------------------------------

    def _ledger_changed(self, snap: LedgerSnapshot) -> None:
        """One CostChanged per settled call: a reservation alone says nothing new, and a settle is announced
        once the call's tokens are counted too (the charge runs before the loop next turns)."""
        if snap.calls == self._closed_calls or self._cost_pending:
            return
        self._cost_pending = True
        self.loop.call_soon(self._announce_cost)

    def _announce_cost(self) -> None:
        if not self._cost_pending:
            return  # already announced (the run's end does it at once)
        self._cost_pending = False
        snap = self.ledger.snapshot()
        self._closed_calls = snap.calls
        self._cost_changed(snap)

    def _cost_changed(self, snap: LedgerSnapshot) -> None:
        self.emit(
            CostChanged(
                self.run_id,
                snap.spent,
                snap.reserved,
                snap.cap,
                self.calls,
                self.prompt_tokens,
                self.completion_tokens,
                time.monotonic() - self.t0,
                snap.billed,
                snap.held,
                snap.held_estimate,
            )
        )

    def _model_event(self, event: object) -> None:
        if isinstance(event, CallRetried):
            self.emit(CallRetriedEvent(self.run_id, event.label, event.attempt, event.reason, event.delay_s))
            node = self._node_by_id(event.label)
            if node is not None:
                node.detail.setdefault("retries", []).append(
                    {"attempt": event.attempt, "reason": event.reason, "delay_s": round(event.delay_s, 3)}
                )
                self.updated(node)
        elif isinstance(event, ParameterAdjusted):
            node = self._node_by_id(event.label)
            if node is not None:
                node.detail.setdefault("notes", []).append(f"{event.model}: {event.change}")
                self.updated(node)
        elif isinstance(event, UsageMissing):
            if event.model not in self.usage_missing:
                self.usage_missing.add(event.model)
                self.warnings.append(
                    f"the server reported no usage for {event.model}; cost estimated with a tokenizer, and each "
                    "such call's full reservation is held against the cap"
                )
        elif isinstance(event, TextStreamed):
            node = self._node_by_id(event.label)
            if node is not None:
                self._streamed(node, event.text, event.reasoning)

    def _streamed(self, node: Node, text: str, reasoning: str) -> None:
        """Live text of a streaming reply (the window's tree and the terminal show it as it comes)."""
        node.detail["streaming"] = True
        parsed = parse_reply(text, reasoning)
        visible, thinking = parsed.visible, parsed.thinking
        if node.kind == "iteration":
            node.text = visible
        else:
            node.detail["response"] = visible
        if thinking:
            node.detail["thinking"] = thinking
        self.emit(NodeUpdated(self.run_id, node.view()))

    def _node_by_id(self, node_id: str) -> Node | None:
        return self.tree.get(node_id)

    def started_node(self, node: Node) -> None:
        self.emit(NodeStarted(self.run_id, node.view()))
        self._dirty(node)

    def updated(self, node: Node) -> None:
        self.emit(NodeUpdated(self.run_id, node.view()))
        self._dirty(node)

    def finished(self, node: Node, status: str = "done") -> None:
        node.finish(status)
        self.emit(NodeFinished(self.run_id, node.view()))
        self._dirty(node)

    def _dirty(self, node: Node) -> None:
        self.dirty[node.id] = node
        if time.monotonic() - self.last_save >= SAVE_INTERVAL_S:
            self.save()

    def save(self) -> None:
        nodes, self.dirty = list(self.dirty.values()), {}
        self.store.save(self.header(), nodes)
        self.last_save = time.monotonic()

    def charge(self, node: Node, completion: Completion) -> None:
        node.model = completion.model
        node.prompt_tokens += completion.prompt_tokens
        node.completion_tokens += completion.completion_tokens
        node.cost_usd += completion.cost_usd or 0.0
        if not completion.usage_reported:
            node.detail["usage_estimated"] = True
            node.detail["held_usd"] = round(node.detail.get("held_usd", 0.0) + completion.held_usd, 8)
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        usage = self.usage.setdefault(
            completion.model,
            {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "held_usd": 0.0},
        )
        usage["calls"] += 1
        usage["prompt_tokens"] += completion.prompt_tokens
        usage["completion_tokens"] += completion.completion_tokens
        if completion.usage_reported:
            usage["cost_usd"] = round(usage["cost_usd"] + (completion.cost_usd or 0.0), 8)
        else:
            usage["held_usd"] = round(usage["held_usd"] + completion.held_usd, 8)
            usage["estimated_usd"] = round(usage.get("estimated_usd", 0.0) + (completion.cost_usd or 0.0), 8)
            usage["usage_estimated_calls"] = usage.get("usage_estimated_calls", 0) + 1

    def header(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "question": self.question,
            "follows": self.follows,
            "status": self.status,
            "answer": self.answer,
            "citations": [],
            "cost_usd": round(self.ledger.spent, 8),
            "cost_billed_usd": round(self.ledger.billed, 8),
            "cost_held_usd": round(self.ledger.held, 8),
            "cost_held_estimate_usd": round(self.ledger.snapshot().held_estimate, 8),
            # calls in flight at this save: if the process dies before they settle, they count as held
            "cost_reserved_usd": round(self.ledger.reserved, 8) if self.status == "running" else 0.0,
            "cap_usd": self.config.cap_usd,
            "usage": self.usage,
            "started": self.started,
            "ended": None if self.status == "running" else now_iso(),
            "app_version": __version__,
            "config": self.config.public(),
            "isolation": self.isolation,
            "warnings": self.warnings,
            "error": self.error,
            "calls": self.calls,
            "subcalls": self.subcalls,
        }

    # ---- limits ------------------------------------------------------------------------------------

    def check(self) -> None:
        """Called before every model call and every step: raises StopRun once any run-wide limit is hit."""
        if self.stop is not None:
            raise self.stop
        if time.monotonic() - self.t0 > self.config.max_wall_s:
            self.halt("limit_reached", f"the wall-clock limit of {self.config.max_wall_s:g} s was reached")

    def halt(self, status: str, reason: str) -> None:
        if self.stop is None:
            self.stop = StopRun(status, reason)
        raise self.stop

    def budget_line(self, level: Level) -> str:
        cfg = self.config
        held = self.ledger.held
        spent = f"${self.ledger.spent:.4f} spent" + (f" (${held:.4f} of it held: cost unknown)" if held else "")
        money = f"{spent} of a ${cfg.cap_usd:.2f} cap" if cfg.cap_usd is not None else f"{spent} (no cap)"
        return (
            f"[budget: {money}; sub-calls {self.subcalls}/{cfg.max_subcalls} used; iteration "
            f"{level.iteration}/{cfg.max_iterations}; depth {level.depth}/{cfg.max_depth}; "
            f"{max(0.0, cfg.max_wall_s - (time.monotonic() - self.t0)):.0f} s left]"
        )

    def window(self, model: str) -> int | None:
        learned = self.client.learned_window(model) or self.sub_client.learned_window(model)
        configured = context_window(model, self.config.context_windows, self.config.caps(model))
        if learned and configured:
            return min(learned, configured)
        return learned or configured

    def room(self, model: str, messages: list[dict[str, Any]]) -> tuple[int | None, int]:
        """(window, tokens left for the reply) by the tokenizer's estimate, with a margin for other tokenizers."""
        window = self.window(model)
        if window is None:
            return None, 1 << 30
        # Byte-level tokenizers never make more tokens than bytes: when the bytes leave room, skip the
        # tokenizer (it costs milliseconds per turn on a long conversation).
        sent_bytes = sum(len(str(m.get("content", "")).encode("utf-8", "surrogatepass")) + 8 for m in messages)
        if sent_bytes + 64 <= COMPACT_AT * window:
            return window, window - sent_bytes - 64
        prompt = int(count_message_tokens(messages) * 1.15) + 64
        return window, window - prompt

    async def complete(
        self,
        node: Node,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        purpose: str,
        halt_on_cap: bool = True,
        final_delta: bool = True,
    ) -> Completion:
        """One model call under the cap, sized to the context window; waits while in-flight reservations
        may still free room. Raises ContextTooLong when the conversation itself no longer fits. `final_delta`
        False: the caller shows the finished reply itself, so the live text is not redrawn once more first."""
        fitted = False
        while True:
            self.check()
            window, room = self.room(model, messages)
            if room < MIN_OUTPUT_TOKENS:
                raise ContextTooLong(
                    f"the {purpose} needs more than {model}'s context window of {window:,} tokens",
                    window=window,
                    model=model,
                )
            limit = max(1, min(max_tokens, room))
            if limit < max_tokens:
                node.detail["max_output_tokens"] = limit
            closes = self.ledger.closes
            try:
                client = self.sub_client if node.kind == "llm_query" else self.client
                return await client.complete(
                    model, messages, limit, label=node.id, on_delta=self._delta_for(node), final_delta=final_delta
                )
            except CapReached as exc:
                if exc.may_fit_later and self.ledger.open_reservations:
                    await self.ledger.wait_for_close(closes, 1.0)  # woken when a call in flight settles
                    continue
                if not halt_on_cap:
                    raise
                self.halt(
                    "cap_reached",
                    f"the spending cap of ${self.config.cap_usd:.2f} would be exceeded by the next {purpose} "
                    f"(${exc.spent:.4f} spent, up to ${exc.requested:.4f} needed)",
                )
            except ContextTooLong as exc:
                # The server told us its window: size the reply to it once, else the caller compacts.
                if fitted or exc.window is None:
                    raise
                fitted = True
                node.detail.setdefault("notes", []).append(
                    f"{model}'s context window is {exc.window:,} tokens (the server said so); reply limit resized"
                )

    def _delta_for(self, node: Node) -> Callable[[str, str], None]:
        def passed_on(text: str, reasoning: str) -> None:
            self._model_event(TextStreamed(node.id, text, reasoning))

        return passed_on

    async def complete_reply(
        self, node: Node, model: str, messages: list[dict[str, Any]], max_tokens: int, purpose: str
    ) -> tuple[Completion, ParsedReply, str | None]:
        """A call whose reply is read: (completion, parsed reply, problem or None).

        A reply that ran out of output tokens before any visible text is asked once more with a
        larger limit (when the cap and the window allow) and a request to be shorter.
        """
        # Its callers show the finished reply at once (llm_query, Level._show_reply): no final live-text update.
        completion = await self.complete(node, model, messages, max_tokens, purpose, final_delta=False)
        self.charge(node, completion)
        parsed = parse_reply(completion.text, completion.reasoning)
        if parsed.empty and completion.finish_reason == "length":
            larger = completion.max_output_tokens * 2
            note = (
                f"the reply ran out of its {completion.max_output_tokens:,} output tokens before any answer; "
                f"asked once more with {larger:,} and told to be shorter"
            )
            node.detail.setdefault("notes", []).append(note)
            self.updated(node)
            last = messages[-1]
            retry = [
                *messages[:-1],
                {
                    **last,
                    "content": f"{last['content']}\n\n(Your previous reply ran out of output tokens before any "
                    "answer. Be shorter: think less and answer briefly.)",
                },
            ]
            try:
                completion = await self.complete(
                    node, model, retry, larger, purpose, halt_on_cap=False, final_delta=False
                )
            except (ModelCallError, CapReached):
                return completion, parsed, problem_of(completion, parsed)
            self.charge(node, completion)
            parsed = parse_reply(completion.text, completion.reasoning)
        return completion, parsed, problem_of(completion, parsed)

    # ---- sub-calls ---------------------------------------------------------------------------------

    async def llm_query(self, parent: Node, prompt: str) -> str:
        cfg = self.config
        self.check()
        if len(prompt) > cfg.sub_prompt_max_chars:
            raise ValueError(
                f"prompt of {len(prompt):,} characters exceeds the sub-call limit of "
                f"{cfg.sub_prompt_max_chars:,}; split the excerpt"
            )
        key = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        self.prompts_seen[key] += 1
        if self.prompts_seen[key] > 3:
            self.halt("limit_reached", "the same sub-prompt was sent again after a warning (a loop)")
        if self.prompts_seen[key] == 3:
            raise RuntimeError(
                "this exact prompt was already sent twice; reuse the earlier answer instead of "
                "asking again (sending it once more stops the run)"
            )
        if self.subcalls >= cfg.max_subcalls:
            self.halt("limit_reached", f"the limit of {cfg.max_subcalls} sub-calls was reached")
        self.subcalls += 1
        node = self.tree.add(parent, "llm_query", model=cfg.sub_model, text=prompt, prompt=prompt)
        index = self.subcall_counts[parent.id] = self.subcall_counts.get(parent.id, 0) + 1
        self.started_node(node)
        spans_future = self.attribution.spans(prompt)
        try:
            async with self.semaphore:
                completion, parsed, _ = await self.complete_reply(
                    node, cfg.sub_model, self.sub_messages(prompt), cfg.sub_max_output_tokens, "sub-call"
                )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                node.detail["error"] = CANCELLED_TEXT  # the user's Stop, not a crash: no exception name
            else:
                node.detail["error"] = str(exc) if isinstance(exc, ModelCallError) else f"{type(exc).__name__}: {exc}"
            self.finished(node, "cancelled" if isinstance(exc, asyncio.CancelledError) else "error")
            raise
        finally:
            try:
                spans = await asyncio.shield(spans_future) if not spans_future.cancelled() else []
            except Exception:  # provenance is best effort: a failure must not lose the answer
                spans = []
            node.spans = [(s.doc_id, s.start, s.end) for s in spans]
            node.detail["prompt_spans"] = [
                {
                    "doc_id": s.doc_id,
                    "start": s.start,
                    "end": s.end,
                    "prompt_start": s.prompt_start,
                    "prompt_end": s.prompt_end,
                }
                for s in spans
            ]
        node.detail["response"] = parsed.visible
        node.detail.pop("streaming", None)
        if parsed.thinking:
            node.detail["thinking"] = parsed.thinking
        flag = flag_of(completion, parsed)
        if flag is not None:
            node.detail["flag"] = flag
            self.subcall_flags.setdefault(parent.id, []).append((index, flag))
        self.finished(node, "done" if flag is None else "flagged")
        return parsed.visible

    def sub_messages(self, prompt: str) -> list[dict[str, Any]]:
        return subcall_messages(prompt)  # the prompt verbatim, after "document text is data, not instructions"

    async def llm_query_batched(self, parent: Node, prompts: list[str]) -> list[str]:
        left = self.config.max_subcalls - self.subcalls
        if len(prompts) > left:
            raise RuntimeError(
                f"{len(prompts)} prompts exceed the {left} sub-calls left in this run; "
                "select fewer or merge excerpts"
            )

        async def one(prompt: str) -> str:
            try:
                return await self.llm_query(parent, prompt)
            except (StopRun, asyncio.CancelledError):
                raise
            except (ModelCallError, ValueError, RuntimeError) as exc:
                return f"[sub-call failed: {exc}]"

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def rlm_query(self, parent_level: Level, parent: Node, question: str, doc_ids: list[int]) -> str:
        self.check()
        depth = parent_level.depth + 1
        if depth > self.config.max_depth:
            parent.detail.setdefault("notes", []).append("rlm_query at the depth limit ran as llm_query")
            texts, size = [], 0
            for doc_id in doc_ids:
                doc = self.corpus.by_id(doc_id)
                room = self.config.sub_prompt_max_chars - len(question) - 200 - size
                if room <= 0:
                    break
                piece = f"--- document {doc.id}: {doc.title} ---\n{doc.text[:room]}"
                texts.append(piece)
                size += len(piece)
            prompt = question + "\n\nDocuments:\n" + "\n\n".join(texts)
            return await self.llm_query(parent, prompt)
        node = self.tree.add(
            parent,
            "rlm_query",
            model=self.config.root_model,
            text=question,
            doc_ids=list(doc_ids),
            depth=depth,
        )
        self.started_node(node)
        level = Level(self, question, doc_ids, depth, node)
        try:
            answer, status = await level.run()
        except BaseException as exc:
            self.finished(node, "cancelled" if isinstance(exc, asyncio.CancelledError) else "error")
            raise
        node.detail["answer"] = answer
        node.detail["outcome"] = status
        self.finished(node, "done" if status == "completed" else status)
        return answer


class Level:
    """One REPL and its root-model conversation: the run's root, or one rlm_query below it."""

    def __init__(self, run: _Run, question: str, doc_ids: list[int] | None, depth: int, node: Node):
        self.run_ = run
        self.question = question
        self.doc_ids = doc_ids
        self.depth = depth
        self.node = node
        self.iteration = 0
        self.current: Node = node
        self.best_partial = ""
        self.consecutive_errors = 0
        self.sandbox: Sandbox | None = None
        self.messages: list[dict[str, Any]] = []
        self.compactions = 0
        self.limit_reason: str | None = None
        self.repl_kept = False  # the REPL is the thread's, kept from its previous question (variables and all)
        run.levels += 1
        self.marker_prefix = "c" if depth == 0 else f"c{run.levels}."

    async def run(self) -> tuple[str, str]:
        """(answer, status) of this level. Raises StopRun for run-wide stops, CancelledError on cancel."""
        run, cfg = self.run_, self.run_.config
        if self.depth == 0:  # a machine that cannot wall model code is refused before anything is sent
            check_isolation(cfg.isolation, cfg.allow_weak_isolation)
        memory_mb = run.memory.take(cfg.memory_mb)  # what the run's earlier REPLs left of its budget
        keeper = run.keeper if self.depth == 0 else None
        limits = {
            "output_chars": cfg.output_chars,
            "cell_timeout_s": cfg.cell_timeout_s,
            "memory_mb": memory_mb,
            "marker_prefix": self.marker_prefix,
        }
        variables = {"history": run.history} if self.depth == 0 else {}
        kept = False
        try:
            # The thread's kept REPL is taken first (quick, and the opening says whether it was kept); a new
            # worker starts (80-150 ms) while the first model call is in flight: its code cannot run before then.
            sandbox = await keeper.take(self, limits, variables) if keeper is not None else None
            if sandbox is not None:
                self.starting = asyncio.get_running_loop().create_future()
                self.starting.set_result(sandbox)
            else:
                self.starting = asyncio.create_task(
                    Sandbox.start(
                        run.case_path,
                        self.doc_ids,
                        limits=limits,
                        on_request=self._on_request,
                        isolation=cfg.isolation,
                        allow_weak=cfg.allow_weak_isolation,
                        variables=variables,
                    )
                )
            try:
                result = await self._loop()
                kept = self._keep(keeper, limits)
                return result
            except StopRun:  # a cap or limit: the REPL itself is fine, a follow-up may go on with it
                kept = self._keep(keeper, limits)
                raise
            finally:
                if not self.starting.done():
                    self.starting.cancel()  # Sandbox.start leaves no worker behind when cancelled
                    await asyncio.wait({self.starting})
                sandbox = self.sandbox
                if sandbox is None and self.starting.done() and not self.starting.cancelled():
                    sandbox = None if self.starting.exception() else self.starting.result()  # just started
                if sandbox is not None and not kept:
                    if keeper is not None:
                        keeper.forget(sandbox)
                    sandbox.kill()  # synchronous and immediate: the kill switch never waits for the worker
                    with contextlib.suppress(BaseException):  # then reap it and remove its scratch folder
                        await asyncio.wait_for(sandbox.close(), 2.0)
        finally:
            run.memory.give_back(memory_mb)

    def _keep(self, keeper: Any, limits: dict[str, Any]) -> bool:
        """Give the REPL back to the thread for its next question; False when it is not kept."""
        return keeper is not None and self.sandbox is not None and keeper.keep(self.sandbox, self, limits)

    async def _ready_sandbox(self) -> Sandbox:
        """The level's REPL, waiting for its start to finish (raises what the start raised)."""
        if self.sandbox is None:
            sandbox = await self.starting
            self.sandbox = sandbox
            if self.depth == 0:
                self.run_.isolation = sandbox.isolation
                self.run_.warnings.extend(sandbox.warnings)
        return self.sandbox

    async def _call_while_starting(self, turn: Node) -> tuple[Completion, ParsedReply, str | None]:
        """The first root call, beside the REPL's start: a REPL that cannot start stops the call at once."""
        call = asyncio.ensure_future(self._root_call(turn))
        try:
            await asyncio.wait({call, self.starting}, return_when=asyncio.FIRST_COMPLETED)
            if not call.done() and self.starting.exception() is not None:
                call.cancel()  # its reservation is held, so the cap still counts it
                await asyncio.wait({call})
                await self._ready_sandbox()  # raises the start's error
            return await call
        finally:
            if not call.done():
                call.cancel()
                await asyncio.wait({call})

    async def _loop(self) -> tuple[str, str]:
        run, cfg = self.run_, self.run_.config
        self.messages = [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": self._opening()},
        ]
        while self.iteration < cfg.max_iterations:
            self.iteration += 1
            run.check()
            turn = run.tree.add(
                self.node, "iteration", model=cfg.root_model, text="", number=self.iteration, depth=self.depth
            )
            run.started_node(turn)
            if self.sandbox is None and self.starting.done():
                await self._ready_sandbox()  # raises if the REPL could not start
            if self.sandbox is None:
                completion, parsed, problem = await self._call_while_starting(turn)
            else:
                completion, parsed, problem = await self._root_call(turn)
            self._show_reply(turn, parsed)
            if problem is not None:
                turn.detail["problem"] = problem
                self.consecutive_errors += 1
                # Never send an empty assistant message back: gateways in front of Claude refuse them.
                self.messages.append({"role": "assistant", "content": f"(no reply: {problem})"})
                feedback = (
                    f"Your last reply had nothing in it: {problem}. Reply with a short ```repl block "
                    "(no tools exist here; only code in ```repl blocks runs)."
                )
                run.finished(turn, "error")
                if self.consecutive_errors >= cfg.max_consecutive_errors:
                    run.halt("limit_reached", f"{self.consecutive_errors} replies in a row were unusable: {problem}")
            else:
                self.messages.append({"role": "assistant", "content": parsed.visible})
                feedback, answer = await self._execute_blocks(await self._ready_sandbox(), turn, parsed)
                if completion.finish_reason == "length":
                    cut = (
                        f"Your reply was cut off at its limit of {completion.max_output_tokens:,} output tokens"
                        + (" before its code block closed" if not parsed.blocks else "")
                        + "; be shorter."
                    )
                    turn.detail.setdefault("notes", []).append(cut)
                    feedback = f"{cut}\n\n{feedback}"
                run.finished(turn)
                if answer is not None:
                    return answer, "completed"
                if self.consecutive_errors >= cfg.max_consecutive_errors:
                    run.halt("limit_reached", f"{self.consecutive_errors} consecutive steps failed")
            self.messages.append({"role": "user", "content": feedback + "\n\n" + run.budget_line(self)})
        return await self._last_turn(await self._ready_sandbox())

    async def _root_call(self, turn: Node) -> tuple[Completion, ParsedReply, str | None]:
        """The root model's next reply, compacting the conversation when it nears or passes the window."""
        run, cfg = self.run_, self.run_.config
        window, room = run.room(cfg.root_model, self.messages)
        if window is not None and window - room > COMPACT_AT * window:
            await self._compact(f"the conversation reached {COMPACT_AT:.0%} of {cfg.root_model}'s context window")
        while True:
            try:
                return await run.complete_reply(
                    turn, cfg.root_model, self.messages, cfg.root_max_output_tokens, "root call"
                )
            except ContextTooLong as exc:
                await self._compact(f"the conversation no longer fits: {exc}")

    def _show_reply(self, turn: Node, parsed: ParsedReply) -> None:
        turn.text = parsed.visible
        turn.detail.pop("streaming", None)
        if parsed.thinking:
            turn.detail["thinking"] = parsed.thinking
        self.run_.updated(turn)

    async def _last_turn(self, sandbox: Sandbox) -> tuple[str, str]:
        """Out of iterations: one last call for the best final answer; a FINAL in its code still counts."""
        run, cfg = self.run_, self.run_.config
        turn = run.tree.add(
            self.node,
            "iteration",
            model=cfg.root_model,
            text="",
            number=self.iteration + 1,
            depth=self.depth,
            final_request=True,
        )
        run.started_node(turn)
        self.messages.append(
            {
                "role": "user",
                "content": (
                    "You have no iterations left. Reply now with your best final answer (a FINAL call, or plain "
                    "text), using only citation markers you already registered, and say what remains uncertain."
                ),
            }
        )
        limit = f"the limit of {cfg.max_iterations} iterations was reached"
        completion, parsed, problem = await self._root_call(turn)
        self._show_reply(turn, parsed)
        if problem is None and (parsed.blocks or prose_final(parsed.prose)):
            final_only = ParsedReply(parsed.visible, parsed.thinking, parsed.blocks, parsed.prose)
            _, answer = await self._execute_blocks(sandbox, turn, final_only)
            if answer is not None:
                run.finished(turn)
                return answer, "completed"
        run.finished(turn, "error" if problem else "done")
        self.limit_reason = limit + ("" if parsed.prose else "; the answer is the last partial result")
        return parsed.prose or self.best_partial, "limit_reached"

    async def _compact(self, reason: str) -> None:
        """Restart the root conversation from the model's own summary; REPL state and citations stay."""
        run, cfg = self.run_, self.run_.config
        self.compactions += 1
        if self.compactions > MAX_COMPACTIONS:
            run.halt(
                "limit_reached",
                f"the conversation no longer fits {cfg.root_model}'s context window after {MAX_COMPACTIONS} "
                "compactions; raise the model's context window in settings or ask a narrower question",
            )
        node = run.tree.add(self.node, "compaction", model=cfg.root_model, text="", reason=reason)
        run.started_node(node)
        before = count_message_tokens(self.messages)
        request = self._trimmed_for_summary() + [{"role": "user", "content": COMPACT_REQUEST}]
        summary = ""
        try:
            completion = await run.complete(node, cfg.root_model, request, min(2000, cfg.root_max_output_tokens),
                                            "compaction")
            run.charge(node, completion)
            summary = strip_code(parse_reply(completion.text, completion.reasoning).visible)
        except ContextTooLong:
            node.detail.setdefault("notes", []).append("the summary request did not fit either; kept the last turns")
        if not summary:  # fall back to what the model last said and saw
            tail = [m["content"] for m in self.messages[2:][-2:]]
            summary = "\n\n".join(t[-3000:] for t in tail)
        markers = [
            f"{m}: document {r.doc_id}, characters {r.start}-{r.end}: {r.quote[:80]!r}"
            for m, r in run.registry.items()
            if m.startswith(self.marker_prefix.rstrip(".")) or self.depth == 0
        ]
        self.messages = [
            self.messages[0],
            {
                "role": "user",
                "content": self._opening()
                + "\n\nYou already worked on this question; your conversation was compacted to fit the model's "
                "context window. Your REPL variables are all still there. Your own summary of the work so far:\n"
                + summary
                + ("\n\nCitation markers registered so far (still valid):\n" + "\n".join(markers) if markers else "")
                + "\n\nContinue from here.\n"
                + run.budget_line(self),
            },
        ]
        after = count_message_tokens(self.messages)
        node.text = summary
        node.detail.update(tokens_before=before, tokens_after=after)
        run.finished(node)

    def _trimmed_for_summary(self) -> list[dict[str, Any]]:
        """The conversation cut to about 60% of the window (newest turns kept) for the summary request."""
        run, cfg = self.run_, self.run_.config
        window = run.window(cfg.root_model)
        head, turns = self.messages[:2], self.messages[2:]
        if window is None:
            return head + turns
        budget = int(window * 0.6) - count_message_tokens(head)
        kept: list[dict[str, Any]] = []
        for message in reversed(turns):
            cost = count_message_tokens([message])
            if cost > budget:
                if not kept:  # even the last turn is too long: keep its end
                    kept.append({**message, "content": "[...]" + str(message["content"])[-budget * 3 :]})
                break
            kept.append(message)
            budget -= cost
        kept.reverse()
        if kept and kept[0]["role"] == "assistant":  # keep user/assistant alternation after the opening
            kept.insert(0, {"role": "user", "content": "(earlier turns omitted)"})
        return head + kept

    def _opening(self) -> str:
        corpus = self.run_.corpus
        # the whole case in figures from its indexes: a Document for each of 486,000 took seconds (issue 15)
        seen = corpus.overview() if self.doc_ids is None else corpus.subset(self.doc_ids).overview()
        lines = [
            f"Question: {self.question}",
            "",
            "The case (metadata only; the documents are in `context` in your REPL):",
            f"- {seen.documents} documents: " + ", ".join(f"{n} {k}" for k, n in seen.kinds.most_common()),
            f"- {seen.total_chars:,} characters in all (about {seen.total_chars // 4:,} tokens); per document: "
            f"median {seen.median_chars:,}, largest {seen.largest_chars:,}",
        ]
        if seen.first_date and seen.last_date:
            lines.append(f"- dates from {seen.first_date[:10]} to {seen.last_date[:10]}")
        if self.depth:
            lines.append(
                f"- you are a sub-investigator at depth {self.depth}: answer this question for the "
                "investigator above you, with citation markers, and finish with FINAL"
            )
        if self.depth == 0 and self.run_.history:
            lines += ["", *history_opening(self.run_.history, self.repl_kept)]
        lines += ["", "Start by exploring `context` with code.", self.run_.budget_line(self)]
        return "\n".join(lines)

    async def _execute_blocks(self, sandbox: Sandbox, turn: Node, reply: ParsedReply) -> tuple[str, str | None]:
        """Run each code block in order; returns (feedback for the model, accepted final answer or None)."""
        run = self.run_
        blocks = list(reply.blocks)
        if reply.prose:
            self.best_partial = reply.prose
        if not blocks and self.iteration > 1:
            call = prose_final(reply.prose)  # the paper's convention: a FINAL line outside a fence
            if call is not None:
                blocks = [call]
                turn.detail["prose_final"] = call
        if not blocks:
            self.consecutive_errors += 1
            if "FINAL" in reply.visible:
                return (
                    "Your reply had no ```repl block. FINAL is only accepted from code that runs: a ```repl "
                    "block, or a line starting with FINAL(...) after your first turn."
                ), None
            return "Your reply had no ```repl block. Continue the investigation with code.", None
        parts: list[str] = []
        for number, code in enumerate(blocks, 1):
            run.check()
            key = " ".join(code.split())
            run.code_seen[key] += 1
            if run.code_seen[key] > 3:
                run.halt("limit_reached", "the same code was run again after a warning (a loop)")
            node = run.tree.add(turn, "code", text=code, block=number)
            run.started_node(node)
            if run.code_seen[key] == 3:
                node.detail["output"] = ""
                node.detail["error"] = "not run: identical code already ran twice"
                run.finished(node, "refused")
                parts.append(
                    f"Block {number} was not run: you already ran this exact code twice. Change your "
                    "approach; running it again stops the investigation."
                )
                continue
            self.current = node
            try:
                result = await sandbox.execute(code)
            finally:
                self.current = turn
            node.detail.update(output=result.output, error=result.error, elapsed_s=round(result.elapsed_s, 3))
            for c in result.citations:
                run.registry[c["marker"]] = Registered(
                    c["marker"], int(c["doc_id"]), int(c["start"]), int(c["end"]), str(c["quote"])
                )
            if result.citations:
                node.detail["citations"] = result.citations
            report = f"Block {number} output:\n{result.output or '(no output)'}"
            flags = run.subcall_flags.pop(node.id, [])
            if flags:
                total = run.subcall_counts.get(node.id, len(flags))
                listed = "; ".join(f"#{i} {why}" for i, why in sorted(flags)[:20])
                more = f" (and {len(flags) - 20} more)" if len(flags) > 20 else ""
                report += (
                    f"\nNote: {len(flags)} of the {total} sub-calls in this block came back empty or incomplete "
                    f"(numbered in call order): {listed}{more}."
                )
                node.detail["subcall_flags"] = [{"call": i, "problem": why} for i, why in sorted(flags)]
            if result.error:
                self.consecutive_errors += 1
                report += f"\nError:\n{result.error}"
            else:
                self.consecutive_errors = 0
            if result.final is not None:
                if self.iteration == 1:
                    node.detail["final_refused"] = result.final
                    self.best_partial = result.final
                    report += (
                        "\nFINAL refused: you cannot answer on your first turn, before you have looked at "
                        "what the code printed. Check the evidence, then call FINAL again."
                    )
                else:
                    node.detail["final"] = result.final
                    run.finished(node, "error" if result.error else "done")
                    return "", result.final
            run.finished(node, "error" if result.error else "done")
            parts.append(report)
            if run.stop is not None:
                raise run.stop
        return "\n\n".join(parts), None

    # The host side of each REPL function declared in sandbox/functions.py (checked by a test).
    HANDLERS: dict[str, Callable[[Level, Node, dict[str, Any]], Awaitable[Any]]] = {
        "llm_query": lambda level, parent, p: level.run_.llm_query(parent, p["prompt"]),
        "llm_query_batched": lambda level, parent, p: level.run_.llm_query_batched(parent, p["prompts"]),
        "rlm_query": lambda level, parent, p: level.run_.rlm_query(level, parent, p["question"], list(p["doc_ids"])),
    }

    async def _on_request(self, kind: str, payload: dict[str, Any]) -> Any:
        handler = self.HANDLERS.get(kind)
        if handler is None:
            raise ValueError(f"unknown request {kind}")
        try:
            return await handler(self, self.current, payload)
        except StopRun:
            # the run is over: code that catches the error and keeps calling must not hold it up
            if self.sandbox is not None:
                self.sandbox.kill()
            raise


async def run_rlm(
    case_path: str | Path,
    question: str,
    config: RunConfig,
    api_key: str,
    emit: Callable[[RunEvent], None] | None = None,
    run_id: str | None = None,
    follows: str | None = None,
    keeper: ReplKeeper | None = None,
    sub_api_key: str | None = None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run one investigation to its end and return the CONTRACTS run record (also saved in the case).

    follows: a run of the case this question follows up (its thread's questions, answers and verified
    citations open the conversation and are `history` in the REPL); KeyError when there is no such run.
    keeper: the thread's REPL to reuse and keep (the window); without one the REPL is fresh and closed after.
    sub_api_key: the key for `config.sub_base_url` when sub-calls have their own endpoint (default: none; the
    root's key is never sent to another endpoint).
    history: without `follows`, earlier turns that are not runs of the case (a chat client's conversation, in
    `serve`), shown like a thread's: dicts with `question`, `answer`, `citations` and `run_id` None.
    """
    case_path = Path(case_path)
    config.check()
    with Case.open(case_path) as case:
        history = thread_history(case, follows) if follows is not None else list(history or [])
        case.checkpoint()  # workers open the case immutable: everything must be in the main file
        case_state = tuple(
            case.conn.execute("SELECT count(*), max(id), count(superseded_by) FROM documents").fetchone()
        )
    follows = history[-1]["run_id"] if follows is not None and history else None  # the full id, for a prefix
    run = _Run(
        case_path, question, config, api_key, emit or (lambda e: None), run_id, follows, history, keeper, sub_api_key
    )
    run.case_state = case_state
    run.emit(RunStarted(run.run_id, question, run.tree.root.view()))
    run.dirty[run.tree.root.id] = run.tree.root
    run.save()
    root = run.tree.root

    async def autosave() -> None:  # events save too, but a long quiet wait must not leave changes unsaved
        while True:
            await asyncio.sleep(SAVE_INTERVAL_S)
            if run.dirty:
                run.save()

    saver = asyncio.create_task(autosave())
    level = Level(run, question, None, 0, root)
    try:
        async with asyncio.timeout(config.max_wall_s):
            try:
                run.answer, run.status = await level.run()
                if run.status == "limit_reached":
                    run.error = level.limit_reason
            except StopRun as stop:
                run.status, run.error = stop.status, stop.reason
    except TimeoutError:
        run.status = "limit_reached"
        run.error = f"the wall-clock limit of {config.max_wall_s:g} s was reached"
    except asyncio.CancelledError:
        run.status, run.error = "cancelled", "stopped by the user"
    except (ModelCallError, UnknownPrice) as exc:
        run.status, run.error = "failed", str(exc)
    except Exception as exc:  # a bug must still leave a saved, readable run
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        saver.cancel()
        if run.status != "completed" and not run.answer:
            run.answer = level.best_partial  # a run that did not complete still gives its best partial answer
        record = _finish(run)
        with contextlib.suppress(BaseException):  # an open HTTP pool per finished run would leak in a window
            await asyncio.wait_for(run.client.aclose(), 2.0)
            if run.sub_client is not run.client:
                await asyncio.wait_for(run.sub_client.aclose(), 2.0)
    return record


def _finish(run: _Run) -> dict[str, Any]:
    for node in run.tree.root.walk():
        if node.status == "running" and node is not run.tree.root:
            run.finished(node, "cancelled" if run.status == "cancelled" else "stopped")
    root = run.tree.root
    root.status = run.status
    root.ended = now_iso()
    root.cost_usd = run.ledger.spent
    root.prompt_tokens, root.completion_tokens = run.prompt_tokens, run.completion_tokens
    run.dirty[root.id] = root
    citations, unknown = resolve(run.answer, run.registry, run.store.case)
    record = run.header()
    record["citations"] = citations
    record["unresolved_markers"] = unknown
    nodes, run.dirty = list(run.dirty.values()), {}
    run.store.save(record, nodes)
    run.store.close()
    run.attributor_pool.shutdown(wait=False, cancel_futures=True)
    run.corpus.close()
    record["tree"] = root.to_json()
    run._announce_cost()
    run.emit(NodeFinished(run.run_id, root.view()))
    run.emit(RunFinished(run.run_id, run.status, record))
    return record
