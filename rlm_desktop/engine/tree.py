"""The run's recursion tree as plain Python: owned by the engine's loop, viewed through immutable snapshots."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rlm_desktop.engine.events import NodeView
from rlm_desktop.engine.record import node_dict, node_view


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
        return node_view(self, self.parent.id if self.parent else None)

    def to_json(self) -> dict[str, Any]:
        """The CONTRACTS NODE object, with kind-specific extras alongside."""
        return node_dict(self)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class Tree:
    """Creates nodes with run-unique ids ("n1", "n2", ...) and keeps the root."""

    def __init__(self, question: str):
        self._ids = itertools.count(1)
        self.root = Node(id="n0", kind="root", text=question)
        self._by_id: dict[str, Node] = {self.root.id: self.root}

    def get(self, node_id: str) -> Node | None:
        """The node with this id (streamed text and retries name their node by id, many times a second)."""
        return self._by_id.get(node_id)

    def add(
        self, parent: Node, kind: str, *, model: str | None = None, text: str = "", **detail: Any
    ) -> Node:
        node = Node(id=f"n{next(self._ids)}", kind=kind, parent=parent, model=model, text=text, detail=detail)
        parent.children.append(node)
        self._by_id[node.id] = node
        return node
