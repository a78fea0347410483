"""The run's recursion tree for Qt: a plain-Python node store that grows from run events, and a thin model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer

from rlm_desktop.engine.events import (
    NodeFinished,
    NodeStarted,
    NodeUpdated,
    NodeView,
    RunFinished,
    RunStarted,
)
from rlm_desktop.engine.record import replay
from rlm_desktop.engine.rlm import CANCELLED_TEXT
from rlm_desktop.gui import theme

STEP, STATUS, MODEL, TOKENS, COST, TIME = range(6)


def error_text(error: object) -> str:
    """A step's error as shown: runs saved before the engine named a Stop saved the bare `CancelledError:`."""
    text = str(error)
    return CANCELLED_TEXT if text.startswith("CancelledError") else text

HEADERS = ("Step", "Status", "Model", "Tokens", "Cost", "Time")
HEADER_TIPS = (
    "What the step did: a root-model iteration, a code block it ran, a sub-call or a sub-investigation",
    "Whether the step is still running, finished, failed or was stopped",
    "The model that answered this step",
    "Tokens sent to (in) and received from (out) the model for this step alone",
    "What this step's model call cost (the root row shows the whole run once it ends)",
    "How long the step took (still counting while it runs)",
)
NODE_ROLE = Qt.ItemDataRole.UserRole + 1  # the NodeView behind a row
NODE_ID_ROLE = Qt.ItemDataRole.UserRole + 2

STATUS_TEXT = {
    "running": "running…",
    "cap_reached": "cap reached",
    "limit_reached": "limit reached",
}
LABEL_CHARS = 60
_TOP = QModelIndex()  # the invisible root, as a default argument
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
# made once: an enum `|` is slow Python, and the view asks for every row it lays out
_ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


def _first_line(text: str, limit: int = LABEL_CHARS) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) > limit:
        cut = line[: limit - 1]
        space = cut.rfind(" ")
        if space > limit * 0.6:  # end on a whole word unless that loses too much
            cut = cut[:space]
        return cut.rstrip(" ,;:") + "…"
    return line


def step_label(view: NodeView) -> str:
    """What a person reads in the Step column: 'Iteration 2', "Code: hits = search('x')", 'Sub-call: …'."""
    kind, detail = view.kind, view.detail
    if kind == "root":
        return f"Root: {_first_line(view.text)}"
    if kind == "iteration":
        label = f"Iteration {detail.get('number', '?')}"
        if detail.get("final_request"):
            label += " (asked for the final answer)"
        if detail.get("problem"):
            label += " (unusable reply)"
        elif detail.get("streaming") and view.status == "running":
            label += f": {_first_line(view.text)}" if view.text.strip() else " (writing…)"
        return label
    if kind == "code":
        lines = [line for line in view.text.splitlines() if line.strip()]
        label = f"Code: {_first_line(view.text)}"
        if len(lines) > 1:
            more = len(lines) - 1
            label += f"  (+{more} line{'s' if more > 1 else ''})"
        return label
    if kind == "llm_query":
        return f"Sub-call: {_first_line(view.text, 48)}"
    if kind == "rlm_query":
        return f"Sub-RLM: {_first_line(view.text, 52)}"
    if kind == "compaction":
        return "Compaction: conversation summarised to fit the context window"
    return f"{kind}: {_first_line(view.text)}"


def tokens_text(view: NodeView) -> str:
    if not view.prompt_tokens and not view.completion_tokens:
        return ""
    return f"{view.prompt_tokens:,} in / {view.completion_tokens:,} out"


def cost_text(view: NodeView) -> str:
    if not view.cost_usd and not view.prompt_tokens:
        return ""  # steps that call no model (code) cost nothing by themselves
    estimated = "~" if view.detail.get("usage_estimated") else ""
    if 0 < view.cost_usd < 0.00005:
        return f"{estimated}<$0.0001"  # a cheap sub-call is not free: never show it as $0.0000
    return estimated + theme.money(view.cost_usd)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


class _Item:
    """One row: the latest view of a node, its place among its siblings, and parsed times."""

    __slots__ = ("key", "view", "parent", "children", "row", "started_ts", "ended_ts", "label")

    def __init__(self, key: int, view: NodeView | None, parent: _Item | None, row: int):
        self.key = key
        self.parent = parent
        self.children: list[_Item] = []
        self.row = row
        self.view: NodeView | None = None
        if view is not None:
            self.set_view(view)

    def set_view(self, view: NodeView) -> None:
        old = self.view
        self.view = view
        if old is None or old.started != view.started:
            self.started_ts = _timestamp(view.started)
        if old is None or old.ended != view.ended:
            self.ended_ts = _timestamp(view.ended)
        self.label = step_label(view)


class RunTreeModel(QAbstractItemModel):
    """Rows grow with the run (insertRows, dataChanged); the model is reset only by clear/load/new run,
    so whatever the user expanded stays expanded while the run goes on."""

    TICK_MS = 1000

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._keys = 0
        self._root = _Item(0, None, None, 0)  # invisible: its children are the top-level rows
        self._by_key: dict[int, _Item] = {0: self._root}
        self._by_id: dict[str, _Item] = {}
        self._orphans: dict[str, dict[str, NodeView]] = {}  # parent id -> views waiting for that parent
        self._orphan_parent: dict[str, str] = {}
        self._running: set[str] = set()
        self._live = False
        self.run_id: str | None = None
        self._ticker = QTimer(self)
        self._ticker.setInterval(self.TICK_MS)
        self._ticker.timeout.connect(self._tick)
        # Steps that changed since the view was last told: a burst of hundreds of sub-calls is one
        # dataChanged per parent and column range when the event loop next turns, not one per update.
        self._dirty: set[int] = set()
        self._dirty_timer = QTimer(self)
        self._dirty_timer.setSingleShot(True)
        self._dirty_timer.setInterval(0)
        self._dirty_timer.timeout.connect(self.flush_changes)

    # ---- plain-Python store --------------------------------------------------------------------------

    def _reset_store(self) -> None:
        self._keys = 0
        self._root = _Item(0, None, None, 0)
        self._by_key = {0: self._root}
        self._by_id = {}
        self._orphans = {}
        self._orphan_parent = {}
        self._running = set()
        self._ticker.stop()
        self._dirty = set()

    def _new_item(self, view: NodeView, parent: _Item) -> _Item:
        self._keys += 1
        item = _Item(self._keys, view, parent, len(parent.children))
        self._by_key[item.key] = item
        self._by_id[view.id] = item
        return item

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def views(self) -> Iterator[NodeView]:
        """Every attached node, parents before children."""
        stack = list(reversed(self._root.children))
        while stack:
            item = stack.pop()
            yield item.view  # type: ignore[misc]
            stack.extend(reversed(item.children))

    @property
    def pending(self) -> int:
        """Nodes whose parent has not arrived yet."""
        return len(self._orphan_parent)

    @property
    def live(self) -> bool:
        return self._live

    # ---- public API ----------------------------------------------------------------------------------

    def clear(self) -> None:
        self.beginResetModel()
        self._reset_store()
        self.run_id = None
        self._live = False
        self.endResetModel()

    def apply(self, event: object) -> None:
        """Grow or update the tree from one run event (others are ignored)."""
        if isinstance(event, RunStarted):
            if self.run_id != event.run_id or not self._by_id:
                self.beginResetModel()
                self._reset_store()
                self.run_id = event.run_id
                self.endResetModel()
            self._live = True
            self._upsert(event.root)
        elif isinstance(event, NodeStarted | NodeUpdated | NodeFinished):
            if self.run_id is None:
                self.run_id = event.run_id
                self._live = True
            elif event.run_id != self.run_id:
                return  # a late event of an earlier run
            self._upsert(event.node)
        elif isinstance(event, RunFinished) and event.run_id == self.run_id:
            self._live = False
            self._running.clear()
            self._ticker.stop()

    def load_record(self, record: dict[str, Any]) -> None:
        """Show a saved run (the CONTRACTS record) exactly as a live one would look at its end."""
        self.beginResetModel()
        self._reset_store()
        self.run_id = record.get("run_id")
        self._live = False
        views: dict[str, NodeView] = {}  # the last view of each node, in the order they first appeared
        for event in replay(record):
            if isinstance(event, RunStarted):
                views[event.root.id] = event.root
            elif isinstance(event, NodeStarted | NodeFinished):
                views[event.node.id] = event.node
        for view in views.values():
            parent = self._by_id.get(view.parent_id) if view.parent_id else self._root
            if parent is not None:
                parent.children.append(self._new_item(view, parent))
        self.endResetModel()

    def node(self, index: QModelIndex | QPersistentModelIndex) -> NodeView | None:
        item = self._item(index)
        return None if item is self._root else item.view

    def node_by_id(self, node_id: str) -> NodeView | None:
        item = self._by_id.get(node_id)
        return item.view if item else None

    def index_of(self, node_id: str, column: int = STEP) -> QModelIndex:
        item = self._by_id.get(node_id)
        if item is None:
            return QModelIndex()
        return self.createIndex(item.row, column, id=item.key)

    # ---- growing -------------------------------------------------------------------------------------

    def _upsert(self, view: NodeView) -> None:
        item = self._by_id.get(view.id)
        if item is not None:
            item.set_view(view)
            self._track_running(view)
            self._dirty.add(item.key)
            if not self._dirty_timer.isActive():
                self._dirty_timer.start()
            return
        if view.id in self._orphan_parent:  # still waiting for its parent: keep the newest view
            self._orphans[self._orphan_parent[view.id]][view.id] = view
            return
        if view.parent_id is None:
            parent = self._root
        else:
            parent = self._by_id.get(view.parent_id)
            if parent is None:
                self._orphans.setdefault(view.parent_id, {})[view.id] = view
                self._orphan_parent[view.id] = view.parent_id
                return
        self._insert(view, parent)

    def _insert(self, view: NodeView, parent: _Item) -> None:
        # parents first, then whoever was waiting for them (and for those, and so on)
        todo = [(view, parent)]
        while todo:
            view, parent = todo.pop(0)
            row = len(parent.children)
            parent_index = (
                QModelIndex() if parent is self._root else self.createIndex(parent.row, 0, id=parent.key)
            )
            self.beginInsertRows(parent_index, row, row)
            item = self._new_item(view, parent)
            parent.children.append(item)
            self.endInsertRows()
            self._track_running(view)
            waiting = self._orphans.pop(view.id, None)
            if waiting:
                for child in waiting.values():
                    del self._orphan_parent[child.id]
                    todo.append((child, item))

    def _track_running(self, view: NodeView) -> None:
        if view.status == "running" and self._live:
            self._running.add(view.id)
            if not self._ticker.isActive():
                self._ticker.start()
        else:
            self._running.discard(view.id)

    def _tick(self) -> None:
        """Running steps show their time so far: refresh just that column, once a second."""
        if not self._running:
            self._ticker.stop()
            return
        items = [self._by_id[node_id] for node_id in self._running if node_id in self._by_id]
        self._emit_ranges(items, TIME, TIME, [Qt.ItemDataRole.DisplayRole])

    def flush_changes(self) -> None:
        """Tell the view about every step changed since the last time, one range per parent."""
        self._dirty_timer.stop()
        keys, self._dirty = self._dirty, set()
        items = [self._by_key[k] for k in keys if k in self._by_key]
        self._emit_ranges(items, 0, TIME)

    def _emit_ranges(self, items: list[_Item], first: int, last: int, roles: list[int] | None = None) -> None:
        by_parent: dict[int, list[int]] = {}
        for item in items:
            if item.parent is not None:
                by_parent.setdefault(item.parent.key, []).append(item.row)
        for parent_key, rows in by_parent.items():
            parent = self._by_key[parent_key]
            top, bottom = min(rows), max(rows)
            top_item, bottom_item = parent.children[top], parent.children[bottom]
            self.dataChanged.emit(
                self.createIndex(top, first, id=top_item.key),
                self.createIndex(bottom, last, id=bottom_item.key),
                roles or [],
            )

    # ---- Qt model ------------------------------------------------------------------------------------

    def _item(self, index: QModelIndex | QPersistentModelIndex) -> _Item:
        if not index.isValid():
            return self._root
        return self._by_key.get(index.internalId(), self._root)

    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = _TOP):
        if column < 0 or column >= len(HEADERS) or (parent.isValid() and parent.column() != 0):
            return QModelIndex()
        parent_item = self._item(parent)
        if 0 <= row < len(parent_item.children):
            return self.createIndex(row, column, id=parent_item.children[row].key)
        return QModelIndex()

    def parent(self, index: QModelIndex | QPersistentModelIndex | None = None):  # type: ignore[override]
        if index is None:  # QObject.parent()
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        item = self._by_key.get(index.internalId())
        if item is None or item.parent is None or item.parent is self._root:
            return QModelIndex()
        return self.createIndex(item.parent.row, 0, id=item.parent.key)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._item(parent).children)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:
        return len(HEADERS)

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> bool:
        return self.rowCount(parent) > 0

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return _ROW_FLAGS

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section >= TOKENS:
            return _RIGHT
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item = self._by_key.get(index.internalId())
        if item is None or item.view is None:
            return None
        view, column = item.view, index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(item, column)
        if role == Qt.ItemDataRole.DecorationRole and column == STATUS:
            return theme.status_icon(view.status)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(view, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= TOKENS:
            return _RIGHT
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == STATUS and view.status in ("error", "failed"):
                return theme.UNVERIFIED
            if column in (MODEL, TIME) or (column == STATUS and view.status in ("stopped", "cancelled")):
                return theme.MUTED
        if role == NODE_ROLE:
            return view
        if role == NODE_ID_ROLE:
            return view.id
        return None

    def _display(self, item: _Item, column: int) -> str:
        view = item.view
        assert view is not None
        if column == STEP:
            return item.label
        if column == STATUS:
            return STATUS_TEXT.get(view.status, view.status.replace("_", " "))
        if column == MODEL:
            return view.model or ""
        if column == TOKENS:
            return tokens_text(view)
        if column == COST:
            return cost_text(view)
        if column == TIME:
            if item.started_ts is None:
                return ""
            if item.ended_ts is not None:
                return duration_text(item.ended_ts - item.started_ts)
            if self._live and view.status == "running":
                return duration_text(time.time() - item.started_ts)
            return ""
        return ""

    def _tooltip(self, view: NodeView, column: int) -> str | None:
        if column == STEP:
            text = view.text.strip()
            if len(text) > 600:
                text = text[:600] + "…"
            kinds = {
                "root": "The question",
                "iteration": "A reply of the root model",
                "code": "Code the root model ran in its REPL",
                "llm_query": "A sub-call: this prompt went to the sub-model",
                "rlm_query": "A sub-investigation with its own REPL",
                "compaction": "The root conversation was summarised and restarted to fit the context window",
            }
            head = kinds.get(view.kind, view.kind)
            return f"{head}\n\n{text}" if text else head
        if column == STATUS and view.detail.get("error"):
            return error_text(view.detail["error"])[:600]
        if column == STATUS and (view.detail.get("problem") or view.detail.get("flag")):
            return str(view.detail.get("problem") or view.detail.get("flag"))[:600]
        if column == COST and view.detail.get("usage_estimated"):
            return "Estimated: the server reported no usage for this call; its worst case is held against the cap"
        return None
