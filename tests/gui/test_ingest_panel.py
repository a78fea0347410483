"""Background ingest through IngestController and IngestPanel: progress, failures, cancel, errors."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from builders import make_mbox
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from sample_case import write_documents

from rlm_desktop.gui.document_model import DocumentTreeModel
from rlm_desktop.gui.ingest_panel import IngestController, IngestPanel
from rlm_desktop.ingest.progress import (
    FileFinished,
    FileProgressed,
    FileStarted,
    IngestFinished,
    IngestReport,
    IngestStarted,
)
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")


@pytest.fixture
def controller(qtbot):
    made = IngestController(jobs=1)
    yield made
    made.cancel()
    assert made.wait(30)


@pytest.fixture
def panel(qtbot, controller):
    widget = IngestPanel()
    qtbot.addWidget(widget)
    widget.attach(controller)
    widget.resize(900, 260)
    widget.show()
    return widget


def record_events(controller):
    events = []
    controller.event_received.connect(events.append)
    return events


def test_ingest_with_a_corrupt_pdf(qtbot, controller, panel, tmp_path, qtmodeltester):
    folder = write_documents(tmp_path / "docs")
    (folder / "broken.pdf").write_bytes(os.urandom(4000))
    case_path = tmp_path / "case.sqlite"
    gui_case = Case.open(case_path)  # the window's own connection, open during the ingest
    model = DocumentTreeModel(gui_case)
    assert model.rowCount() == 0
    events = record_events(controller)
    main_thread = threading.current_thread()
    threads = []
    controller.event_received.connect(lambda _e: threads.append(threading.current_thread()))

    with qtbot.waitSignal(controller.finished, timeout=60_000) as done:
        assert controller.start(case_path, [folder])
        assert controller.running
    report = done.args[0]
    assert isinstance(report, IngestReport)
    assert not controller.running and controller.wait(5)
    assert set(threads) == {main_thread}  # slots run in the GUI thread, never in the worker
    assert isinstance(events[0], IngestStarted) and isinstance(events[-1], IngestFinished)
    total = events[0].total_files
    assert total == 6  # 3 documents, 2 emails, the broken PDF
    assert sum(isinstance(e, FileStarted) for e in events) == total
    assert report.added == 5 and len(report.failed) == 1

    qtbot.waitUntil(lambda: panel.progress.value() == total)
    assert panel.progress.maximum() == total
    assert panel.progress.text() == f"{total} / {total} files"
    assert panel.summary_label.text().startswith("5 added, 0 unchanged, 1 failed")
    rows = panel.failure_rows()
    assert len(rows) == 1 and rows[0][0].endswith("broken.pdf")
    assert rows[0][1] == report.failed[0]["error"] and rows[0][1]
    assert panel.failures.isVisible() and not panel.cancel_button.isEnabled()
    assert panel.failures.topLevelItem(0).toolTip(1) == rows[0][1]
    panel.failures.topLevelItem(0).setSelected(True)
    panel.copy_failures()
    assert QApplication.clipboard().text().startswith(rows[0][0] + "\t")

    # the GUI's connection sees what the worker's connection wrote
    model.refresh(gui_case)
    qtmodeltester.check(model)
    titles = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert titles[:3] == ["harbour report.pdf", "memo.docx", "notes.txt"]
    assert any(t.startswith("Blue Heron shipment — 2 messages") for t in titles)
    assert model.tree.document_count == 6  # 5 files and the email's PDF attachment

    # the case's failure history, on demand
    panel.show_failures(gui_case.failures())
    assert panel.failure_rows()[0][0].endswith("broken.pdf")
    assert not panel.failures.isColumnHidden(2)  # history says when
    assert "in this case (1)" in panel.failures_label.text()
    gui_case.close()


def test_second_ingest_reports_unchanged_and_refuses_overlap(qtbot, controller, panel, tmp_path):
    folder = write_documents(tmp_path / "docs")
    case_path = tmp_path / "case.sqlite"
    refusals = []
    controller.refused.connect(refusals.append)
    with qtbot.waitSignal(controller.finished, timeout=60_000):
        assert controller.start(case_path, [folder])
        assert not controller.start(case_path, [folder])  # one at a time
    qtbot.waitUntil(lambda: bool(refusals))
    assert "already running" in refusals[0]
    with qtbot.waitSignal(controller.finished, timeout=60_000) as done:
        assert controller.start(case_path, [folder, tmp_path / "missing.pdf"])
    report = done.args[0]
    assert report.added == 0 and report.unchanged == 5
    assert panel.summary_label.text().startswith("0 added, 5 unchanged, 1 failed")
    assert panel.failure_rows() == [(str(tmp_path / "missing.pdf"), "no such file or folder")]


def test_cancel_button_stops_a_large_ingest(qtbot, controller, panel, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(200):
        (folder / f"note {i:03}.txt").write_text(f"Note {i}: payments to Blue Heron.", encoding="utf-8")
    # hold the worker inside its first file until the user has pressed Cancel, so the test is not a race
    gate = threading.Event()
    controller.event_received.connect(
        lambda e: gate.wait(10) if isinstance(e, FileStarted) and e.index == 0 else None,
        Qt.ConnectionType.DirectConnection,
    )
    with qtbot.waitSignal(controller.finished, timeout=60_000) as done:
        controller.start(tmp_path / "case.sqlite", [folder])
        qtbot.waitUntil(lambda: "note 000.txt" in panel.current_label.text())
        assert panel.cancel_button.isEnabled()
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        assert panel.cancel_button.text() == "Cancelling…"
        gate.set()
    report = done.args[0]
    assert report.cancelled and report.added == 1
    assert panel.summary_label.text().startswith("Stopped after 1 of 200 files. Cancelled: 1 added")
    assert panel.progress.value() == 1
    with Case.open(tmp_path / "case.sqlite") as case:
        assert case.count_documents() == 1


def test_cancel_inside_a_mailbox_shows_messages(qtbot, controller, panel, tmp_path):
    make_mbox(tmp_path / "archive.mbox", 650)
    events = record_events(controller)
    seen_in_panel = []
    # cancel from the worker as soon as the first batch of messages is stored: deterministic
    controller.event_received.connect(
        lambda e: controller.cancel() if isinstance(e, FileProgressed) else None,
        Qt.ConnectionType.DirectConnection,
    )
    controller.event_received.connect(
        lambda e: seen_in_panel.append(panel.current_label.text()) if isinstance(e, FileFinished) else None
    )
    with qtbot.waitSignal(controller.finished, timeout=60_000) as done:
        controller.start(tmp_path / "case.sqlite", [tmp_path / "archive.mbox"])
    report = done.args[0]
    assert report.cancelled
    progressed = [e for e in events if isinstance(e, FileProgressed)]
    assert progressed and progressed[0].messages == 200
    finished = [e for e in events if isinstance(e, FileFinished)]
    assert finished[-1].status == "cancelled"
    panel._render()  # what the next timer tick shows
    assert "Cancelled" in panel.summary_label.text()
    with Case.open(tmp_path / "case.sqlite") as case:
        assert case.count_documents() == 201  # the mailbox and its first 200 messages (resumable)


def test_panel_shows_mailbox_message_count(qtbot, panel):
    # events as the worker sends them, delivered in the GUI thread
    panel._on_event(IngestStarted(3))
    panel._on_event(FileStarted("/data/mail/archive.mbox", 0, 3))
    panel._on_event(FileProgressed("/data/mail/archive.mbox", 500_000, 1_000_000, 1234))
    qtbot.waitUntil(lambda: "1,234 messages (50%)" in panel.current_label.text())
    assert "archive.mbox" in panel.current_label.text()
    assert panel.cancel_button.isEnabled()
    SHOTS.mkdir(exist_ok=True)
    panel.grab().save(str(SHOTS / "ingest_running.png"))


def test_panel_coalesces_a_flood_of_events(qtbot, panel):
    renders = []
    original = panel._render
    panel._render = lambda: (renders.append(1), original())
    panel._timer.timeout.disconnect()
    panel._timer.timeout.connect(panel._render)
    panel._on_event(IngestStarted(5000))
    for i in range(5000):
        panel._on_event(FileStarted(f"/data/{i}.txt", i, 5000))
        panel._on_event(FileFinished(f"/data/{i}.txt", i, 5000, "added"))
    qtbot.waitUntil(lambda: panel.progress.value() == 5000)
    assert len(renders) <= 3  # a handful of repaints, not ten thousand


def test_failed_worker_reports_the_exception(qtbot, controller, panel, tmp_path):
    not_a_db = tmp_path / "case.sqlite"
    not_a_db.write_bytes(b"this is not a SQLite database" * 100)
    with qtbot.waitSignal(controller.finished, timeout=30_000) as done:
        controller.start(not_a_db, [tmp_path])
    assert isinstance(done.args[0], Exception)
    assert panel.summary_label.text().startswith("The ingest stopped with an error:")
    assert not controller.running


def test_screenshot_after_an_ingest_with_a_failure(qtbot, controller, panel, tmp_path):
    folder = write_documents(tmp_path / "docs")
    (folder / "scan of contract.pdf").write_bytes(os.urandom(3000))
    (folder / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0" + os.urandom(2000))
    with qtbot.waitSignal(controller.finished, timeout=60_000):
        controller.start(tmp_path / "case.sqlite", [folder])
    qtbot.wait(60)
    SHOTS.mkdir(exist_ok=True)
    panel.grab().save(str(SHOTS / "ingest.png"))
    assert len(panel.failure_rows()) >= 1


def test_panel_counts_an_archives_members_as_they_are_stored(qtbot, controller, panel, tmp_path):
    from ingest.test_member_progress import make_bundle

    from rlm_desktop.ingest.progress import MembersProgressed

    members = make_bundle(tmp_path / "bundle.zip", mails=4)
    shown: list[str] = []

    def look(event: object) -> None:  # queued after the panel's own handler: its state already holds the event
        if isinstance(event, MembersProgressed) and event.stored and event.members == event.total:
            panel._render()
            shown.append(panel.current_label.text())

    controller.event_received.connect(look)
    with qtbot.waitSignal(controller.finished, timeout=60_000) as done:
        controller.start(tmp_path / "case.sqlite", [tmp_path / "bundle.zip"])
    assert done.args[0].added == 1
    qtbot.waitUntil(lambda: bool(shown))
    assert "bundle.zip" in shown[0] and f"{members} of {members} members stored" in shown[0]
