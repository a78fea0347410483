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
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.events import RunFinished
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.record import RunRecord
from rlm_desktop.engine.remote import RemoteSession
from rlm_desktop.gui.answer_view import AnswerView
from rlm_desktop.gui.bridge import RunBridge
from rlm_desktop.gui.cost_meter import CostMeter
from rlm_desktop.gui.layout_state import LayoutState
from rlm_desktop.gui.run_panel import RunPanel
from rlm_desktop.gui.tasks import run_in_background
from rlm_desktop.gui.widgets import ElidedLabel
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case

MAX_LIVE_THREADS = 3  # threads whose REPL is kept open at once (each holds a worker process)
# answer, tree, step detail: at 1280x720 the answer shows 6+ lines and the tree 7+ rows
RIGHT_COLUMN_SHARES = (0.31, 0.39, 0.30)


class AskPanel(QWidget):
    """Ask a question of the open case and watch the run; all engine work goes through a RunBridge.

    Every question runs in a thread (`RemoteSession`: its engine and REPL in a child process): "Ask a follow-up"
    continues the thread of the run shown, whose REPL stays alive between its questions (closed when the thread is
    idle, the case changes or the app quits), so the model's variables carry over.
    """

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
        self.run_status: str | None = None  # of the run shown; None while it runs
        self.follow_target: str | None = None  # the run the next question follows up
        self._follow_question = ""
        self._shown_question = ""
        self._running = False
        self.sessions: list[RemoteSession] = []  # newest last
        # a thread's engine runs in a child process (engine/remote.py); the next new thread's is started while
        # the user types a question, so Ask does not wait for its imports
        self._spare: RemoteSession | None = None
        self._quitting = False
        self.bridge = RunBridge(self)
        self.setup_steps: list[str] = []  # what a first launch still lacks before Ask can work

        self.question = QPlainTextEdit()
        self.question.setPlaceholderText(
            "Ask a question about this case, e.g. “Who approved the payments to Blue Heron, and when?”"
        )
        self.question.setTabChangesFocus(True)
        self.question.setFixedHeight(56)  # three lines: the answer and the tree below need the height more
        self.question.setAccessibleName("Question")
        self.run_button = QPushButton("Ask")
        self.run_button.setDefault(True)
        self.run_button.setToolTip("Run the investigation (Ctrl+Enter)")
        self.run_button.setMinimumWidth(110)  # "Ask follow-up" fits without the box beside it moving
        self.run_button.clicked.connect(lambda: self.ask())
        self.follow_button = QPushButton("Ask a follow-up")
        self.follow_button.setToolTip(
            "Ask another question in this run's thread: the model sees its question, answer and citations, "
            "and its REPL variables carry over"
        )
        self.follow_button.clicked.connect(lambda: self.start_follow_up())
        self.follow_bar = QLabel()
        self.follow_bar.setWordWrap(True)
        self.follow_bar.setTextFormat(Qt.TextFormat.RichText)
        self.follow_bar.linkActivated.connect(lambda _link: self.set_follow_target(None))
        self.follow_bar.setStyleSheet(
            "QLabel { color: #1f3f66; background: #e6effa; padding: 4px 6px; border-radius: 4px; }"
        )
        self.follow_bar.hide()
        self.thread_label = ElidedLabel()  # the run shown is a follow-up: of which question
        self.thread_label.setStyleSheet("QLabel { color: #555; }")
        self.thread_label.hide()
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
        # the answer, the recursion tree and the selected step's detail share the column in one splitter,
        # whose sizes the user sets once and keeps across restarts; the tree gets the space a taller window adds
        self.split = self.tree.splitter
        self.split.insertWidget(0, self.answer)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setStretchFactor(2, 0)
        self.tree.initial_shares = RIGHT_COLUMN_SHARES
        self.layout_state = LayoutState(home)
        if self.layout_state.keep("answer-tree-detail", self.split):
            self.tree._sized = True  # the user's sizes, not the first-run shares

        ask_row = QHBoxLayout()
        ask_row.addWidget(self.question, 1)
        buttons = QVBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.follow_button)
        buttons.addStretch(1)
        ask_row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.follow_bar)
        layout.addLayout(ask_row)
        layout.addWidget(self.notice)
        layout.addWidget(self.cost)
        layout.addWidget(self.thread_label)
        layout.addWidget(self.tree, 1)

        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self.question, activated=lambda: self.ask())

        self.question.textChanged.connect(self._warm_up)
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
        # a saved run can be read without a key, so the heading names what is needed, not "the first time"
        self.notice.setText(f"<b>Before you can ask a question</b>{numbered}")
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
        self.close_threads(wait=False)  # another case: the threads' REPLs read the old one
        self.case = case
        self.tree.set_case(case)
        self.clear_run()

    def clear_run(self) -> None:
        """Show no run (the case just opened, or the run shown was deleted)."""
        self.tree.clear()
        self.answer.clear()
        self.cost.reset(self._settings_cap())
        self.run_id = None
        self.run_status = None
        self._show_thread(None, "")
        self.set_follow_target(None)
        self.run_button.setEnabled(self.case is not None and not self.running)

    # -- threads of questions ---------------------------------------------------------------------------------

    def start_follow_up(self, run_id: str | None = None, question: str = "") -> bool:
        """Make the next question a follow-up of `run_id` (default: the run shown) and put the cursor in the box."""
        run_id = run_id or self.run_id
        if run_id is None or self.case is None:
            return False
        if self.running and run_id == self.run_id:
            self._refuse("Wait for the run to finish (or stop it), then ask a follow-up.")
            return False
        self.set_follow_target(run_id)
        self.question.setPlainText(question)
        self.question.setFocus()
        return True

    def set_follow_target(self, run_id: str | None) -> None:
        """The run the next question follows up (None: a new question, in a thread of its own)."""
        self.follow_target = run_id
        if run_id is None:
            self.follow_bar.hide()
            self.question.setPlaceholderText(
                "Ask a question about this case, e.g. “Who approved the payments to Blue Heron, and when?”"
            )
            self._set_running(self.running)
            return
        question = self._question_of(run_id)
        self._follow_question = question
        shown = question if len(question) <= 140 else question[:139] + "…"
        session = self._session_of(run_id)
        repl = (
            "its REPL variables carry over"
            if session is not None and session.repl_alive
            else "a fresh REPL"
        )
        esc = shown.replace("&", "&amp;").replace("<", "&lt;")
        self.follow_bar.setText(
            f"<b>Follow-up to</b> “{esc}” — the model sees the thread's questions, answers and citations; "
            f"{repl}. &nbsp;<a href='cancel'>Cancel</a>"
        )
        self.follow_bar.setToolTip(f"Run {run_id}: {question}")
        self.follow_bar.show()
        self.question.setPlaceholderText("Ask a follow-up question, e.g. “Who signed it?”")
        self._set_running(self.running)

    def _show_thread(self, follows: str | None, question: str) -> None:
        if not follows:
            self.thread_label.hide()
            return
        text = " ".join(question.split())
        self.thread_label.set_full_text(f"↳ A follow-up to “{text}”")
        self.thread_label.setToolTip(f"This question follows up run {follows}: {question}")
        self.thread_label.show()

    def _question_of(self, run_id: str) -> str:
        if run_id == self.run_id and self._shown_question:
            return self._shown_question
        if self.case is not None:
            from rlm_desktop.store.runs import run_row

            try:
                return run_row(self.case, run_id).question
            except KeyError:
                pass
        return run_id

    def _warm_up(self) -> None:
        """The user is typing a question: start the engine process a new thread will need (about a second of
        imports) now, while they type, rather than after they press Ask."""
        if self._spare is None and self.case is not None and not self._quitting:
            self._spare = RemoteSession()

    def _session_of(self, run_id: str) -> RemoteSession | None:
        """The live thread whose newest run is `run_id` (its REPL holds that run's variables)."""
        return next((s for s in reversed(self.sessions) if not s.closed and s.last_run_id == run_id), None)

    def _session_for(self, follows: str | None) -> RemoteSession:
        session = self._session_of(follows) if follows is not None else None
        if session is None:
            session, self._spare = self._spare, None
            if session is None or session.closed or not session.alive:
                if session is not None:
                    run_in_background(session.close, owner=self)
                session = RemoteSession()
            self.sessions.append(session)
            while len(self.sessions) > MAX_LIVE_THREADS:  # the oldest thread's REPL goes first
                old = self.sessions.pop(0)
                run_in_background(old.close, owner=self)
        else:
            self.sessions.remove(session)
            self.sessions.append(session)
        return session

    def close_threads(self, wait: bool = True) -> None:
        """Close every thread's REPL (case change, quit); `wait=False` does it off the GUI thread."""
        self._quitting = self._quitting or wait  # closing for good (quit): no engine is started ahead any more
        sessions, self.sessions = self.sessions, []
        if self._spare is not None:
            sessions.append(self._spare)
            self._spare = None
        for session in sessions:
            session.request_close()  # all end together: quitting waits for the slowest, not for their sum
        for session in sessions:
            if wait:
                session.close()
            else:
                run_in_background(session.close, owner=self)

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
        follows = self.follow_target
        session = self._session_for(follows)
        try:
            handle = self.bridge.start(
                self.case.path, text, config, key, follows=follows, session=session, sub_api_key=self._sub_key(config)
            )
        except (ValueError, LookupError) as exc:
            if session.last_run_id is None:  # a thread made for this question only
                self.sessions.remove(session)
                run_in_background(session.close, owner=self)
            return self._refuse(str(exc).strip('"'), settings_link=follows is None)
        session.last_run_id = handle.run_id  # the thread's next question follows this one
        self.tree.clear()
        self.answer.set_answer("", [], "running")
        self.cost.reset(config.cap_usd)
        self.run_id = handle.run_id
        self.run_status = None
        self._shown_question = text
        self._show_thread(follows, self._follow_question if follows else "")
        self.set_follow_target(None)
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
        self.run_status = record.get("status")
        self._shown_question = record.get("question", "")
        follows = record.get("follows")
        self._show_thread(follows, self._question_of(follows) if follows else "")
        self.set_follow_target(None)
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

    def _sub_key(self, config) -> str | None:
        """The key for sub-calls on their own endpoint ($RLM_SUB_API_KEY, else the stored one, else none): never
        the root's key, which goes only to the root's host. None when sub-calls share the root's endpoint."""
        from rlm_desktop.secrets import run_sub_key

        return run_sub_key(self.home, config)

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
        self.run_button.setText("Running…" if running else ("Ask follow-up" if self.follow_target else "Ask"))
        # a follow-up continues a finished run: the one shown, once it is over
        self.follow_button.setVisible(
            self.run_id is not None
            and self.run_status not in (None, "running")
            and self.follow_target != self.run_id  # already asking one: the bar above says so
        )
        self.follow_button.setEnabled(not running)
        self.cost.set_running(running)

    def _on_event(self, event: object) -> None:
        if getattr(event, "run_id", None) != self.run_id:
            return  # a late event from a run the user has moved away from
        # the tree follows the newest step by itself (its root first): selecting the root here "as the user
        # would" switched following off as soon as each run started
        self.tree.apply(event)
        self.cost.apply(event)
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
        if handle.run_id == self.run_id:
            self.run_status = (handle.record or {}).get("status") or "failed"
        if handle is self.bridge.handle:
            self._set_running(False)
        if handle.run_id == self.run_id and handle.record is None and handle.error is not None:
            self.answer.set_answer("", [], "failed", error=f"{type(handle.error).__name__}: {handle.error}")
        self.run_saved.emit(handle.run_id)
