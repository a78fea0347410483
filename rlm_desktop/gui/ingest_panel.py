"""Background ingest (on the window's task pool, with its own case connection) and the panel showing its progress."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.gui import theme
from rlm_desktop.gui.tasks import run_in_background
from rlm_desktop.ingest.extracted import needs_password
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.progress import (
    FileFinished,
    FileProgressed,
    FileStarted,
    IngestFinished,
    IngestReport,
    IngestStarted,
    MembersProgressed,
    members_text,
)
from rlm_desktop.store.case import Case

RENDER_INTERVAL_MS = 50  # events only update plain state; the widgets catch up at most this often


class IngestController(QObject):
    """Runs one ingest at a time on the task pool (gui/tasks.py); reports its events and result as signals.

    The worker opens its own Case (SQLite connections are per thread) and never touches a widget:
    each ingest event crosses to the GUI thread as the frozen dataclass it is, over `event_received`.
    A second `start` while one runs is refused (returns False and emits `refused` with the reason).
    """

    # IngestStarted | FileStarted | FileProgressed | MembersProgressed | FileFinished | IngestFinished
    event_received = Signal(object)
    finished = Signal(object)  # IngestReport, or the exception that stopped the ingest
    refused = Signal(str)

    def __init__(self, parent: QObject | None = None, jobs: int | None = None):
        super().__init__(parent)
        self.jobs = jobs  # extractor processes; None lets the pipeline choose
        self._future: Future[IngestReport] | None = None
        self._cancel = threading.Event()
        self._running = False
        self.started_at = 0.0  # time.monotonic() of the last start

    @property
    def running(self) -> bool:
        return self._running

    def start(self, case_path: Path, paths: list[Path], passwords: dict[str, str] | None = None) -> bool:
        """Ingest `paths`; `passwords` opens encrypted files (path -> what the user typed), held only by the job."""
        if self._running:
            self.refused.emit("An ingest is already running: wait for it to finish, or cancel it first.")
            return False
        self._running = True
        self.started_at = time.monotonic()
        cancel = self._cancel = threading.Event()
        progress, jobs, case_path, paths = self.event_received.emit, self.jobs, Path(case_path), list(paths)

        def job() -> IngestReport:
            with Case.open(case_path) as case:
                return ingest(case, paths, progress=progress, cancel=cancel, jobs=jobs, passwords=passwords)

        # an exception is reported to the window like a report: never lost in a thread
        self._future = run_in_background(job, self._ended, self._ended, owner=self)
        return True

    def cancel(self) -> None:
        """Ask the ingest to stop after the file (or mailbox batch) it is writing; safe from any thread."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has ended; True if it has (or none ran)."""
        future = self._future
        if future is None:
            return True
        try:
            future.exception(timeout)
        except FutureTimeout:
            return False
        return True

    def _ended(self, result: object) -> None:
        self._running = False
        self.finished.emit(result)


def summary_text(report: IngestReport) -> str:
    """ "12 added, 3 unchanged, 2 failed", with updates, skips and unreadable attachments when there are any."""
    parts = [f"{report.added:,} added"]
    if report.updated:
        parts.append(f"{report.updated:,} updated")
    parts.append(f"{report.unchanged:,} unchanged")
    parts.append(f"{len(report.failed):,} failed")
    if report.child_failures:
        count = len(report.child_failures)
        parts.append(f"{count:,} attachment{'s' if count != 1 else ''} unreadable")
    if report.skipped:
        parts.append(f"{len(report.skipped):,} skipped")
    text = ", ".join(parts)
    if report.cancelled:
        text = "Cancelled: " + text
    return text + f" · {report.documents:,} documents in the case"


class IngestPanel(QWidget):
    """Progress of the running ingest, a Cancel button, and afterwards a summary and the failures."""

    password_requested = Signal(str)  # the path of an encrypted file the user wants to open with its password

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller: IngestController | None = None
        self._total = 0
        self._done = 0
        self._current = ""
        self._messages: FileProgressed | None = None
        self._members: MembersProgressed | None = None  # an archive's members (a message's attachments) so far
        self._new_failures: list[dict[str, str]] = []
        self._started_at = 0.0
        self._timer = QTimer(self, singleShot=True, interval=RENDER_INTERVAL_MS)
        self._timer.timeout.connect(self._render)
        self._build()

    # ---- layout --------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.title = QLabel("<b>Ingest</b>")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m files")
        self.progress.setToolTip("Files read so far out of the files found")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "Stop after the file being written; everything already added stays in the case"
        )
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel_clicked)

        self.current_label = QLabel()
        self.current_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.current_label.setMinimumWidth(50)
        self.current_label.hide()
        self.summary_label = QLabel("Drop files or folders on the window to add them to the case.")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.failures_label = QLabel()
        self.failures = QTreeWidget()
        self.failures.setColumnCount(3)
        self.failures.setHeaderLabels(["File", "Why it could not be read", "When"])
        self.failures.setRootIsDecorated(False)
        self.failures.setAlternatingRowColors(True)
        self.failures.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.failures.setUniformRowHeights(True)
        self.failures.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keep the file name in sight
        self.failures.setToolTip("Select rows and press Ctrl+C (or right-click) to copy them")
        header = self.failures.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.resizeSection(0, 320)
        self.failures.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.failures.customContextMenuRequested.connect(self._failures_menu)
        copy = QShortcut(
            QKeySequence.StandardKey.Copy, self.failures, context=Qt.ShortcutContext.WidgetShortcut
        )
        copy.activated.connect(self.copy_failures)
        self.failures.itemDoubleClicked.connect(lambda item, _column: self._request_password(item))
        self.failures.itemSelectionChanged.connect(self._update_password_button)
        self.password_button = QPushButton("Enter password…")
        self.password_button.setToolTip(
            "Open the selected encrypted file with its password (used for this reading only, never stored)"
        )
        self.password_button.clicked.connect(lambda: self._request_password(None))
        self.password_button.hide()
        self.failures.hide()
        self.failures_label.hide()

        self.failures.setMaximumHeight(150)  # the documents and the run stay the main view
        self.hide_button = QPushButton("Hide")
        self.hide_button.setToolTip("Hide this strip; File > Show ingest failures brings the list back")
        self.hide_button.clicked.connect(self.hide)

        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addWidget(self.progress, 1)
        top.addWidget(self.cancel_button)
        top.addWidget(self.hide_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addWidget(self.current_label)
        layout.addWidget(self.summary_label)
        heading = QHBoxLayout()
        heading.addWidget(self.failures_label, 1)
        heading.addWidget(self.password_button)
        layout.addLayout(heading)
        layout.addWidget(self.failures, 1)
        layout.addStretch(0)  # keeps the lines together while the failures list is hidden

    # ---- public API ----------------------------------------------------------------------------------

    def attach(self, controller: IngestController) -> None:
        if self.controller is not None:
            self.controller.event_received.disconnect(self._on_event)
            self.controller.finished.disconnect(self._on_finished)
            self.controller.refused.disconnect(self._on_refused)
        self.controller = controller
        controller.event_received.connect(self._on_event)
        controller.finished.connect(self._on_finished)
        controller.refused.connect(self._on_refused)
        self.cancel_button.setEnabled(controller.running)

    def show_failures(self, failures: list[dict[str, Any]], heading: str | None = None) -> None:
        """List failures ({"path", "error", optional "at"}): this ingest's, or the case's whole history."""
        self.failures.clear()
        self._add_failure_rows(failures)
        self.failures.setColumnHidden(2, not any(f.get("at") for f in failures))
        if heading is None:
            heading = f"Files that could not be read in this case ({len(failures):,})" if failures else ""
        self._show_failure_heading(heading, bool(failures))
        if not failures and not self._running():
            self.summary_label.setText("No file has failed to be read in this case.")
            self.summary_label.show()

    def show_case(self, name: str, documents: int, failures: int) -> None:
        """Another case was opened: forget the last ingest's progress and failures, and sum up this case."""
        if self._running():
            return  # the running ingest's progress stays until it ends
        self._timer.stop()
        self._total = self._done = 0
        self._current, self._messages, self._new_failures = "", None, []
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.current_label.hide()
        self.failures.clear()
        self._show_failure_heading("", False)
        text = f"Case “{name}”: {documents:,} document{'s' if documents != 1 else ''}"
        if failures:
            text += f"; {failures:,} file{'s' if failures != 1 else ''} could not be read (File › Show ingest failures)"
        elif not documents:
            text += ". Drop files or folders on the window to add them."
        self.summary_label.setText(text)
        self.summary_label.setStyleSheet("")
        self.summary_label.show()

    def failure_rows(self) -> list[tuple[str, str]]:
        return [
            (self.failures.topLevelItem(i).text(0), self.failures.topLevelItem(i).text(1))
            for i in range(self.failures.topLevelItemCount())
        ]

    def copy_failures(self) -> None:
        """Selected rows (all, if none) as tab-separated lines on the clipboard."""
        items = self.failures.selectedItems() or [
            self.failures.topLevelItem(i) for i in range(self.failures.topLevelItemCount())
        ]
        lines = ["\t".join(item.text(c) for c in range(3) if item.text(c)) for item in items]
        QGuiApplication.clipboard().setText("\n".join(lines))

    # ---- events (GUI thread, one tiny update each) ---------------------------------------------------

    def _running(self) -> bool:
        return self.controller is not None and self.controller.running

    def _on_event(self, event: object) -> None:
        if isinstance(event, IngestStarted):
            self._total, self._done, self._current, self._messages = event.total_files, 0, "", None
            self._new_failures = []
            self._started_at = self.controller.started_at if self.controller else time.monotonic()
            self.failures.clear()
            self.failures.setColumnHidden(2, True)
            self._show_failure_heading("", False)
            self.summary_label.setText("")
            self.summary_label.hide()
            self.cancel_button.setText("Cancel")
            self.cancel_button.setEnabled(True)
        elif isinstance(event, FileStarted):
            self._current, self._messages, self._members = event.path, None, None
        elif isinstance(event, FileProgressed):
            self._messages = event
        elif isinstance(event, MembersProgressed):
            self._members = event
        elif isinstance(event, FileFinished):
            self._done = event.index + 1
            if event.status == "failed":
                self._new_failures.append({"path": event.path, "error": event.error or "unknown error"})
        elif isinstance(event, IngestFinished):
            self._current, self._messages = "", None
        if not self._timer.isActive():
            self._timer.start()

    def _render(self) -> None:
        total = max(self._total, 1)
        self.progress.setRange(0, total)
        self.progress.setValue(min(self._done, total) if self._total else 0)
        self.progress.setFormat(f"%v / {self._total:,} files" if self._total else "no files")
        if self._current:
            text = f"Reading {self._current}"
            if self._messages is not None and self._messages.path == self._current:
                event = self._messages
                share = f" ({event.bytes_done * 100 // event.bytes_total}%)" if event.bytes_total else ""
                text += f" — {event.messages:,} messages{share}"
            if self._members is not None and self._members.path == self._current:
                text += f" — {members_text(self._members)}"
            metrics = self.current_label.fontMetrics()
            width = max(self.width() - 24, 200)  # the label may still be hidden, so ask the panel
            self.current_label.setText(metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, width))
            self.current_label.setToolTip(text)
            self.current_label.show()
        else:
            self.current_label.setText("")
            self.current_label.hide()
        if self._new_failures:
            self._add_failure_rows(self._new_failures)
            self._new_failures = []
            self._show_failure_heading(f"Failures ({self.failures.topLevelItemCount():,})", True)

    def _on_finished(self, result: object) -> None:
        self._timer.stop()
        self._new_failures = []  # the report's list is complete (it includes paths that do not exist)
        self._current, self._messages = "", None
        self.cancel_button.setText("Cancel")
        self.cancel_button.setEnabled(False)
        self.summary_label.show()
        if isinstance(result, IngestReport):
            self._done = self._total if not result.cancelled else self._done
            self._render()
            seconds = time.monotonic() - self._started_at if self._started_at else 0.0
            text = summary_text(result)
            if result.cancelled:
                text = f"Stopped after {self._done:,} of {self._total:,} files. " + text
            took = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
            self.summary_label.setText(f"{text} (took {took})")
            self.summary_label.setStyleSheet("")
            failures = [*result.failed, *({**f, "attachment": "1"} for f in result.child_failures)]
            self.failures.clear()
            self._add_failure_rows(failures)
            self.failures.setColumnHidden(2, True)
            self._show_failure_heading(f"Failures ({len(failures):,})", bool(failures))
        else:
            self._render()
            self.summary_label.setText(f"The ingest stopped with an error: {result}")
            self.summary_label.setStyleSheet(f"color: {theme.UNVERIFIED.name()};")

    def _on_refused(self, message: str) -> None:
        self.summary_label.setText(message)
        self.summary_label.show()

    def _cancel_clicked(self) -> None:
        if self.controller is not None:
            self.controller.cancel()
            self.cancel_button.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    # ---- failures list -------------------------------------------------------------------------------

    def _add_failure_rows(self, failures: list[dict[str, Any]]) -> None:
        items = []
        for failure in failures:
            path = str(failure.get("path", ""))
            reason = str(failure.get("error") or failure.get("reason") or "unknown error")
            if failure.get("attachment"):
                reason = "attachment: " + reason
            item = QTreeWidgetItem([path, reason, str(failure.get("at") or "")])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            item.setForeground(1, theme.UNVERIFIED)
            if needs_password(reason):
                item.setToolTip(1, reason + "\nDouble-click (or Enter password…) to open it with its password")
            items.append(item)
        self.failures.addTopLevelItems(items)
        self._update_password_button()

    def _show_failure_heading(self, text: str, visible: bool) -> None:
        self.failures_label.setText(f"<b>{text}</b> — select and Ctrl+C to copy" if visible else "")
        self.failures_label.setVisible(visible)
        self.failures.setVisible(visible)
        self._update_password_button()

    # ---- encrypted files -----------------------------------------------------------------------------

    def password_paths(self) -> list[str]:
        """The listed files that an ingest with their password would read."""
        rows = (self.failures.topLevelItem(i) for i in range(self.failures.topLevelItemCount()))
        return [item.text(0) for item in rows if needs_password(item.text(1))]

    def _password_item(self, item: QTreeWidgetItem | None) -> QTreeWidgetItem | None:
        if item is None:
            selected = [i for i in self.failures.selectedItems() if needs_password(i.text(1))]
            if selected:
                return selected[0]
            rows = (self.failures.topLevelItem(i) for i in range(self.failures.topLevelItemCount()))
            item = next((i for i in rows if needs_password(i.text(1))), None)
        return item if item is not None and needs_password(item.text(1)) else None

    def _request_password(self, item: QTreeWidgetItem | None) -> None:
        chosen = self._password_item(item)
        if chosen is not None and not self._running():
            self.password_requested.emit(chosen.text(0))

    def _update_password_button(self) -> None:
        self.password_button.setVisible(self.failures.isVisibleTo(self) and bool(self.password_paths()))

    def _failures_menu(self, pos: Any) -> None:
        menu = QMenu(self)
        item = self.failures.itemAt(pos)
        if item is not None and needs_password(item.text(1)):
            menu.addAction("Enter password…", lambda: self._request_password(item)).setEnabled(not self._running())
            menu.addSeparator()
        menu.addAction("Copy selected", self.copy_failures)
        menu.addAction("Copy all", lambda: (self.failures.clearSelection(), self.copy_failures()))
        menu.exec(self.failures.viewport().mapToGlobal(pos))
