"""The Recursive Language Model loop: a root model programs a sandboxed REPL over the case, sub-models read."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlm_desktop import __version__
from rlm_desktop.corpus import Corpus
from rlm_desktop.engine.budget import CapReached, LedgerSnapshot, SpendLedger
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
from rlm_desktop.engine.models import CallRetried, ModelCallError, ModelClient
from rlm_desktop.engine.pricing import PriceTable, UnknownPrice
from rlm_desktop.engine.runs import RunStore
from rlm_desktop.engine.tree import Node, Tree, now_iso
from rlm_desktop.engine.untrusted import subcall_messages
from rlm_desktop.frozen import resources_dir
from rlm_desktop.sandbox.host import Sandbox
from rlm_desktop.store.case import Case

RESOURCES = resources_dir()  # the checkout's resources/, or the bundle's copy (sys._MEIPASS) when frozen
CODE_BLOCK = re.compile(r"```(?:repl|python|py)[ \t]*\n(.*?)```", re.DOTALL)
SAVE_INTERVAL_S = 0.5


def system_prompt() -> str:
    return (RESOURCES / "prompts" / "rlm_system.md").read_text(encoding="utf-8")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs but the key. Limits are explicit and checked at every step."""

    root_model: str
    sub_model: str
    base_url: str | None = None
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
    memory_mb: int = 4096
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
        if self.cap_usd is not None:
            if self.cap_usd <= 0:
                raise ValueError("the spending cap must be a positive amount of USD")
            self.prices().require(self.root_model, self.sub_model)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("price_args")
        return out


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
    ):
        self.case_path = case_path
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
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.ledger = SpendLedger(config.cap_usd, on_change=self._cost_changed)
        self.client = ModelClient(
            config.base_url,
            api_key,
            config.prices(),
            self.ledger,
            timeout_s=config.request_timeout_s,
            max_retries=config.max_retries,
            on_event=self._model_event,
        )
        self.store = RunStore(case_path)
        self.dirty: dict[str, Node] = {}
        self.last_save = 0.0
        self.levels = 0
        self.attributor_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlm-provenance")
        self.corpus = Corpus.open(case_path)  # host side: verification, provenance, metadata
        from rlm_desktop.engine.provenance import Attributor

        self.attributor = Attributor(self.corpus)

    # ---- events, cost and saving -------------------------------------------------------------------

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

    def _node_by_id(self, node_id: str) -> Node | None:
        return next((n for n in self.tree.root.walk() if n.id == node_id), None)

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

    def charge(self, node: Node, completion: Any) -> None:
        node.model = completion.model
        node.prompt_tokens += completion.prompt_tokens
        node.completion_tokens += completion.completion_tokens
        node.cost_usd += completion.cost_usd or 0.0
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        usage = self.usage.setdefault(
            completion.model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        )
        usage["calls"] += 1
        usage["prompt_tokens"] += completion.prompt_tokens
        usage["completion_tokens"] += completion.completion_tokens
        usage["cost_usd"] = round(usage["cost_usd"] + (completion.cost_usd or 0.0), 8)
        self._cost_changed(self.ledger.snapshot())

    def header(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "question": self.question,
            "status": self.status,
            "answer": self.answer,
            "citations": [],
            "cost_usd": round(self.ledger.spent, 8),
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
        money = (
            f"${self.ledger.spent:.4f} spent of a ${cfg.cap_usd:.2f} cap"
            if cfg.cap_usd is not None
            else f"${self.ledger.spent:.4f} spent (no cap)"
        )
        return (
            f"[budget: {money}; sub-calls {self.subcalls}/{cfg.max_subcalls} used; iteration "
            f"{level.iteration}/{cfg.max_iterations}; depth {level.depth}/{cfg.max_depth}; "
            f"{max(0.0, cfg.max_wall_s - (time.monotonic() - self.t0)):.0f} s left]"
        )

    async def complete(self, node: Node, model: str, messages: Any, max_tokens: int) -> Any:
        """One model call under the cap; waits while in-flight reservations may still free room."""
        while True:
            self.check()
            try:
                return await self.client.complete(model, messages, max_tokens, label=node.id)
            except CapReached as exc:
                if exc.may_fit_later and self.ledger.open_reservations:
                    await asyncio.sleep(0.05)
                    continue
                self.halt(
                    "cap_reached",
                    f"the spending cap of ${self.config.cap_usd:.2f} would be exceeded "
                    f"by the next call (spent ${exc.spent:.4f})",
                )

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
        self.started_node(node)
        spans_future = asyncio.get_running_loop().run_in_executor(
            self.attributor_pool, self.attributor.attribute, prompt
        )
        try:
            async with self.semaphore:
                completion = await self.complete(
                    node, cfg.sub_model, subcall_messages(prompt), cfg.sub_max_output_tokens
                )
        except BaseException as exc:
            node.detail["error"] = f"{type(exc).__name__}: {exc}"
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
        self.charge(node, completion)
        node.detail["response"] = completion.text
        self.finished(node)
        return completion.text

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
        run.levels += 1
        self.marker_prefix = "c" if depth == 0 else f"c{run.levels}."

    async def run(self) -> tuple[str, str]:
        """(answer, status) of this level. Raises StopRun for run-wide stops, CancelledError on cancel."""
        run, cfg = self.run_, self.run_.config
        sandbox = await Sandbox.start(
            run.case_path,
            self.doc_ids,
            limits={
                "output_chars": cfg.output_chars,
                "cell_timeout_s": cfg.cell_timeout_s,
                "memory_mb": cfg.memory_mb,
                "marker_prefix": self.marker_prefix,
            },
            on_request=self._on_request,
            isolation=cfg.isolation,
        )
        self.sandbox = sandbox
        if self.depth == 0:
            run.isolation = sandbox.isolation
            run.warnings.extend(sandbox.warnings)
        try:
            return await self._loop(sandbox)
        finally:
            sandbox.kill()  # synchronous and immediate: the kill switch never waits for the worker
            with contextlib.suppress(BaseException):  # then reap it and remove its scratch folder
                await asyncio.wait_for(sandbox.close(), 2.0)

    async def _loop(self, sandbox: Sandbox) -> tuple[str, str]:
        run, cfg = self.run_, self.run_.config
        messages: list[dict[str, str]] = [
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
            completion = await run.complete(turn, cfg.root_model, messages, cfg.root_max_output_tokens)
            run.charge(turn, completion)
            turn.text = completion.text
            run.updated(turn)
            messages.append({"role": "assistant", "content": completion.text})
            feedback, answer = await self._execute_blocks(sandbox, turn, completion.text)
            run.finished(turn)
            if answer is not None:
                return answer, "completed"
            if self.consecutive_errors >= cfg.max_consecutive_errors:
                run.halt("limit_reached", f"{self.consecutive_errors} consecutive steps failed")
            messages.append({"role": "user", "content": feedback + "\n\n" + run.budget_line(self)})
        # out of iterations: one last call without code for the best final answer
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
        messages.append(
            {
                "role": "user",
                "content": (
                    "You have no iterations left. Reply now with your best final answer as plain text (no code), "
                    "using only citation markers you already registered, and say what remains uncertain."
                ),
            }
        )
        completion = await run.complete(turn, cfg.root_model, messages, cfg.root_max_output_tokens)
        run.charge(turn, completion)
        turn.text = completion.text
        run.finished(turn)
        return CODE_BLOCK.sub("", completion.text).strip(), "limit_reached"

    def _opening(self) -> str:
        corpus = self.run_.corpus
        docs = [corpus.by_id(i) for i in self.doc_ids] if self.doc_ids is not None else list(corpus)
        kinds = Counter(d.kind for d in docs)
        chars = sorted(d.chars for d in docs)
        dates = sorted(d.meta.get("date") or d.meta.get("creation_date") or "" for d in docs)
        dates = [d for d in dates if d]
        lines = [
            f"Question: {self.question}",
            "",
            "The case (metadata only; the documents are in `context` in your REPL):",
            f"- {len(docs)} documents: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()),
            f"- {sum(chars):,} characters in all (about {sum(chars) // 4:,} tokens); per document: median "
            f"{chars[len(chars) // 2] if chars else 0:,}, largest {chars[-1] if chars else 0:,}",
        ]
        if dates:
            lines.append(f"- dates from {dates[0][:10]} to {dates[-1][:10]}")
        if self.depth:
            lines.append(
                f"- you are a sub-investigator at depth {self.depth}: answer this question for the "
                "investigator above you, with citation markers, and finish with FINAL"
            )
        lines += ["", "Start by exploring `context` with code.", self.run_.budget_line(self)]
        return "\n".join(lines)

    async def _execute_blocks(self, sandbox: Sandbox, turn: Node, text: str) -> tuple[str, str | None]:
        """Run each code block in order; returns (feedback for the model, accepted final answer or None)."""
        run = self.run_
        blocks = [b.strip("\n") for b in CODE_BLOCK.findall(text)]
        prose = CODE_BLOCK.sub("", text).strip()
        if prose:
            self.best_partial = prose
        if not blocks:
            self.consecutive_errors += 1
            if "FINAL" in text:
                return (
                    "Your reply had no ```repl block. FINAL is only accepted when called inside a ```repl "
                    "block that runs."
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

    async def _on_request(self, kind: str, payload: dict[str, Any]) -> Any:
        run, parent = self.run_, self.current
        try:
            if kind == "llm_query":
                return await run.llm_query(parent, payload["prompt"])
            if kind == "llm_query_batched":
                return await run.llm_query_batched(parent, payload["prompts"])
            if kind == "rlm_query":
                return await run.rlm_query(self, parent, payload["question"], list(payload["doc_ids"]))
        except StopRun:
            # the run is over: code that catches the error and keeps calling must not hold it up
            if self.sandbox is not None:
                self.sandbox.kill()
            raise
        raise ValueError(f"unknown request {kind}")


async def run_rlm(
    case_path: str | Path,
    question: str,
    config: RunConfig,
    api_key: str,
    emit: Callable[[RunEvent], None] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run one investigation to its end and return the CONTRACTS run record (also saved in the case)."""
    case_path = Path(case_path)
    config.check()
    with Case.open(case_path) as case:
        case.checkpoint()  # workers open the case immutable: everything must be in the main file
    run = _Run(case_path, question, config, api_key, emit or (lambda e: None), run_id)
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
    try:
        async with asyncio.timeout(config.max_wall_s):
            level = Level(run, question, None, 0, root)
            try:
                run.answer, run.status = await level.run()
            except StopRun as stop:
                run.status, run.error = stop.status, stop.reason
                run.answer = level.best_partial
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
        record = _finish(run)
        with contextlib.suppress(BaseException):  # an open HTTP pool per finished run would leak in a window
            await asyncio.wait_for(run.client.aclose(), 2.0)
    return record


def _finish(run: _Run) -> dict[str, Any]:
    for node in run.tree.root.walk():
        if node.status == "running":
            node.finish("cancelled" if run.status == "cancelled" else "stopped")
            run.dirty[node.id] = node
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
    run.emit(NodeFinished(run.run_id, root.view()))
    run.emit(RunFinished(run.run_id, run.status, record))
    return record
