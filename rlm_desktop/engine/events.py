"""Run events: typed, immutable, past tense; a window draws the live tree and cost meter from these alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeView:
    """A node as it is at one moment (the engine's own tree keeps changing; this never does)."""

    id: str
    parent_id: str | None
    kind: str  # root, iteration, code, llm_query, rlm_query
    model: str | None
    status: str  # running, done, error, cancelled, refused
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    started: str
    ended: str | None
    text: str
    detail: dict[str, Any]  # kind-specific: output, prompt, response, error, spans, depth
    spans: tuple[tuple[int, int, int], ...]  # (doc_id, start, end) source spans in this node's excerpt


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    question: str
    root: NodeView


@dataclass(frozen=True)
class NodeStarted:
    run_id: str
    node: NodeView


@dataclass(frozen=True)
class NodeUpdated:
    run_id: str
    node: NodeView


@dataclass(frozen=True)
class NodeFinished:
    run_id: str
    node: NodeView


@dataclass(frozen=True)
class CostChanged:
    run_id: str
    spent_usd: float  # billed + held: what the cap counts
    reserved_usd: float
    cap_usd: float | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    elapsed_s: float
    billed_usd: float = 0.0  # from usage the provider reported
    held_usd: float = 0.0  # reservations of calls whose cost is unknown (counted against the cap)
    held_estimate_usd: float = 0.0  # what the held calls probably cost (tokenizer estimate)


@dataclass(frozen=True)
class CallRetriedEvent:
    run_id: str
    label: str
    attempt: int
    reason: str
    delay_s: float


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    status: str
    record: dict[str, Any]  # the CONTRACTS run record


RunEvent = (
    RunStarted | NodeStarted | NodeUpdated | NodeFinished | CostChanged | CallRetriedEvent | RunFinished
)
