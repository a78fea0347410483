"""Run a suite's tasks through the RLM (and, for the baseline, straight to the root model) and score each answer."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlm_desktop.bench.scoring import score
from rlm_desktop.bench.suites import Task

DEFAULT_WINDOW = 128_000  # tokens, for a baseline model whose window is known nowhere (settings, probe, table)
BASELINE_MARGIN = 1_000  # tokens kept free for the prompt's framing and tokenizer differences
BASELINE_INTRO = "Answer the question using only the documents below."
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
MAX_FAILURES_IN_A_ROW = 3  # then the benchmark stops: every further task would fail the same way, slowly


def count_nodes(node: dict[str, Any], kinds: tuple[str, ...]) -> int:
    own = 1 if node.get("kind") in kinds else 0
    return own + sum(count_nodes(child, kinds) for child in node.get("children") or [])


def task_result(task: Task, suite: str, record: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """One task's line of the report from its run record."""
    answer = record.get("answer") or ""
    citations = record.get("citations") or []
    return {
        "suite": suite,
        "family": task.family,
        "id": task.id,
        "question": task.question,
        "expected": task.expected,
        "scoring": task.scoring,
        "answer": answer,
        "score": score(task.scoring, answer, task.expected, task.question, task.universe),
        "status": record.get("status"),
        "error": record.get("error"),
        "run_id": record.get("run_id"),
        "cost_usd": float(record.get("cost_usd") or 0.0),
        "subcalls": count_nodes(record.get("tree") or {}, ("llm_query", "rlm_query")),
        "iterations": count_nodes(record.get("tree") or {}, ("iteration",)),
        "wall_s": round(wall_s, 3),
        "citations": len(citations),
        "citations_verified": sum(1 for c in citations if c.get("verified")),
        "baseline": None,
    }


class Runner:
    """Asks tasks one after another; `stop()` (Ctrl-C) cancels the run in flight and ends the benchmark."""

    def __init__(
        self,
        config: Any,
        api_key: str,
        progress: Callable[[str], None] | None = None,
        sub_api_key: str | None = None,  # a separate sub endpoint's key: the root's is never sent there
    ):
        self.config = config
        self.api_key = api_key
        self.sub_api_key = sub_api_key
        self.progress = progress or (lambda text: None)
        self.stopped = threading.Event()
        self.aborted: str | None = None  # why the benchmark gave up early (the endpoint keeps failing)
        self._failures_in_a_row = 0
        self._handle: Any = None

    def stop(self) -> None:
        self.stopped.set()
        handle = self._handle
        if handle is not None:
            handle.cancel()

    def ask(self, case_path: Path, task: Task, suite: str) -> dict[str, Any]:
        from rlm_desktop.engine.handle import RunHandle
        from rlm_desktop.redact import redact_record

        handle = RunHandle(case_path, task.question, self.config, self.api_key, sub_api_key=self.sub_api_key)
        self._handle = handle
        started = time.monotonic()
        try:
            handle.start()
            if self.stopped.is_set():
                handle.cancel()
            while not handle.join(0.1):  # short waits keep the main thread free to take signals
                pass
            record = handle.wait()
        finally:
            self._handle = None
        record = redact_record(record, (self.api_key, self.sub_api_key))
        return task_result(task, suite, record, time.monotonic() - started)

    def run(self, case_path: Path, tasks: list[Task], suite: str, baseline: bool = False) -> list[dict[str, Any]]:
        results = []
        for number, task in enumerate(tasks, start=1):
            if self.stopped.is_set() or self.aborted:
                break
            self.progress(f"[{suite} {number}/{len(tasks)}] {task.family}: {task.question}")
            result = self.ask(case_path, task, suite)
            if baseline and not self.stopped.is_set():
                result["baseline"] = self.baseline(case_path, task)
            results.append(result)
            self.progress(f"    score {result['score']:.2f}, {result['status']}, ${result['cost_usd']:.4f}")
            if result["status"] == "failed":
                self.progress(f"    error: {result['error']}")
                self._failures_in_a_row += 1
                if self._failures_in_a_row >= MAX_FAILURES_IN_A_ROW:  # the endpoint, the key or a model is wrong
                    self.aborted = f"{MAX_FAILURES_IN_A_ROW} tasks in a row failed, the last with: {result['error']}"
            else:
                self._failures_in_a_row = 0
        return results

    def baseline(self, case_path: Path, task: Task) -> dict[str, Any]:
        """The same question straight to the root model, the corpus stuffed up to its context window."""
        from rlm_desktop.engine.budget import SpendLedger

        started = time.monotonic()
        ledger = SpendLedger(self.config.cap_usd)  # its own cap, as the run's: the baseline is a separate question
        try:
            outcome = self._cancellable(_ask_directly(case_path, task.question, self.config, self.api_key, ledger))
        except (asyncio.CancelledError, Exception) as exc:  # a failed baseline is a result, not the end of the run
            from rlm_desktop.redact import redact

            error = "cancelled" if isinstance(exc, asyncio.CancelledError) else redact(str(exc), (self.api_key,))
            # what was sent still counts: a cancelled or broken call's reservation is held, as in a run
            outcome = {"answer": "", "cost_usd": round(ledger.spent, 6), "error": error, "corpus_fraction": 0.0,
                       "prompt_tokens": 0}  # fmt: skip
        answer = outcome["answer"]
        outcome["score"] = score(task.scoring, answer, task.expected, task.question, task.universe)
        outcome["wall_s"] = round(time.monotonic() - started, 3)
        return outcome


    def _cancellable(self, coroutine: Any) -> Any:
        """Run `coroutine` on its own loop in a thread, the main thread waiting in short steps (it takes the
        signals) and cancelling it when the benchmark is stopped."""
        loop = asyncio.new_event_loop()
        task = loop.create_task(coroutine)

        def drive() -> None:
            try:
                loop.run_until_complete(task)
            except BaseException:  # noqa: S110 - kept by the task, raised by task.result() below
                pass

        thread = threading.Thread(target=drive, name="bench-baseline", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                if self.stopped.is_set() and not task.done():
                    loop.call_soon_threadsafe(task.cancel)
                thread.join(0.1)
        finally:
            thread.join()
            loop.close()
        return task.result()  # the coroutine's value, or its exception (CancelledError when stopped)


def stuffed_prompt(case_path: Path, question: str, budget_tokens: int) -> tuple[str, float]:
    """The question and as many whole documents as fit `budget_tokens` (the last one cut); and the fraction
    of the corpus's characters that made it in."""
    from rlm_desktop.engine.tokens import count_tokens
    from rlm_desktop.store.case import Case

    head = f"{BASELINE_INTRO}\n\nQuestion: {question}\n\nDocuments:\n"
    tail = f"\n\nQuestion (again): {question}\nAnswer:"
    room = budget_tokens - count_tokens(head) - count_tokens(tail)
    parts: list[str] = []
    used = total = 0
    with Case.open(case_path) as case:
        docs = case.documents()
        total = sum(d.chars for d in docs) or 1
        for doc in docs:
            if room <= 0:
                break
            text = f"\n=== document {doc.id}: {doc.title} ({doc.kind}) ===\n" + case.text(doc.id)
            tokens = count_tokens(text)
            if tokens > room:  # cut the last document to what fits, at about 3 characters a token
                text = text[: max(0, room * 3)]
                tokens = count_tokens(text)
                while tokens > room and text:
                    text = text[: int(len(text) * 0.9)]
                    tokens = count_tokens(text)
            parts.append(text)
            used += len(text)
            room -= tokens
    return head + "".join(parts) + tail, min(1.0, used / total)


async def _ask_directly(case_path: Path, question: str, config: Any, api_key: str, ledger: Any) -> dict[str, Any]:
    from rlm_desktop.engine.model_info import context_window
    from rlm_desktop.engine.models import ContextTooLong, ModelClient

    model = config.root_model
    caps = config.caps(model)
    window = context_window(model, config.context_windows, caps) or DEFAULT_WINDOW
    async with ModelClient(config.base_url, api_key, config.prices(), ledger, timeout_s=config.request_timeout_s,
                           max_retries=config.max_retries, stream=config.stream,
                           caps={model: caps} if caps else None) as client:  # fmt: skip
        for attempt in range(2):
            output = min(config.root_max_output_tokens, max(256, window // 4))
            prompt, fraction = stuffed_prompt(case_path, question, window - output - BASELINE_MARGIN)
            try:
                completion = await client.complete(model, [{"role": "user", "content": prompt}], output, "baseline")
                break
            except ContextTooLong as exc:  # the server's window is smaller than we knew: stuff to its size once
                if attempt or not exc.window or exc.window >= window:
                    raise
                window = exc.window
    return {
        "answer": _THINK.sub("", completion.text).strip(),  # reasoning inline in <think> is not the answer
        "cost_usd": round(ledger.spent, 6),
        "error": None,
        "corpus_fraction": round(fraction, 4),
        "prompt_tokens": completion.prompt_tokens,
        "window": window,
    }
