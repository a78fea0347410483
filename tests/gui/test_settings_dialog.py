"""The Settings dialog on real widgets: validation, saving (key apart), and "Test connection" on a thread."""

from __future__ import annotations

import gc
import json
import socket
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QApplication, QDoubleSpinBox

from rlm_desktop.engine.endpoints import load_caps
from rlm_desktop.gui.settings_dialog import COL_IN, COL_OUT, COL_SOURCE, ENDPOINT_PLACEHOLDER, SettingsDialog
from rlm_desktop.secrets import KeyStore
from rlm_desktop.settings import Settings
from tests.probe_server import ProbeServer, Quirks


class MemoryKeyring(KeyringBackend):
    """A working keyring backend held in a dict."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.passwords.get((service, username))

    def set_password(self, service, username, password):
        self.passwords[(service, username)] = password

    def delete_password(self, service, username):
        self.passwords.pop((service, username), None)


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """No real keyring and no key or endpoint from the developer's environment."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)
    # Free this test's widgets here, on the GUI thread: if a cycle kept one alive, a garbage collection
    # started later by some worker thread would otherwise destroy it off the GUI thread (a PySide crash).
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def open_dialog(qtbot, home: Path, **settings) -> SettingsDialog:
    if settings:
        Settings(**settings).save(home)
    dialog = SettingsDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def price_row(dialog: SettingsDialog, model: str) -> int:
    [row] = [r for r in range(dialog.price_table.rowCount()) if dialog._model(r) == model]
    return row


def type_price(qtbot, dialog: SettingsDialog, row: int, column: int, text: str) -> None:
    """Edit a price cell the way a user does: open its editor, type, press Enter."""
    table = dialog.price_table
    # The previous cell's editor is deleted later (a queued deleteLater): under load it may still be there,
    # and typing into it would go nowhere.
    qtbot.waitUntil(lambda: not table.viewport().findChildren(QDoubleSpinBox), timeout=5_000)
    table.setCurrentCell(row, column)
    table.editItem(table.item(row, column))
    [editor] = table.viewport().findChildren(QDoubleSpinBox)
    editor.selectAll()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the delegate commits (queued) and closes the editor
    qtbot.waitUntil(lambda: dialog._rate(row, column) == float(text), timeout=5_000)


def free_port() -> int:
    with socket.socket() as probe:  # just free, so nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cap_with_unknown_price_is_an_error_until_priced(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path, root_model="my-local", sub_model="gpt-4o-mini", cap_usd=1.5)
    assert dialog.problems == ["Set a price for my-local or remove the cap"]
    assert not dialog.ok_button.isEnabled()
    assert dialog.problems_label.isVisible()
    assert "Set a price for my-local or remove the cap" in dialog.problems_label.text()
    row = price_row(dialog, "my-local")
    assert dialog.price_table.item(row, COL_SOURCE).text() == "no price"
    builtin = price_row(dialog, "gpt-4o-mini")
    assert dialog.price_table.item(builtin, COL_SOURCE).text() == "built-in"
    assert dialog._rate(builtin, COL_IN) == 0.15

    type_price(qtbot, dialog, row, COL_IN, "0.6")
    assert dialog.problems == ["Price for my-local: enter both the input and the output price"]
    type_price(qtbot, dialog, row, COL_OUT, "0.8")
    assert dialog.problems == []
    assert dialog.ok_button.isEnabled() and not dialog.problems_label.isVisible()
    assert dialog.price_table.item(row, COL_SOURCE).text() == "custom"
    assert dialog.form_settings()[0].prices == {"my-local": "0.6:0.8"}


def test_removing_the_cap_asks_first_and_clears_the_price_problem(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path, root_model="my-local", sub_model="my-local")
    assert dialog.problems == ["Set a price for my-local or remove the cap"]
    asked = []
    dialog._confirm_remove_cap = lambda: asked.append(1) or False
    dialog.cap_check.click()
    assert asked and dialog.cap_check.isChecked() and dialog.problems  # declined: the cap stays
    dialog._confirm_remove_cap = lambda: True
    dialog.cap_check.click()
    assert not dialog.cap_check.isChecked() and not dialog.cap_amount.isEnabled()
    assert dialog.problems == [] and dialog.form_settings()[0].cap_usd is None
    dialog.cap_check.click()  # turning it back on never asks
    assert dialog.cap_check.isChecked() and dialog.problems


def test_endpoint_url_problems_show_inline(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path)
    assert dialog.url_edit.placeholderText() == ENDPOINT_PLACEHOLDER
    assert dialog.problems == [] and dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.url_edit, "localhost:8000/v1")
    assert dialog.problems == ["Endpoint URL must start with http:// or https:// (it starts with localhost:)"]
    assert not dialog.ok_button.isEnabled()
    dialog.url_edit.setText("http://localhost:8000/v1")
    assert dialog.problems == [] and dialog.ok_button.isEnabled()


def test_switching_models_shows_their_prices(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path)
    assert {dialog._model(r) for r in range(dialog.price_table.rowCount())} == {"gpt-5", "gpt-5-mini"}
    dialog.root_combo.setEditText("gpt-4.1")
    assert {dialog._model(r) for r in range(dialog.price_table.rowCount())} == {"gpt-4.1", "gpt-5-mini"}
    row = price_row(dialog, "gpt-4.1")
    assert (dialog._rate(row, COL_IN), dialog._rate(row, COL_OUT)) == (2.0, 8.0)
    dialog.price_table.selectRow(row)
    assert not dialog.remove_price.isEnabled()  # built-in prices cannot be removed, only overridden

    dialog.add_price_row()
    new = dialog.price_table.rowCount() - 1
    dialog.price_table.item(new, 0).setText("gpt-4.1")
    new = price_row(dialog, "gpt-4.1")  # the custom row took the place of the built-in one
    assert dialog.price_table.item(new, COL_SOURCE).text() == "custom"
    dialog.price_table.item(new, COL_IN).setData(Qt.ItemDataRole.EditRole, 1.0)
    dialog.price_table.item(new, COL_OUT).setData(Qt.ItemDataRole.EditRole, 4.0)
    # the override replaces the built-in row
    assert [dialog._model(r) for r in range(dialog.price_table.rowCount())].count("gpt-4.1") == 1
    assert dialog.form_settings()[0].prices == {"gpt-4.1": "1:4"}
    dialog.price_table.selectRow(price_row(dialog, "gpt-4.1"))
    assert dialog.remove_price.isEnabled()
    dialog.remove_selected_prices()
    row = price_row(dialog, "gpt-4.1")  # the built-in price is back
    assert dialog.price_table.item(row, COL_SOURCE).text() == "built-in"
    assert dialog.form_settings()[0].prices == {}


def test_save_writes_settings_without_the_key_and_the_key_to_the_store(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path, base_url="http://127.0.0.1:1/v1", last_case="inquiry")
    qtbot.keyClicks(dialog.key_edit, "sk-test-secret")
    assert dialog.key_edit.echoMode() == dialog.key_edit.EchoMode.Password
    dialog.show_key.click()
    assert dialog.key_edit.echoMode() == dialog.key_edit.EchoMode.Normal and dialog.show_key.text() == "Hide"
    assert "Save stores this key in the file" in dialog.key_where.text()
    dialog.iterations_spin.setValue(12)
    dialog.wall_spin.setValue(5)
    with qtbot.waitSignal(dialog.settings_saved) as saved:
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == dialog.DialogCode.Accepted
    text = (tmp_path / "settings.json").read_text()
    assert "sk-test-secret" not in text
    data = json.loads(text)
    assert (data["max_iterations"], data["max_wall_s"], data["last_case"]) == (12, 300.0, "inquiry")
    assert data["base_url"] == "http://127.0.0.1:1/v1" and data["cap_usd"] == 2.0
    assert isinstance(saved.args[0], Settings) and saved.args[0].max_iterations == 12
    assert KeyStore(tmp_path).get() == "sk-test-secret"
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0


def test_key_goes_to_a_working_keyring_and_can_be_removed(qtbot, tmp_path):
    backend = MemoryKeyring()
    keyring.set_keyring(backend)  # the autouse fixture restores the previous one
    dialog = open_dialog(qtbot, tmp_path)
    assert "system keyring" in dialog.key_where.text() and not dialog.remove_key.isEnabled()
    dialog.key_edit.setText("sk-kept-safe")
    dialog.accept()
    assert list(backend.passwords.values()) == ["sk-kept-safe"]
    assert not (tmp_path / "credentials.json").exists()

    again = open_dialog(qtbot, tmp_path)
    assert again.key_edit.text() == "sk-kept-safe" and again.remove_key.isEnabled()
    assert again.key_where.text().startswith("Stored in the system keyring")
    again.remove_key.click()
    assert backend.passwords == {} and again.key_edit.text() == ""
    assert "removed" in again.key_where.text()


def test_a_broken_settings_file_still_opens(qtbot, tmp_path):
    (tmp_path / "settings.json").write_text("{oops")
    dialog = open_dialog(qtbot, tmp_path)
    assert dialog.load_notice.isVisible() and "Saving will replace it" in dialog.load_notice.text()
    dialog.accept()
    assert Settings.load(tmp_path).root_model == "gpt-5"


QUIRKY = Quirks(
    models=["qwen3:8b", "gpt-4o-mini"],
    model_fields={"qwen3:8b": {"max_model_len": 8192}},
    refuse_max_completion_tokens="422",
    reasoning="think",
    usage="none",
    stream="no_options",
)


def test_connection_probes_both_models_and_shows_what_it_found(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path, root_model="qwen3:8b", sub_model="gpt-4o-mini", cap_usd=None)
    assert dialog.windows_used.text().splitlines()[0] == "qwen3:8b: 32,768 tokens (published size)"
    with ProbeServer(QUIRKY) as server:
        dialog.url_edit.setText(server.base_url)
        with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
            qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
            # the click returned while the test runs on its own thread
            assert not dialog.test_button.isEnabled() and "Connecting to" in dialog.test_result.text()
    result = tested.args[0]
    assert result.ok and not result.warning and dialog.test_button.isEnabled()
    assert dialog.test_result.text() == (
        f"✓ Connected to {server.base_url} (2 models listed); qwen3:8b and gpt-4o-mini answered."
    )
    # both models were really tried, each with a streaming call too
    assert {r.json["model"] for r in server.chat_requests} == {"qwen3:8b", "gpt-4o-mini"}
    assert any(r.json.get("stream") for r in server.chat_requests)
    shown = dialog.findings.toPlainText()
    assert dialog.findings.isVisible()
    for words in (
        "Root: qwen3:8b",
        "Sub: gpt-4o-mini",
        "output limit\nmax_tokens\nmax_tokens",
        "yes, without usage",
        "NOT reported: costs estimated",
        "<think> tags in the text",
        "8,192 tokens (server)",
        "128,000 tokens (published)",
        "refused max_completion_tokens (HTTP 422: max_completion_tokens: Extra inputs are not permitted)",
    ):
        assert words in shown
    # cached for runs, and the window in use now comes from the server
    assert load_caps(tmp_path, server.base_url)["qwen3:8b"]["context_window"] == 8192
    assert dialog.windows_used.text().splitlines()[0] == "qwen3:8b: 8,192 tokens (reported by the server)"


def test_connection_warns_about_a_missing_model_and_reports_a_bad_key(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path, root_model="tidy-model", sub_model="gpt-9", cap_usd=None)
    with ProbeServer(Quirks()) as server:
        dialog.url_edit.setText(server.base_url)
        with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
            dialog.test_button.click()
        assert tested.args[0].ok and tested.args[0].warning
        assert "but gpt-9 did not answer: see below" in dialog.test_result.text()
        assert "✗ HTTP 404: The model `gpt-9` does not exist." in dialog.findings.toPlainText()

        server.quirks.api_key, server.quirks.echo_key_on_401 = "sk-right", True
        dialog.key_edit.setText("sk-wrong-0123456789")
        with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
            dialog.test_button.click()
    assert not tested.args[0].ok
    assert "rejected the API key" in dialog.test_result.text()
    assert "Incorrect API key provided: [REDACTED]" in dialog.test_result.text()
    assert "0123456789" not in dialog.test_result.text() + dialog.findings.toPlainText()
    assert not dialog.findings.isVisible()  # no model was tried with a refused key


def test_connection_without_a_model_list_tries_the_models(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path, root_model="gpt-4o-mini", sub_model="gpt-4o-mini")
    with ProbeServer(Quirks(models=None)) as server:
        dialog.url_edit.setText(server.base_url)
        with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
            dialog.test_button.click()
        assert len(server.chat_requests) == 2  # one model in both roles: tried once, plain and streaming
    assert tested.args[0].ok
    assert dialog.test_result.text().endswith("(no model list); gpt-4o-mini answered.")
    assert "Root and sub: gpt-4o-mini" in dialog.findings.toPlainText()


def test_connection_to_nothing_says_so_plainly(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path)
    url = f"http://127.0.0.1:{free_port()}/v1"
    dialog.url_edit.setText(url)
    with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
        dialog.test_button.click()
    assert not tested.args[0].ok
    assert dialog.test_result.text() == (
        f"✗ Could not connect to {url}: connection refused, nothing answered there. Check the URL, and that "
        "the server is running."
    )
    assert not (tmp_path / "endpoints.json").exists()


def test_limits_windows_and_switches_load_validate_and_save(qtbot, tmp_path):
    dialog = open_dialog(
        qtbot,
        tmp_path,
        root_max_output_tokens=3000,
        request_timeout_s=60.0,
        context_windows={"gpt-5": 200_000},
        stream=False,
    )
    assert dialog.root_tokens_spin.value() == 3000 and dialog.timeout_spin.value() == 60
    assert not dialog.stream_check.isChecked() and not dialog.weak_check.isChecked()
    assert dialog.windows_edit.toPlainText() == "gpt-5=200000\n"
    assert "Off: a run refuses to start" in dialog.weak_check.toolTip()

    dialog.windows_edit.setPlainText("gpt-5=200000\nqwen3")
    assert dialog.problems == ["Context windows: 'qwen3': expected MODEL=TOKENS, like qwen3:8b=32768"]
    assert not dialog.ok_button.isEnabled()
    dialog.windows_edit.setPlainText("gpt-5=200000\ngpt-5-mini=3000")
    assert dialog.problems == [
        "Sub max output tokens (4,000) must be less than the context window of gpt-5-mini (3,000 tokens), "
        "or the question itself has no room"
    ]
    assert "gpt-5-mini: 3,000 tokens (yours)" in dialog.windows_used.text()
    dialog.windows_edit.setPlainText("gpt-5=200000\ngpt-5-mini=64,000")
    dialog.sub_tokens_spin.setValue(2500)
    dialog.output_chars_spin.setValue(5000)
    dialog.timeout_spin.setValue(90)
    dialog.stream_check.setChecked(True)
    dialog.weak_check.setChecked(True)
    assert dialog.problems == [] and dialog.ok_button.isEnabled()
    with qtbot.waitSignal(dialog.settings_saved, timeout=1_000):
        dialog.ok_button.click()
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert saved["context_windows"] == {"gpt-5": 200_000, "gpt-5-mini": 64_000}
    assert (saved["root_max_output_tokens"], saved["sub_max_output_tokens"]) == (3000, 2500)
    assert (saved["output_chars"], saved["request_timeout_s"]) == (5000, 90.0)
    assert saved["stream"] is True and saved["allow_weak_isolation"] is True


def test_connection_test_refuses_a_malformed_url_without_trying(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path)
    dialog.url_edit.setText("ftp://127.0.0.1/v1")
    with qtbot.waitSignal(dialog.connection_tested, timeout=1_000) as tested:
        dialog.test_button.click()
    assert not tested.args[0].ok and "http:// or https://" in dialog.test_result.text()


def test_screenshots(qtbot, tmp_path):
    """/tmp/shots/settings_error.png (a cap without a price) and /tmp/shots/settings.png (valid, tested)."""
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    quirks = Quirks(
        models=["llama3.1:70b", "gpt-4o-mini", "nomic-embed-text"],
        model_fields={"llama3.1:70b": {"max_model_len": 32768}},
        refuse_max_completion_tokens="400",
        stream="no_options",
    )
    with ProbeServer(quirks) as server:
        dialog = open_dialog(
            qtbot, tmp_path, base_url=server.base_url, root_model="llama3.1:70b", sub_model="gpt-4o-mini"
        )
        dialog.grab().save(str(shots / "settings_error.png"))
        assert dialog.problems == ["Set a price for llama3.1:70b or remove the cap"]
        row = price_row(dialog, "llama3.1:70b")
        type_price(qtbot, dialog, row, COL_IN, "0.6")
        type_price(qtbot, dialog, row, COL_OUT, "0.8")
        dialog.key_edit.setText("sk-proj-example")
        assert dialog.problems == []
        with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
            dialog.test_button.click()
        assert tested.args[0].ok and not tested.args[0].warning
        dialog.price_table.clearSelection()
        dialog.grab().save(str(shots / "settings.png"))


@pytest.fixture
def silent_server():
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def test_a_silent_server_times_out_in_plain_words(qtbot, tmp_path, silent_server):
    dialog = open_dialog(qtbot, tmp_path)
    dialog.connection_timeout_s = 0.3
    dialog.url_edit.setText(silent_server)
    with qtbot.waitSignal(dialog.connection_tested, timeout=10_000) as tested:
        dialog.test_button.click()
    assert not tested.args[0].ok
    assert dialog.test_result.text() == (
        f"✗ No answer from {silent_server} within 0.3 s. Is the server running, and is the URL right?"
    )


def test_closing_the_dialog_during_a_test_is_safe(qtbot, tmp_path, silent_server):
    dialog = open_dialog(qtbot, tmp_path)
    dialog.connection_timeout_s = 0.3
    dialog.url_edit.setText(silent_server)
    dialog.test_button.click()
    dialog.reject()
    dialog.deleteLater()
    del dialog
    qtbot.wait(600)  # the worker finishes and reports to nobody; nothing breaks
    other = open_dialog(qtbot, tmp_path)
    assert other.test_result.text() == "" and other.test_button.isEnabled()


def test_tab_goes_through_the_form_in_reading_order(qtbot, tmp_path):
    dialog = open_dialog(qtbot, tmp_path)
    expected = [
        dialog.url_edit,
        dialog.in_flight_spin,
        dialog.test_button,  # on the URL's row
        dialog.key_edit,
        dialog.show_key,  # "Remove key" is disabled while no key is stored
        dialog.sub_check,  # the sub URL and its limit are disabled, its key hidden, until it is ticked
        dialog.root_combo,
        dialog.sub_combo,
        dialog.price_table,
        dialog.add_price,
        dialog.cap_check,  # "Remove price" is disabled until a custom price is selected
        dialog.cap_amount,
        dialog.windows_edit,
        dialog.depth_spin,
        dialog.iterations_spin,
        dialog.subcalls_spin,
        dialog.concurrency_spin,
        dialog.wall_spin,
        dialog.root_tokens_spin,
        dialog.sub_tokens_spin,
        dialog.output_chars_spin,
        dialog.timeout_spin,
        dialog.stream_check,
        dialog.weak_check,
    ]
    dialog.url_edit.setFocus()
    qtbot.waitUntil(dialog.url_edit.hasFocus)
    seen = []
    for _ in expected:
        widget = dialog.focusWidget()
        # an editable combo box or spin box gives focus to its own line edit
        while widget is not None and widget not in expected:
            widget = widget.parentWidget()
        seen.append(widget)
        dialog.focusNextChild()
    assert seen == expected
