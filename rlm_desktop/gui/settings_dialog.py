"""The Settings dialog: endpoint and API key, models and prices, the spending cap and the run limits."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QLocale, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.endpoints import load_caps, load_endpoint
from rlm_desktop.engine.model_info import ModelCaps, context_window, known_context_window
from rlm_desktop.engine.pricing import DEFAULT_PRICES, PRICES_TAKEN, Price
from rlm_desktop.gui.screen_fit import FRAME_ALLOWANCE, available_geometry
from rlm_desktop.gui.tasks import run_in_background
from rlm_desktop.gui.theme import MUTED, STATUS_COLOURS, UNVERIFIED, VERIFIED
from rlm_desktop.gui.widgets import WrappedLabel
from rlm_desktop.secrets import KEY_ENV_VAR, SUB_KEY_ENV_VAR, KeyStore, sub_key_store
from rlm_desktop.settings import (
    MAX_OUTPUT_TOKENS,
    OUTPUT_CHARS_RANGE,
    TIMEOUT_RANGE_S,
    Settings,
    cap_price_problem,
    parse_context_windows,
    price_text,
    validate,
)

if TYPE_CHECKING:
    from rlm_desktop.engine.probe import EndpointReport, ModelReport

SETTINGS_SHORTCUT = "Ctrl+,"  # the lead's menu action uses this
ENDPOINT_PLACEHOLDER = "https://api.openai.com/v1 — or your vLLM / Ollama / LM Studio URL"
OPENAI_URL = "https://api.openai.com/v1"
CONNECTION_TIMEOUT_S = 15.0
FINDINGS_MAX_HEIGHT = 240  # px; longer findings scroll

BUILT_IN, CUSTOM, NO_PRICE = "built-in", "custom", "no price"
_KIND_ROLE = Qt.ItemDataRole.UserRole
_CACHED_ROLE = Qt.ItemDataRole.UserRole + 1
COL_MODEL, COL_IN, COL_OUT, COL_SOURCE = range(4)
WARNING = STATUS_COLOURS["refused"]


@dataclass(frozen=True)
class ConnectionResult:
    """What "Test connection" found; `warning` marks a connection that works but needs a look.

    `report` is the probe's full finding (None when the form itself was wrong and nothing was tried).
    """

    ok: bool
    message: str
    warning: bool = False
    report: EndpointReport | None = None
    sub_report: EndpointReport | None = None  # the sub-call endpoint's, when sub-calls have their own


def both_endpoints(root: ConnectionResult, sub: ConnectionResult) -> ConnectionResult:
    """One result for the root's endpoint and the sub-calls' own."""
    return ConnectionResult(
        root.ok and sub.ok,
        f"Root model: {root.message} Sub-calls: {sub.message}",
        root.warning or sub.warning,
        root.report,
        sub.report,
    )


def run_connection_test(
    base_url: str,
    api_key: str,
    models: list[str],
    timeout_s: float = CONNECTION_TIMEOUT_S,
    prices: dict[str, object] | None = None,
    home: Path | None = None,
) -> ConnectionResult:
    """Probe the endpoint and each model (blocking: run it off the GUI thread); cache what it learns in `home`."""
    from rlm_desktop.engine.pricing import PriceTable
    from rlm_desktop.engine.probe import probe_endpoint_sync, save_report

    try:
        table = PriceTable(overrides=prices or {})
    except ValueError:
        table = PriceTable()  # the probe only estimates its own cost; the form names bad prices
    report = probe_endpoint_sync(base_url, api_key, models, timeout_s, table)
    if home is not None:
        try:
            save_report(home, report)
        except OSError:
            pass  # the cache only saves a later probe; the findings are still shown
    return connection_result(report, base_url, timeout_s)


def connection_result(report: EndpointReport, base_url: str, timeout_s: float) -> ConnectionResult:
    """The probe's report as one sentence a first-time user can act on, plus the report itself."""
    error = report.error
    if error and not report.reachable:
        if error.startswith("connection refused"):
            text = f"Could not connect to {base_url}: connection refused, nothing answered there. Check the URL, and that the server is running."
        elif error.startswith("no answer within"):
            text = f"No answer from {base_url} within {timeout_s:g} s. Is the server running, and is the URL right?"
        else:
            text = f"Could not connect to {base_url}: {error}."
        return ConnectionResult(False, text, report=report)
    if error and "rejected the API key" in error:
        text = (
            f"The server at {base_url} rejected the API key. Check the key, and that it is a key for this "
            f"endpoint. ({error.removeprefix('the server rejected the API key ').strip('()')})"
        )
        return ConnectionResult(False, text, report=report)
    if error:
        return ConnectionResult(False, f"{base_url}: {error}", report=report)
    listed = report.listed
    if listed is None:
        where = "no model list"
    else:
        where = "1 model listed" if len(listed) == 1 else f"{len(listed)} models listed"
    failed = [m for m in report.models if not m.answered or m.error]
    if failed:
        names = ", ".join(m.model for m in failed)
        return ConnectionResult(
            True, f"Connected to {base_url} ({where}), but {names} did not answer: see below.", True, report
        )
    if not report.models:  # no model chosen yet: the list is all there is to show
        return ConnectionResult(True, f"Connected to {base_url} ({where}).", report=report)
    answered = " and ".join(m.model for m in report.models)
    return ConnectionResult(True, f"Connected to {base_url} ({where}); {answered} answered.", report=report)


def _short_findings(model: ModelReport, context_windows: dict[str, int]) -> dict[str, str]:
    """Each finding in a few words, for a table cell; the long form is describe_model's."""
    caps = model.caps
    out: dict[str, str] = {}
    if model.error:
        out["status"] = f"✗ {model.error}"
    else:
        took = f" in {model.latency_s:.1f} s" if model.latency_s is not None else ""
        out["status"] = f"✓ answered{took}"
    if caps.listed is False:
        out["listed"] = "not in the model list"
    if caps.token_param:
        out["output limit"] = caps.token_param
    if caps.streaming is not None:
        out["streaming"] = ("yes, with usage" if caps.stream_usage else "yes, without usage") if caps.streaming else "no"
    if caps.usage_reported is not None:
        out["usage"] = "reported" if caps.usage_reported else "NOT reported: costs estimated"
    if model.answered:
        reasoning = {"think-tags": "<think> tags in the text", None: "none seen"}
        out["reasoning"] = reasoning.get(caps.reasoning_field, f"{caps.reasoning_field} field")
    if context_windows.get(model.model):
        out["context window"] = f"{context_windows[model.model]:,} tokens (yours)"
    elif caps.context_window:
        out["context window"] = f"{caps.context_window:,} tokens (server)"
    elif known := known_context_window(model.model):
        out["context window"] = f"{known:,} tokens (published)"
    else:
        out["context window"] = "not reported"
    if model.calls:
        calls = "1 call" if model.calls == 1 else f"{model.calls} calls"
        if model.cost_usd is None:
            out["probe cost"] = f"{calls}, no price known"
        else:
            out["probe cost"] = f"{calls}, ${model.cost_usd:.6f}" + (" (estimated)" if model.cost_estimated else "")
    return out


# The rows of the findings table, in the order a person checks them.
_FINDING_TOPICS = ("status", "listed", "output limit", "streaming", "usage", "reasoning", "context window", "probe cost")


def findings_html(
    reports: Sequence[EndpointReport], roles: dict[str, str], context_windows: dict[str, int]
) -> str:
    """A small table, one column per model, of what the probes found, in plain words; notes below it.

    Sub-calls on their own server are a second report: its model is a column of the same table, so the
    two endpoints' findings read side by side and the dialog stays short enough for a 720 px screen."""
    models = [m for report in reports for m in report.models]
    if not models:
        return ""
    header = "".join(
        "<th align='left'>"
        + _html((" and ".join(r for r, name in roles.items() if name == m.model) or "model").capitalize())
        + f": {_html(m.model)}</th>"
        for m in models
    )
    found = [_short_findings(m, context_windows) for m in models]
    rows = []
    for topic in _FINDING_TOPICS:
        if not any(topic in f for f in found):
            continue
        cells = []
        for model, f in zip(models, found, strict=True):
            text = f.get(topic, "")
            colour = None
            if topic == "status":
                colour = UNVERIFIED if model.error else VERIFIED
            elif text.startswith("NOT") or text == "not in the model list":
                colour = WARNING
            style = f" style='color: {colour.name()}'" if colour else ""
            cells.append(f"<td{style}>{_html(text)}</td>")
        rows.append(f"<tr><td style='color: {MUTED.name()}'>{_html(topic)}</td>{''.join(cells)}</tr>")
    by_note: dict[str, list[str]] = {}  # the same refusal from both models is said once
    for m in models:
        for note in m.notes:
            by_note.setdefault(note, []).append(m.model)
    notes = [f"<li>{_html(', '.join(models))}: {_html(note)}</li>" for note, models in by_note.items()]
    notes_html = f"<ul style='margin: 4px 0 0 0; color: {MUTED.name()}'>{''.join(notes)}</ul>" if notes else ""
    table = f"<table cellspacing='0' cellpadding='1' width='100%'><tr><th></th>{header}</tr>{''.join(rows)}</table>"
    return table + notes_html


class _PriceDelegate(QStyledItemDelegate):
    """Prices are edited in a spin box, so a cell always holds a number (or nothing yet)."""

    def createEditor(self, parent: QWidget, option, index: QModelIndex) -> QWidget:  # noqa: N802 - Qt override
        box = QDoubleSpinBox(parent)
        box.setDecimals(4)
        box.setRange(0.0, 100_000.0)
        box.setSingleStep(0.05)
        box.setPrefix("$")
        box.setFrame(False)
        return box

    def setEditorData(self, editor: QDoubleSpinBox, index: QModelIndex) -> None:  # noqa: N802
        value = index.data(Qt.ItemDataRole.EditRole)
        editor.setValue(float(value) if isinstance(value, int | float) else 0.0)

    def setModelData(self, editor: QDoubleSpinBox, model, index: QModelIndex) -> None:  # noqa: N802
        editor.interpretText()
        model.setData(index, editor.value(), Qt.ItemDataRole.EditRole)

    def displayText(self, value, locale: QLocale) -> str:  # noqa: N802
        return f"{value:.10g}" if isinstance(value, int | float) else ""


def key_whereabouts(typed: str, stored: str, backend: str, env_var: str, noun: str) -> str:
    """Where a key field's key is or will be kept, in a sentence (the API key's and the sub endpoint key's)."""
    if not typed and not stored:
        where = f"No {noun} stored. A key you enter is kept in the {backend}."
    elif typed == stored:
        where = f"Stored in the {backend}."
    elif not typed:
        where = f"Save removes the {noun} from the {backend}."
    else:
        where = f"Save stores this key in the {backend}."
    if os.environ.get(env_var):
        where += f" ${env_var} is set and is used before this key."
    return where


def _muted_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {MUTED.name()};")
    return label


class SettingsDialog(QDialog):
    """Edits `<home>/settings.json` and the stored API key; OK stays disabled while anything is invalid.

    `settings_saved(Settings)` fires after OK wrote both. `connection_tested(ConnectionResult)` fires
    when a "Test connection" finishes (the test runs on a worker thread).
    """

    settings_saved = Signal(object)
    connection_tested = Signal(object)

    def __init__(self, home: Path, parent: QWidget | None = None, settings: Settings | None = None):
        """`settings`: the window's copy of its settings; without it the file is read."""
        super().__init__(parent)
        self.home = Path(home)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.setMinimumWidth(780)
        self.load_problem: str | None = None
        if settings is not None:
            self.settings = settings
        else:
            try:
                self.settings = Settings.load(self.home)
            except ValueError as exc:  # a broken file must not lock the user out of fixing it
                self.settings = Settings()
                self.load_problem = f"{exc}. Saving will replace it."
        self.key_store = KeyStore(self.home)
        self._loaded_key = self.key_store.get() or ""
        self.sub_key_store = sub_key_store(self.home)
        self._loaded_sub_key = self.sub_key_store.get() or ""
        self._syncing = False
        self._sized = False  # sized to the form on first show
        self._test_token: object | None = None  # the connection test whose answer is awaited
        self.connection_timeout_s = CONNECTION_TIMEOUT_S
        self.problems: list[str] = []
        self._cached_caps: dict[str, dict] = {}
        self._root_caps: dict[str, dict] = {}
        self._sub_caps: dict[str, dict] | None = None  # a separate sub endpoint's, when there is one

        self._build()
        self._load(self.settings)
        self.revalidate()

    # ---- building -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.load_notice = QLabel()
        self.load_notice.setWordWrap(True)
        self.load_notice.setStyleSheet(f"color: {WARNING.name()};")
        self.load_notice.setVisible(False)

        endpoint = self._endpoint_group()
        columns = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(self._models_group())
        left.addWidget(self._windows_group())
        columns.addLayout(left, 3)
        right = QVBoxLayout()
        right.addWidget(self._limits_group())
        right.addWidget(self._replies_group())
        right.addWidget(self._isolation_group())
        right.addStretch(1)
        columns.addLayout(right, 2)

        self.problems_label = QLabel()
        self.problems_label.setObjectName("settingsProblems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextFormat(Qt.TextFormat.RichText)
        self.problems_label.setStyleSheet(f"color: {UNVERIFIED.name()};")

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Save")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        # the form scrolls above the buttons when the screen is too short for it (a 1280x720 laptop with both
        # endpoints' findings shown): Save and Cancel stay in view, and nothing is squeezed
        self.body = QWidget()
        self.body.setObjectName("settingsBody")
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.load_notice)
        body.addWidget(endpoint)
        body.addLayout(columns)
        self.body_scroll = QScrollArea()
        self.body_scroll.setObjectName("settingsScroll")
        self.body_scroll.setWidgetResizable(True)
        self.body_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.body_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.body_scroll.setWidget(self.body)

        outer = QVBoxLayout(self)
        outer.addWidget(self.body_scroll)
        outer.addWidget(self.problems_label)  # beside Save, which they disable: never scrolled out of view
        outer.addWidget(self.buttons)
        self._set_tab_order()

    def _endpoint_group(self) -> QGroupBox:
        group = QGroupBox("Endpoint")
        form = QFormLayout(group)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(ENDPOINT_PLACEHOLDER)
        self.url_edit.setToolTip(
            "The OpenAI-compatible server to use, usually ending in /v1. Leave empty for OpenAI itself."
        )
        self.url_edit.setClearButtonEnabled(True)
        self.in_flight_spin = self._in_flight_spin("the root model's endpoint")
        self.test_button = QPushButton("&Test connection")  # on the URL's row: it tests that endpoint
        url_row = self._url_row(self.url_edit, self.in_flight_spin)
        url_row.layout().addWidget(self.test_button)
        form.addRow("&Base URL:", url_row)

        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("sk-…  (local servers often need none)")
        self.key_edit.setToolTip("Kept in the system keyring when there is one, never in settings.json")
        self.show_key = QToolButton()
        self.show_key.setText("Show")
        self.show_key.setCheckable(True)
        self.show_key.setToolTip("Show or hide the key")
        self.show_key.toggled.connect(self._toggle_key_visible)
        self.remove_key = QToolButton()
        self.remove_key.setText("Remove key")
        self.remove_key.setToolTip("Delete the stored key now (from the keyring and the file)")
        self.remove_key.clicked.connect(self.remove_stored_key)
        key_row = QHBoxLayout()
        key_row.setContentsMargins(0, 0, 0, 0)
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.show_key)
        key_row.addWidget(self.remove_key)
        self.key_where = _muted_label()
        self.key_where.setObjectName("keyWhere")
        key_field = QVBoxLayout()
        key_field.setContentsMargins(0, 0, 0, 0)
        key_field.setSpacing(2)
        key_field.addLayout(key_row)
        key_field.addWidget(self.key_where)
        key_label = QLabel("API &key:")
        key_label.setBuddy(self.key_edit)
        form.addRow(key_label, key_field)

        # Sub-calls (llm_query, rlm_query) on a server of their own, e.g. a local vLLM beside a hosted root
        # model: its URL, its own key (stored like the API key; the root's key never goes to that host) and
        # its own limit of requests at once.
        self.sub_check = QCheckBox("&Own server:")
        self.sub_check.setToolTip(
            "Send sub-calls (llm_query, rlm_query) to another OpenAI-compatible server than the root model's, "
            "with its own key. The root's key is never sent there."
        )
        self.sub_check.toggled.connect(self._sub_toggled)
        self.sub_url_edit = QLineEdit()
        self.sub_url_edit.setPlaceholderText("e.g. http://gpu-box:8000/v1 (else the Base URL above)")
        self.sub_url_edit.setToolTip("The OpenAI-compatible server for sub-calls, usually ending in /v1")
        self.sub_url_edit.setClearButtonEnabled(True)
        self.sub_in_flight_spin = self._in_flight_spin("the sub-call endpoint")
        self.sub_url_row = self._url_row(self.sub_url_edit, self.sub_in_flight_spin)
        self.sub_url_row.layout().insertWidget(0, self.sub_check)
        form.addRow("Sub-calls:", self.sub_url_row)
        self.sub_key_edit = QLineEdit()
        self.sub_key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.sub_key_edit.setPlaceholderText("the sub endpoint's own key (a local server often needs none)")
        self.show_sub_key = QToolButton()
        self.show_sub_key.setText("Show")
        self.show_sub_key.setCheckable(True)
        self.show_sub_key.setToolTip("Show or hide the sub endpoint's key")
        self.show_sub_key.toggled.connect(self._toggle_sub_key_visible)
        self.remove_sub_key = QToolButton()
        self.remove_sub_key.setText("Remove key")
        self.remove_sub_key.setToolTip("Delete the stored sub endpoint key now")
        self.remove_sub_key.clicked.connect(self.remove_stored_sub_key)
        self.sub_key_row = QWidget()
        sub_key_layout = QHBoxLayout(self.sub_key_row)
        sub_key_layout.setContentsMargins(0, 0, 0, 0)
        sub_key_layout.addWidget(self.sub_key_edit, 1)
        sub_key_layout.addWidget(self.show_sub_key)
        sub_key_layout.addWidget(self.remove_sub_key)
        self.sub_key_label = QLabel("Sub &key:")
        self.sub_key_label.setBuddy(self.sub_key_edit)
        form.addRow(self.sub_key_label, self.sub_key_row)

        self.test_button.setToolTip(
            "Ask the server for its models and try the root and sub model with a few tiny calls: which "
            "output-limit parameter they take, streaming, token usage, reasoning, context window. Runs use "
            "what it finds."
        )
        self.test_button.clicked.connect(self.test_connection)
        self.test_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.test_result = WrappedLabel()
        self.test_result.setObjectName("connectionResult")
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.test_result)
        self.test_result.setVisible(False)  # no empty gap until there is something to say
        # A browser rather than a label: it wraps long server messages inside its own height, which a
        # word-wrapped label in a dialog layout does not report reliably (the form below got squeezed).
        self.findings = QTextBrowser()
        self.findings.setObjectName("connectionFindings")
        self.findings.setFrameShape(QFrame.Shape.NoFrame)
        self.findings.viewport().setAutoFillBackground(False)
        self.findings.setOpenLinks(False)
        self.findings.document().setDocumentMargin(0)
        self.findings.setVisible(False)
        form.addRow("", self.findings)

        self.url_edit.textChanged.connect(self._url_changed)
        self.key_edit.textChanged.connect(self._update_key_where)
        self.sub_url_edit.textChanged.connect(self._sub_url_changed)
        self.sub_key_edit.textChanged.connect(self._update_sub_key_where)
        return group

    def _in_flight_spin(self, which: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(0, 1024)
        box.setSpecialValueText("no limit")  # 0: as many as the run's concurrency sends
        box.setToolTip(f"Requests sent to {which} at the same time, over all runs of this window; no limit: "
                       "as many as the concurrency sends")  # fmt: skip
        box.valueChanged.connect(self.revalidate)
        return box

    @staticmethod
    def _url_row(edit: QLineEdit, in_flight: QSpinBox) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        label = QLabel("At once:")
        label.setBuddy(in_flight)
        layout.addWidget(label)
        layout.addWidget(in_flight)
        return row

    def _models_group(self) -> QGroupBox:
        group = QGroupBox("Models && prices")
        form = QFormLayout(group)
        known = sorted(DEFAULT_PRICES)
        self.root_combo = QComboBox()
        self.sub_combo = QComboBox()
        for combo, tip in (
            (self.root_combo, "Writes the code that reads your documents, and the final answer"),
            (self.sub_combo, "Reads excerpts for llm_query; a cheaper model keeps runs affordable"),
        ):
            combo.setEditable(True)
            combo.addItems(known)
            combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            combo.setToolTip(tip + ". Type any model name your server offers.")
            combo.setMinimumContentsLength(14)
            combo.editTextChanged.connect(self._models_changed)
        form.addRow("&Root model:", self.root_combo)
        form.addRow("S&ub model:", self.sub_combo)

        self.price_table = QTableWidget(0, 4)
        self.price_table.setObjectName("priceTable")
        self.price_table.setHorizontalHeaderLabels(["Model", "Input $/M", "Output $/M", "Source"])
        self.price_table.verticalHeader().setVisible(False)
        self.price_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.price_table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.AnyKeyPressed
        )
        delegate = _PriceDelegate(self.price_table)
        self.price_table.setItemDelegateForColumn(COL_IN, delegate)
        self.price_table.setItemDelegateForColumn(COL_OUT, delegate)
        header = self.price_table.horizontalHeader()
        header.setSectionResizeMode(COL_MODEL, QHeaderView.ResizeMode.Stretch)
        for column in (COL_IN, COL_OUT, COL_SOURCE):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.price_table.setToolTip(
            "USD per million tokens. Built-in rows are list prices taken "
            f"{PRICES_TAKEN}; edit a price to override it."
        )
        self.price_table.setMinimumHeight(120)
        self.price_table.itemChanged.connect(self._price_edited)
        self.price_table.itemSelectionChanged.connect(self._update_price_buttons)

        self.add_price = QPushButton("&Add price")
        self.add_price.setToolTip("Add a price for another model")
        self.add_price.clicked.connect(self.add_price_row)
        self.remove_price = QPushButton("Remove price")
        self.remove_price.setToolTip("Remove the selected custom price (built-in prices stay)")
        self.remove_price.clicked.connect(self.remove_selected_prices)
        price_buttons = QHBoxLayout()
        price_buttons.setContentsMargins(0, 0, 0, 0)
        price_buttons.addWidget(self.add_price)
        price_buttons.addWidget(self.remove_price)
        price_buttons.addStretch(1)
        prices = QVBoxLayout()
        prices.setContentsMargins(0, 0, 0, 0)
        unit = _muted_label("USD per million tokens, input and output.")
        unit.setWordWrap(False)  # a wrapping label here let the form squeeze the table below its minimum
        prices.addWidget(unit)
        prices.addWidget(self.price_table)
        prices.addLayout(price_buttons)
        form.addRow("Prices:", prices)

        self.cap_check = QCheckBox("&Hard spending cap per run")
        self.cap_check.setToolTip(
            "A run stops before any call that could take it over this amount. Strongly recommended."
        )
        self.cap_check.clicked.connect(self._cap_clicked)
        self.cap_amount = QDoubleSpinBox()
        self.cap_amount.setPrefix("$ ")
        self.cap_amount.setDecimals(2)
        self.cap_amount.setRange(0.01, 100_000.0)
        self.cap_amount.setSingleStep(0.5)
        self.cap_amount.setToolTip("The most one run may spend, in US dollars")
        self.cap_amount.valueChanged.connect(self.revalidate)
        cap_row = QHBoxLayout()
        cap_row.setContentsMargins(0, 0, 0, 0)
        cap_row.addWidget(self.cap_check)
        cap_row.addWidget(self.cap_amount)
        cap_row.addStretch(1)
        form.addRow("Spending:", cap_row)
        return group

    def _limits_group(self) -> QGroupBox:
        group = QGroupBox("Limits")
        form = QFormLayout(group)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)

        def spin(maximum: int, tip: str, minimum: int = 1) -> QSpinBox:
            box = QSpinBox()
            box.setRange(minimum, maximum)
            box.setToolTip(tip)
            box.valueChanged.connect(self.revalidate)
            return box

        self.depth_spin = spin(10, "Levels of rlm_query below the root; 0 = no recursion", minimum=0)
        self.iterations_spin = spin(1000, "Root model replies per REPL level before the run stops")
        self.subcalls_spin = spin(100_000, "llm_query calls in the whole run, all levels together")
        self.concurrency_spin = spin(64, "Sub-calls sent to the server at the same time")
        self.wall_spin = QDoubleSpinBox()
        self.wall_spin.setDecimals(1)
        self.wall_spin.setRange(0.5, 24 * 60)
        self.wall_spin.setSuffix(" min")
        self.wall_spin.setToolTip("A run stops after this long, whatever it is doing")
        self.wall_spin.valueChanged.connect(self.revalidate)
        form.addRow("Max &depth:", self.depth_spin)
        form.addRow("Max &iterations:", self.iterations_spin)
        form.addRow("Max &sub-calls:", self.subcalls_spin)
        form.addRow("&Concurrency:", self.concurrency_spin)
        form.addRow("&Wall-clock limit:", self.wall_spin)
        return group

    def _replies_group(self) -> QGroupBox:
        group = QGroupBox("Model replies")
        form = QFormLayout(group)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)

        def spin(minimum: int, maximum: int, step: int, suffix: str, tip: str) -> QSpinBox:
            box = QSpinBox()
            box.setRange(minimum, maximum)
            box.setSingleStep(step)
            box.setGroupSeparatorShown(True)
            box.setSuffix(suffix)
            box.setToolTip(tip)
            box.valueChanged.connect(self.revalidate)
            return box

        self.root_tokens_spin = spin(
            1, MAX_OUTPUT_TOKENS, 1000, " tokens", "The most each root-model reply may be (reasoning included)"
        )
        self.sub_tokens_spin = spin(
            1, MAX_OUTPUT_TOKENS, 1000, " tokens", "The most each llm_query reply may be (reasoning included)"
        )
        self.output_chars_spin = spin(
            *OUTPUT_CHARS_RANGE,
            1000,
            " chars",
            "REPL output the root model sees after each step; longer output is cut in the middle",
        )
        self.timeout_spin = QDoubleSpinBox()
        self.timeout_spin.setDecimals(0)
        self.timeout_spin.setRange(*TIMEOUT_RANGE_S)
        self.timeout_spin.setSingleStep(10)
        self.timeout_spin.setSuffix(" s")
        self.timeout_spin.setToolTip(
            "How long one model call may take; when streaming, the longest silence between two chunks"
        )
        self.timeout_spin.valueChanged.connect(self.revalidate)
        self.stream_check = QCheckBox("St&ream replies")
        self.stream_check.setToolTip(
            "Show the root model's text as it is written, where the server can stream (plain requests otherwise)"
        )
        form.addRow("R&oot max output:", self.root_tokens_spin)
        form.addRow("Su&b max output:", self.sub_tokens_spin)
        form.addRow("REPL output c&ut:", self.output_chars_spin)
        form.addRow("Request &timeout:", self.timeout_spin)
        form.addRow("", self.stream_check)
        return group

    def _windows_group(self) -> QGroupBox:
        group = QGroupBox("Context windows")
        layout = QVBoxLayout(group)
        self.windows_edit = QPlainTextEdit()
        self.windows_edit.setObjectName("contextWindows")
        self.windows_edit.setPlaceholderText("qwen3:8b=32768   (one model=tokens per line)")
        self.windows_edit.setToolTip(
            "Input + output tokens each model can hold. Set it for a local server with a small context; "
            "otherwise the server's report (Test connection) or the model's published size is used."
        )
        self.windows_edit.setTabChangesFocus(True)
        line = self.windows_edit.fontMetrics().lineSpacing()
        self.windows_edit.setFixedHeight(line * 3 + 12)
        self.windows_edit.textChanged.connect(self.revalidate)
        self.windows_used = _muted_label()
        self.windows_used.setWordWrap(False)  # one short line per model: a wrapped label upsets the dialog's height
        self.windows_used.setObjectName("windowsUsed")
        layout.addWidget(self.windows_edit)
        layout.addWidget(self.windows_used)
        return group

    def _isolation_group(self) -> QGroupBox:
        group = QGroupBox("Model code")
        layout = QVBoxLayout(group)
        # two lines: the column is narrow, and a checkbox does not wrap its text by itself
        self.weak_check = QCheckBox("Run model code with &weak isolation\non this machine")
        self.weak_check.setToolTip(
            "Off: a run refuses to start where this machine cannot wall off the code the model writes "
            "(no bubblewrap, no user namespaces). On: such runs go ahead with resource limits and an "
            "in-process audit hook only, which a determined program can get around: it might read your "
            "files or reach the network. `rlm-desktop doctor` shows what this machine offers."
        )
        layout.addWidget(self.weak_check)
        return group

    def _set_tab_order(self) -> None:
        chain = [
            self.url_edit,
            self.in_flight_spin,
            self.test_button,
            self.key_edit,
            self.show_key,
            self.remove_key,
            self.sub_check,
            self.sub_url_edit,
            self.sub_in_flight_spin,
            self.sub_key_edit,
            self.show_sub_key,
            self.remove_sub_key,
            self.root_combo,
            self.sub_combo,
            self.price_table,
            self.add_price,
            self.remove_price,
            self.cap_check,
            self.cap_amount,
            self.windows_edit,
            self.depth_spin,
            self.iterations_spin,
            self.subcalls_spin,
            self.concurrency_spin,
            self.wall_spin,
            self.root_tokens_spin,
            self.sub_tokens_spin,
            self.output_chars_spin,
            self.timeout_spin,
            self.stream_check,
            self.weak_check,
            self.ok_button,
            self.buttons.button(QDialogButtonBox.StandardButton.Cancel),
        ]
        for first, second in zip(chain, chain[1:], strict=False):
            self.setTabOrder(first, second)

    # ---- loading and reading the form ---------------------------------------------------------------

    def _load(self, settings: Settings) -> None:
        if self.load_problem:
            self.load_notice.setText(self.load_problem)
            self.load_notice.setVisible(True)
        self.url_edit.setText(settings.base_url or "")
        self.key_edit.setText(self._loaded_key)
        sub_url = settings.sub_base_url if isinstance(settings.sub_base_url, str) else ""
        self.sub_url_edit.setText(sub_url.strip())
        self.sub_key_edit.setText(self._loaded_sub_key)
        for box, value in ((self.in_flight_spin, settings.max_in_flight), (self.sub_in_flight_spin, settings.sub_max_in_flight)):
            box.setValue(value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0)
        self.sub_check.setChecked(bool(sub_url.strip()))
        self._sub_toggled(self.sub_check.isChecked())
        self._syncing = True
        self.root_combo.setEditText(str(settings.root_model or ""))
        self.sub_combo.setEditText(str(settings.sub_model or ""))
        self._syncing = False
        for model, value in (settings.prices or {}).items() if isinstance(settings.prices, dict) else ():
            try:
                price = Price.from_value(value)
            except (TypeError, ValueError):
                price = None  # shown blank: "enter both prices" tells the user what to fix
            self._append_row(
                str(model),
                price and price.input_per_m,
                price and price.output_per_m,
                CUSTOM,
                price and price.cached_input_per_m,
            )
        self._sync_price_rows()
        capped = settings.cap_usd is not None
        self.cap_check.setChecked(capped)
        self.cap_amount.setEnabled(capped)
        if capped and isinstance(settings.cap_usd, int | float):
            self.cap_amount.setValue(float(settings.cap_usd))
        else:
            self.cap_amount.setValue(Settings.cap_usd or 2.0)
        for box, value in (
            (self.depth_spin, settings.max_depth),
            (self.iterations_spin, settings.max_iterations),
            (self.subcalls_spin, settings.max_subcalls),
            (self.concurrency_spin, settings.concurrency),
        ):
            if isinstance(value, int):
                box.setValue(value)
        if isinstance(settings.max_wall_s, int | float):
            self.wall_spin.setValue(settings.max_wall_s / 60)
        for box, value in (
            (self.root_tokens_spin, settings.root_max_output_tokens),
            (self.sub_tokens_spin, settings.sub_max_output_tokens),
            (self.output_chars_spin, settings.output_chars),
        ):
            if isinstance(value, int) and not isinstance(value, bool):
                box.setValue(value)
        if isinstance(settings.request_timeout_s, int | float):
            self.timeout_spin.setValue(settings.request_timeout_s)
        self.stream_check.setChecked(settings.stream is not False)
        self.weak_check.setChecked(settings.allow_weak_isolation is True)
        windows = settings.context_windows if isinstance(settings.context_windows, dict) else {}
        self.windows_edit.setPlainText("".join(f"{m}={t}\n" for m, t in windows.items()))
        self._load_cached_caps()
        self._update_key_where()
        self._update_price_buttons()

    def form_settings(self) -> tuple[Settings, list[str]]:
        """The settings as the form shows them, and problems only the form can see (half-filled prices)."""
        problems: list[str] = []
        try:
            windows = parse_context_windows(self.windows_edit.toPlainText().splitlines())
        except ValueError as exc:
            problems.append(f"Context windows: {exc}")
            windows = dict(self.settings.context_windows) if isinstance(self.settings.context_windows, dict) else {}
        prices: dict[str, str] = {}
        for row in range(self.price_table.rowCount()):
            if self._kind(row) != CUSTOM:
                continue  # built-in prices need no entry; "no price" rows are what the cap check reports
            model = self._model(row)
            rate_in, rate_out = self._rate(row, COL_IN), self._rate(row, COL_OUT)
            if not model:
                if rate_in is not None or rate_out is not None:
                    problems.append("A price row has no model name")
                continue
            if rate_in is None or rate_out is None:
                problems.append(f"Price for {model}: enter both the input and the output price")
                continue
            if model in prices:
                problems.append(f"{model} has two price rows: remove one")
                continue
            cached = self.price_table.item(row, COL_MODEL).data(_CACHED_ROLE)
            prices[model] = price_text(Price(rate_in, rate_out, cached))
        sub_url = self.sub_url_edit.text().strip() if self.sub_check.isChecked() else ""
        if sub_url:  # empty (even ticked) is the root's endpoint, as the placeholder says; else the same checks
            checked = validate(dataclasses.replace(Settings(), base_url=sub_url, cap_usd=None))  # as the root's URL
            problems.extend(f"Sub-call endpoint: {p}" for p in checked if p.startswith("Endpoint URL"))
        settings = dataclasses.replace(
            self.settings,
            base_url=self.url_edit.text().strip() or None,
            sub_base_url=sub_url or None,
            max_in_flight=self.in_flight_spin.value() or None,
            sub_max_in_flight=(self.sub_in_flight_spin.value() or None) if sub_url else self.settings.sub_max_in_flight,
            root_model=self.root_combo.currentText().strip(),
            sub_model=self.sub_combo.currentText().strip(),
            cap_usd=round(self.cap_amount.value(), 2) if self.cap_check.isChecked() else None,
            max_depth=self.depth_spin.value(),
            max_iterations=self.iterations_spin.value(),
            max_subcalls=self.subcalls_spin.value(),
            concurrency=self.concurrency_spin.value(),
            max_wall_s=round(self.wall_spin.value() * 60, 1),
            root_max_output_tokens=self.root_tokens_spin.value(),
            sub_max_output_tokens=self.sub_tokens_spin.value(),
            output_chars=self.output_chars_spin.value(),
            request_timeout_s=float(self.timeout_spin.value()),
            stream=self.stream_check.isChecked(),
            allow_weak_isolation=self.weak_check.isChecked(),
            context_windows=windows,
            prices=prices,
        )
        return settings, problems

    @Slot()
    def revalidate(self) -> list[str]:
        settings, problems = self.form_settings()
        # "enter both prices" already covers "set a price ... or remove the cap" for that model
        covered = {p.split(":")[0].removeprefix("Price for ") for p in problems}
        found = [p for p in validate(settings) if p not in {cap_price_problem(m) for m in covered}]
        self.problems = list(dict.fromkeys(problems + found))
        if self.problems:
            items = "".join(f"<li>{_html(p)}</li>" for p in self.problems)
            self.problems_label.setText(f"<b>Fix before saving:</b><ul style='margin: 0'>{items}</ul>")
        self.problems_label.setVisible(bool(self.problems))
        self.ok_button.setEnabled(not self.problems)
        self._colour_missing_prices(settings.cap_usd is not None)
        self._show_windows_used(settings)
        if self.isVisible():
            self._fit_height()  # a new problem line must not squeeze the form
        return self.problems

    def _load_cached_caps(self) -> None:
        """What earlier probes of the endpoint in the form found (read again when the URL or a test changes it)."""
        url = self.url_edit.text().strip() or None
        sub_url = self.sub_url_edit.text().strip() if self.sub_check.isChecked() else ""
        try:
            self._root_caps = load_caps(self.home, url)
            self._sub_caps = load_caps(self.home, sub_url) if sub_url and sub_url != url else None
            listed = load_endpoint(self.home, url).get("listed")
        except OSError:
            self._root_caps, self._sub_caps, listed = {}, None, None
        self._merge_caps()
        self.offer_models(listed if isinstance(listed, list) else [])

    def _merge_caps(self) -> None:
        """The caps runs will use: the root model's from its endpoint, the sub model's from its own when it has
        one (as settings.run_config takes them)."""
        self._cached_caps = dict(self._root_caps)
        sub_model = self.sub_combo.currentText().strip()
        if self._sub_caps is not None and sub_model != self.root_combo.currentText().strip():
            self._cached_caps.pop(sub_model, None)
            if sub_model in self._sub_caps:
                self._cached_caps[sub_model] = self._sub_caps[sub_model]

    def offer_models(self, listed: list[str]) -> None:
        """The models drop-downs: what the server lists (its GET /models, as the last test found), first, then
        the well-known names; what the user typed stays."""
        names = list(dict.fromkeys(str(m) for m in listed if m))
        names += [m for m in sorted(DEFAULT_PRICES) if m not in names]
        for combo in (self.root_combo, self.sub_combo):
            typed = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            for index in range(len(listed)):
                combo.setItemData(index, "Listed by the server", Qt.ItemDataRole.ToolTipRole)
            combo.setEditText(typed)
            combo.blockSignals(False)
    def _show_windows_used(self, settings: Settings) -> None:
        """Under the editor: the window each chosen model will get, and where that figure comes from."""
        parts = []
        for model in self._chosen_models():
            caps = ModelCaps.from_json(self._cached_caps.get(model))
            window = context_window(model, settings.context_windows, caps)
            if window is None:
                parts.append(f"{model}: not known; set it if the server's is small")
                continue
            if settings.context_windows.get(model):
                source = "yours"
            elif caps.context_window:
                source = "reported by the server"
            else:
                source = "published size" if known_context_window(model) else "unknown"
            parts.append(f"{model}: {window:,} tokens ({source})")
        self.windows_used.setText("\n".join(parts))

    # ---- the price table ----------------------------------------------------------------------------

    def _kind(self, row: int) -> str:
        return self.price_table.item(row, COL_MODEL).data(_KIND_ROLE)

    def _model(self, row: int) -> str:
        return self.price_table.item(row, COL_MODEL).text().strip()

    def _rate(self, row: int, column: int) -> float | None:
        value = self.price_table.item(row, column).data(Qt.ItemDataRole.EditRole)
        return float(value) if isinstance(value, int | float) else None

    def _append_row(self, model, rate_in, rate_out, kind, cached=None, at: int | None = None) -> int:
        row = self.price_table.rowCount() if at is None else at
        was_syncing, self._syncing = self._syncing, True
        self.price_table.insertRow(row)
        name = QTableWidgetItem(model)
        name.setData(_CACHED_ROLE, cached)
        self.price_table.setItem(row, COL_MODEL, name)
        for column, rate in ((COL_IN, rate_in), (COL_OUT, rate_out)):
            item = QTableWidgetItem()
            if rate is not None:
                item.setData(Qt.ItemDataRole.EditRole, float(rate))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.price_table.setItem(row, column, item)
        source = QTableWidgetItem()
        source.setFlags(source.flags() & ~Qt.ItemFlag.ItemIsEditable)
        self.price_table.setItem(row, COL_SOURCE, source)
        self._set_kind(row, kind)
        self._syncing = was_syncing
        return row

    def _set_kind(self, row: int, kind: str) -> None:
        was_syncing, self._syncing = self._syncing, True
        name = self.price_table.item(row, COL_MODEL)
        name.setData(_KIND_ROLE, kind)
        flags = name.flags()
        # A built-in row belongs to a chosen model, so its name is not edited; its prices can be.
        name.setFlags(
            flags | Qt.ItemFlag.ItemIsEditable if kind == CUSTOM else flags & ~Qt.ItemFlag.ItemIsEditable
        )
        source = self.price_table.item(row, COL_SOURCE)
        source.setText(kind)
        italic = QFont(self.price_table.font())
        italic.setItalic(kind != CUSTOM)
        source.setFont(italic)
        source.setForeground(QBrush(MUTED))
        tips = {
            BUILT_IN: f"List price taken {PRICES_TAKEN}; edit it to override",
            CUSTOM: "Your price; remove the row to go back to the built-in one, if there is one",
            NO_PRICE: "No price is known for this model: enter its input and output price",
        }
        for column in range(4):
            self.price_table.item(row, column).setToolTip(tips[kind])
        self._syncing = was_syncing

    def _colour_missing_prices(self, capped: bool) -> None:
        was_syncing, self._syncing = self._syncing, True
        for row in range(self.price_table.rowCount()):
            for column in (COL_IN, COL_OUT):
                self.price_table.item(row, column).setBackground(QBrush())
            if self._kind(row) == NO_PRICE:
                colour = UNVERIFIED if capped else WARNING
                self.price_table.item(row, COL_SOURCE).setForeground(QBrush(colour))
                wash = QColor(colour)
                wash.setAlpha(40)  # a faint tint points at the cells to fill in
                for column in (COL_IN, COL_OUT):
                    self.price_table.item(row, column).setBackground(QBrush(wash))
        self._syncing = was_syncing

    def _chosen_models(self) -> list[str]:
        models = [self.root_combo.currentText().strip(), self.sub_combo.currentText().strip()]
        return [m for m in dict.fromkeys(models) if m]

    def _sync_price_rows(self) -> None:
        """One row per chosen model: a built-in price, a custom one, or an empty row asking for one."""
        chosen = self._chosen_models()
        custom = {self._model(r) for r in range(self.price_table.rowCount()) if self._kind(r) == CUSTOM}
        was_syncing, self._syncing = self._syncing, True
        for row in reversed(range(self.price_table.rowCount())):
            model = self._model(row)
            if self._kind(row) != CUSTOM and (model not in chosen or model in custom):
                self.price_table.removeRow(row)
        present = {self._model(r) for r in range(self.price_table.rowCount())}
        at = 0
        for model in chosen:
            if model in present:
                continue
            default = DEFAULT_PRICES.get(model)
            if default is None:
                self._append_row(model, None, None, NO_PRICE, at=at)
            else:
                self._append_row(model, default.input_per_m, default.output_per_m, BUILT_IN, at=at)
            at += 1
        self._syncing = was_syncing

    @Slot()
    def _url_changed(self) -> None:
        self._load_cached_caps()
        self.revalidate()

    @Slot()
    def _models_changed(self) -> None:
        if self._syncing:
            return
        self._merge_caps()  # the sub model's window may come from its own server
        self._sync_price_rows()
        self.revalidate()

    @Slot(QTableWidgetItem)
    def _price_edited(self, item: QTableWidgetItem) -> None:
        if self._syncing:
            return
        row = item.row()
        if item.column() in (COL_IN, COL_OUT):
            name = self.price_table.item(row, COL_MODEL)
            was_syncing, self._syncing = self._syncing, True
            name.setData(_CACHED_ROLE, None)  # a changed price makes the old cached-input rate meaningless
            self._syncing = was_syncing
            if self._kind(row) != CUSTOM:
                self._set_kind(row, CUSTOM)
        self._sync_price_rows()
        self._update_price_buttons()
        self.revalidate()

    @Slot()
    def add_price_row(self) -> None:
        row = self._append_row("", None, None, CUSTOM)
        self.price_table.setCurrentCell(row, COL_MODEL)
        self.price_table.editItem(self.price_table.item(row, COL_MODEL))
        self.revalidate()

    @Slot()
    def remove_selected_prices(self) -> None:
        rows = sorted({i.row() for i in self.price_table.selectedItems()}, reverse=True)
        for row in rows:
            if self._kind(row) == CUSTOM:
                self.price_table.removeRow(row)
        self._sync_price_rows()  # a removed override brings the built-in price back
        self._update_price_buttons()
        self.revalidate()

    @Slot()
    def _update_price_buttons(self) -> None:
        rows = {i.row() for i in self.price_table.selectedItems()}
        self.remove_price.setEnabled(any(self._kind(r) == CUSTOM for r in rows))

    # ---- cap, key, connection -----------------------------------------------------------------------

    @Slot(bool)
    def _cap_clicked(self, checked: bool) -> None:
        if not checked and not self._confirm_remove_cap():
            self.cap_check.setChecked(True)
            return
        self.cap_amount.setEnabled(checked)
        self.revalidate()

    def _confirm_remove_cap(self) -> bool:
        answer = QMessageBox.warning(
            self,
            "Remove the spending cap?",
            "Without a hard cap a run can keep spending until it ends or hits a limit. "
            "The cap is what makes a runaway run harmless.\n\nRemove it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    @Slot(bool)
    def _toggle_key_visible(self, visible: bool) -> None:
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Normal if visible else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hide" if visible else "Show")

    @Slot()
    def _update_key_where(self) -> None:
        where = key_whereabouts(
            self.key_edit.text().strip(), self._loaded_key, self.key_store.backend, KEY_ENV_VAR, "key"
        )
        self.key_where.setText(where)
        self.remove_key.setEnabled(bool(self._loaded_key))

    @Slot()
    def _sub_url_changed(self) -> None:
        self._load_cached_caps()  # the sub model's window comes from its own server
        self.revalidate()

    @Slot(bool)
    def _sub_toggled(self, on: bool) -> None:
        self.sub_url_edit.setEnabled(on)
        self.sub_in_flight_spin.setEnabled(on)
        for widget in (self.sub_key_label, self.sub_key_row):
            widget.setVisible(on)
        self._update_sub_key_where()
        self._load_cached_caps()
        self.revalidate()
        if on and self.isVisible():
            self.sub_url_edit.setFocus()

    @Slot(bool)
    def _toggle_sub_key_visible(self, visible: bool) -> None:
        self.sub_key_edit.setEchoMode(QLineEdit.EchoMode.Normal if visible else QLineEdit.EchoMode.Password)
        self.show_sub_key.setText("Hide" if visible else "Show")

    @Slot()
    def _update_sub_key_where(self) -> None:
        """Where the sub key lives, as the key field's tooltip (no extra line: the dialog must fit 720 px)."""
        where = key_whereabouts(
            self.sub_key_edit.text().strip(),
            self._loaded_sub_key,
            self.sub_key_store.backend,
            SUB_KEY_ENV_VAR,
            "sub endpoint key",
        )
        self.sub_key_edit.setToolTip(where + " It is sent only to the sub-call endpoint, never the root's key.")
        self.remove_sub_key.setEnabled(bool(self._loaded_sub_key))

    @Slot()
    def remove_stored_sub_key(self) -> None:
        try:
            self.sub_key_store.delete()
        except OSError as exc:
            QMessageBox.warning(self, "Key not removed", f"Could not remove the stored sub endpoint key: {exc}")
            return
        self._loaded_sub_key = ""
        self.sub_key_edit.clear()
        self._update_sub_key_where()

    @Slot()
    def remove_stored_key(self) -> None:
        try:
            self.key_store.delete()
        except OSError as exc:
            QMessageBox.warning(self, "Key not removed", f"Could not remove the stored key: {exc}")
            return
        self._loaded_key = ""
        self.key_edit.clear()
        self._update_key_where()
        self.key_where.setText(f"Key removed from the {self.key_store.backend}.")

    @Slot()
    def test_connection(self) -> None:
        """Try the URL and key in the form on a worker thread; the result lands in `test_result`."""
        if self._test_token is not None:
            return
        settings, _ = self.form_settings()
        url_problems = validate(dataclasses.replace(settings, cap_usd=None, prices={}))
        url_problems = [p for p in url_problems if p.startswith("Endpoint URL")]
        if url_problems:
            self._show_connection_result(ConnectionResult(False, url_problems[0]))
            return
        base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        api_key = self.key_edit.text().strip() or os.environ.get(KEY_ENV_VAR, "")
        # sub-calls on their own server: its model is tried there, with its own key (never the root's)
        sub_url = settings.sub_base_url if settings.sub_base_url and settings.sub_base_url != base_url else None
        sub_key = self.sub_key_edit.text().strip() or os.environ.get(SUB_KEY_ENV_VAR, "")
        token = self._test_token = object()
        self.test_button.setEnabled(False)
        self.test_result.setStyleSheet(f"color: {MUTED.name()};")
        self.test_result.setText(f"Connecting to {base_url}{f' and {sub_url}' if sub_url else ''}…")
        self.test_result.setVisible(True)

        self.findings.setVisible(False)
        timeout_s, home = self.connection_timeout_s, self.home
        models = self._chosen_models()
        root_model, sub_model = settings.root_model, settings.sub_model
        prices = dict(settings.prices)

        def work() -> ConnectionResult:  # must not reference `self` (see gui/tasks.py)
            if sub_url is None:
                return run_connection_test(base_url, api_key, models, timeout_s, prices, home)
            root = run_connection_test(base_url, api_key, [root_model], timeout_s, prices, home)
            sub = run_connection_test(sub_url, sub_key, [sub_model], timeout_s, prices, home)
            return both_endpoints(root, sub)

        run_in_background(work, lambda result: self._connection_finished(token, result), owner=self)

    def _connection_finished(self, token: object, result: ConnectionResult) -> None:
        if token is self._test_token:  # a test started before the form was reset is stale
            self._show_connection_result(result)

    def _show_connection_result(self, result: ConnectionResult) -> None:
        self._test_token = None
        self.test_button.setEnabled(True)
        if result.ok and not result.warning:
            colour, mark = VERIFIED, "✓"
        elif result.ok:
            colour, mark = WARNING, "⚠"
        else:
            colour, mark = UNVERIFIED, "✗"
        self.test_result.setStyleSheet(f"color: {colour.name()};")
        self.test_result.setText(f"{mark} {result.message}")
        self.test_result.setVisible(True)
        html = ""
        if result.report is not None:
            if result.report.listed:
                self.offer_models(result.report.listed)
            settings, _ = self.form_settings()
            roles = {"root": settings.root_model, "sub": settings.sub_model}
            reports = [r for r in (result.report, result.sub_report) if r is not None]
            html = findings_html(reports, roles, settings.context_windows)
            self._load_cached_caps()  # the test just cached what it found
            self._show_windows_used(settings)
        self._show_findings(html)
        self._fit_height()
        self.connection_tested.emit(result)

    def _show_findings(self, html: str) -> None:
        self.findings.setHtml(html)
        self.findings.setVisible(bool(html))
        if not html:
            return
        document = self.findings.document()
        document.setTextWidth(self.findings.viewport().width() or self.width() - 120)
        self.findings.setFixedHeight(min(int(document.size().height()) + 6, FINDINGS_MAX_HEIGHT))

    def _fit_height(self) -> None:
        """Grow to show the whole form (never shrink), up to the screen's height: past it the form scrolls.

        The layout's minimum ignores height-for-width, so wrapped labels (the result's two lines, the
        problems) are measured for this width; without this they would be taken from the price table below.
        """
        needed = self._needed_height()
        area = available_geometry(self)
        if area is not None and not area.isEmpty():
            needed = min(needed, area.height() - FRAME_ALLOWANCE.height())
        if self.isVisible() and needed > self.height():
            self.resize(self.width(), needed)

    def _needed_height(self) -> int:
        """The dialog's height that shows the whole form without scrolling, at the current width."""
        layout = self.body.layout()
        layout.activate()
        margins = self.layout().contentsMargins()
        width = self.body_scroll.viewport().width() or self.width() - margins.left() - margins.right()
        form = layout.minimumSize().height()
        for index in range(layout.count()):
            item = layout.itemAt(index)
            if not item.isEmpty() and item.hasHeightForWidth():
                form += max(0, item.heightForWidth(width) - item.minimumSize().height())
        spacing = self.layout().spacing()
        below = self.buttons.sizeHint().height()
        if not self.problems_label.isHidden():
            below += spacing + self.problems_label.heightForWidth(self.width() - margins.left() - margins.right())
        return margins.top() + form + spacing + below + margins.bottom()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Open as tall as the form needs (a scroll area alone would ask for a small box), within the screen."""
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            self.body_scroll.setMinimumWidth(
                self.body.minimumSizeHint().width() + self.body_scroll.verticalScrollBar().sizeHint().width()
            )
            self._fit_height()

    # ---- saving -------------------------------------------------------------------------------------

    def accept(self) -> None:
        if self.revalidate():
            return
        settings, _ = self.form_settings()
        key = self.key_edit.text().strip()
        # the sub key is kept while sub-calls share the root's endpoint: ticking the box again finds it
        sub_key = self.sub_key_edit.text().strip()
        try:
            if key != self._loaded_key:
                if key:
                    self.key_store.set(key)
                else:
                    self.key_store.delete()
                self._loaded_key = key
            if sub_key != self._loaded_sub_key:
                if sub_key:
                    self.sub_key_store.set(sub_key)
                else:
                    self.sub_key_store.delete()
                self._loaded_sub_key = sub_key
            settings.save(self.home)
        except OSError as exc:
            QMessageBox.critical(self, "Settings not saved", f"Could not save the settings: {exc}")
            return
        self.settings = settings
        self.settings_saved.emit(settings)
        super().accept()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
