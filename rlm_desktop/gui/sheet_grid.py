"""A spreadsheet document as a grid, one tab per sheet, with the cited cells highlighted.

Built from the stored text and `meta["sheets"]` alone (see ingest/spreadsheet.py): the rows are the text's lines,
split into cells on tabs only when a row is drawn, so a sheet of 100,000 rows opens at once.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTabBar, QTableView, QVBoxLayout, QWidget

from rlm_desktop.ingest.spreadsheet import cell_at, column_name

HIGHLIGHT = QColor(255, 226, 140)
UNVERIFIED = QColor(255, 190, 190)
Index = QModelIndex | QPersistentModelIndex


class SheetModel(QAbstractTableModel):
    """One sheet: rows are lines of the document text, cells split on tabs as they are shown."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.first_row = self.first_col = 0
        self.columns = 0
        self.marked: tuple[int, int, int, int] | None = None  # top, left, bottom, right in grid coordinates
        self.colour = HIGHLIGHT

    def load(self, text: str, sheet: dict[str, Any]) -> None:
        self.beginResetModel()
        body = text[sheet["start"] : sheet["end"]]
        self.lines = body[:-1].split("\n") if body.endswith("\n") else body.split("\n") if body else []
        self.first_row, self.first_col = int(sheet["first_row"]), int(sheet["first_col"])
        self.columns = max((line.count("\t") + 1 for line in self.lines if line), default=1)
        self.marked = None
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.lines)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.columns

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            cells = self.lines[index.row()].split("\t")
            return cells[index.column()] if index.column() < len(cells) else ""
        if role == Qt.ItemDataRole.BackgroundRole and self.marked is not None:
            top, left, bottom, right = self.marked
            if top <= index.row() <= bottom and left <= index.column() <= right:
                return QBrush(self.colour)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return column_name(self.first_col + section)
        return str(self.first_row + section + 1)

    def mark(self, cells: tuple[int, int, int, int] | None, unverified: bool = False) -> None:
        self.marked, self.colour = cells, (UNVERIFIED if unverified else HIGHLIGHT)
        if self.lines:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.lines) - 1, max(self.columns - 1, 0)))


class SheetGrid(QWidget):
    """Tabs for the workbook's sheets over a grid of the chosen one; `show_document` opens the span's sheet."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.tabs = QTabBar()
        self.tabs.setExpanding(False)
        self.tabs.setDocumentMode(True)
        self.tabs.currentChanged.connect(self._show_sheet)
        self.model = SheetModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setDefaultSectionSize(110)
        self.table.verticalHeader().setDefaultSectionSize(22)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.tabs)
        layout.addWidget(self.table, 1)
        self._text = ""
        self._sheets: list[dict[str, Any]] = []
        self._span: tuple[int, int] | None = None
        self._unverified = False

    @property
    def sheet_name(self) -> str | None:
        index = self.tabs.currentIndex()
        return self._sheets[index]["name"] if 0 <= index < len(self._sheets) else None

    @property
    def marked_cells(self) -> tuple[int, int, int, int] | None:
        return self.model.marked

    def show_document(
        self, text: str, meta: dict[str, Any], span: tuple[int, int] | None, unverified: bool = False
    ) -> None:
        self._text, self._sheets, self._span, self._unverified = text, list(meta.get("sheets", ())), span, unverified
        target = 0
        if span is not None:
            found = cell_at(meta, text, span[0])
            if found is not None:
                target = next(i for i, s in enumerate(self._sheets) if s["name"] == found[0])
        self.tabs.blockSignals(True)
        while self.tabs.count():
            self.tabs.removeTab(0)
        for sheet in self._sheets:
            self.tabs.addTab(sheet["name"] + (" (hidden)" if sheet.get("hidden") else ""))
        self.tabs.setCurrentIndex(target)
        self.tabs.blockSignals(False)
        self._show_sheet(target)

    def _show_sheet(self, index: int) -> None:
        if not 0 <= index < len(self._sheets):
            self.model.load("", {"start": 0, "end": 0, "first_row": 0, "first_col": 0})
            return
        sheet = self._sheets[index]
        self.model.load(self._text, sheet)
        cells = self._cells_in(sheet)
        self.model.mark(cells, self._unverified)
        if cells is not None:
            self.table.scrollTo(self.model.index(cells[0], cells[1]), QAbstractItemView.ScrollHint.PositionAtCenter)

    def _cells_in(self, sheet: dict[str, Any]) -> tuple[int, int, int, int] | None:
        """The span's cells on this sheet, in grid coordinates (rows and columns from the sheet's first)."""
        if self._span is None:
            return None
        start, end = max(self._span[0], sheet["start"]), min(max(self._span[1], self._span[0] + 1), sheet["end"])
        if start >= end:
            return None
        meta = {"sheets": [sheet]}
        first, last = cell_at(meta, self._text, start), cell_at(meta, self._text, end - 1)
        if first is None or last is None:
            return None
        segment = self._text[start:end].rstrip("\n")
        left, right = first[2], first[2]
        for number, piece in enumerate(segment.split("\n")):
            column = first[2] if number == 0 else sheet["first_col"]
            left, right = min(left, column), max(right, column + piece.count("\t"))
        top, bottom = first[1], first[1] + segment.count("\n")
        row0, col0 = sheet["first_row"], sheet["first_col"]
        return top - row0, left - col0, bottom - row0, right - col0
