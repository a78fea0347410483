"""Past runs of the open case, grouped by thread: open, follow up, re-run, rename, delete or export one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QFont, QKeyEvent, QKeySequence, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QStackedLayout,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.runs import RunSummary, delete_run, list_runs, rename_run, threads
from rlm_desktop.gui import theme

QUESTION, STARTED, STATUS, COST = range(4)
HEADERS = ("Question", "Started", "Status", "Cost")
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_TEXT = {
    "completed": "completed",
    "running": "running…",
    "cancelled": "stopped",
    "cap_reached": "cap reached",
    "limit_reached": "limit reached",
    "failed": "failed",
}
_TOP = QModelIndex()
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def local_time_text(iso: str, now: datetime | None = None) -> str:
    """'Today 14:05', 'Yesterday 09:12', '3 Mar 2025 17:40' in the computer's time zone."""
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso or ""
    if moment.tzinfo is not None:
        moment = moment.astimezone()  # local time
    now = now or datetime.now(moment.tzinfo)
    clock = f"{moment.hour:02d}:{moment.minute:02d}"
    if moment.date() == now.date():
        return f"Today {clock}"
    if moment.date() == (now - timedelta(days=1)).date():
        return f"Yesterday {clock}"
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year} {clock}"


class RunHistoryModel(QAbstractItemModel):
    """The saved runs as threads: each thread's first run at the top level (the thread with the newest run
    first), its follow-ups under it, oldest first."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self._heads: list[RunSummary] = []
        self._follow_ups: list[list[RunSummary]] = []  # per head, in the heads' order

    def refresh(self, case: Any) -> None:
        """Reread the case's runs (None: no case open, no rows)."""
        groups = threads(list_runs(case)) if case is not None else []
        self.beginResetModel()
        self._heads = [head for head, _ in groups]
        self._follow_ups = [follow_ups for _, follow_ups in groups]
        self.endResetModel()

    def run_at(self, index: QModelIndex | QPersistentModelIndex) -> RunSummary | None:
        if not index.isValid():
            return None
        head = index.internalId()
        if head == 0:
            return self._heads[index.row()] if 0 <= index.row() < len(self._heads) else None
        follow_ups = self._follow_ups[head - 1] if 0 < head <= len(self._follow_ups) else []
        return follow_ups[index.row()] if 0 <= index.row() < len(follow_ups) else None

    def run(self, row: int) -> RunSummary | None:
        """The first run of the thread at top-level `row`."""
        return self._heads[row] if 0 <= row < len(self._heads) else None

    def runs(self) -> list[RunSummary]:
        """Every run in the order shown: each thread's first run, then its follow-ups."""
        return [r for head, more in zip(self._heads, self._follow_ups, strict=True) for r in (head, *more)]

    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs()]

    def run_count(self) -> int:
        return len(self._heads) + sum(len(f) for f in self._follow_ups)

    def index_of(self, run_id: str, column: int = 0) -> QModelIndex:
        for row, head in enumerate(self._heads):
            if head.run_id == run_id:
                return self.index(row, column)
            for child, run in enumerate(self._follow_ups[row]):
                if run.run_id == run_id:
                    return self.index(child, column, self.index(row, 0))
        return QModelIndex()

    def row_of(self, run_id: str) -> int:
        """The top-level row of the thread holding `run_id` (-1: none)."""
        index = self.index_of(run_id)
        while index.parent().isValid():
            index = index.parent()
        return index.row() if index.isValid() else -1

    def thread_size(self, run_id: str) -> int:
        """How many runs the thread holding `run_id` has."""
        row = self.row_of(run_id)
        return 1 + len(self._follow_ups[row]) if row >= 0 else 0

    # -- the item model ------------------------------------------------------------------------------------

    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = _TOP) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, 0)
        return self.createIndex(row, column, parent.row() + 1)  # a follow-up: its head's row, plus one

    def parent(self, index: QModelIndex | QPersistentModelIndex = _TOP) -> QModelIndex:  # type: ignore[override]
        if not index.isValid() or index.internalId() == 0:
            return QModelIndex()
        return self.createIndex(index.internalId() - 1, 0, 0)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:  # noqa: N802
        if not parent.isValid():
            return len(self._heads)
        if parent.internalId() == 0 and parent.column() == 0 and 0 <= parent.row() < len(self._follow_ups):
            return len(self._follow_ups[parent.row()])
        return 0

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:  # noqa: N802
        return len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole and section == COST:
            return _RIGHT
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        run = self.run_at(index)
        if run is None or not 0 <= index.column() < len(HEADERS):
            return None
        column = index.column()
        status = STATUS_TEXT.get(run.status, run.status.replace("_", " "))
        if role == Qt.ItemDataRole.DisplayRole:
            if column == STARTED:
                return local_time_text(run.started)
            if column == QUESTION:
                question = " ".join(run.question.split())
                return f"{run.label} — {question}" if run.label else question
            if column == STATUS:
                return status
            return theme.money(run.cost_usd)
        if role == Qt.ItemDataRole.DecorationRole and column in (QUESTION, STATUS):
            return theme.status_icon(run.status)  # on the question too: the status column may be hidden
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == QUESTION:
                name = f"{run.label}\n\n" if run.label else ""
                thread = f"\n\nA follow-up of run {run.follows}" if run.follows else ""
                return (
                    f"{name}{run.question}\n\n{status} · {local_time_text(run.started)} · "
                    f"{theme.money(run.cost_usd)}{thread}"
                )
            if column == STARTED:
                return f"{run.started}\nrun {run.run_id}"
            if column == STATUS and run.status == "failed":
                return "The run failed or its process ended before it finished; open it to see why"
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and column == COST:
            return _RIGHT
        if role == Qt.ItemDataRole.ForegroundRole and column == STARTED:
            return theme.MUTED
        if role == Qt.ItemDataRole.FontRole and column == QUESTION and run.label:
            font = QFont()
            font.setBold(True)
            return font
        if role == RUN_ID_ROLE:
            return run.run_id
        return None


class RunHistoryView(QWidget):
    """The runs as threads; double-click or Enter opens one, the context menu follows one up, re-runs, renames,
    deletes or exports it."""

    run_activated = Signal(str)
    export_requested = Signal(str)
    follow_up_requested = Signal(str)  # ask a follow-up of this run
    rerun_requested = Signal(str)  # put this run's question (and the run it followed) back in the ask box
    run_deleted = Signal(str)
    run_renamed = Signal(str)

    # columns given up, in this order, when the pane is too narrow to leave the question readable
    NARROW_HIDES = (COST, STATUS, STARTED)
    MIN_QUESTION_WIDTH = 180
    COLUMN_WIDTHS = {STARTED: 112, STATUS: 112, COST: 72}

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.case: Any = None
        self.model = RunHistoryModel(self)
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setAlternatingRowColors(True)
        self.tree.setAllColumnsShowFocus(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setIndentation(16)
        self.tree.setExpandsOnDoubleClick(False)  # a double-click opens the run; the arrow folds a thread
        self.tree.setStyleSheet("QTreeView { outline: 0; }")  # whole rows are selected: no focus box on a cell
        self.tree.setWordWrap(False)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(QUESTION, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        for column, width in self.COLUMN_WIDTHS.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.tree.setColumnWidth(column, width)
        self.tree.setToolTip(
            "Double-click a run (or press Enter) to open it; right-click to follow it up, ask it again, rename, "
            "delete or export it"
        )
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        # `activated` is Enter, and a double-click (or single click where the platform style says so)
        self.tree.activated.connect(self._on_activated)
        self.tree.installEventFilter(self)

        def action(text: str, slot: Any, shortcut: Any = None) -> QAction:
            act = QAction(text, self)
            if shortcut is not None:  # shown in the menu; the keys themselves are read in eventFilter
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(lambda _checked=False: slot())
            return act

        self.open_action = action("Open run", self._open_current)
        self.open_action.setShortcut(QKeySequence(Qt.Key.Key_Return))
        self.follow_action = action("Ask a follow-up…", lambda: self._emit_current(self.follow_up_requested))
        self.rerun_action = action("Ask again", lambda: self._emit_current(self.rerun_requested))
        self.rename_action = action("Rename…", self.rename_current, Qt.Key.Key_F2)
        self.delete_action = action("Delete…", self.delete_current, QKeySequence.StandardKey.Delete)
        self.export_action = action("Export report…", self._export_current)
        self.rerun_action.setToolTip("Put the question back in the ask box (in its thread, if it was a follow-up)")

        self.empty_label = QLabel(
            "No runs yet in this case.\nAsk a question to start one; it will be listed here."
        )
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet(f"color: {theme.MUTED.name()}")
        self.stack = QStackedLayout()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(self.tree)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.stack)
        self.model.modelReset.connect(self._show_state)
        self._show_state()

    # confirmation and naming go through these, so a test (or another front end) can answer them
    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(
            self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def ask_name(self, current: str) -> str | None:
        text, ok = QInputDialog.getText(
            self, "Rename run", "Name for this run (empty: show its question):", text=current
        )
        return text if ok else None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """Delete and F2 on the list delete or rename the selected run."""
        if watched is self.tree and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if event.key() == Qt.Key.Key_Delete and event.modifiers() == Qt.KeyboardModifier.NoModifier:
                self.delete_current()
                return True
            if event.key() == Qt.Key.Key_F2:
                self.rename_current()
                return True
        return super().eventFilter(watched, event)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_columns()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        available = self.tree.viewport().width() or self.width()
        widths = {c: self.tree.columnWidth(c) or self.COLUMN_WIDTHS[c] for c in self.COLUMN_WIDTHS}
        shown = set(widths)
        for column in self.NARROW_HIDES:
            if available - sum(widths[c] for c in shown) >= self.MIN_QUESTION_WIDTH:
                break
            shown.discard(column)
        for column in widths:
            self.tree.setColumnHidden(column, column not in shown)

    def set_case(self, case: Any) -> None:
        self.case = case
        self.refresh()

    def refresh(self) -> None:
        """Reread the runs, keeping the selected run selected and every thread unfolded."""
        selected = self.selected_run_id()
        self.model.refresh(self.case)
        self.tree.expandAll()
        if selected:
            self.select_run(selected)

    def selected_run_id(self) -> str | None:
        index = self.tree.currentIndex()
        return self.model.data(index, RUN_ID_ROLE) if index.isValid() else None

    def select_run(self, run_id: str) -> bool:
        index = self.model.index_of(run_id)
        if not index.isValid():
            return False
        self.tree.setCurrentIndex(index)
        self.tree.scrollTo(index)
        return True

    def _show_state(self) -> None:
        self.stack.setCurrentWidget(self.tree if self.model.rowCount() else self.empty_label)

    def _on_activated(self, index: QModelIndex) -> None:
        run_id = self.model.data(index, RUN_ID_ROLE)
        if run_id:
            self.run_activated.emit(run_id)

    def _open_current(self) -> None:
        self._emit_current(self.run_activated)

    def _export_current(self) -> None:
        self._emit_current(self.export_requested)

    def _emit_current(self, signal: Any) -> None:
        run_id = self.selected_run_id()
        if run_id:
            signal.emit(run_id)

    def rename_current(self) -> bool:
        """Ask for a name for the selected run and store it with the run."""
        run = self.model.run_at(self.tree.currentIndex())
        if run is None or self.case is None:
            return False
        name = self.ask_name(run.label or "")
        if name is None:
            return False
        try:
            rename_run(self.case, run.run_id, name)
        except (KeyError, ValueError) as exc:
            QMessageBox.warning(self, "Rename run", str(exc).strip('"'))
            return False
        self.refresh()
        self.run_renamed.emit(run.run_id)
        return True

    def delete_current(self) -> bool:
        """Delete the selected run after the user confirms; its follow-ups stay in the thread."""
        run = self.model.run_at(self.tree.currentIndex())
        if run is None or self.case is None:
            return False
        shown = run.label or " ".join(run.question.split())
        if len(shown) > 120:
            shown = shown[:119] + "…"
        more = ""
        follow_ups = [r for r in self.model.runs() if r.follows == run.run_id]
        if follow_ups:
            more = (
                f"\n\nIts {len(follow_ups)} follow-up(s) stay in the thread"
                + (", following the run before it." if run.follows else ", which then starts with them.")
            )
        if not self.confirm(
            "Delete run",
            f"Delete the run “{shown}” ({local_time_text(run.started)}) with its answer and steps?{more}"
            "\n\nThis cannot be undone.",
        ):
            return False
        try:
            delete_run(self.case, run.run_id)
        except (KeyError, ValueError) as exc:
            QMessageBox.warning(self, "Delete run", str(exc).strip('"'))
            return False
        self.refresh()
        self.run_deleted.emit(run.run_id)
        return True

    def context_menu_for(self, pos: QPoint) -> QMenu | None:
        """The menu shown at a viewport position (None off the rows); tests and the window can use it."""
        index = self.tree.indexAt(pos)
        if not index.isValid():
            return None
        self.tree.setCurrentIndex(index)
        run = self.model.run_at(index)
        menu = QMenu(self)
        menu.addAction(self.open_action)
        menu.addAction(self.follow_action)
        menu.addAction(self.rerun_action)
        self.follow_action.setEnabled(run is not None and run.status != "running")
        menu.addSeparator()
        menu.addAction(self.rename_action)
        menu.addAction(self.delete_action)
        menu.addSeparator()
        menu.addAction(self.export_action)
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        menu = self.context_menu_for(pos)
        if menu is not None:
            menu.exec(self.tree.viewport().mapToGlobal(pos))
