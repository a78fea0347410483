"""The Findings tab: passages kept as evidence across runs, with notes; adding, jumping to and exporting them."""

from __future__ import annotations

import html
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.findings import (
    DuplicateFinding,
    Finding,
    FindingNotVerified,
    add_citation,
    add_finding,
    list_findings,
)
from rlm_desktop.gui import theme
from rlm_desktop.gui.findings_model import ADDED, CHECK, DOCUMENT, NOTE, QUOTE, SOURCE, FindingsModel
from rlm_desktop.gui.tasks import run_in_background
from rlm_desktop.reports import FORMAT_LABELS
from rlm_desktop.reports.model import human_time
from rlm_desktop.store import findings as store
from rlm_desktop.store.case import Case

EMPTY_TEXT = (
    "No findings yet.\n\nKeep a passage as evidence: right-click a citation in an answer (or use “Add to findings” "
    "in its list of sources), or select text in a document and right-click it."
)


def ask_note(parent: QWidget, quote: str) -> str | None:
    """The note for a new finding (may be empty); None when the user cancels."""
    shown = " ".join(quote.split())
    shown = shown if len(shown) <= 300 else shown[:300] + "…"
    note, ok = QInputDialog.getMultiLineText(
        parent, "Add to findings", f"“{shown}”\n\nNote (optional): why this passage matters", ""
    )
    return note if ok else None


class FindingsView(QWidget):
    """Lists the case's findings; selecting one shows its passage highlighted in the source viewer."""

    finding_activated = Signal(object)  # the finding's citation dict, for SourceViewer.show_citation
    findings_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._case: Case | None = None
        self.model = FindingsModel(self._save_note, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QUOTE, QHeaderView.ResizeMode.Stretch)
        for column, width in ((CHECK, 26), (DOCUMENT, 110), (NOTE, 110), (SOURCE, 110), (ADDED, 118)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)
        header.setSectionResizeMode(CHECK, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnHidden(ADDED, True)  # in the tooltip of the row; a wide pane can show it (see resize)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.table.clicked.connect(self._clicked)
        self.model.dataChanged.connect(lambda *_: self._show_detail())  # an edited note shows below too

        self.count_label = QLabel()
        self.count_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.delete_button = QPushButton("Remove")
        self.delete_button.setToolTip("Remove the selected finding (the document is not changed)")
        self.delete_button.clicked.connect(self.delete_selected)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write one evidence report of all findings: HTML, PDF, DOCX, Markdown or JSON")
        self.export_button.clicked.connect(self.export_dialog)
        self.detail = QLabel()  # the selected finding in full: where it is from, its quote and its note
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Maximum)
        self.detail.setStyleSheet("QLabel { background: #f6f8fb; border: 1px solid #d5dae1; padding: 6px; }")
        self.detail.hide()
        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet(f"color: {theme.MUTED.name()}; padding: 16px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty_label)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.count_label, 1)
        top.addWidget(self.delete_button)
        top.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.detail)
        self.refresh()

    # ---- public API ----------------------------------------------------------------------------------

    def set_case(self, case: Case | None) -> None:
        self._case = case
        self.refresh()

    def refresh(self) -> None:
        """Read the findings again (each verified now) keeping the selected one selected."""
        selected = self.selected_finding()
        self.model.set_findings(list_findings(self._case) if self._case is not None else [])
        count = self.model.rowCount()
        bad = sum(1 for f in self.model.findings if not f.verified)
        text = f"{count} finding{'s' if count != 1 else ''}" if count else "No findings"
        if bad:
            text += f", {bad} NOT VERIFIED"
        self.count_label.setText(text)
        self.stack.setCurrentWidget(self.table if count else self.empty_label)
        self.export_button.setEnabled(self._case is not None)
        self.delete_button.setEnabled(count > 0)
        if selected is not None:
            self.select(selected.id, activate=False)
        self._show_detail()

    def selected_finding(self) -> Finding | None:
        row = self.table.currentIndex().row()
        return self.model.finding(row) if 0 <= row < self.model.rowCount() else None

    def select(self, finding_id: int, activate: bool = True) -> bool:
        row = self.model.row_of(finding_id)
        if row < 0:
            return False
        if not activate:
            self.table.selectionModel().blockSignals(True)
        self.table.setCurrentIndex(self.model.index(row, QUOTE))
        self.table.selectionModel().blockSignals(False)
        self.table.scrollTo(self.model.index(row, QUOTE))
        return True

    def add_citation(self, citation: dict[str, Any], run_id: str | None, note: str | None = None) -> Finding | None:
        """Keep a run's citation as a finding (asking for a note unless given); None if not added (said why)."""
        quote = str(citation.get("quote") or "")
        return self._add(lambda case, text: add_citation(case, citation, run_id, text), quote, note)

    def add_selection(self, doc_id: int, start: int, end: int, note: str | None = None) -> Finding | None:
        """Keep text selected in the viewer as a finding, verified as `cite(doc_id, start, end)` would be."""
        if self._case is None:
            return None
        try:
            quote = self._case.text(doc_id)[start:end]
        except KeyError as exc:
            self._warn(str(exc).strip('"'))
            return None
        return self._add(lambda case, text: add_finding(case, doc_id, start, end, note=text), quote, note)

    def delete_selected(self) -> None:
        finding = self.selected_finding()
        if finding is None or self._case is None:
            return
        quote = " ".join(finding.row.quote.split())
        quote = quote if len(quote) <= 200 else quote[:200] + "…"
        note = f"\n\nIts note will be lost: “{finding.row.note}”" if finding.row.note else ""
        answer = QMessageBox.question(
            self, "Remove finding", f"Remove finding {finding.marker}, “{quote}”?{note}\n\nThe document is not changed."
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        store.delete_finding(self._case, finding.id)
        self.refresh()
        self.findings_changed.emit()

    # ---- exporting -------------------------------------------------------------------------------------

    def export_dialog(self) -> None:
        if self._case is None:
            return
        filters = ";;".join(FORMAT_LABELS.values())
        suggested = str(Path.home() / f"{self._case.path.stem}-findings.html")
        path, chosen = QFileDialog.getSaveFileName(self, "Export findings report", suggested, filters)
        if not path:
            return
        fmt = next((k for k, v in FORMAT_LABELS.items() if v == chosen), None)
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = suffix if suffix in FORMAT_LABELS else (fmt or "html")
        if suffix != fmt:
            path += f".{fmt}"
        self.export(fmt, Path(path))

    def export(self, fmt: str, out: Path) -> Future[Path]:
        """Write the findings report on a worker thread; a message says where, or why it failed."""
        from rlm_desktop.reports.findings import export_findings

        assert self._case is not None
        case_path = self._case.path
        self.count_label.setText(f"Exporting {fmt.upper()} report to {out} …")
        return run_in_background(
            lambda: export_findings(case_path, fmt, out),
            lambda path: self.count_label.setText(f"Report written: {path}"),
            lambda error: self._warn(f"The findings report could not be written:\n{error}"),
            owner=self,
        )

    # ---- internals -----------------------------------------------------------------------------------

    def _add(self, add: Any, quote: str, note: str | None) -> Finding | None:
        if self._case is None:
            return None
        if note is None:
            note = ask_note(self, quote)
            if note is None:
                return None
        try:
            finding = add(self._case, note)
        except DuplicateFinding as exc:
            self.refresh()
            self.select(exc.finding_id, activate=False)
            self._warn(f"This passage is already in the findings (finding {exc.finding_id}).", "Already kept")
            return None
        except (FindingNotVerified, KeyError, ValueError) as exc:
            self._warn(f"The passage was not added to the findings.\n\n{str(exc).strip(chr(34))}")
            return None
        self.refresh()
        self.select(finding.id, activate=False)
        self.findings_changed.emit()
        return finding

    def _save_note(self, finding_id: int, note: str) -> None:
        assert self._case is not None
        store.set_finding_note(self._case, finding_id, note)

    def _warn(self, message: str, title: str = "Findings") -> None:
        self.last_message = message
        QMessageBox.warning(self, title, message)

    def _show_detail(self) -> None:
        finding = self.selected_finding()
        if finding is None:
            self.detail.hide()
            return
        quote = finding.row.quote if len(finding.row.quote) <= 600 else finding.row.quote[:600] + "…"
        title = html.escape(finding.title or f"document {finding.row.doc_id}")
        where = f", page {finding.page}" if finding.page else ""
        check = (
            f"<span style='color:{theme.VERIFIED.name()}'>✓ verified</span>"
            if finding.verified
            else f"<span style='color:{theme.UNVERIFIED.name()}'>⚠ NOT VERIFIED: {html.escape(finding.problem or '')}</span>"
        )
        note = html.escape(finding.row.note) if finding.row.note else "<i>no note: double-click the Note cell</i>"
        self.detail.setText(
            f"<b>{finding.marker}</b> {title}{where} · {check}<br>"
            f"<span style='color:{theme.MUTED.name()}'>{html.escape(finding.source)} · added "
            f"{html.escape(human_time(finding.row.created))}</span><br>“{html.escape(quote)}”<br><b>Note:</b> {note}"
        )
        self.detail.show()

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        self._show_detail()
        if current.isValid() and current.row() != previous.row():
            self.finding_activated.emit(self.model.finding(current.row()).citation)

    def _clicked(self, index: QModelIndex) -> None:
        if index.isValid() and index.column() != NOTE:  # a click on the shown row shows its passage again
            self.finding_activated.emit(self.model.finding(index.row()).citation)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        width = event.size().width()
        self.table.setColumnHidden(ADDED, width < 760)
        self.table.setColumnHidden(SOURCE, width < 560)  # narrow: the detail under the table says it

