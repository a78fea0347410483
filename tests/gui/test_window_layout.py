"""The window fits the screen: its first size, and after opening an attachment of an email with a very
long subject (a row that once widened the window from 1280 to 1427 px)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import make_email, pdf_bytes

from rlm_desktop.gui.document_model import DATE
from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")
LONG_SUBJECT = "Re: " + " ".join(["Quarterly reconciliation of the Blue Heron shipping accounts"] * 4)
ROOT = Path(__file__).resolve().parents[2]


def build_case(home: Path) -> int:
    """A case with an email whose subject is ~250 characters and a PDF attachment with a long name;
    returns the attachment's id."""
    folder = home / "docs"
    folder.mkdir(parents=True)
    attachment = ("statement_" + "x" * 90 + ".pdf", pdf_bytes(["Statement of account"]), "application/pdf")
    mail = make_email(LONG_SUBJECT, "See the statement attached.", attachments=[attachment])
    (folder / "long.eml").write_bytes(mail.as_bytes())
    path = home / "cases" / "layout.sqlite"
    path.parent.mkdir(parents=True)
    with Case.open(path) as case:
        ingest(case, [folder], jobs=1)
        return next(d.id for d in case.documents() if d.title.startswith("statement_"))


@pytest.mark.parametrize("size", [(1280, 720)])  # (1920, 1080) works the same; one size keeps the test short
def test_window_fits_a_real_screen_after_opening_an_attachment(tmp_path, size):
    """In a child process whose offscreen screen really is 1280x720: the window opens within the screen and
    opening the attachment leaves its width alone. The PNG is kept for a look."""
    home = tmp_path / "home"
    attachment_id = build_case(home)
    width, height = size
    config = tmp_path / "screen.json"
    config.write_text(
        json.dumps({"screens": [{"name": "s", "x": 0, "y": 0, "width": width, "height": height, "logicalDpi": 96}]})
    )
    SHOTS.mkdir(exist_ok=True)
    shot = SHOTS / f"window-attachment-{width}x{height}.png"
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("window_probe.py")), str(home), "layout", str(attachment_id), str(shot)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    sizes = json.loads(done.stdout.strip().splitlines()[-1])
    assert sizes["screen"] == [width, height]  # the child really had a screen of this size
    assert sizes["first"][0] <= width and sizes["first"][1] <= height
    assert sizes["frame"][0] <= width
    assert sizes["after"] == sizes["first"]  # the attachment's header row did not push the window
    assert sizes["minimum"][0] < 1100  # room to spare even on a 1280 px screen
    assert sizes["parent_text"] == LONG_SUBJECT  # the whole subject is kept (elided only on screen)
    # the right column: the answer shows clearly more than 5 lines, the tree more than 6 rows
    print(sizes)
    assert sizes["answer_lines"] >= 6 and sizes["tree_rows"] >= 7, sizes


def test_attachment_row_never_widens_the_window(qtbot, tmp_path):
    """The same in this process: a 1280 px window stays 1280 px wide after the attachment opens."""
    home = tmp_path / "home"
    attachment_id = build_case(home)
    window = MainWindow(home)
    qtbot.addWidget(window)
    window.resize(1280, 720)
    window.show()
    window.open_case("layout")
    window.viewer.show_document(attachment_id)
    qtbot.wait(50)
    assert window.width() == 1280
    assert window.viewer.parent_button.isVisible()
    assert window.viewer.parent_button.width() < window.viewer.width()  # elided within the viewer
    window.shutdown()


def test_the_date_zone_chosen_is_kept_across_restarts(qtbot, tmp_path):
    from datetime import UTC

    home = tmp_path / "home"
    build_case(home)
    first = MainWindow(home)
    qtbot.addWidget(first)
    first.open_case("layout")
    assert first.browser.model.zone is None  # local time by default
    first.browser.set_zone(UTC)
    first.shutdown()
    again = MainWindow(home)
    qtbot.addWidget(again)
    again.open_case("layout")
    assert again.browser.model.zone is UTC
    thread_date = again.browser.model.index(0, DATE).data()
    assert thread_date == "2024-03-01 09:30"  # the message's UTC time
    again.browser.set_zone(None)
    again.shutdown()
    third = MainWindow(home)
    qtbot.addWidget(third)
    assert third.browser.model.zone is None
    third.shutdown()
