"""The right-hand side of the window: the question, Run/Stop, the cost meter, the answer and the recursion tree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.events import RunFinished, RunStarted
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.record import RunRecord
from rlm_desktop.gui.answer_view import AnswerView
from rlm_desktop.gui.bridge import RunBridge
from rlm_desktop.gui.cost_meter import CostMeter
from rlm_desktop.gui.run_panel import RunPanel
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case


class AskPanel(QWidget):
    """Ask a question of the open case and watch the run; all engine work goes through a RunBridge."""

    citation_activated = Signal(object)
    span_activated = Signal(int, int, int)
    run_saved = Signal(str)  # a run ended and is in the case: the history should refresh
    settings_requested = Signal()

    def __init__(
        self, home: Path, parent: QWidget | None = None, settings: Callable[[], Settings] | None = None
    ):
        """`settings` gives the window's one Settings object (saved by the dialog, never re-read from disk
        behind the window's back); a panel on its own reads the file when it needs it."""
        super().__init__(parent)
        self.home = home
        self._settings = settings or (lambda: Settings.load(self.home))
        self.case: Case | None = None
        self.run_id: str | None = None
        self.bridge = RunBridge(self)
        self.setup_steps: list[str] = []  # what a first launch still lacks before Ask can work

        self.question = QPlainTextEdit()
        self.question.setPlaceholderText(
            "Ask a question about this case, e.g. “Who approved the payments to Blue Heron, and when?”"
        )
        self.question.setTabChangesFocus(True)
        self.question.setFixedHeight(72)
        self.question.setAccessibleName("Question")
        self.run_button = QPushButton("Ask")
        self.run_button.setDefault(True)
        self.run_button.setToolTip("Run the investigation (Ctrl+Enter)")
        self.run_button.setMinimumWidth(90)
        self.run_button.clicked.connect(lambda: self.ask())
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setTextFormat(Qt.TextFormat.RichText)
        self.notice.setOpenExternalLinks(False)
        self.notice.linkActivated.connect(lambda _link: self.settings_requested.emit())
        self.notice.setStyleSheet(
            "QLabel { color: #8a5a00; background: #fff4d6; padding: 6px; border-radius: 4px; }"
        )
        self.notice.hide()

        self.cost = CostMeter()
        self.cost.stop_requested.connect(self.stop)
        self.answer = AnswerView()
        self.answer.citation_activated.connect(self.citation_activated)
        self.tree = RunPanel()
        self.tree.span_activated.connect(self.span_activated)
        # the answer above the recursion tree: both in view, so the tree can be watched while the answer waits
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(self.answer)
        self.split.addWidget(self.tree)
        self.split.setSizes([230, 570])
        self.split.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        ask_row = QHBoxLayout()
        ask_row.addWidget(self.question, 1)
        ask_row.addWidget(self.run_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(ask_row)
        layout.addWidget(self.notice)
        layout.addWidget(self.cost)
        layout.addWidget(self.split, 1)

        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self.question, activated=lambda: self.ask())

        self.bridge.run_event.connect(self._on_event)
        self.bridge.run_ended.connect(self._on_ended)
        self._set_running(False)

    def show_setup(self, missing_key: bool, has_documents: bool) -> None:
        """What to set up before the first Ask (a first launch): the endpoint and key, and documents to ask
        about. Nothing is shown once both are there."""
        steps = []
        if missing_key:
            steps.append(
                'Set the model endpoint and API key in <a href="settings">Settings</a> (Ctrl+,)'
                " — a local server (Ollama, vLLM, LM Studio) needs only its address"
            )
        if not has_documents:
            steps.append("Add documents: drop files or folders anywhere on the window, or File › Add files")
        self.setup_steps = steps
        if not steps:
            if self.notice.property("setup"):
                self.notice.hide()
            return
        numbered = "".join(f"<br>{i}. {step}" for i, step in enumerate(steps, 1))
        self.notice.setText(f"<b>Before the first question</b>{numbered}")
        self.notice.setProperty("setup", True)
        self.notice.show()

    def settings_changed(self) -> None:
        """New settings were saved: a notice about missing settings may no longer hold."""
        self.notice.hide()
        if not self.running and self.run_id is None:
            self.cost.reset(self._settings_cap())

    # -- public -----------------------------------------------------------------------------------------------

    def set_case(self, case: Case | None) -> None:
        if self.bridge.running:
            self.bridge.cancel()
        self.case = case
        self.tree.set_case(case)
        self.tree.clear()
        self.answer.clear()
        self.cost.reset(self._settings_cap())
        self.run_id = None
        self.run_button.setEnabled(case is not None)

    @property
    def running(self) -> bool:
        """True from Ask until the window has taken in the run's end (the engine may finish a moment earlier)."""
        return self._running or self.bridge.running

    def ask(self, question: str | None = None) -> RunHandle | None:
        """Start a run of `question` (or the text in the box); None, with a notice saying why, if it cannot."""
        if question is not None:
            self.question.setPlainText(question)
        text = self.question.toPlainText().strip()
        if self.case is None:
            return self._refuse("Open or create a case first, then add documents to it.")
        if not text:
            return self._refuse("Type a question first.")
        if self.bridge.running:
            return self._refuse("A run is still going: stop it (Esc) or wait for it to finish.")
        try:
            config, key = self._config_and_key()
        except ValueError as exc:
            return self._refuse(str(exc), settings_link=True)
        self.notice.hide()
        self.tree.clear()
        self.answer.set_answer("", [], "running")
        self.cost.reset(config.cap_usd)
        try:
            handle = self.bridge.start(self.case.path, text, config, key)
        except (ValueError, LookupError) as exc:
            return self._refuse(str(exc).strip('"'), settings_link=True)
        self.run_id = handle.run_id
        self._set_running(True)
        return handle

    def stop(self) -> None:
        """The kill switch: the engine cancels within milliseconds; the partial tree and answer stay."""
        if self.bridge.running:
            self.bridge.cancel()
            self.cost.set_running(False)

    def show_record(self, record: dict[str, Any]) -> None:
        """Show a saved run: its tree, its answer with citations, and its cost."""
        if self.bridge.running:
            self.bridge.cancel()
        self.run_id = record["run_id"]
        self.question.setPlainText(record.get("question", ""))
        self.tree.load_record(record)
        self.answer.set_answer(
            record.get("answer", ""),
            record.get("citations", []),
            record.get("status", ""),
            error=record.get("error"),
            warnings=record.get("warnings"),
        )
        self.cost.reset(record.get("cap_usd"))
        self.cost.apply(RunRecord.from_dict(record).cost_event())
        self.cost.set_running(False)

    def _settings_cap(self) -> float | None:
        try:
            return self._settings().cap_usd
        except ValueError:
            return None

    # -- internals --------------------------------------------------------------------------------------------

    def _config_and_key(self):
        from rlm_desktop.secrets import api_key_status, load_key
        from rlm_desktop.settings import run_config, validate

        settings = self._settings()
        problems = validate(settings)
        if problems:
            raise ValueError("Fix the settings first: " + " ".join(problems))
        missing = api_key_status(self.home, settings.base_url)
        if missing:
            raise ValueError(missing)
        # a local server (vLLM, Ollama) needs no key; the client still wants a non-empty string
        return run_config(settings, home=self.home), load_key(self.home) or "no-key"

    def _refuse(self, message: str, settings_link: bool = False) -> None:
        html = message.replace("&", "&amp;").replace("<", "&lt;")
        if settings_link:
            html += ' &nbsp;<a href="settings">Open Settings…</a>'
        self.notice.setText(html)
        self.notice.setProperty("setup", False)
        self.notice.show()
        return None

    def _set_running(self, running: bool) -> None:
        self._running = running
        self.run_button.setEnabled(not running and self.case is not None)
        self.run_button.setText("Running…" if running else "Ask")
        self.cost.set_running(running)

    def _on_event(self, event: object) -> None:
        if getattr(event, "run_id", None) != self.run_id:
            return  # a late event from a run the user has moved away from
        self.tree.apply(event)
        self.cost.apply(event)
        if isinstance(event, RunStarted):
            self.tree.select_node(event.root.id)
        if isinstance(event, RunFinished):
            record = event.record
            self.answer.set_answer(
                record.get("answer", ""),
                record.get("citations", []),
                event.status,
                error=record.get("error"),
                warnings=record.get("warnings"),
            )

    def _on_ended(self, handle: RunHandle) -> None:
        if handle is self.bridge.handle:
            self._set_running(False)
        if handle.run_id == self.run_id and handle.record is None and handle.error is not None:
            self.answer.set_answer("", [], "failed", error=f"{type(handle.error).__name__}: {handle.error}")
        self.run_saved.emit(handle.run_id)
