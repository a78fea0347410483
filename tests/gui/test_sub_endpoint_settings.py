"""Sub-calls on their own endpoint, set in the Settings dialog: URL, requests at once, and a key of their own
kept like the API key (never in settings.json), which the window's runs send only to that endpoint."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import keyring
import pytest
from fake_openai import FakeOpenAIServer
from keyring.backends import fail
from rlm_script import PRICES, ROOT, SUB, Script, repl
from sample_case import write_documents

from rlm_desktop.gui.ask_panel import AskPanel
from rlm_desktop.gui.screen_fit import FRAME_ALLOWANCE
from rlm_desktop.gui.settings_dialog import SettingsDialog
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.secrets import KeyStore, sub_key_store
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")
ROOT_KEY, SUB_KEY = "sk-root-provider-key-7Q", "sub-cluster-token-9Z"


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch):
    """Keys go to their files (no keyring here), and none comes from the developer's environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RLM_SUB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def open_dialog(qtbot, home) -> SettingsDialog:
    dialog = SettingsDialog(home)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_sub_endpoint_fields_load_validate_and_save_its_key_apart(qtbot, tmp_path):
    home = tmp_path / "home"
    Settings(sub_base_url="http://gpu-box:8000/v1", max_in_flight=4, sub_max_in_flight=2).save(home)
    dialog = open_dialog(qtbot, home)
    assert dialog.sub_check.isChecked() and dialog.sub_url_edit.text() == "http://gpu-box:8000/v1"
    assert (dialog.in_flight_spin.value(), dialog.sub_in_flight_spin.value()) == (4, 2)
    assert dialog.sub_key_edit.isVisible() and dialog.sub_url_edit.isEnabled()
    dialog._fit_height()
    assert dialog.height() <= 720 - FRAME_ALLOWANCE.height()  # ticked, it still fits a 1280x720 screen
    SHOTS.mkdir(exist_ok=True)
    dialog.grab().save(str(SHOTS / "settings_sub_endpoint.png"))

    dialog.sub_url_edit.setText("ftp://gpu-box/v1")
    assert any(p.startswith("Sub-call endpoint: Endpoint URL must start with http") for p in dialog.problems)
    assert not dialog.ok_button.isEnabled()
    dialog.sub_url_edit.setText("http://127.0.0.1:8000/v1")
    dialog.sub_in_flight_spin.setValue(16)
    dialog.in_flight_spin.setValue(0)  # "no limit"
    dialog.key_edit.setText(ROOT_KEY)
    dialog.sub_key_edit.setText(SUB_KEY)
    assert dialog.ok_button.isEnabled()
    with qtbot.waitSignal(dialog.settings_saved):
        dialog.ok_button.click()

    saved = json.loads((home / "settings.json").read_text())
    assert saved["sub_base_url"] == "http://127.0.0.1:8000/v1" and saved["sub_max_in_flight"] == 16
    assert saved.get("max_in_flight") is None
    on_disk = "".join(p.read_text() for p in home.rglob("*.json") if "credentials" not in p.name)
    assert SUB_KEY not in on_disk and ROOT_KEY not in on_disk  # keys only in their own stores
    assert sub_key_store(home).get() == SUB_KEY and KeyStore(home).get() == ROOT_KEY
    sub_file = home / "sub-credentials.json"
    assert ROOT_KEY not in sub_file.read_text() and stat.S_IMODE(sub_file.stat().st_mode) == 0o600

    again = open_dialog(qtbot, home)
    assert again.sub_key_edit.text() == SUB_KEY and again.remove_sub_key.isEnabled()
    again.sub_check.setChecked(False)  # back to one endpoint: the sub fields are kept out of the settings
    assert not again.sub_url_edit.isEnabled() and not again.sub_key_edit.isVisible()
    with qtbot.waitSignal(again.settings_saved):
        again.ok_button.click()
    assert Settings.load(home).sub_base_url is None
    assert sub_key_store(home).get() == SUB_KEY  # kept for when the box is ticked again
    third = open_dialog(qtbot, home)
    third.remove_sub_key.click()
    assert sub_key_store(home).get() is None and KeyStore(home).get() == ROOT_KEY


@pytest.mark.parametrize("stored_sub_key", [True, False], ids=["its own key", "no key of its own"])
def test_a_window_run_sends_the_sub_key_to_the_sub_endpoint_and_the_root_key_nowhere_else(
    qtbot, tmp_path, stored_sub_key
):
    home = tmp_path / "home"
    with FakeOpenAIServer(api_key=ROOT_KEY) as root, FakeOpenAIServer(api_key=SUB_KEY) as sub:
        root.handler = sub.handler = Script([repl("print(llm_query('who approved?'))"), repl("FINAL('done')")])
        if not stored_sub_key:
            sub.api_key = None  # a local server that takes no key
        settings = Settings(
            base_url=root.base_url, sub_base_url=sub.base_url, root_model=ROOT, sub_model=SUB, cap_usd=5.0,
            prices=dict(p.split("=") for p in PRICES),
        )  # fmt: skip
        settings.save(home)
        KeyStore(home).set(ROOT_KEY)
        if stored_sub_key:
            sub_key_store(home).set(SUB_KEY)
        path = home / "cases" / "sub.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        with Case.open(path) as case:
            ingest(case, [write_documents(tmp_path / "docs")], jobs=1)
            panel = AskPanel(home, settings=lambda: settings)
            qtbot.addWidget(panel)
            panel.set_case(case)
            with qtbot.waitSignal(panel.bridge.run_ended, timeout=60_000):
                assert panel.ask("Who approved it?") is not None
        assert len(root.chat_requests) == 2 and len(sub.chat_requests) == 1
        assert all(r.headers.get("authorization") == f"Bearer {ROOT_KEY}" for r in root.chat_requests)
        assert not any(ROOT_KEY in json.dumps(r.headers) for r in sub.requests)  # never to the other host
        sent = {r.headers.get("authorization") for r in sub.chat_requests}
        if stored_sub_key:
            assert sent == {f"Bearer {SUB_KEY}"}
        else:  # a placeholder, not a key of ours
            assert not any(SUB_KEY in (h or "") or ROOT_KEY in (h or "") for h in sent)


def test_test_connection_tries_the_sub_model_on_its_own_server_with_its_own_key(qtbot, tmp_path):
    from probe_server import ProbeServer, Quirks

    from rlm_desktop.engine.endpoints import load_caps

    home = tmp_path / "home"
    root_quirks = Quirks(models=["root-model"], api_key=ROOT_KEY)
    sub_quirks = Quirks(models=["sub-model"], api_key=SUB_KEY, model_fields={"sub-model": {"max_model_len": 16384}})
    with ProbeServer(root_quirks) as root, ProbeServer(sub_quirks) as sub:
        Settings(root_model="root-model", sub_model="sub-model", cap_usd=None).save(home)
        dialog = open_dialog(qtbot, home)
        dialog.url_edit.setText(root.base_url)
        dialog.key_edit.setText(ROOT_KEY)
        dialog.sub_check.setChecked(True)
        dialog.sub_url_edit.setText(sub.base_url)
        dialog.sub_key_edit.setText(SUB_KEY)
        with qtbot.waitSignal(dialog.connection_tested, timeout=20_000) as tested:
            dialog.test_button.click()
            assert f"and {sub.base_url}" in dialog.test_result.text()
    result = tested.args[0]
    assert result.ok, result.message
    assert {r.json["model"] for r in root.chat_requests} == {"root-model"}
    assert {r.json["model"] for r in sub.chat_requests} == {"sub-model"}
    assert not any(ROOT_KEY in json.dumps(r.headers) for r in sub.requests)  # the root's key stayed home
    said = dialog.test_result.text()
    assert said.startswith(f"✓ Root model: Connected to {root.base_url}") and f"Sub-calls: Connected to {sub.base_url}" in said
    dialog.grab().save(str(SHOTS / "settings_sub_endpoint_tested.png"))
    shown = dialog.findings.toPlainText()
    assert "Root: root-model" in shown and "Sub: sub-model" in shown
    assert load_caps(home, sub.base_url)["sub-model"]["context_window"] == 16384  # runs use what it found
    assert "sub-model: 16,384 tokens (reported by the server)" in dialog.windows_used.text()  # from its server


SMALL_SCREEN_CHECK = r"""
import json, sys
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from rlm_desktop.engine.model_info import ModelCaps
from rlm_desktop.engine.probe import EndpointReport, ModelReport
from rlm_desktop.gui.settings_dialog import ConnectionResult, SettingsDialog, both_endpoints, connection_result
from rlm_desktop.settings import Settings

home = Path(sys.argv[1])
Settings(root_model="root-model", sub_model="sub-model", sub_base_url="http://127.0.0.1:9/v1").save(home)
def report(url, model, note):
    caps = ModelCaps(token_param="max_tokens", streaming=True, stream_usage=False, usage_reported=True)
    found = ModelReport(model, caps, answered=True, latency_s=0.2, calls=4, notes=[note])
    return EndpointReport(url, reachable=True, listed=[model], models=[found])
root = report("http://127.0.0.1:8/v1", "root-model", "refused stream_options (HTTP 422: extra inputs are not permitted)")
sub = report("http://127.0.0.1:9/v1", "sub-model", "refused max_completion_tokens (HTTP 400: unrecognized argument)")
dialog = SettingsDialog(home)
dialog.show()
app.processEvents()
dialog._show_connection_result(
    both_endpoints(connection_result(root, root.base_url, 15), connection_result(sub, sub.base_url, 15))
)
for _ in range(5):
    app.processEvents()
dialog.grab().save(sys.argv[2])
body, scroll = dialog.body, dialog.body_scroll
print(json.dumps({
    "screen": app.primaryScreen().availableGeometry().height(),
    "dialog": dialog.height(),
    "body": body.height(),
    "body_min": body.minimumSizeHint().height(),
    "scroll_max": scroll.verticalScrollBar().maximum(),
    "save_bottom": dialog.ok_button.mapTo(dialog, dialog.ok_button.rect().bottomLeft()).y(),
    "save_top": dialog.ok_button.mapTo(dialog, dialog.ok_button.rect().topLeft()).y(),
    "problems_bottom": dialog.problems_label.mapTo(dialog, dialog.problems_label.rect().bottomLeft()).y(),
    "problems": dialog.problems_label.isVisible(),
    "findings": dialog.findings.toPlainText(),
    "result_height": dialog.test_result.height(),
    "result_needs": dialog.test_result.heightForWidth(dialog.test_result.width()),
}))
"""


def test_with_both_endpoints_tested_the_dialog_fits_a_720_pixel_screen_and_its_form_scrolls(tmp_path):
    """On a 1280x720 screen the form with both endpoints' findings is taller than the screen: the dialog
    stays within it, Save stays in view, the form scrolls instead of being squeezed, and the two models'
    findings read side by side in one table."""
    import subprocess
    import sys

    screen = tmp_path / "screen.json"
    screen.write_text(json.dumps({"screens": [{"name": "laptop", "x": 0, "y": 0, "width": 1280, "height": 720,
                                               "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    shot = SHOTS / "settings_both_endpoints_720.png"
    SHOTS.mkdir(exist_ok=True)
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": f"offscreen:configfile={screen}"}
    done = subprocess.run(
        [sys.executable, "-c", SMALL_SCREEN_CHECK, str(tmp_path / "home"), str(shot)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["screen"] == 720
    assert seen["dialog"] <= 720 - FRAME_ALLOWANCE.height()
    assert seen["save_bottom"] < seen["dialog"] and seen["problems_bottom"] <= seen["save_top"]  # in view
    assert seen["problems"]  # no price for the models: what to fix shows beside the disabled Save
    assert seen["body"] >= seen["body_min"] and seen["scroll_max"] > 0  # not squeezed: it scrolls
    assert seen["result_height"] == seen["result_needs"]  # no blank bands around the two-line result
    cells = [line.strip() for line in seen["findings"].splitlines()]  # a table reads a cell a line
    at = cells.index("Root: root-model")
    assert cells[at + 1] == "Sub: sub-model"  # one table, a column per endpoint's model
    assert cells.count("status") == 1 and cells.count("✓ answered in 0.2 s") == 2  # one row for both
