"""The live recursion tree of a run above a detail pane for the selected step (code, output, excerpt, reply)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QResizeEvent,
    QShowEvent,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.events import NodeView, RunFinished, RunStarted
from rlm_desktop.engine.replies import segments
from rlm_desktop.gui import theme
from rlm_desktop.gui.link_browser import TooltipBrowser
from rlm_desktop.gui.run_tree_model import (
    COST,
    MODEL,
    STATUS,
    STATUS_TEXT,
    TIME,
    TOKENS,
    RunTreeModel,
    cost_text,
    tokens_text,
)
from rlm_desktop.ingest.pdf_geometry import page_for_offset

MAX_RENDER_CHARS = 200_000  # beyond this a text view would stall the window; the rest is noted, not drawn
AUTO_EXPAND_KINDS = {"root", "iteration", "code", "rlm_query"}
EXPAND_ALL_BELOW = 2_000  # saved runs up to this many nodes open fully; bigger ones open two levels
KIND_TITLES = {
    "root": "Whole run",
    "iteration": "Root-model iteration",
    "code": "Code block",
    "llm_query": "Sub-call",
    "rlm_query": "Sub-investigation (sub-RLM)",
    "compaction": "Compaction",
}
STATUS_BANNERS = {
    "cancelled": "Stopped by you — the answer is partial",
    "cap_reached": "The spending cap was reached — the answer is partial",
    "limit_reached": "A limit was reached — the answer is partial",
}
# a PDF page break (form feed) and stray control characters would vanish in a text view: show a line break
VISIBLE = {0x0C: "\n", 0x0B: "\n", 0x00: "\ufffd"}
CODE_BACKGROUND = QColor(246, 246, 246)
ERROR_COLOUR = QColor(190, 30, 30)


def _human_status(status: str) -> str:
    return STATUS_TEXT.get(status, status.replace("_", " "))


def _code_block_format() -> QTextBlockFormat:
    fmt = QTextBlockFormat()
    fmt.setBackground(CODE_BACKGROUND)
    return fmt


class ExcerptView(TooltipBrowser):
    """Read-only text built piece by piece; highlighted source spans are links that emit span_activated.

    Every piece is capped so a 400k-character prompt never stalls the window."""

    span_activated = Signal(int, int, int)  # doc_id, start, end in the document's text

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setUndoRedoEnabled(False)
        self.anchorClicked.connect(self._on_anchor)
        self.document().setDocumentMargin(6)
        self._spans: list[tuple[int, int, int]] = []
        self._tooltips: list[str] = []
        # (position in this view's document, end position, index into _spans) of each drawn highlight
        self.highlights: list[tuple[int, int, int]] = []

    def clear(self) -> None:
        super().clear()
        self._spans, self._tooltips, self.highlights = [], [], []

    # ---- building ------------------------------------------------------------------------------------

    def _cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _format(
        self, *, mono: bool = False, colour: QColor | None = None, italic: bool = False
    ) -> QTextCharFormat:
        fmt = QTextCharFormat()
        if mono:
            fmt.setFont(theme.monospace())
        if colour is not None:
            fmt.setForeground(colour)
        if italic:
            fmt.setFontItalic(True)
        return fmt

    def _insert(self, cursor: QTextCursor, text: str, fmt: QTextCharFormat, *, code: bool = False) -> None:
        """Insert text; code sits in grey paragraphs (a block background, even at the right edge)."""
        want = _code_block_format() if code else QTextBlockFormat()
        if cursor.blockFormat().background() != want.background():
            if cursor.block().length() > 1:  # the current paragraph has text: start a new one
                cursor.insertBlock(want, fmt)
            else:
                cursor.setBlockFormat(want)
        cursor.insertText(text, fmt)

    def _gap(self, cursor: QTextCursor) -> None:
        if not self.document().isEmpty():
            self._insert(cursor, "\n\n", QTextCharFormat())

    def add_heading(self, text: str) -> None:
        cursor = self._cursor()
        self._gap(cursor)
        fmt = QTextCharFormat()
        fmt.setFontWeight(QFont.Weight.Bold)
        fmt.setForeground(theme.MUTED)
        self._insert(cursor, text, fmt)
        self._insert(cursor, "\n", QTextCharFormat())

    def add_text(
        self, text: str, *, mono: bool = False, colour: QColor | None = None, italic: bool = False, gap=False
    ) -> None:
        cursor = self._cursor()
        if gap:
            self._gap(cursor)
        shown, note = _capped(text)
        self._insert(cursor, shown, self._format(mono=mono, colour=colour, italic=italic), code=mono)
        if note:
            self._insert(cursor, "\n" + note, self._format(colour=theme.MUTED, italic=True))

    def add_reply(self, text: str) -> None:
        """A root-model reply: prose as prose, its ```repl blocks in monospace."""
        shown, note = _capped(text)
        cursor = self._cursor()
        for piece, is_code in segments(shown):
            if is_code:
                self._insert(cursor, piece, self._format(mono=True), code=True)
            else:
                self._insert(cursor, piece, self._format())
        if note:
            self._insert(cursor, "\n" + note, self._format(colour=theme.MUTED, italic=True))

    def add_excerpt(
        self,
        text: str,
        prompt_spans: Sequence[dict[str, Any]],
        describe: Callable[[int, int, int], str] | None = None,
    ) -> None:
        """`text` with each prompt_spans range [prompt_start, prompt_end) highlighted as a clickable link."""
        shown, note = _capped(text)
        cursor = self._cursor()
        plain = self._format()
        position = 0
        ordered = sorted(
            (s for s in prompt_spans if int(s.get("prompt_end", 0)) > int(s.get("prompt_start", 0))),
            key=lambda s: int(s["prompt_start"]),
        )
        for span in ordered:
            start = max(int(span["prompt_start"]), position)  # overlapping spans: draw each character once
            end = min(int(span["prompt_end"]), len(shown))
            if start >= end:
                continue
            if start > position:
                self._insert(cursor, shown[position:start], plain)
            number = len(self._spans)
            doc_id, doc_start, doc_end = int(span["doc_id"]), int(span["start"]), int(span["end"])
            self._spans.append((doc_id, doc_start, doc_end))
            tip = (
                describe(doc_id, doc_start, doc_end)
                if describe
                else f"document {doc_id}, {doc_start}–{doc_end}"
            )
            self._tooltips.append(tip)
            fmt = QTextCharFormat()
            fmt.setBackground(theme.HIGHLIGHT_TEXT)
            fmt.setForeground(QColor(20, 20, 20))
            fmt.setAnchor(True)
            fmt.setAnchorHref(f"span:{number}")
            fmt.setToolTip(tip)
            fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.DotLine)
            fmt.setUnderlineColor(QColor(160, 120, 0))
            begin = cursor.position()
            self._insert(cursor, shown[start:end], fmt)
            self.highlights.append((begin, cursor.position(), number))
            position = end
        if position < len(shown):
            self._insert(cursor, shown[position:], plain)
        if note:
            self._insert(cursor, "\n" + note, self._format(colour=theme.MUTED, italic=True))

    # ---- interaction ---------------------------------------------------------------------------------

    @property
    def spans(self) -> list[tuple[int, int, int]]:
        return list(self._spans)

    def activate_span(self, number: int) -> None:
        doc_id, start, end = self._spans[number]
        self.span_activated.emit(doc_id, start, end)

    def _span_number(self, href: str) -> int | None:
        if href.startswith("span:"):
            try:
                number = int(href[5:])
            except ValueError:
                return None
            return number if 0 <= number < len(self._spans) else None
        return None

    def _on_anchor(self, url: QUrl) -> None:
        number = self._span_number(url.toString())
        if number is not None:
            self.activate_span(number)

    def tooltip_at(self, pos: QPoint) -> str | None:
        """The tooltip of the highlight under a viewport position, if any."""
        number = self._span_number(self.anchorAt(pos))
        return self._tooltips[number] if number is not None else None


def _capped(text: str) -> tuple[str, str | None]:
    """The part of `text` worth drawing, with control characters made visible one for one (offsets stay)."""
    text = text.translate(VISIBLE)
    if len(text) <= MAX_RENDER_CHARS:
        return text, None
    return text[:MAX_RENDER_CHARS], (
        f"[showing the first {MAX_RENDER_CHARS:,} of {len(text):,} characters; the rest is in the saved run]"
    )


class _Section(QWidget):
    """A caption over an ExcerptView."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(2)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.view = ExcerptView()
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)

    def show_content(self, caption: str) -> None:
        self.caption.setText(caption)
        self.caption.setVisible(bool(caption))
        self.view.clear()
        self.setVisible(True)


class NodeDetail(QWidget):
    """What one step did: a header line, then a primary pane (code, prompt, reply, question) and a
    secondary pane (output, response, answer)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.primary = _Section()
        self.secondary = _Section()
        self.splitter.addWidget(self.primary)
        self.splitter.addWidget(self.secondary)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)  # code and prompts are longer than outputs and responses
        self.splitter.setStretchFactor(1, 2)
        # A reasoning model's thinking: kept for the record, never run, folded away unless asked for.
        self.thinking_button = QToolButton()
        self.thinking_button.setCheckable(True)
        self.thinking_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.thinking_button.setArrowType(Qt.ArrowType.RightArrow)
        self.thinking_button.setAutoRaise(True)
        self.thinking_button.setToolTip(
            "What the model reasoned before replying (from <think> tags or a reasoning field). It is shown "
            "for the record only: code in it is never run."
        )
        self.thinking_button.toggled.connect(self._thinking_toggled)
        self.thinking = ExcerptView()
        self.thinking.setVisible(False)
        self.splitter.insertWidget(0, self.thinking)
        layout.addWidget(self.header)
        layout.addWidget(self.thinking_button)
        layout.addWidget(self.splitter, 1)
        self.node_id: str | None = None
        self.show_empty()

    def _thinking_toggled(self, shown: bool) -> None:
        self.thinking_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.thinking.setVisible(shown and self.thinking_button.isVisible())

    def set_thinking(self, text: str) -> None:
        """Offer the step's thinking behind the fold (it stays open or closed as the user left it)."""
        self.thinking.clear()
        if not text:
            self.thinking_button.setVisible(False)
            self.thinking.setVisible(False)
            return
        self.thinking_button.setText(f"Thinking — {len(text):,} characters, never run")
        self.thinking_button.setVisible(True)
        self.thinking.add_text(text, colour=theme.MUTED)
        self.thinking.setVisible(self.thinking_button.isChecked())

    @property
    def excerpt(self) -> ExcerptView:
        return self.primary.view

    def show_empty(self, message: str = "Select a step in the tree above to see what it did.") -> None:
        self.node_id = None
        self.set_thinking("")
        self.header.setText(f"<span style='color:{theme.MUTED.name()}'>{html.escape(message)}</span>")
        self.primary.view.clear()
        self.secondary.view.clear()
        self.primary.setVisible(False)
        self.secondary.setVisible(False)

    def set_header(self, view: NodeView, elapsed: str) -> None:
        parts = [f"<b>{html.escape(KIND_TITLES.get(view.kind, view.kind))}</b>"]
        if view.kind == "iteration":
            parts[0] = f"<b>Iteration {html.escape(str(view.detail.get('number', '?')))}</b>"
        colour = theme.STATUS_COLOURS.get(view.status, theme.MUTED).name()
        parts.append(f"<span style='color:{colour}'>{html.escape(_human_status(view.status))}</span>")
        if view.model:
            parts.append(html.escape(view.model))
        if tokens_text(view):
            parts.append(tokens_text(view) + " tokens")
        if cost_text(view):
            parts.append(html.escape(cost_text(view)))
        if elapsed:
            parts.append(html.escape(elapsed))
        retries = view.detail.get("retries") or []
        if retries:
            last = retries[-1]
            parts.append(
                f"<span style='color:{theme.UNVERIFIED.name()}'>retried {len(retries)}×"
                f" ({html.escape(str(last.get('reason', '')))})</span>"
            )
        self.header.setText(" &nbsp;·&nbsp; ".join(parts))


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
            "Keep the newest step selected while the run works; selecting a step yourself turns this off"
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.splitter)
        self._sized = False

        # detail refreshes for a changing node are coalesced: a busy run must not redraw a long prompt 50×/s
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(120)
        self._refresh_timer.timeout.connect(self._refresh_detail)

        self._follow_timer = QTimer(self)
        self._follow_timer.setSingleShot(True)
        self._follow_timer.setInterval(60)
        self._follow_timer.timeout.connect(self._follow_newest)

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
        if not self._sized:  # the tree and the step's detail share the height evenly at first
            self._sized = True
            total = max(2, self.splitter.height())
            self.splitter.setSizes([total * 9 // 20, total - total * 9 // 20])

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
            if len(self.model) <= EXPAND_ALL_BELOW:
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
        self._update_count()
        if parent.isValid():
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
        node = self.model.node(index)
        if node is not None:
            self._collapsed_by_user.discard(node.id)

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
            self._refresh_timer.start()

    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex, roles=()) -> None:
        node_id = self.detail.node_id
        if node_id is None:
            return
        current = self.tree.currentIndex()
        if not current.isValid() or top_left.internalId() != current.internalId():
            return
        if top_left.column() == TIME and bottom_right.column() == TIME:
            node = self.model.node(current)
            if node is not None:
                self.detail.set_header(node, self.model.data(self.model.index_of(node.id, TIME)) or "")
            return
        self._refresh_timer.start()

    def _on_model_reset(self) -> None:
        self._update_count()
        self._refresh_detail()

    def _update_count(self) -> None:
        count = len(self.model)
        self.count_label.setText(f"{count:,} step{'s' if count != 1 else ''}" if count else "")

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

    def _render(self, node: NodeView) -> None:
        detail = self.detail
        detail.node_id = node.id
        detail.set_header(node, self.model.data(self.model.index_of(node.id, TIME)) or "")
        primary, secondary = detail.primary, detail.secondary
        info = node.detail
        muted = theme.MUTED
        detail.set_thinking(str(info.get("thinking") or ""))
        if node.kind == "root":
            # one pane: a question is a line, and the answer is best read right under it
            primary.show_content("")  # the header says "Whole run"; the text has its own headings
            secondary.setVisible(False)
            view = primary.view
            view.add_heading("Question")
            view.add_text(node.text)
            record = self._record or {}
            status = record.get("status") or node.status
            view.add_heading("Answer")
            if record.get("answer"):
                banner = STATUS_BANNERS.get(status)
                if banner:
                    view.add_text(banner + "\n", colour=theme.STATUS_COLOURS.get(status, muted), italic=True)
                view.add_text(record["answer"])
            elif status == "running" or not record:
                view.add_text("The answer appears here when the run ends.", colour=muted, italic=True)
            else:
                view.add_text("(no answer)", colour=muted, italic=True)
            if record.get("error"):
                view.add_text(f"Why the run ended: {record['error']}", colour=ERROR_COLOUR, gap=True)
        elif node.kind == "iteration":
            caption = "<b>Reply from the root model</b> — its prose, and the code it asked the REPL to run"
            if info.get("final_request"):
                caption = (
                    "<b>Final reply</b> — no iterations were left, so the root model was asked to answer"
                )
            primary.show_content(caption)
            if node.text:
                primary.view.add_reply(node.text)
            else:
                primary.view.add_text("Waiting for the root model to reply…", colour=muted, italic=True)
            self._notes(node, secondary)
        elif node.kind == "code":
            primary.show_content(f"<b>Code</b> (block {info.get('block', 1)} of the reply)")
            primary.view.add_text(node.text, mono=True)
            secondary.show_content("<b>Output</b> — what the code printed")
            output, error = info.get("output"), info.get("error")
            if node.status == "running" and output is None:
                secondary.view.add_text("Running…", colour=muted, italic=True)
            elif output:
                secondary.view.add_text(output, mono=True)
            elif output is not None:
                secondary.view.add_text("(no output)", colour=muted, italic=True)
            if error:
                secondary.view.add_heading("Error")
                secondary.view.add_text(str(error), mono=True, colour=ERROR_COLOUR)
            for key, heading in (("final", "FINAL answer"), ("final_refused", "FINAL refused (first turn)")):
                if info.get(key):
                    secondary.view.add_heading(heading)
                    secondary.view.add_text(str(info[key]))
            citations = info.get("citations") or []
            if citations:
                secondary.view.add_heading("Citations registered")
                lines = [
                    f"{c.get('marker')}  {self._title(int(c.get('doc_id', -1)))}, characters "
                    f"{c.get('start')}–{c.get('end')}: “{c.get('quote', '')}”"
                    for c in citations
                ]
                secondary.view.add_text("\n".join(lines))
        elif node.kind == "llm_query":
            spans = info.get("prompt_spans") or []
            if spans:
                doc_ids = list(dict.fromkeys(int(s["doc_id"]) for s in spans))
                names = ", ".join(html.escape(self._title(d)) for d in doc_ids[:3])
                if len(doc_ids) > 3:
                    names += f" and {len(doc_ids) - 3} more"
                caption = (
                    "<b>Prompt sent to the sub-model</b> — "
                    f"<span style='background:{theme.HIGHLIGHT_TEXT.name()}'>&nbsp;highlighted&nbsp;</span> "
                    f"passages were copied from {names}; click one to show it in its document"
                )
            else:
                # the engine traces a prompt's sources while the sub-model answers; they arrive with the result
                note = (
                    "its passages are traced to their documents when the sub-call ends"
                    if node.status == "running"
                    else "no passage of it was traced to a document"
                )
                caption = (
                    f"<b>Prompt sent to the sub-model</b> — <span style='color:{muted.name()}'>{note}</span>"
                )
            primary.show_content(caption)
            primary.view.add_excerpt(node.text, spans, self.describe_span)
            secondary.show_content("<b>Response</b>")
            if info.get("response"):
                secondary.view.add_text(str(info["response"]))
            elif node.status == "running":
                secondary.view.add_text("Waiting for the sub-model…", colour=muted, italic=True)
            elif info.get("response") is not None:
                secondary.view.add_text("(empty)", colour=muted, italic=True)
            if info.get("flag"):
                secondary.view.add_text(
                    f"Flagged to the root model: {info['flag']}",
                    colour=theme.STATUS_COLOURS["cap_reached"],
                    gap=True,
                )
            if info.get("error"):
                secondary.view.add_text(str(info["error"]), colour=ERROR_COLOUR, gap=True)
        elif node.kind == "rlm_query":
            primary.show_content("<b>Question for the sub-investigation</b>")
            primary.view.add_text(node.text)
            doc_ids = info.get("doc_ids") or []
            if doc_ids:
                primary.view.add_heading(f"Documents it may read ({len(doc_ids):,})")
                names = ", ".join(self._title(int(d)) for d in doc_ids[:50])
                if len(doc_ids) > 50:
                    names += f", … and {len(doc_ids) - 50:,} more"
                primary.view.add_text(names)
            secondary.show_content("<b>Result</b> — what it reported back")
            if info.get("answer"):
                secondary.view.add_text(str(info["answer"]))
            elif node.status == "running":
                secondary.view.add_text("Investigating…", colour=muted, italic=True)
            outcome = info.get("outcome")
            if outcome and outcome != "completed":
                secondary.view.add_text(
                    f"Ended: {_human_status(outcome)}", colour=muted, italic=True, gap=True
                )
        elif node.kind == "compaction":
            primary.show_content(
                "<b>Compaction</b> — the root conversation grew too long for the model's context window, so it "
                "was restarted from this summary the model wrote; REPL variables and citations were kept"
            )
            if node.text:
                primary.view.add_text(node.text)
            else:
                primary.view.add_text("The root model is writing its summary…", colour=muted, italic=True)
            self._notes(node, secondary)
        else:
            primary.show_content(f"<b>{html.escape(node.kind)}</b>")
            primary.view.add_text(node.text)
            self._notes(node, secondary)

    def _notes(self, node: NodeView, section: _Section) -> None:
        notes = []
        if node.detail.get("problem"):
            notes.append(f"Unusable reply: {node.detail['problem']}")
        if node.detail.get("reason"):
            notes.append(f"Why: {node.detail['reason']}")
        if node.detail.get("tokens_before"):
            notes.append(
                f"Conversation: about {node.detail['tokens_before']:,} tokens before, "
                f"{node.detail.get('tokens_after', 0):,} after"
            )
        if node.detail.get("prose_final"):
            notes.append(f"Ran the FINAL line written outside a code block: {node.detail['prose_final']}")
        if node.detail.get("usage_estimated"):
            notes.append(
                "The server reported no token usage for this call: tokens and cost are estimates, and "
                f"{theme.money(float(node.detail.get('held_usd', 0.0)))} is held against the cap"
            )
        notes += list(node.detail.get("notes") or [])
        for retry in node.detail.get("retries") or []:
            notes.append(
                f"Retry {retry.get('attempt')}: {retry.get('reason')} (waited {retry.get('delay_s', 0):g} s)"
            )
        if node.detail.get("error"):
            notes.append(f"Error: {node.detail['error']}")
        if not notes:
            section.setVisible(False)
            section.view.clear()
            return
        section.show_content("<b>Notes</b>")
        section.view.add_text("\n".join(f"• {n}" for n in notes))
