"""The Settings dialog: endpoint and API key, models and prices, the spending cap and the run limits."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QLocale, QModelIndex, QObject, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.engine.pricing import DEFAULT_PRICES, PRICES_TAKEN, Price
from rlm_desktop.gui.theme import MUTED, STATUS_COLOURS, UNVERIFIED, VERIFIED
from rlm_desktop.secrets import KEY_ENV_VAR, KeyStore
from rlm_desktop.settings import Settings, cap_price_problem, price_text, validate

SETTINGS_SHORTCUT = "Ctrl+,"  # the lead's menu action uses this
ENDPOINT_PLACEHOLDER = "https://api.openai.com/v1 — or your vLLM / Ollama / LM Studio URL"
OPENAI_URL = "https://api.openai.com/v1"
CONNECTION_TIMEOUT_S = 15.0

BUILT_IN, CUSTOM, NO_PRICE = "built-in", "custom", "no price"
_KIND_ROLE = Qt.ItemDataRole.UserRole
_CACHED_ROLE = Qt.ItemDataRole.UserRole + 1
COL_MODEL, COL_IN, COL_OUT, COL_SOURCE = range(4)
WARNING = STATUS_COLOURS["refused"]


@dataclass(frozen=True)
class ConnectionResult:
    """What "Test connection" found; `warning` marks a connection that works but needs a look."""

    ok: bool
    message: str
    warning: bool = False


def run_connection_test(
    base_url: str, api_key: str, model: str | None, timeout_s: float = CONNECTION_TIMEOUT_S
) -> ConnectionResult:
    """Ask the server for its models (or a one-token reply); blocking, so run it off the GUI thread."""
    from rlm_desktop.engine.budget import SpendLedger
    from rlm_desktop.engine.models import ModelClient
    from rlm_desktop.engine.pricing import PriceTable

    async def probe() -> str:
        # No cap here: the fallback call is a few tokens, and an unpriced model must still be testable.
        async with ModelClient(
            base_url, api_key, PriceTable(), SpendLedger(None), timeout_s=timeout_s, max_retries=0
        ) as client:
            return await client.test_connection(model or None)

    try:
        message = asyncio.run(probe())
    except Exception as exc:  # every failure becomes a sentence in the dialog
        return ConnectionResult(False, plain_error(exc, base_url, timeout_s))
    # ModelClient words a reachable server that lacks the chosen model this way.
    return ConnectionResult(True, message, warning="is not among" in message)


def plain_error(exc: BaseException, base_url: str, timeout_s: float = CONNECTION_TIMEOUT_S) -> str:
    """A connection failure in words a first-time user can act on."""
    import openai

    from rlm_desktop.engine.models import ModelAuthError, ModelCallError, ModelNotFoundError

    if isinstance(exc, ModelAuthError):
        return (
            f"The server at {base_url} rejected the API key. Check the key, and that it is a key for "
            "this endpoint."
        )
    if isinstance(exc, ModelNotFoundError):
        return f"The server at {base_url} answered “not found”: check the URL (it usually ends in /v1) and the model name."
    cause = exc.__cause__
    if isinstance(cause, openai.APITimeoutError | TimeoutError):
        return (
            f"No answer from {base_url} within {timeout_s:g} s. Is the server running, and is the URL right?"
        )
    if isinstance(cause, openai.APIConnectionError) or "connection failed" in str(exc):
        return (
            f"Could not connect to {base_url}: nothing answered there. Check the URL, and that the server "
            "is running."
        )
    if isinstance(exc, ModelCallError):
        text = str(exc)
        return text[:1].upper() + text[1:]
    return f"The test failed: {exc}"


class _ConnectionRelay(QObject):
    """Carries connection-test results to the GUI thread; one for the whole app.

    The worker thread holds only this long-lived object, never the dialog: if a worker dropped
    the last reference to a dialog, PySide would destroy the dialog off the GUI thread and crash.
    """

    finished = Signal(object, object)  # (the dialog's request token, ConnectionResult)


_relay: _ConnectionRelay | None = None


def _connection_relay() -> _ConnectionRelay:
    global _relay
    if _relay is None:
        _relay = _ConnectionRelay(QCoreApplication.instance())
    return _relay


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

    def __init__(self, home: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.home = Path(home)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.setMinimumWidth(780)
        self.load_problem: str | None = None
        try:
            self.settings = Settings.load(self.home)
        except ValueError as exc:  # a broken file must not lock the user out of fixing it
            self.settings = Settings()
            self.load_problem = f"{exc}. Saving will replace it."
        self.key_store = KeyStore(self.home)
        self._loaded_key = self.key_store.get() or ""
        self._syncing = False
        self._test_token: object | None = None  # the connection test whose answer is awaited
        self.connection_timeout_s = CONNECTION_TIMEOUT_S
        self.problems: list[str] = []

        self._build()
        self._load(self.settings)
        _connection_relay().finished.connect(self._connection_finished, Qt.ConnectionType.QueuedConnection)
        self.revalidate()

    # ---- building -----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.load_notice = QLabel()
        self.load_notice.setWordWrap(True)
        self.load_notice.setStyleSheet(f"color: {WARNING.name()};")
        self.load_notice.setVisible(False)

        endpoint = self._endpoint_group()
        columns = QHBoxLayout()
        columns.addWidget(self._models_group(), 3)
        limits = QVBoxLayout()
        limits.addWidget(self._limits_group())
        limits.addStretch(1)
        columns.addLayout(limits, 2)

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

        outer = QVBoxLayout(self)
        outer.addWidget(self.load_notice)
        outer.addWidget(endpoint)
        outer.addLayout(columns)
        outer.addWidget(self.problems_label)
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
        form.addRow("&Base URL:", self.url_edit)

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

        self.test_button = QPushButton("&Test connection")
        self.test_button.setToolTip("Ask the server for its list of models, with this URL and key")
        self.test_button.clicked.connect(self.test_connection)
        self.test_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.test_result = QLabel()
        self.test_result.setObjectName("connectionResult")
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        test_row = QHBoxLayout()
        test_row.setContentsMargins(0, 0, 0, 0)
        test_row.addWidget(self.test_button, 0, Qt.AlignmentFlag.AlignTop)
        test_row.addWidget(self.test_result, 1)
        form.addRow("", test_row)
        self.test_result.setVisible(False)  # no empty gap until there is something to say

        self.url_edit.textChanged.connect(self.revalidate)
        self.key_edit.textChanged.connect(self._update_key_where)
        return group

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
        prices.addWidget(_muted_label("USD per million tokens, input and output."))
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

    def _set_tab_order(self) -> None:
        chain = [
            self.url_edit,
            self.key_edit,
            self.show_key,
            self.remove_key,
            self.test_button,
            self.root_combo,
            self.sub_combo,
            self.price_table,
            self.add_price,
            self.remove_price,
            self.cap_check,
            self.cap_amount,
            self.depth_spin,
            self.iterations_spin,
            self.subcalls_spin,
            self.concurrency_spin,
            self.wall_spin,
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
        self._update_key_where()
        self._update_price_buttons()

    def form_settings(self) -> tuple[Settings, list[str]]:
        """The settings as the form shows them, and problems only the form can see (half-filled prices)."""
        problems: list[str] = []
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
        settings = dataclasses.replace(
            self.settings,
            base_url=self.url_edit.text().strip() or None,
            root_model=self.root_combo.currentText().strip(),
            sub_model=self.sub_combo.currentText().strip(),
            cap_usd=round(self.cap_amount.value(), 2) if self.cap_check.isChecked() else None,
            max_depth=self.depth_spin.value(),
            max_iterations=self.iterations_spin.value(),
            max_subcalls=self.subcalls_spin.value(),
            concurrency=self.concurrency_spin.value(),
            max_wall_s=round(self.wall_spin.value() * 60, 1),
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
        return self.problems

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
    def _models_changed(self) -> None:
        if self._syncing:
            return
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
        typed = self.key_edit.text().strip()
        backend = self.key_store.backend
        if not typed and not self._loaded_key:
            where = f"No key stored. A key you enter is kept in the {backend}."
        elif typed == self._loaded_key:
            where = f"Stored in the {backend}."
        elif not typed:
            where = f"Save removes the key from the {backend}."
        else:
            where = f"Save stores this key in the {backend}."
        if os.environ.get(KEY_ENV_VAR):
            where += f" ${KEY_ENV_VAR} is set and is used before this key."
        self.key_where.setText(where)
        self.remove_key.setEnabled(bool(self._loaded_key))

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
        token = self._test_token = object()
        self.test_button.setEnabled(False)
        self.test_result.setStyleSheet(f"color: {MUTED.name()};")
        self.test_result.setText(f"Connecting to {base_url}…")
        self.test_result.setVisible(True)

        relay, model, timeout_s = _connection_relay(), settings.root_model, self.connection_timeout_s

        def work() -> None:  # must not reference `self` (see _ConnectionRelay)
            relay.finished.emit(token, run_connection_test(base_url, api_key, model, timeout_s))

        threading.Thread(target=work, name="settings-connection-test", daemon=True).start()

    @Slot(object, object)
    def _connection_finished(self, token: object, result: ConnectionResult) -> None:
        if token is self._test_token:  # other dialogs' tests share the relay
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
        self.connection_tested.emit(result)

    # ---- saving -------------------------------------------------------------------------------------

    def accept(self) -> None:
        if self.revalidate():
            return
        settings, _ = self.form_settings()
        key = self.key_edit.text().strip()
        try:
            if key != self._loaded_key:
                if key:
                    self.key_store.set(key)
                else:
                    self.key_store.delete()
                self._loaded_key = key
            settings.save(self.home)
        except OSError as exc:
            QMessageBox.critical(self, "Settings not saved", f"Could not save the settings: {exc}")
            return
        self.settings = settings
        self.settings_saved.emit(settings)
        super().accept()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
