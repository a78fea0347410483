"""The investigation window: documents on the left, the source in the middle, the question and its run on the right."""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future
from datetime import UTC
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop import __version__, secrets
from rlm_desktop.engine.runs import load_run
from rlm_desktop.gui.ask_panel import AskPanel
from rlm_desktop.gui.document_browser import DocumentBrowser
from rlm_desktop.gui.findings_view import FindingsView
from rlm_desktop.gui.ingest_panel import IngestController, IngestPanel
from rlm_desktop.gui.layout_state import LayoutState, share
from rlm_desktop.gui.run_history import RunHistoryView
from rlm_desktop.gui.screen_fit import first_size
from rlm_desktop.gui.source_viewer import SourceViewer
from rlm_desktop.gui.tasks import run_in_background, tasks
from rlm_desktop.ingest import formats
from rlm_desktop.ingest.extracted import needs_password
from rlm_desktop.ingest.progress import IngestStarted
from rlm_desktop.paths import case_path, list_cases
from rlm_desktop.reports import FORMAT_LABELS
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case
from rlm_desktop.store.migrations import slow_upgrade

REPORT_FORMATS = FORMAT_LABELS
MAIN_SHARES = (0.27, 0.39, 0.34)  # documents, viewer, ask panel
QUIT_BUDGET_S = 0.6  # what closing the window may wait for background work (the target is quitting in 1 s)
_DRAG_EVENTS = frozenset((QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop))

SHORTCUTS = [
    ("Ctrl+Enter", "Ask the question"),
    ("Ctrl+Shift+F", "Ask a follow-up to the run shown"),
    ("Esc", "Stop the running investigation"),
    ("Ctrl+F", "Search all documents"),
    ("Ctrl+F in the viewer, F3 / Shift+F3", "Find in the open document: next / previous match"),
    ("Ctrl+O / Ctrl+Shift+O", "Add files / add a folder to the case"),
    ("Ctrl+N", "New case"),
    ("Ctrl+E", "Export the current run as an evidence report"),
    ("Ctrl+,", "Settings"),
    ("PgUp / PgDn, Ctrl+ +/-", "Page through / zoom the source viewer"),
]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _local_paths(event: QEvent) -> list[Path]:
    mime = event.mimeData() if isinstance(event, QDropEvent | QDragEnterEvent | QDragMoveEvent) else None
    if mime is None or not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


class _CaseBox(QComboBox):
    """The toolbar's case box: lists the cases on disk each time it opens (a case made by `ingest --case` from a
    terminal shows up without restarting the window)."""

    def __init__(self, refill):
        super().__init__()
        self._refill = refill

    def showPopup(self) -> None:  # noqa: N802 - Qt override
        self._refill()
        super().showPopup()


class MainWindow(QMainWindow):
    case_opened = Signal(str)

    def __init__(self, home: Path, settings: Settings | None = None):
        super().__init__()
        self.home = home
        self.settings = settings or Settings.load(home)
        self.case: Case | None = None
        self._doc_count: int | None = None  # the open case's documents, once counted
        self.case_name: str | None = None
        self._shut_down = False
        self._password_ingest = False  # the running ingest reads a file with the password the user typed
        self.upgrade_dialog: QProgressDialog | None = None  # while a case's pending migrations run in the background
        self.setWindowTitle("RLM Desktop")
        self.setAcceptDrops(True)
        self.resize(first_size(self))  # 1400x900, or less on a smaller screen

        self.browser = DocumentBrowser()
        self.history = RunHistoryView()
        self.left = QTabWidget()
        self.left.addTab(self.browser, "Documents")
        self.left.addTab(self.history, "Runs")
        self.findings = FindingsView()
        self.left.addTab(self.findings, "Findings")
        self.viewer = SourceViewer()
        self.ask_panel = AskPanel(home, settings=lambda: self.settings)  # one Settings object, passed down
        self.ingest = IngestController(self)
        self.ingest_panel = IngestPanel()
        self.ingest_panel.attach(self.ingest)
        self.ingest_panel.hide()

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left)
        self.splitter.addWidget(self.viewer)
        self.splitter.addWidget(self.ask_panel)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 1)
        # documents, viewer, question and run: the viewer widest, so an email or a PDF page reads at a glance;
        # the user's sizes are kept across restarts
        self.splitter.setSizes(share(self.width(), MAIN_SHARES))
        self.layout_state = LayoutState(home)
        self._shares_pending = not self.layout_state.keep("main", self.splitter)  # shared out when first shown
        if self.layout_state.text("dates/zone") == "UTC":  # the zone the user chose for dates, else local
            self.browser.set_zone(UTC)
        self.browser.zone_changed.connect(
            lambda zone: self.layout_state.set_text("dates/zone", "UTC" if zone is UTC else "local")
        )
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.ingest_panel)
        self.setCentralWidget(central)
        self.case_label = QLabel()
        self.statusBar().addPermanentWidget(self.case_label)

        self._build_actions()
        self._wire()
        QApplication.instance().installEventFilter(self)
        run_in_background(secrets.warm_up)  # finding the keyring can take a second

    # -- construction -----------------------------------------------------------------------------------------

    def _build_actions(self) -> None:
        def action(text: str, slot, shortcut: str | QKeySequence | None = None, tip: str = "") -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            if tip:
                act.setStatusTip(tip)
                act.setToolTip(tip)
            act.triggered.connect(lambda _checked=False: slot())
            return act

        self.act_new_case = action("&New case…", self.new_case, "Ctrl+N", "Create a new, empty case")
        self.act_add_files = action(
            "Add &files…", self.add_files, "Ctrl+O", "Add PDF, DOCX, email and text files to the case"
        )
        self.act_add_folder = action(
            "Add f&older…", self.add_folder, "Ctrl+Shift+O", "Add a whole folder (recursively) to the case"
        )
        self.act_export = action(
            "&Export report…", self.export_current, "Ctrl+E", "Export the run shown as an evidence report"
        )
        self.act_export_findings = action(
            "Export &findings…", self.findings.export_dialog, None, "One evidence report of the case's findings"
        )
        self.act_settings = action("&Settings…", self.open_settings, "Ctrl+,", "Endpoint, key, models, cap")
        self.act_quit = action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_ask = action("&Ask", lambda: self.ask_panel.ask(), None, "Run the question (Ctrl+Enter)")
        self.act_follow_up = action(
            "Ask a &follow-up", lambda: self.ask_panel.start_follow_up(), "Ctrl+Shift+F",
            "Ask another question in the thread of the run shown",
        )
        self.act_stop = action("&Stop run", self.ask_panel.stop, "Esc", "Stop the running investigation")
        self.act_stop.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.act_find = action(
            "&Search documents", self.focus_search, "Ctrl+F", "Full-text search of the case"
        )
        self.act_failures = action(
            "Show ingest &failures", self.show_failures, None, "Files that could not be read"
        )
        self.act_shortcuts = action("&Keyboard shortcuts", self.show_shortcuts, "F1")
        self.act_about = action("&About RLM Desktop", self.show_about)

        menu = self.menuBar().addMenu("&File")
        menu.addAction(self.act_new_case)
        self.open_case_menu = menu.addMenu("Open &case")
        self.open_case_menu.aboutToShow.connect(self._fill_case_menu)
        menu.addSeparator()
        menu.addAction(self.act_add_files)
        menu.addAction(self.act_add_folder)
        menu.addAction(self.act_failures)
        menu.addSeparator()
        menu.addAction(self.act_export)
        menu.addAction(self.act_export_findings)
        menu.addSeparator()
        menu.addAction(self.act_settings)
        menu.addSeparator()
        menu.addAction(self.act_quit)
        menu = self.menuBar().addMenu("&Run")
        menu.addAction(self.act_ask)
        menu.addAction(self.act_follow_up)
        menu.addAction(self.act_stop)
        menu = self.menuBar().addMenu("&View")
        menu.addAction(self.act_find)
        menu = self.menuBar().addMenu("&Help")
        menu.addAction(self.act_shortcuts)
        menu.addAction(self.act_about)

        bar = QToolBar("Case")
        bar.setObjectName("case-toolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.addWidget(QLabel(" Case: "))
        self.case_combo = _CaseBox(self._fill_case_combo)
        self.case_combo.setMinimumWidth(180)
        self.case_combo.setToolTip("The open case: one file holding its documents and runs")
        self.case_combo.activated.connect(self._case_chosen)
        bar.addWidget(self.case_combo)
        bar.addAction(self.act_new_case)
        bar.addSeparator()
        bar.addAction(self.act_add_files)
        bar.addAction(self.act_add_folder)
        bar.addSeparator()
        bar.addAction(self.act_export)
        bar.addAction(self.act_settings)
        self.addToolBar(bar)

    def _wire(self) -> None:
        self.browser.document_activated.connect(lambda doc_id: self.viewer.show_document(doc_id))
        self.browser.span_activated.connect(lambda d, s, e: self.viewer.show_document(d, (s, e)))
        self.ask_panel.citation_activated.connect(self.viewer.show_citation)
        self.ask_panel.span_activated.connect(lambda d, s, e: self.viewer.show_document(d, (s, e)))
        self.ask_panel.run_saved.connect(lambda _run_id: self._refresh_case_views(documents=False))
        self.ask_panel.settings_requested.connect(self.open_settings)
        self.history.run_activated.connect(self.open_run)
        # findings: kept from an answer's citations or the viewer's selection; a finding opens at its passage
        self.ask_panel.answer.finding_requested.connect(self._keep_citation)
        self.viewer.finding_requested.connect(self._keep_selection)
        self.findings.finding_activated.connect(self.viewer.show_citation)
        self.browser.tags_changed.connect(self._tags_changed)
        self.viewer.tag_bar.tags_changed.connect(self._tags_changed)
        self.history.export_requested.connect(self.export_run_dialog)
        self.history.follow_up_requested.connect(self.follow_up)
        self.history.rerun_requested.connect(self.ask_again)
        self.history.run_deleted.connect(self._run_deleted)
        self.ingest.finished.connect(lambda _report: self._refresh_case_views())
        self.ingest.finished.connect(self._after_password_ingest)
        self.ingest_panel.password_requested.connect(self.enter_password)
        self.ingest.event_received.connect(
            lambda event: self.ingest_panel.show() if isinstance(event, IngestStarted) else None
        )

    # -- cases ------------------------------------------------------------------------------------------------

    def open_case(self, name: str) -> None:
        path = case_path(self.home, name)
        if self.ingest.running:
            QMessageBox.information(
                self, "Ingest running", "Wait for the ingest to finish or cancel it first."
            )
            return
        if self.upgrade_dialog is not None:
            return  # one case at a time: the dialog says which is being upgraded
        if slow_upgrade(path):
            self._upgrade_then_open(name, path)
            return
        case = Case.open(path)
        if self.case is not None:
            self.case.close()
        self.case, self.case_name = case, name
        for widget in (self.browser, self.viewer, self.history, self.ask_panel, self.findings):
            widget.set_case(case)
        self._fill_case_combo()
        self._doc_count = None
        self._refresh_case_views(documents=False)
        if self._doc_count is not None:  # a big case's count comes from a worker thread, then shows
            self.ingest_panel.show_case(name, self._doc_count, len(case.failures()))
        self.setWindowTitle(f"{name} — RLM Desktop")
        if self.settings.last_case != name:
            self.settings.last_case = name
            self.settings.save(self.home)
        self.case_opened.emit(name)

    def new_case(self) -> None:
        from rlm_desktop.gui.new_case_dialog import NewCaseDialog

        dialog = NewCaseDialog(self.home, self)
        if dialog.exec() != NewCaseDialog.DialogCode.Accepted or not dialog.name:
            return
        name = dialog.name
        path = case_path(self.home, name)
        if path.exists():
            QMessageBox.information(self, "New case", f"A case called {name.strip()!r} exists; opening it.")
        self.open_case(name.strip())

    def _upgrade_then_open(self, name: str, path: Path) -> None:
        """Apply a big case's pending migrations off the GUI thread (minutes for m008 on a 100M-token case),
        with a notice the user cannot mistake for a hang, then open it."""
        dialog = QProgressDialog(
            f"Upgrading case “{name}” to this version's format.\n"
            "This happens once; a large case takes a few minutes.",
            "",
            0,
            0,
            self,
        )
        dialog.setObjectName("caseUpgrade")
        dialog.setWindowTitle("Upgrading case")
        dialog.setCancelButton(None)  # a migration is one transaction: stopping it halfway is not offered
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(0)
        dialog.show()
        self.upgrade_dialog = dialog

        def work() -> None:  # must not reference `self` (see gui/tasks.py)
            Case.open(path).close()

        run_in_background(
            work, lambda _: self._upgraded(name, None), lambda exc: self._upgraded(name, exc), owner=self
        )

    def _upgraded(self, name: str, error: BaseException | None) -> None:
        if self.upgrade_dialog is not None:
            self.upgrade_dialog.close()
            self.upgrade_dialog.deleteLater()
            self.upgrade_dialog = None
        if error is not None:
            QMessageBox.critical(
                self, "Case not upgraded", f"The case “{name}” could not be upgraded (each step of it is all or nothing):\n\n{error}"
            )
            return
        self.open_case(name)

    def _fill_case_combo(self) -> None:
        names = sorted(set(list_cases(self.home)) | ({self.case_name} if self.case_name else set()))
        self.case_combo.blockSignals(True)
        self.case_combo.clear()
        self.case_combo.addItems(names)
        if self.case_name:
            self.case_combo.setCurrentText(self.case_name)
        self.case_combo.blockSignals(False)

    def _fill_case_menu(self) -> None:
        self.open_case_menu.clear()
        for name in sorted(list_cases(self.home)):
            act = self.open_case_menu.addAction(name)
            act.setCheckable(True)
            act.setChecked(name == self.case_name)
            act.triggered.connect(lambda _checked=False, n=name: self.open_case(n))

    def _case_chosen(self, index: int) -> None:
        name = self.case_combo.itemText(index)
        if name and name != self.case_name:
            self.open_case(name)

    def _refresh_case_views(self, documents: bool = True) -> None:
        if self.case is None:
            return
        if documents:
            self.browser.refresh_in_background()
            self.findings.refresh()  # verified again: an ingest may have replaced a document's text
            self._doc_count = None
        self.history.refresh()
        if self._doc_count is None:
            if self.browser.big_case:  # counting scans the documents table, texts and all: 30-100 ms at 20,000
                case, path, opened = self.case, self.case.path, self.ingest_panel

                def count() -> int:
                    with Case.open(path) as c:
                        return c.count_documents()

                def counted(docs: int) -> None:
                    if self.case is case:
                        fresh = self._doc_count is None and not documents
                        self._doc_count = docs
                        self._show_counts(docs)
                        if fresh:
                            opened.show_case(self.case_name, docs, len(case.failures()))

                run_in_background(count, counted, owner=self)
                self._show_counts(None)
                return
            self._doc_count = self.case.count_documents()
        self._show_counts(self._doc_count)

    def _show_counts(self, docs: int | None) -> None:
        """The case line (documents, runs, unreadable files); `docs` None while they are being counted."""
        if self.case is None:
            return
        runs = self.history.model.run_count()  # just refreshed from the case
        if docs is None:
            self.case_label.setText(f"{self.case_name}: counting documents… · {_count(runs, 'run')}  ")
            return
        failures = len(self.case.failures())
        text = f"{self.case_name}: {_count(docs, 'document')} · {_count(runs, 'run')}"
        if failures:
            text += f" · {_count(failures, 'file')} could not be read"
        self.case_label.setText(text + "  ")
        if docs == 0:
            self.statusBar().showMessage("Drop folders or files on the window to add them to this case.")
        else:
            self.statusBar().clearMessage()
        self._check_setup(docs > 0)

    def _check_setup(self, has_documents: bool) -> None:
        """Say what a first launch must set up before the first Ask (the key lookup may wait on the keyring)."""
        home, base_url = self.home, self.settings.base_url

        def missing_key() -> bool:
            return secrets.api_key_status(home, base_url) is not None

        run_in_background(
            missing_key, lambda missing: self.ask_panel.show_setup(missing, has_documents), owner=self
        )

    # -- ingest -----------------------------------------------------------------------------------------------

    def ingest_paths(self, paths: list[Path], passwords: dict[str, str] | None = None) -> bool:
        if self.case is None or not paths:
            return False
        if self.ingest.running:
            self.statusBar().showMessage(
                "An ingest is already running; drop again when it has finished.", 8000
            )
            return False
        self.ingest_panel.show()
        self.ingest.start(self.case.path, paths, passwords)
        return True

    def enter_password(self, path: str) -> bool:
        """Ask for an encrypted file's password and read the file again with it. The password goes to this one
        ingest in memory: never into the case, the settings or a log."""
        password, ok = QInputDialog.getText(
            self,
            "Encrypted file",
            f"{Path(path).name} is encrypted. Its password (used to read it now, never stored):",
            QLineEdit.EchoMode.Password,
        )
        if not ok or not password:
            return False
        self._password_ingest = self.ingest_paths([Path(path)], {path: password})
        return self._password_ingest

    def _after_password_ingest(self, report: object) -> None:
        """Once a file opened with its password is read, the case's other encrypted files are listed again, so
        the next password can be entered without looking for them."""
        if not self._password_ingest or self.case is None:
            return
        self._password_ingest = False
        if not getattr(report, "failed", None) and any(needs_password(f["error"]) for f in self.case.failures()):
            self.show_failures()

    def add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Add files to the case",
            "",
            formats.file_filter(),
        )
        self.ingest_paths([Path(f) for f in files])

    def add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to the case")
        if folder:
            self.ingest_paths([Path(folder)])

    def show_failures(self) -> None:
        if self.case is not None:
            self.ingest_panel.show_failures(self.case.failures())
            self.ingest_panel.show()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """Files dropped anywhere in the window are ingested, even over the text boxes that would otherwise
        paste their URLs as text."""
        kind = event.type()
        # every event of every widget passes here: the cheapest test first (a set of the three drag types)
        is_drag = kind in _DRAG_EVENTS
        if is_drag and isinstance(watched, QWidget) and watched.window() is self and _local_paths(event):
            if kind == QEvent.Type.Drop:
                self.ingest_paths(_local_paths(event))
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
            return True
        return super().eventFilter(watched, event)

    # -- runs and reports -------------------------------------------------------------------------------------

    def open_run(self, run_id: str, quiet: bool = False) -> dict[str, Any] | None:
        """Show a saved run; None (with a message box unless `quiet`) if the case has no such run."""
        if self.case is None:
            return None
        try:
            record = load_run(self.case, run_id)
        except KeyError as exc:
            if not quiet:
                QMessageBox.warning(self, "Open run", str(exc).strip('"'))
            return None
        self.ask_panel.show_record(record)
        return record

    def follow_up(self, run_id: str) -> None:
        """Show the run (unless another is running) and make the next question a follow-up of it."""
        if not self.ask_panel.running:
            self.open_run(run_id, quiet=True)
        self.ask_panel.start_follow_up(run_id)

    def ask_again(self, run_id: str) -> None:
        """Put a run's question back in the ask box, in its thread when it was a follow-up (not started)."""
        if self.case is None:
            return
        try:
            record = load_run(self.case, run_id)
        except KeyError as exc:
            QMessageBox.warning(self, "Ask again", str(exc).strip('"'))
            return
        follows = record.get("follows")
        if follows and self.history.model.index_of(follows).isValid():
            self.ask_panel.start_follow_up(follows, record.get("question", ""))
        else:
            self.ask_panel.set_follow_target(None)
            self.ask_panel.question.setPlainText(record.get("question", ""))
            self.ask_panel.question.setFocus()
        self.statusBar().showMessage(
            "The question is in the ask box: edit it if you like, then press Ctrl+Enter.", 8000
        )

    def _run_deleted(self, run_id: str) -> None:
        panel = self.ask_panel
        if panel.follow_target == run_id:
            panel.set_follow_target(None)
        if panel.run_id == run_id and not panel.running:
            panel.clear_run()
        self._refresh_case_views(documents=False)

    def export_current(self) -> None:
        run_id = self.ask_panel.run_id
        if run_id is None:
            QMessageBox.information(
                self, "Export report", "Open a run first (Runs tab on the left, or ask a question)."
            )
            return
        self.export_run_dialog(run_id)

    def export_run_dialog(self, run_id: str) -> None:
        if self.case is None:
            return
        filters = ";;".join(REPORT_FORMATS.values())
        suggested = str(Path.home() / f"{self.case_name}-run-{run_id[:8]}.html")
        path, chosen = QFileDialog.getSaveFileName(self, "Export evidence report", suggested, filters)
        if not path:
            return
        fmt = next((k for k, v in REPORT_FORMATS.items() if v == chosen), None)
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = suffix if suffix in REPORT_FORMATS else (fmt or "html")
        if Path(path).suffix.lower().lstrip(".") != fmt:
            path += f".{fmt}"
        self.export_run(run_id, fmt, Path(path))

    def export_run(self, run_id: str, fmt: str, out: Path) -> Future[Path]:
        """Export on a worker thread; the status bar says when it is written (or why it failed)."""
        from rlm_desktop.reports import export_run

        assert self.case is not None
        case_path = self.case.path
        self.statusBar().showMessage(f"Exporting {fmt.upper()} report to {out} …")
        return run_in_background(
            lambda: export_run(case_path, run_id, fmt, out),
            lambda path: self._exported(path, None),
            lambda error: self._exported(None, error),  # nothing is half-written: export_run writes atomically
            owner=self,
        )

    def _exported(self, path: object, error: object) -> None:
        if error is not None:
            QMessageBox.warning(self, "Export report", f"The report could not be written:\n{error}")
            self.statusBar().clearMessage()
        else:
            self.statusBar().showMessage(f"Report written: {path}", 15000)

    # -- findings and tags -------------------------------------------------------------------------------------

    def _keep_citation(self, citation: dict[str, Any]) -> None:
        if self.findings.add_citation(citation, self.ask_panel.run_id) is not None:
            self.statusBar().showMessage("Added to the findings (Findings tab on the left).", 8000)

    def _keep_selection(self, doc_id: int, start: int, end: int) -> None:
        if self.findings.add_selection(doc_id, start, end) is not None:
            self.statusBar().showMessage("Added to the findings (Findings tab on the left).", 8000)

    def _tags_changed(self, doc_id: int) -> None:
        self.browser.refresh_tags()
        if self.viewer.current_doc_id == doc_id:
            self.viewer.tag_bar.show_document(doc_id)

    # -- misc -------------------------------------------------------------------------------------------------

    def focus_search(self) -> None:
        self.left.setCurrentWidget(self.browser)
        self.browser.focus_search()

    def open_settings(self) -> None:
        from rlm_desktop.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.home, self, settings=copy.deepcopy(self.settings))  # a cancel changes nothing
        dialog.settings_saved.connect(self._settings_saved)
        dialog.exec()

    def _settings_saved(self, settings: Settings) -> None:
        settings.last_case = self.case_name
        self.settings = settings
        self.ask_panel.settings_changed()
        self._check_setup(self.case is not None and self.case.count_documents() > 0)

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table>{rows}</table>")

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About RLM Desktop",
            f"<b>RLM Desktop {__version__}</b><p>Investigate document collections with a Recursive Language "
            "Model. Every claim links to a verified span of its source; every run has a hard spending cap.</p>",
        )

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._shares_pending:  # the width is final only now (a --size or the window manager sets it)
            self._shares_pending = False
            self.splitter.setSizes(share(self.splitter.width(), MAIN_SHARES))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow() and self.case_name:
            self._fill_case_combo()  # back from a terminal: cases created there are listed
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.shutdown(QUIT_BUDGET_S)
        super().closeEvent(event)

    def shutdown(self, budget_s: float = 30.0) -> None:
        """Stop what runs in the background and close the case (a run is saved as cancelled), waiting at most
        `budget_s` in all. Quitting gives it under a second: a cancelled run is saved within milliseconds, and
        an ingest still finishing its file is left to the process's end (a killed ingest leaves a consistent
        case that the next ingest resumes; its extractor processes watch for their parent and leave too)."""
        if self._shut_down:  # closing the window did it; the app's own end asks again
            return
        self._shut_down = True
        deadline = time.monotonic() + budget_s
        if self.ask_panel.running:
            self.ask_panel.bridge.cancel()
            if self.ask_panel.bridge.handle is not None:
                self.ask_panel.bridge.handle.join(max(0.0, deadline - time.monotonic()))
        self.ask_panel.close_threads()  # the threads' kept REPLs
        if self.ingest.running:
            self.ingest.cancel()
            self.ingest.wait(max(0.0, deadline - time.monotonic()))
        tasks().wait(max(0.0, deadline - time.monotonic()))  # an export or a refresh still writing finishes first
        self.browser.stop_pending()  # a preview due in a few ms must not open a document of a closed case
        if self.case is not None:
            self.case.close()
            self.case = None
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
