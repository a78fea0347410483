"""A big case written by an older version is upgraded off the GUI thread with a notice, then opened; the CLI
says so before it starts, rather than look hung."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rlm_desktop.cli import main
from rlm_desktop.paths import case_path
from rlm_desktop.store import migrations
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")


@pytest.fixture
def slow_migration(monkeypatch):
    """One more migration than the case has had, which waits for the test's go, as a long m008 would take."""
    go = threading.Event()
    ran_on: list[str] = []

    def m999_slow(db) -> None:
        ran_on.append(threading.current_thread().name)
        assert go.wait(20)
        db.execute("CREATE TABLE upgraded (x INTEGER)")

    monkeypatch.setattr(migrations, "SLOW_UPGRADE_BYTES", 0)  # a small case stands for a big one
    return go, ran_on, m999_slow


def old_case(home: Path, name: str) -> Path:
    path = case_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Case.open(path) as case:
        case.add_text_document("memo", "The shipment left Rotterdam on 4 May.")
    return path


def test_the_window_upgrades_a_big_old_case_off_its_thread_then_opens_it(
    qtbot, tmp_path, open_window, slow_migration, monkeypatch
):
    go, ran_on, m999 = slow_migration
    home = tmp_path / "home"
    window = open_window(home, "current")
    path = old_case(home, "old")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m999_slow", m999)])
    assert migrations.pending(path) == ["m999_slow"]

    window.open_case("old")
    qtbot.waitUntil(lambda: bool(ran_on), timeout=10_000)
    dialog = window.upgrade_dialog
    assert dialog is not None and dialog.isVisible() and "Upgrading case “old”" in dialog.labelText()
    assert window.case_name == "current"  # not opened before it is upgraded
    beats = []
    timer_start = time.monotonic()
    while time.monotonic() - timer_start < 0.3:  # the window goes on drawing and answering meanwhile
        qtbot.wait(20)
        beats.append(time.monotonic())
    assert len(beats) >= 5 and ran_on[0] != threading.current_thread().name
    window.open_case("current")  # ignored while one is upgrading
    SHOTS.mkdir(exist_ok=True)
    dialog.grab().save(str(SHOTS / "case_upgrade.png"))
    go.set()
    qtbot.waitUntil(lambda: window.case_name == "old", timeout=20_000)
    assert window.upgrade_dialog is None  # the window takes other cases again
    assert migrations.pending(path) == []
    assert window.case.conn.execute("SELECT count(*) FROM upgraded").fetchone() == (0,)


def test_the_cli_says_it_is_upgrading_before_a_long_migration(tmp_path, slow_migration, monkeypatch, capsys):
    go, ran_on, m999 = slow_migration
    home = tmp_path / "home"
    old_case(home, "old")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m999_slow", m999)])
    go.set()
    assert main(["--home", str(home), "docs", "--case", "old"]) == 0
    err = capsys.readouterr().err
    assert "upgrading case 'old' to this version's format" in err and ran_on
    assert main(["--home", str(home), "docs", "--case", "old"]) == 0  # once
    assert "upgrading" not in capsys.readouterr().err
