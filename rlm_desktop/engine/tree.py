"""The run's recursion tree as plain Python: owned by the engine's loop, viewed through immutable snapshots."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rlm_desktop.engine.events import NodeView


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Node:
    id: str
    kind: str
    parent: Node | None = None
    model: str | None = None
    status: str = "running"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    started: str = field(default_factory=now_iso)
    ended: str | None = None
    text: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    spans: list[tuple[int, int, int]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def finish(self, status: str = "done") -> None:
        self.status = status
        self.ended = now_iso()

    def view(self) -> NodeView:
        return NodeView(
            id=self.id,
            parent_id=self.parent.id if self.parent else None,
            kind=self.kind,
            model=self.model,
            status=self.status,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            started=self.started,
            ended=self.ended,
            text=self.text,
            detail=dict(self.detail),
            spans=tuple(self.spans),
        )

    def to_json(self) -> dict[str, Any]:
        """The CONTRACTS NODE object, with kind-specific extras alongside."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "started": self.started,
            "ended": self.ended,
            "text": self.text,
            "spans": [{"doc_id": d, "start": s, "end": e} for d, s, e in self.spans],
            "children": [c.to_json() for c in self.children],
        }
        for key, value in self.detail.items():
            out.setdefault(key, value)
        return out

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class Tree:
    """Creates nodes with run-unique ids ("n1", "n2", ...) and keeps the root."""

    def __init__(self, question: str):
        self._ids = itertools.count(1)
        self.root = Node(id="n0", kind="root", text=question)

    def add(
        self, parent: Node, kind: str, *, model: str | None = None, text: str = "", **detail: Any
    ) -> Node:
        node = Node(id=f"n{next(self._ids)}", kind=kind, parent=parent, model=model, text=text, detail=detail)
        parent.children.append(node)
        return node
