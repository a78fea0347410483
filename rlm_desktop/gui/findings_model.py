"""The case's findings as a table: a thin Qt adapter over the list `rlm_desktop.findings` gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from rlm_desktop.findings import Finding
from rlm_desktop.gui import theme
from rlm_desktop.reports.model import human_time

COLUMNS = ("", "Document", "Quote", "Note", "Source", "Added")
CHECK, DOCUMENT, QUOTE, NOTE, SOURCE, ADDED = range(len(COLUMNS))
FINDING_ROLE = Qt.ItemDataRole.UserRole + 1
QUOTE_CHARS = 160  # a table cell shows the start of a long quote; the tooltip and the viewer show it all
_TOP = QModelIndex()


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FindingsModel(QAbstractTableModel):
    """Rows are findings, oldest first. Editing a note calls `save_note(finding_id, note)`, which stores it
    (and raises ValueError with the reason when it cannot)."""

    def __init__(self, save_note: Callable[[int, str], None] | None = None, parent: Any = None):
        super().__init__(parent)
        self.findings: list[Finding] = []
        self.save_note = save_note
        self.last_error: str | None = None

    def set_findings(self, findings: list[Finding]) -> None:
        self.beginResetModel()
        self.findings = list(findings)
        self.endResetModel()

    def finding(self, row: int) -> Finding:
        return self.findings[row]

    def row_of(self, finding_id: int) -> int:
        return next((i for i, f in enumerate(self.findings) if f.id == finding_id), -1)

    # ---- QAbstractTableModel -------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:
        return 0 if parent.isValid() else len(self.findings)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return {
                CHECK: "✓ the quote still equals the stored text and that text still has its ingest hash",
                DOCUMENT: "The document the passage is in",
                QUOTE: "The passage kept as evidence",
                NOTE: "Your note (double-click or F2 to edit)",
                SOURCE: "The run citation it came from, or a selection in the viewer",
                ADDED: "When it was added (UTC)",
            }[section]
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
        if index.column() == NOTE and self.save_note is not None:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.findings):
            return None
        finding = self.findings[index.row()]
        column = index.column()
        if role == FINDING_ROLE:
            return finding
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(finding, column)
        if role == Qt.ItemDataRole.EditRole and column == NOTE:
            return finding.row.note
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(finding, column)
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == CHECK:
                return theme.VERIFIED if finding.verified else theme.UNVERIFIED
            if column in (SOURCE, ADDED):
                return theme.MUTED
        if role == Qt.ItemDataRole.TextAlignmentRole and column == CHECK:
            return int(Qt.AlignmentFlag.AlignCenter)
        return None

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.column() != NOTE or role != Qt.ItemDataRole.EditRole or self.save_note is None:
            return False
        finding = self.findings[index.row()]
        note = str(value or "").strip()
        if note == finding.row.note:
            return True
        try:
            self.save_note(finding.id, note)
        except (ValueError, KeyError) as exc:
            self.last_error = str(exc)
            return False
        from dataclasses import replace

        self.findings[index.row()] = replace(finding, row=replace(finding.row, note=note))
        self.dataChanged.emit(index, index)
        return True

    @staticmethod
    def _display(finding: Finding, column: int) -> str:
        if column == CHECK:
            return "✓" if finding.verified else "⚠"
        if column == DOCUMENT:
            title = finding.title or f"document {finding.row.doc_id}"
            return f"{title}, p. {finding.page}" if finding.page else title
        if column == QUOTE:
            return "“" + _one_line(finding.row.quote, QUOTE_CHARS) + "”"
        if column == NOTE:
            return _one_line(finding.row.note, 200)
        if column == SOURCE:
            return finding.source
        return human_time(finding.row.created).removesuffix(" UTC")

    @staticmethod
    def _tooltip(finding: Finding, column: int) -> str:
        if column == CHECK:
            if finding.verified:
                return "Verified: the quote is exactly what the stored text holds at its offsets"
            return f"NOT VERIFIED: {finding.problem}"
        if column == NOTE:
            return finding.row.note or "No note yet: double-click to write one"
        quote = finding.row.quote if len(finding.row.quote) <= 1500 else finding.row.quote[:1500] + "…"
        where = f"{finding.title or 'document'} (id {finding.row.doc_id}), characters {finding.row.start:,}–{finding.row.end:,}"
        return f"{where}\n“{quote}”\nClick to show it in its document"
