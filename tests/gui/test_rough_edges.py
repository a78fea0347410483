"""Rough edges of the window (issue 13): the ingest strip after a case switch, the case box and cases made
from a terminal, the new-case dialog with a bad name, and where the date filter's calendar opens."""

from __future__ import annotations

from datetime import date

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from sample_case import build_sample_case

from rlm_desktop.gui.document_browser import DocumentBrowser
from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.gui.new_case_dialog import NewCaseDialog
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case


@pytest.fixture
def window(qtbot, tmp_path):
    home = tmp_path / "home"
    Settings().save(home)
    win = MainWindow(home)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    win.open_case("first")
    win.ingest.jobs = 1
    yield win
    win.shutdown()


def test_switching_case_shows_the_new_case_in_the_ingest_strip(qtbot, window, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("A note.\n", encoding="utf-8")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
        window.ingest_paths([note, tmp_path / "bad.pdf"])
    panel = window.ingest_panel
    assert "1 added" in panel.summary_label.text() and panel.failure_rows()

    window.open_case("second")
    assert (
        panel.summary_label.text()
        == "Case “second”: 0 documents. Drop files or folders on the window to add them."
    )
    assert panel.failure_rows() == [] and not panel.failures.isVisibleTo(panel)
    window.open_case("first")
    assert panel.summary_label.text().startswith("Case “first”: 1 document; 1 file could not be read")


def test_the_case_box_lists_cases_made_from_a_terminal(qtbot, window):
    assert [window.case_combo.itemText(i) for i in range(window.case_combo.count())] == ["first"]
    with Case.open(window.home / "cases" / "made-in-terminal.sqlite"):
        pass  # what `rlm-desktop ingest --case made-in-terminal` leaves
    window.case_combo.showPopup()
    assert "made-in-terminal" in [window.case_combo.itemText(i) for i in range(window.case_combo.count())]
    window.case_combo.hidePopup()
    with Case.open(window.home / "cases" / "another.sqlite"):
        pass
    QApplication.sendEvent(window, QEvent(QEvent.Type.ActivationChange))  # back to the window
    if window.isActiveWindow():  # offscreen platforms may never activate a window
        assert "another" in [window.case_combo.itemText(i) for i in range(window.case_combo.count())]
    assert window.case_combo.currentText() == "first"


def test_an_invalid_case_name_keeps_the_dialog_open_with_the_reason(qtbot, tmp_path):
    dialog = NewCaseDialog(tmp_path / "home")
    qtbot.addWidget(dialog)
    dialog.show()
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled() and not dialog.reason.isVisible()
    qtbot.keyClicks(dialog.name_box, "leak/../../etc")
    assert not ok.isEnabled() and dialog.reason.isVisible() and dialog.reason.text()
    qtbot.wait(10)  # the layout places the wrapped reason
    assert dialog.reason.height() >= dialog.reason.heightForWidth(dialog.reason.width())  # all of it shows
    qtbot.keyClick(dialog.name_box, Qt.Key.Key_Return)  # Enter does not close it either
    assert dialog.isVisible() and dialog.name_box.text() == "leak/../../etc"  # what was typed is kept
    dialog.name_box.setText("leak 2026")
    assert ok.isEnabled() and not dialog.reason.isVisible()
    qtbot.keyClick(dialog.name_box, Qt.Key.Key_Return)
    assert dialog.result() == NewCaseDialog.DialogCode.Accepted and dialog.name == "leak 2026"


def _calendar_page(qtbot, edit) -> tuple[int, int]:
    qtbot.mouseClick(edit, Qt.MouseButton.LeftButton, pos=QPoint(edit.width() - 8, edit.height() // 2))
    calendar = edit.calendarWidget()
    qtbot.waitUntil(calendar.isVisible, timeout=5_000)
    page = (calendar.yearShown(), calendar.monthShown())
    calendar.window().hide()
    return page


def test_the_date_calendar_opens_at_the_case_dates_or_today(qtbot, tmp_path):
    browser = DocumentBrowser()
    qtbot.addWidget(browser)
    browser.resize(400, 600)
    browser.show()
    today = date.today()
    with Case.open(tmp_path / "empty.sqlite") as empty:
        browser.set_case(empty)
        assert _calendar_page(qtbot, browser.date_from) == (today.year, today.month)  # nothing dated: today

    sample = build_sample_case(tmp_path)
    with Case.open(sample.case_path) as case:
        browser.set_case(case)
        qtbot.waitUntil(lambda: browser.model.rowCount() > 0, timeout=10_000)
        dated = sorted(n.when for n in browser.model.tree.by_id.values() if n.when)
        assert dated[0].year < dated[-1].year  # the sample spans years: from and to open apart
        assert _calendar_page(qtbot, browser.date_from) == (dated[0].year, dated[0].month)
        assert _calendar_page(qtbot, browser.date_to) == (dated[-1].year, dated[-1].month)
        browser.set_case(None)


def test_the_model_drop_downs_offer_the_models_the_server_lists(qtbot, tmp_path, monkeypatch):
    import keyring
    from keyring.backends import fail

    from rlm_desktop.gui.settings_dialog import SettingsDialog
    from tests.probe_server import ProbeServer, Quirks

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # no real keyring
    try:
        Settings(root_model="qwen3:8b", sub_model="qwen3:8b", cap_usd=None).save(tmp_path)
        dialog = SettingsDialog(tmp_path)
        qtbot.addWidget(dialog)
        dialog.show()
        items = lambda combo: [combo.itemText(i) for i in range(combo.count())]  # noqa: E731
        assert "llama-3.3-70b-local" not in items(dialog.root_combo)
        with ProbeServer(Quirks(models=["qwen3:8b", "llama-3.3-70b-local"])) as server:
            dialog.url_edit.setText(server.base_url)
            with qtbot.waitSignal(dialog.connection_tested, timeout=10_000):
                dialog.test_button.click()
        for combo in (dialog.root_combo, dialog.sub_combo):
            assert items(combo)[:2] == ["qwen3:8b", "llama-3.3-70b-local"]  # the server's, first
            assert "gpt-5" in items(combo)  # the well-known names stay offered
            assert combo.currentText() == "qwen3:8b"  # what was chosen stays
        dialog.close()

        # opened again later, the drop-downs offer what the last test found (cached per endpoint)
        Settings(base_url=server.base_url, root_model="qwen3:8b", sub_model="qwen3:8b", cap_usd=None).save(
            tmp_path
        )
        again = SettingsDialog(tmp_path)
        qtbot.addWidget(again)
        assert items(again.sub_combo)[:2] == ["qwen3:8b", "llama-3.3-70b-local"]
    finally:
        keyring.set_keyring(previous)
