"""The run's recursion tree for Qt: a plain-Python node store that grows from run events, and a thin model."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QStandardItem, QStandardItemModel

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
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
# made once: an enum `|` is slow Python, and the view asks for every row it lays out
_ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


_ALL = range(len(HEADERS))
_TIME_ONLY = range(TIME, TIME + 1)
_TIP = Qt.ItemDataRole.ToolTipRole
_FOREGROUND = Qt.ItemDataRole.ForegroundRole
_STATUS_FOREGROUND = {
    "error": theme.UNVERIFIED,
    "failed": theme.UNVERIFIED,
    "stopped": theme.MUTED,
    "cancelled": theme.MUTED,
}


def _cell(column: int, text: str) -> QStandardItem:
    # (QStandardItem.clone() of a prepared cell would be cheaper, but PySide6 deletes a clone once it is
    # appended to a model: its wrapper is left owning nothing)
    cell = QStandardItem(text)
    cell.setFlags(_ROW_FLAGS)
    if column >= TOKENS:
        cell.setTextAlignment(_RIGHT)
    if column in (MODEL, TIME):
        cell.setForeground(theme.MUTED)
    return cell


def _placeholder_row() -> list[QStandardItem]:
    """What stands under a row whose children are made when it is first expanded: it gives the row its arrow."""
    cells = [QStandardItem("…") if column == STEP else QStandardItem() for column in _ALL]
    for cell in cells:
        cell.setFlags(Qt.ItemFlag.ItemIsEnabled)
    return cells


_LINE_END = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines splits


def _first_line(text: str, limit: int = LABEL_CHARS) -> str:
    # the first non-blank line, found without splitting a long prompt into all its lines
    text = text.lstrip()
    end = _LINE_END.search(text)
    line = (text[: end.start()] if end else text).strip()
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
    """One row: the latest view of a node, its place among its siblings, parsed times and its six cells."""

    __slots__ = ("key", "view", "parent", "children", "row", "started_ts", "ended_ts", "label", "cells", "shown")

    def __init__(self, key: int, view: NodeView | None, parent: _Item | None, row: int):
        self.key = key
        self.parent = parent
        self.children: list[_Item] = []
        self.row = row
        self.view: NodeView | None = None
        self.cells: list[QStandardItem] = []
        self.shown: list[Any] = []  # what the cells hold now, per column: (text, icon status, tooltip)
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


class RunTreeModel(QStandardItemModel):
    """Rows grow with the run (rows appended, dataChanged); the model is reset only by clear/load/new run,
    so whatever the user expanded stays expanded while the run goes on.

    The cells are Qt's own items (a QStandardItemModel): the view lays out and paints the tree without calling
    into Python. With a Python model every paint and every relayout after an insert asked Python for each
    visible cell's roles and each row's index, parent and children, thousands of calls a frame that grew with
    the tree (a busy run's frame cost 14-30 ms in them, 4-6 ms with Qt's items). The nodes stay in a
    plain-Python store; a step's cells are rewritten only where their text changed."""

    TICK_MS = 1000
    LAZY_ABOVE = 2_000  # a saved run with more steps makes its rows below LAZY_LEVEL when they are first shown
    LAZY_LEVEL = 3  # levels made at once: the root, its iterations, their code and sub-RLMs

    def __init__(self, parent: QObject | None = None):
        super().__init__(0, len(HEADERS), parent)
        for column, (title, tip) in enumerate(zip(HEADERS, HEADER_TIPS, strict=True)):
            header = QStandardItem(title)
            header.setToolTip(tip)
            if column >= TOKENS:
                header.setTextAlignment(_RIGHT)
            self.setHorizontalHeaderItem(column, header)
        self._keys = 0
        self._root = _Item(0, None, None, 0)  # invisible: its children are the top-level rows
        self._by_id: dict[str, _Item] = {}
        self._orphans: dict[str, dict[str, NodeView]] = {}  # parent id -> views waiting for that parent
        self._orphan_parent: dict[str, str] = {}
        self._running: set[str] = set()
        self._live = False
        self.run_id: str | None = None
        self._ticker = QTimer(self)
        self._ticker.setInterval(self.TICK_MS)
        self._ticker.timeout.connect(self._tick)
        # Steps whose cells changed since the view was last told: their cells are rewritten with the model's
        # signals blocked, and a burst of hundreds of sub-calls is one dataChanged per parent and column range
        # when the event loop next turns, not one per cell.
        self._dirty: set[str] = set()
        self._dirty_timer = QTimer(self)
        self._dirty_timer.setSingleShot(True)
        self._dirty_timer.setInterval(0)
        self._dirty_timer.timeout.connect(self.flush_changes)

    # ---- plain-Python store --------------------------------------------------------------------------

    def _reset_store(self) -> None:
        """Drop every row; only between beginResetModel and endResetModel (the view hears one reset)."""
        self._keys = 0
        self._root = _Item(0, None, None, 0)
        self._by_id = {}
        self._orphans = {}
        self._orphan_parent = {}
        self._running = set()
        self._ticker.stop()
        self._dirty = set()
        blocked = self.blockSignals(True)
        try:
            self.setRowCount(0)
        finally:
            self.blockSignals(blocked)

    def _new_item(self, view: NodeView, parent: _Item, cells: bool = True) -> _Item:
        self._keys += 1
        item = _Item(self._keys, view, parent, len(parent.children))
        self._by_id[view.id] = item
        if cells:
            self._make_cells(item)
        return item

    def _make_cells(self, item: _Item) -> None:
        view = item.view
        assert view is not None
        item.shown = [None] * len(HEADERS)
        texts = [self._display(item, column) for column in _ALL]
        item.cells = cells = [_cell(column, text) for column, text in zip(_ALL, texts, strict=True)]
        cells[STEP].setData(view.id, NODE_ID_ROLE)
        self._fill(item, texts=texts)  # the rest: tooltips, the status icon and colour, the view

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

    # ---- the cells -----------------------------------------------------------------------------------

    def _fill(self, item: _Item, columns: range = _ALL, texts: list[str] | None = None) -> bool:
        """Write what changed of `item`'s cells (`texts`: their display texts, when just made); True if any did."""
        view = item.view
        assert view is not None
        shown, cells = item.shown, item.cells
        changed = False
        for column in columns:
            text = texts[column] if texts is not None else self._display(item, column)
            if column == STEP:
                value: tuple = (text, view.text)  # the tooltip is made from the text
            elif column == STATUS:
                value = (text, view.status, view.detail.get("error"), view.detail.get("problem"), view.detail.get("flag"))
            elif column == COST:
                value = (text, view.detail.get("usage_estimated"))
            else:
                value = (text,)
            old = shown[column]
            if value == old:
                continue
            shown[column] = value
            cell = cells[column]
            changed = True
            if old is not None and old[0] != text:  # a new cell was made with its text
                cell.setText(text)
            if old is not None and old[1:] == value[1:]:
                continue
            if column == STEP:
                cell.setData(_step_tooltip(view), _TIP)
            elif column == STATUS:
                if old is None or old[1] != view.status:
                    cell.setIcon(theme.status_icon(view.status))
                    colour = _STATUS_FOREGROUND.get(view.status)
                    if colour is not None or old is not None:
                        cell.setData(colour, _FOREGROUND)
                cell.setData(_status_tooltip(view), _TIP)
            elif column == COST:
                cell.setData(_cost_tooltip(view), _TIP)
        if columns.start == STEP:
            cells[STEP].setData(view, NODE_ROLE)
        return changed

    def _fill_quietly(self, item: _Item, columns: range = _ALL) -> bool:
        """Rewrite cells without a signal per cell: the caller tells the view once for many."""
        blocked = self.blockSignals(True)
        try:
            return self._fill(item, columns)
        finally:
            self.blockSignals(blocked)

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
        """Show a saved run (the CONTRACTS record) exactly as a live one would look at its end.

        A run of more than LAZY_ABOVE steps gets rows down to its third level (the root, its iterations, their
        code and sub-RLMs) at once; each row below is made when its parent is first expanded (`show_children`)
        or a step in it is asked for (`index_of`): 20,000 steps' Qt items took seconds to make."""
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
        lazy = len(views) > self.LAZY_ABOVE
        depth = {self._root.key: -1}
        made = [self._root]
        for view in views.values():
            parent = self._by_id.get(view.parent_id) if view.parent_id else self._root
            if parent is None:
                continue
            level = depth[parent.key] + 1
            item = self._new_item(view, parent, cells=not lazy or level < self.LAZY_LEVEL)
            depth[item.key] = level
            parent.children.append(item)
            if item.cells:
                made.append(item)
        # the rows are put together off the model, children before their parents, and hung in at the end
        blocked = self.blockSignals(True)
        try:
            for item in reversed(made):
                target = item.cells[STEP] if item is not self._root else self.invisibleRootItem()
                if item.children and not item.children[0].cells:
                    target.appendRow(_placeholder_row())
                    continue
                for child in item.children:
                    target.appendRow(child.cells)
        finally:
            self.blockSignals(blocked)
        self.endResetModel()

    def show_children(self, index: QModelIndex | QPersistentModelIndex) -> None:
        """Make the rows under `index` if they wait to be made (a big saved run's deeper levels): on expand."""
        item = self._by_id.get(index.siblingAtColumn(STEP).data(NODE_ID_ROLE)) if index.isValid() else None
        if item is not None:
            self._make_children(item)

    def _make_children(self, item: _Item) -> None:
        if not item.children or item.children[0].cells or not item.cells:
            return
        target = item.cells[STEP]
        for child in item.children:
            self._make_cells(child)
        target.removeRow(0)  # the placeholder that gave the row its arrow
        for child in item.children:
            target.appendRow(child.cells)
            if child.children:  # made in turn when it is expanded
                child.cells[STEP].appendRow(_placeholder_row())

    def node(self, index: QModelIndex | QPersistentModelIndex) -> NodeView | None:
        if not index.isValid() or index.model() is not self:
            return None
        item = self._by_id.get(index.siblingAtColumn(STEP).data(NODE_ID_ROLE))
        return item.view if item is not None else None

    def node_by_id(self, node_id: str) -> NodeView | None:
        item = self._by_id.get(node_id)
        return item.view if item else None

    def index_of(self, node_id: str, column: int = STEP) -> QModelIndex:
        item = self._by_id.get(node_id)
        if item is None or not 0 <= column < len(HEADERS):
            return QModelIndex()
        if not item.cells:  # in a big saved run's levels not made yet: make the way down to it
            waiting = []
            above = item.parent
            while above is not None and not above.cells and above is not self._root:
                waiting.append(above)
                above = above.parent
            for ancestor in [above, *reversed(waiting)]:
                if ancestor is not None and ancestor is not self._root:
                    self._make_children(ancestor)
        return item.cells[column].index()

    # ---- growing -------------------------------------------------------------------------------------

    def _upsert(self, view: NodeView) -> None:
        item = self._by_id.get(view.id)
        if item is not None:
            item.set_view(view)
            if not item.cells:  # in a big saved run's level not made yet: its row is made from this view
                return
            self._track_running(view)
            self._fill_quietly(item)
            # told even when no cell changed: the step's detail pane shows more than its row
            self._dirty.add(view.id)
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
            # under a row whose children are made when it is first expanded, a new step waits with them
            waits = parent is not self._root and (
                not parent.cells or bool(parent.children and not parent.children[0].cells)
            )
            item = self._new_item(view, parent, cells=not waits)
            parent.children.append(item)
            if not waits:
                (parent.cells[STEP] if parent is not self._root else self.invisibleRootItem()).appendRow(item.cells)
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
        changed = [item for item in items if self._fill_quietly(item, _TIME_ONLY)]
        self._emit_ranges(changed, TIME, TIME, [Qt.ItemDataRole.DisplayRole])

    def flush_changes(self) -> None:
        """Tell the view about every step changed since the last time, one range per parent."""
        self._dirty_timer.stop()
        ids, self._dirty = self._dirty, set()
        items = [self._by_id[i] for i in ids if i in self._by_id]
        self._emit_ranges(items, 0, TIME)

    def _emit_ranges(self, items: list[_Item], first: int, last: int, roles: list[int] | None = None) -> None:
        by_parent: dict[int, list[_Item]] = {}
        for item in items:
            if item.parent is not None:
                by_parent.setdefault(item.parent.key, []).append(item)
        for siblings in by_parent.values():
            top = min(siblings, key=lambda i: i.row)
            bottom = max(siblings, key=lambda i: i.row)
            self.dataChanged.emit(top.cells[first].index(), bottom.cells[last].index(), roles or [])

    # ---- what a cell shows ---------------------------------------------------------------------------

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


_KIND_TIPS = {
    "root": "The question",
    "iteration": "A reply of the root model",
    "code": "Code the root model ran in its REPL",
    "llm_query": "A sub-call: this prompt went to the sub-model",
    "rlm_query": "A sub-investigation with its own REPL",
    "compaction": "The root conversation was summarised and restarted to fit the context window",
}


def _step_tooltip(view: NodeView) -> str:
    text = view.text.strip()
    if len(text) > 600:
        text = text[:600] + "…"
    head = _KIND_TIPS.get(view.kind, view.kind)
    return f"{head}\n\n{text}" if text else head


def _status_tooltip(view: NodeView) -> str | None:
    if view.detail.get("error"):
        return error_text(view.detail["error"])[:600]
    if view.detail.get("problem") or view.detail.get("flag"):
        return str(view.detail.get("problem") or view.detail.get("flag"))[:600]
    return None


def _cost_tooltip(view: NodeView) -> str | None:
    if view.detail.get("usage_estimated"):
        return "Estimated: the server reported no usage for this call; its worst case is held against the cap"
    return None
