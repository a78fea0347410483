"""Past runs of the open case: a table model over list_runs and a view to reopen or export one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QMenu,
    QStackedLayout,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.runs import RunSummary, list_runs
from rlm_desktop.gui import theme

STARTED, QUESTION, STATUS, COST = range(4)
HEADERS = ("Started", "Question", "Status", "Cost")
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


class RunHistoryModel(QAbstractTableModel):
    """One row per saved run, newest first."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self._runs: list[RunSummary] = []

    def refresh(self, case: Any) -> None:
        """Reread the case's runs (None: no case open, no rows)."""
        runs = list_runs(case) if case is not None else []
        self.beginResetModel()
        self._runs = runs
        self.endResetModel()

    def run(self, row: int) -> RunSummary | None:
        return self._runs[row] if 0 <= row < len(self._runs) else None

    def run_ids(self) -> list[str]:
        return [r.run_id for r in self._runs]

    def row_of(self, run_id: str) -> int:
        return next((i for i, r in enumerate(self._runs) if r.run_id == run_id), -1)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._runs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(HEADERS)

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
        run = self.run(index.row()) if index.isValid() else None
        if run is None or not 0 <= index.column() < len(HEADERS):
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == STARTED:
                return local_time_text(run.started)
            if column == QUESTION:
                return " ".join(run.question.split())
            if column == STATUS:
                return STATUS_TEXT.get(run.status, run.status.replace("_", " "))
            return theme.money(run.cost_usd)
        if role == Qt.ItemDataRole.DecorationRole and column == STATUS:
            return theme.status_icon(run.status)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == QUESTION:
                return run.question
            if column == STARTED:
                return f"{run.started}\nrun {run.run_id}"
            if column == STATUS and run.status == "failed":
                return "The run failed or its process ended before it finished; open it to see why"
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and column == COST:
            return _RIGHT
        if role == Qt.ItemDataRole.ForegroundRole and column == STARTED:
            return theme.MUTED
        if role == RUN_ID_ROLE:
            return run.run_id
        return None


class RunHistoryView(QWidget):
    """The table of past runs; double-click or Enter opens one, the context menu also exports a report."""

    run_activated = Signal(str)
    export_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.case: Any = None
        self.model = RunHistoryModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setStyleSheet(
            "QTableView { outline: 0; }"
        )  # whole rows are selected: no focus box on a cell
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setSectionResizeMode(QUESTION, QHeaderView.ResizeMode.Stretch)
        for column, width in ((STARTED, 140), (STATUS, 120), (COST, 80)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(column, width)
        self.table.setToolTip(
            "Double-click a run (or press Enter) to open it; right-click to export a report"
        )
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        # `activated` is Enter, and a double-click (or single click where the platform style says so)
        self.table.activated.connect(self._on_activated)

        self.open_action = QAction("Open run", self)
        self.open_action.setShortcut(QKeySequence(Qt.Key.Key_Return))
        self.open_action.triggered.connect(self._open_current)
        self.export_action = QAction("Export report…", self)
        self.export_action.triggered.connect(self._export_current)

        self.empty_label = QLabel(
            "No runs yet in this case.\nAsk a question to start one; it will be listed here."
        )
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet(f"color: {theme.MUTED.name()}")
        self.stack = QStackedLayout()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(self.table)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.stack)
        self.model.modelReset.connect(self._show_state)
        self._show_state()

    def set_case(self, case: Any) -> None:
        self.case = case
        self.refresh()

    def refresh(self) -> None:
        """Reread the runs, keeping the selected run selected."""
        selected = self.selected_run_id()
        self.model.refresh(self.case)
        if selected:
            self.select_run(selected)

    def selected_run_id(self) -> str | None:
        index = self.table.currentIndex()
        return self.model.data(index, RUN_ID_ROLE) if index.isValid() else None

    def select_run(self, run_id: str) -> bool:
        row = self.model.row_of(run_id)
        if row < 0:
            return False
        self.table.selectRow(row)
        self.table.setCurrentIndex(self.model.index(row, QUESTION))
        return True

    def _show_state(self) -> None:
        self.stack.setCurrentWidget(self.table if self.model.rowCount() else self.empty_label)

    def _on_activated(self, index: QModelIndex) -> None:
        run_id = self.model.data(index, RUN_ID_ROLE)
        if run_id:
            self.run_activated.emit(run_id)

    def _open_current(self) -> None:
        run_id = self.selected_run_id()
        if run_id:
            self.run_activated.emit(run_id)

    def _export_current(self) -> None:
        run_id = self.selected_run_id()
        if run_id:
            self.export_requested.emit(run_id)

    def context_menu_for(self, pos: QPoint) -> QMenu | None:
        """The menu shown at a viewport position (None off the rows); tests and the window can use it."""
        index = self.table.indexAt(pos)
        if not index.isValid():
            return None
        self.table.setCurrentIndex(index)
        menu = QMenu(self)
        menu.addAction(self.open_action)
        menu.addAction(self.export_action)
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        menu = self.context_menu_for(pos)
        if menu is not None:
            menu.exec(self.table.viewport().mapToGlobal(pos))
