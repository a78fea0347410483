"""The live recursion tree of a run above a detail pane for the selected step (code, output, excerpt, reply)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import (
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.events import NodeView, RunFinished, RunStarted
from rlm_desktop.gui import theme
from rlm_desktop.gui.layout_state import share
from rlm_desktop.gui.node_detail import NodeDetail
from rlm_desktop.gui.run_tree_model import (
    COST,
    MODEL,
    STATUS,
    TIME,
    TOKENS,
    RunTreeModel,
)
from rlm_desktop.store.pages import page_for_offset

AUTO_EXPAND_KINDS = {"root", "iteration", "code", "rlm_query"}


class RunPanel(QWidget):
    """The run's recursion tree (grows live, keeps what the user expanded) and the selected step's detail."""

    COLUMN_WIDTHS = {STATUS: 105, MODEL: 110, TOKENS: 140, COST: 85, TIME: 60}  # room for "~<$0.0001"

    span_activated = Signal(int, int, int)  # doc_id, start, end: show this passage in its document

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = RunTreeModel(self)
        self._case: Any = None
        self._titles: dict[int, str] = {}
        self._pages: dict[int, list[Any]] = {}
        self._record: dict[str, Any] | None = None
        self._collapsed_by_user: set[str] = set()
        self._programmatic = 0  # >0 while the panel itself moves the selection or expands rows
        self._pending_follow: QPersistentModelIndex | None = None

        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)  # thousands of rows stay fast
        self.tree.setAlternatingRowColors(True)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in self.COLUMN_WIDTHS.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.tree.setColumnWidth(column, width)
        header.setMinimumSectionSize(50)

        self.title = QLabel("<b>Recursion tree</b>")
        self.count_label = QLabel()
        self.count_label.setStyleSheet(f"color: {theme.MUTED.name()}")
        self.follow = QCheckBox("Follow the newest step")
        self.follow.setChecked(True)
        self.follow.setToolTip(
            "Keep the newest step selected while the run works; clicking in the tree or scrolling it turns this off"
        )
        self.follow.toggled.connect(self._on_follow_toggled)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.title)
        bar.addWidget(self.count_label)
        bar.addStretch(1)
        bar.addWidget(self.follow)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.setSpacing(4)
        top_layout.addLayout(bar)
        top_layout.addWidget(self.tree, 1)

        self.detail = NodeDetail()
        self.detail.primary.view.span_activated.connect(self.span_activated)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        # the pane above the tree (the ask panel puts the answer there) and the detail below may be given
        # their own shares; the tree's pane is the one that grows with the window
        self.initial_shares: tuple[float, ...] = (0.45, 0.55)
        self.tree_pane = top
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.splitter)
        self._sized = False

        # detail refreshes for a changing node are coalesced: a busy run must not redraw a long prompt 50×/s
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(120)
        self._refresh_timer.timeout.connect(self._refresh_detail)

        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(0)
        self._count_timer.timeout.connect(self._update_count)

        self._follow_timer = QTimer(self)
        self._follow_timer.setSingleShot(True)
        self._follow_timer.setInterval(60)
        self._follow_timer.timeout.connect(self._follow_newest)

        # the user scrolling the tree (wheel, scroll bar, keys) stops following as a click does; the panel's own
        # scrollTo moves the bar without a user action, so it never counts
        self.tree.verticalScrollBar().actionTriggered.connect(self._user_moved)
        self.tree.viewport().installEventFilter(self)
        self.model.rowsInserted.connect(self._on_rows_inserted)
        self.model.dataChanged.connect(self._on_data_changed)
        self.model.modelReset.connect(self._on_model_reset)
        self.tree.selectionModel().currentChanged.connect(self._on_current_changed)
        self.tree.collapsed.connect(self._on_collapsed)
        self.tree.expanded.connect(self._on_expanded)
        self._update_count()
        self._refresh_detail()

    # columns given up, in this order, when the pane is too narrow to leave the step's label readable
    NARROW_HIDES = (MODEL, TIME, TOKENS)
    MIN_STEP_WIDTH = 230

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        available = self.tree.viewport().width()
        # a hidden column reports width 0, so the user's width (or the default) is remembered here
        widths = {c: self.tree.columnWidth(c) or self.COLUMN_WIDTHS[c] for c in self.COLUMN_WIDTHS}
        shown = set(widths)
        for column in self.NARROW_HIDES:
            if available - sum(widths[c] for c in shown) >= self.MIN_STEP_WIDTH:
                break
            shown.discard(column)
        for column in widths:
            self.tree.setColumnHidden(column, column not in shown)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._fit_columns()
        if not self._sized:  # the panes share the height by `initial_shares` at first
            self._sized = True
            self.splitter.setSizes(share(max(2, self.splitter.height()), self.initial_shares))

    # ---- public API ----------------------------------------------------------------------------------

    def set_case(self, case: Any) -> None:
        """The open Case, used to name documents in the excerpt tooltips (None when no case is open)."""
        self._case = case
        self._titles.clear()
        self._pages.clear()
        if self.detail.node_id:
            self._refresh_detail()

    def clear(self) -> None:
        self._record = None
        self._collapsed_by_user.clear()
        self.model.clear()
        self.follow.setChecked(True)
        self._refresh_detail()

    def apply(self, event: object) -> None:
        if isinstance(event, RunStarted) and event.run_id != self.model.run_id:
            self._record = None
            self._collapsed_by_user.clear()
            self.follow.setChecked(True)
        self.model.apply(event)
        if isinstance(event, RunFinished) and event.run_id == self.model.run_id:
            self._record = event.record
            if self.detail.node_id:
                self._refresh_detail()
            self._update_count()

    def load_record(self, record: dict[str, Any]) -> None:
        """Show a saved run: the whole tree, opened, with the question and answer selected."""
        self._record = record
        self._collapsed_by_user.clear()
        self.model.load_record(record)
        self._programmatic += 1
        try:
            if len(self.model) <= self.model.LAZY_ABOVE:  # bigger ones open two levels, the rest made on expand
                self.tree.expandAll()
            else:
                self.tree.expandToDepth(1)
        finally:
            self._programmatic -= 1
        root = record.get("tree") or {}
        if root.get("id"):
            self._select(self.model.index_of(root["id"]))
        self.follow.setChecked(False)

    def select_node(self, node_id: str) -> bool:
        """Select a step as the user would (the tree stops following the newest step)."""
        index = self.model.index_of(node_id)
        if not index.isValid():
            return False
        self.follow.setChecked(False)
        self._select(index)
        return True

    def selected_node(self) -> NodeView | None:
        return self.model.node(self.tree.currentIndex())

    # ---- tree behaviour ------------------------------------------------------------------------------

    def _select(self, index: QModelIndex) -> None:
        self._programmatic += 1
        try:
            parent = index.parent()
            while parent.isValid():  # make the step visible without touching what the user collapsed
                node = self.model.node(parent)
                if node is not None and node.id not in self._collapsed_by_user:
                    self.tree.expand(parent)
                parent = parent.parent()
            self.tree.setCurrentIndex(index)
            self.tree.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)
        finally:
            self._programmatic -= 1
        self._refresh_detail()

    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if not self._count_timer.isActive():  # a burst of inserts relabels the count once
            self._count_timer.start()
        if parent.isValid() and not self.tree.isExpanded(parent):  # open already: nothing to look up
            node = self.model.node(parent)
            if node is not None and node.kind in AUTO_EXPAND_KINDS and node.id not in self._collapsed_by_user:
                self._programmatic += 1
                try:
                    self.tree.expand(parent)
                finally:
                    self._programmatic -= 1
        if self.follow.isChecked():
            self._pending_follow = QPersistentModelIndex(self.model.index(last, 0, parent))
            # a burst of inserts moves the selection once, to the newest
            if not self._follow_timer.isActive():
                self._follow_timer.start()

    def _follow_newest(self) -> None:
        pending, self._pending_follow = self._pending_follow, None
        if pending is None or not pending.isValid() or not self.follow.isChecked():
            return
        index = self.model.index(pending.row(), 0, pending.parent())
        self._programmatic += 1
        try:
            self.tree.setCurrentIndex(index)
            self.tree.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)
        finally:
            self._programmatic -= 1

    def _on_collapsed(self, index: QModelIndex) -> None:
        node = self.model.node(index)
        if node is not None and not self._programmatic:
            self._collapsed_by_user.add(node.id)

    def _on_expanded(self, index: QModelIndex) -> None:
        self.model.show_children(index)  # a big saved run's deeper rows are made when first shown
        node = self.model.node(index)
        if node is not None:
            self._collapsed_by_user.discard(node.id)

    def _user_moved(self, *_: Any) -> None:
        if not self._programmatic:
            self.follow.setChecked(False)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        # a click anywhere in the tree, also on the selected step or empty space, is the user taking over
        # (a wheel turn counts even where the view cannot move further: the user wants to look around)
        if watched is self.tree.viewport() and event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.Wheel):
            self._user_moved()
        return super().eventFilter(watched, event)

    def _on_follow_toggled(self, checked: bool) -> None:
        if checked and self.model.live:
            # jump to the newest step of the running run
            newest = None
            for view in self.model.views():
                if newest is None or view.started >= newest.started:
                    newest = view
            if newest is not None:
                self._pending_follow = QPersistentModelIndex(self.model.index_of(newest.id))
                self._follow_newest()

    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if not self._programmatic and current.isValid():
            self.follow.setChecked(False)  # the user picked a step: stop moving the selection under them
            self._refresh_detail()
        else:
            self._refresh_soon()

    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, roles=()) -> None:
        node_id = self.detail.node_id
        if node_id is None:
            return
        current = self.tree.currentIndex()
        if (
            not current.isValid()
            or current.parent() != top_left.parent()
            or not top_left.row() <= current.row() <= bottom_right.row()
        ):
            return
        if top_left.column() == TIME and bottom_right.column() == TIME:
            node = self.model.node(current)
            if node is not None:
                self.detail.set_header(node, self.model.data(self.model.index_of(node.id, TIME)) or "")
            return
        self._refresh_soon()

    def _refresh_soon(self) -> None:
        # at most one redraw per interval, and at least one: restarting the timer on every change (a debounce)
        # kept the pane on the run's first step for as long as the newest step kept moving
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _on_model_reset(self) -> None:
        self._update_count()
        self._refresh_detail()

    def _update_count(self) -> None:
        self._count_timer.stop()
        count = len(self.model)
        text = f"{count:,} step{'s' if count != 1 else ''}" if count else ""
        if text != self.count_label.text():
            self.count_label.setText(text)

    # ---- detail pane ---------------------------------------------------------------------------------

    def _title(self, doc_id: int) -> str:
        if doc_id not in self._titles:
            title = f"document {doc_id}"
            if self._case is not None:
                try:
                    title = self._case.document(doc_id).title or title
                except Exception:  # a missing or closed case must not break a tooltip
                    pass
            self._titles[doc_id] = title
        return self._titles[doc_id]

    def _page(self, doc_id: int, offset: int) -> int | None:
        if self._case is None:
            return None
        if doc_id not in self._pages:
            try:
                self._pages[doc_id] = self._case.pages(doc_id)
            except Exception:
                self._pages[doc_id] = []
        pages = self._pages[doc_id]
        return page_for_offset(pages, offset) if pages else None

    def describe_span(self, doc_id: int, start: int, end: int) -> str:
        """Tooltip text for a highlighted passage: which document, where, and what a click does."""
        where = f"characters {start:,}–{end:,}"
        page = self._page(doc_id, start)
        if page is not None:
            where = f"page {page}, {where}"
        return f"{self._title(doc_id)}\n{where}\nClick to show this passage in the document"

    def _refresh_detail(self) -> None:
        self._refresh_timer.stop()
        node = self.model.node(self.tree.currentIndex())
        if node is None:
            if self.model.rowCount():
                self.detail.show_empty()
            else:
                self.detail.show_empty(
                    "The steps of a run appear here as it works: ask a question to start one."
                )
            return
        same = node.id == self.detail.node_id
        views = (self.detail.primary.view, self.detail.secondary.view)
        scroll = (
            [(v.verticalScrollBar().value(), v.horizontalScrollBar().value()) for v in views]
            if same
            else None
        )
        self._render(node)
        if scroll:  # a refresh of the same step keeps the user's place in a long prompt
            for view, (vertical, horizontal) in zip(views, scroll, strict=True):
                view.verticalScrollBar().setValue(vertical)
                view.horizontalScrollBar().setValue(horizontal)

    # DetailContext for the renderers
    @property
    def record(self) -> dict[str, Any] | None:
        return self._record

    def document_title(self, doc_id: int) -> str:
        return self._title(doc_id)

    def _render(self, node: NodeView) -> None:
        elapsed = self.model.data(self.model.index_of(node.id, TIME)) or ""
        self.detail.render(node, elapsed, self)
