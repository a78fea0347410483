"""The run record as types: RunRecord, NodeRecord and CitationRecord, whose dict form is the CONTRACTS JSON."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rlm_desktop.engine.events import (
    CostChanged,
    NodeFinished,
    NodeStarted,
    NodeView,
    RunEvent,
    RunFinished,
    RunStarted,
)

_NODE_KEYS = (
    "id", "kind", "model", "status", "prompt_tokens", "completion_tokens", "cost_usd", "started", "ended",
    "text", "spans", "children",
)  # fmt: skip
_CITATION_KEYS = ("marker", "doc_id", "path", "title", "start", "end", "quote", "verified", "page", "rects")


def node_dict(node: Any, children: bool = True) -> dict[str, Any]:
    """The CONTRACTS NODE object of a step, live (engine/tree.py's Node) or saved (NodeRecord): both have
    these attributes; kind-specific details go alongside the fixed keys. Without `children` the step alone
    (a run saves each step in its own row, and a step with a thousand sub-calls is saved many times)."""
    out: dict[str, Any] = {
        "id": node.id,
        "kind": node.kind,
        "model": node.model,
        "status": node.status,
        "prompt_tokens": node.prompt_tokens,
        "completion_tokens": node.completion_tokens,
        "cost_usd": round(node.cost_usd, 8),
        "started": node.started,
        "ended": node.ended,
        "text": node.text,
        "spans": [{"doc_id": d, "start": s, "end": e} for d, s, e in node.spans],
    }
    if children:
        out["children"] = [node_dict(c) for c in node.children]
    for key, value in node.detail.items():
        out.setdefault(key, value)
    return out


def node_view(node: Any, parent_id: str | None) -> NodeView:
    """A frozen NodeView of a step, live or saved (the same attributes as node_dict reads)."""
    return NodeView(
        id=node.id,
        parent_id=parent_id,
        kind=node.kind,
        model=node.model,
        status=node.status,
        prompt_tokens=node.prompt_tokens,
        completion_tokens=node.completion_tokens,
        cost_usd=node.cost_usd,
        started=node.started,
        ended=node.ended,
        text=node.text,
        detail=dict(node.detail),
        spans=tuple(node.spans),
    )


@dataclass
class NodeRecord:
    """One step of the tree. `detail` holds the kind-specific keys (output, prompt, response, thinking, ...)."""

    id: str
    kind: str
    model: str | None = None
    status: str = "done"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    started: str = ""
    ended: str | None = None
    text: str = ""
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    children: list[NodeRecord] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeRecord:
        spans = [
            (int(s["doc_id"]), int(s["start"]), int(s["end"])) if isinstance(s, Mapping) else tuple(s)
            for s in data.get("spans") or ()
        ]
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind", "?")),
            model=data.get("model"),
            status=str(data.get("status", "done")),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            cost_usd=float(data.get("cost_usd") or 0.0),
            started=data.get("started") or "",
            ended=data.get("ended"),
            text=data.get("text") or "",
            spans=spans,  # type: ignore[arg-type]
            children=[cls.from_dict(c) for c in data.get("children") or ()],
            detail={k: v for k, v in data.items() if k not in _NODE_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        return node_dict(self)

    def view(self, parent_id: str | None) -> NodeView:
        """The node as the engine's live events show it."""
        return node_view(self, parent_id)

    def walk(self, parent_id: str | None = None) -> Iterator[tuple[NodeRecord, str | None]]:
        """(node, parent id) for every node, parents before children, siblings in order."""
        stack: list[tuple[NodeRecord, str | None]] = [(self, parent_id)]
        while stack:
            node, parent = stack.pop()
            yield node, parent
            stack.extend((child, node.id) for child in reversed(node.children))


@dataclass
class CitationRecord:
    marker: str
    doc_id: int
    path: str
    title: str
    start: int
    end: int
    quote: str
    verified: bool
    page: int | None = None
    rects: list[list[float]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)  # problem, text hash, ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CitationRecord:
        return cls(
            marker=str(data.get("marker", "")),
            doc_id=int(data.get("doc_id", -1)),
            path=str(data.get("path") or ""),
            title=str(data.get("title") or ""),
            start=int(data.get("start", 0)),
            end=int(data.get("end", 0)),
            quote=str(data.get("quote") or ""),
            verified=bool(data.get("verified")),
            page=data.get("page"),
            rects=[list(r) for r in data.get("rects") or ()],
            detail={k: v for k, v in data.items() if k not in _CITATION_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _CITATION_KEYS}
        for key, value in self.detail.items():
            out.setdefault(key, value)
        return out


_RUN_KEYS = (
    "run_id", "question", "status", "answer", "citations", "cost_usd", "cap_usd", "cost_billed_usd",
    "cost_held_usd", "cost_held_estimate_usd", "follows", "isolation", "warnings", "error", "usage", "tree",
)  # fmt: skip


@dataclass
class RunRecord:
    """A whole run. `extra` keeps every other key of the saved JSON (started, config, app_version, ...)."""

    run_id: str
    question: str
    status: str
    answer: str = ""
    citations: list[CitationRecord] = field(default_factory=list)
    cost_usd: float = 0.0  # billed + held: what the cap counts
    cap_usd: float | None = None
    cost_billed_usd: float = 0.0
    cost_held_usd: float = 0.0
    cost_held_estimate_usd: float = 0.0
    follows: str | None = None
    isolation: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    tree: NodeRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        cost = float(data.get("cost_usd") or 0.0)
        return cls(
            run_id=str(data.get("run_id", "")),
            question=str(data.get("question", "")),
            status=str(data.get("status", "")),
            answer=str(data.get("answer") or ""),
            citations=[CitationRecord.from_dict(c) for c in data.get("citations") or ()],
            cost_usd=cost,
            cap_usd=data.get("cap_usd"),
            # runs saved before billed and held were told apart count everything as billed
            cost_billed_usd=float(data.get("cost_billed_usd", cost) or 0.0),
            cost_held_usd=float(data.get("cost_held_usd") or 0.0),
            cost_held_estimate_usd=float(data.get("cost_held_estimate_usd") or 0.0),
            follows=data.get("follows"),
            isolation=data.get("isolation"),
            warnings=[str(w) for w in data.get("warnings") or ()],
            error=data.get("error"),
            usage={str(k): dict(v) for k, v in (data.get("usage") or {}).items()},
            tree=NodeRecord.from_dict(data["tree"]) if data.get("tree") else None,
            extra={k: v for k, v in data.items() if k not in _RUN_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "question": self.question,
            "status": self.status,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "cost_usd": self.cost_usd,
            "cap_usd": self.cap_usd,
            "cost_billed_usd": self.cost_billed_usd,
            "cost_held_usd": self.cost_held_usd,
            "cost_held_estimate_usd": self.cost_held_estimate_usd,
            "follows": self.follows,
            "isolation": self.isolation,
            "warnings": list(self.warnings),
            "error": self.error,
            "usage": self.usage,
            "tree": self.tree.to_dict() if self.tree is not None else None,
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @property
    def elapsed_s(self) -> float:
        tree = self.tree
        if tree is None or not tree.started or not tree.ended:
            return 0.0
        try:
            return (datetime.fromisoformat(tree.ended) - datetime.fromisoformat(tree.started)).total_seconds()
        except ValueError:
            return 0.0

    def cost_event(self) -> CostChanged:
        """The run's totals as the cost meter receives them live."""
        usage = self.usage.values()
        return CostChanged(
            run_id=self.run_id,
            spent_usd=self.cost_usd,
            reserved_usd=0.0,
            cap_usd=self.cap_usd,
            calls=sum(int(u.get("calls", 0)) for u in usage),
            prompt_tokens=sum(int(u.get("prompt_tokens", 0)) for u in usage),
            completion_tokens=sum(int(u.get("completion_tokens", 0)) for u in usage),
            elapsed_s=self.elapsed_s,
            billed_usd=self.cost_billed_usd,
            held_usd=self.cost_held_usd,
            held_estimate_usd=self.cost_held_estimate_usd,
        )


def replay(record: Mapping[str, Any] | RunRecord) -> Iterator[RunEvent]:
    """The events a live run would have emitted, so a saved run is shown through the same code as a live one:
    RunStarted, then every node started (and finished, when it ended), the cost, the root finished, RunFinished."""
    run = record if isinstance(record, RunRecord) else RunRecord.from_dict(record)
    data = run.to_dict() if isinstance(record, RunRecord) else dict(record)
    root = run.tree
    if root is None:
        root = NodeRecord(id="root", kind="root", status=run.status, text=run.question)
    yield RunStarted(run.run_id, run.question, root.view(None))
    for node, parent_id in root.walk():
        if node is root:
            continue
        view = node.view(parent_id)
        yield NodeStarted(run.run_id, view)
        if node.ended is not None or node.status != "running":
            yield NodeFinished(run.run_id, view)
    yield run.cost_event()
    yield NodeFinished(run.run_id, root.view(None))
    yield RunFinished(run.run_id, run.status, data)
