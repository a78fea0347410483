"""The window offers "Enter password…" for an encrypted file, reads it with the password, and keeps the
password nowhere: not in the case file, the settings or anything else under the home folder."""

from __future__ import annotations

import pytest
from builders import make_encrypted_docx, make_encrypted_pdf
from PySide6.QtWidgets import QInputDialog, QLineEdit

from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.settings import Settings

PASSWORD = "Wombat-5521-unguessable"


@pytest.fixture
def window(qtbot, tmp_path):
    home = tmp_path / "home"
    Settings().save(home)
    win = MainWindow(home)
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    win.open_case("locked")
    win.ingest.jobs = 1  # extract in the ingest's thread: spawning extractor processes costs seconds here
    yield win
    win.shutdown()


def test_enter_password_reads_the_encrypted_files_and_stores_no_password(
    qtbot, window, tmp_path, monkeypatch
):
    folder = tmp_path / "in"
    folder.mkdir()
    make_encrypted_pdf(folder / "report.pdf", ["The wire went to Zurich on 3 March."], PASSWORD)
    make_encrypted_docx(folder / "memo.docx", ["The board approved the Zurich transfer."], PASSWORD)
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
        window.ingest_paths([folder])
    panel = window.ingest_panel
    assert sorted(p.rsplit("/", 1)[-1] for p in panel.password_paths()) == ["memo.docx", "report.pdf"]
    assert panel.password_button.isVisible()

    asked = []
    answers = iter(["wrong", PASSWORD, PASSWORD])

    def get_text(parent, title, label, echo, *args, **kwargs):
        asked.append((label, echo))
        return next(answers), True

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(get_text))
    first = panel.password_paths()[0]
    with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
        panel.password_button.click()  # the first listed file when none is selected
    assert asked[0][1] == QLineEdit.EchoMode.Password and "is encrypted" in asked[0][0]
    rows = dict(panel.failure_rows())
    assert rows[first].endswith("(the given password is wrong)")
    assert panel.password_paths() == [first]  # a wrong password can be typed again

    for _ in range(2):
        with qtbot.waitSignal(window.ingest.finished, timeout=60_000):
            panel.password_button.click()
    assert not panel.password_paths()
    window.show_failures()
    assert panel.failure_rows() == []  # the case no longer lists them as unreadable
    texts = [window.case.text(d.id) for d in window.case.documents()]
    assert any("wire went to Zurich" in t for t in texts)
    assert "The board approved the Zurich transfer." in texts

    window.shutdown()
    home = window.home
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert b"Zurich transfer" in stored  # the case holds the text ...
    for encoding in ("utf-8", "utf-16-le"):
        assert PASSWORD.encode(encoding) not in stored  # ... and nothing under home holds the password
