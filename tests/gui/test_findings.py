"""Findings and tags in the real window: keep a citation or a selection (text and PDF page), list and jump,
edit notes, tag documents from the list and the viewer, filter by tag."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QContextMenuEvent, QMouseEvent
from PySide6.QtWidgets import QApplication, QMenu, QMessageBox
from sample_case import EMAIL_PHRASE, PDF_PHRASE, build_sample_case

from rlm_desktop.findings import list_findings
from rlm_desktop.gui import findings_view, tag_bar
from rlm_desktop.gui.document_model import TAGS
from rlm_desktop.gui.findings_model import NOTE, QUOTE, SOURCE, FindingsModel
from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.gui.span_text_view import python_offset, qt_position
from rlm_desktop.settings import Settings
from rlm_desktop.store import findings as store
from rlm_desktop.store.case import Case
from tests.fake_openai import FakeOpenAIServer

SHOTS = Path("/tmp/shots")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings-gui")
    with FakeOpenAIServer() as fake:
        sample = build_sample_case(root, fake)
    with Case.open(sample.case_path) as case:
        case.checkpoint()
    return sample


@pytest.fixture
def window(qtbot, tmp_path, built, monkeypatch):
    home = tmp_path / "home"
    (home / "cases").mkdir(parents=True)
    shutil.copy(built.case_path, home / "cases" / "sample.sqlite")
    Settings().save(home)
    monkeypatch.setattr(findings_view, "ask_note", lambda parent, quote: "kept from a test")
    warnings: list[str] = []
    monkeypatch.setattr(findings_view.FindingsView, "_warn", lambda self, message, title="": warnings.append(message))
    win = MainWindow(home)
    win.warnings = warnings
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    win.open_case("sample")
    yield win
    win.shutdown()


def span_of(case: Case, phrase: str) -> tuple[int, int, int]:
    for doc in case.documents():
        at = case.text(doc.id).find(phrase)
        if at >= 0:
            return doc.id, at, at + len(phrase)
    raise AssertionError(phrase)


def test_a_citation_is_kept_and_the_findings_tab_jumps_to_it(qtbot, window, built):
    window.open_run(built.run_id)
    answer = window.ask_panel.answer
    pdf_citation = next(c for c in built.record["citations"] if c["kind"] == "pdf")
    key = pdf_citation["marker"].strip("[]")
    assert f"finding:{key}" in answer.browser.toHtml()  # the sources list offers it
    menu = answer.context_menu_for(f"cite:{key}")
    add = next(a for a in menu.actions() if a.text().startswith(f"Add [{key}] to findings"))
    assert add.isEnabled()
    add.trigger()
    [finding] = list_findings(window.case)
    assert finding.verified and finding.row.quote == PDF_PHRASE == pdf_citation["quote"]
    assert (finding.row.run_id, finding.row.origin, finding.row.note) == (built.run_id, f"[{key}]", "kept from a test")
    table = window.findings.model
    assert table.rowCount() == 1 and "citation" in table.index(0, SOURCE).data()
    assert PDF_PHRASE in table.index(0, QUOTE).data()
    assert window.findings.count_label.text() == "1 finding"

    # the same passage again: said, not duplicated
    answer.request_finding(key)
    assert "already in the findings" in window.warnings[-1] and len(list_findings(window.case)) == 1

    # select another document, then the finding: the viewer opens it at its passage, verified
    window.viewer.show_document(span_of(window.case, EMAIL_PHRASE)[0])
    window.left.setCurrentWidget(window.findings)
    view = window.findings.table
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(table.index(0, QUOTE)).center())
    assert window.viewer.current_doc_id == pdf_citation["doc_id"]
    assert window.viewer.highlighted_span == (pdf_citation["start"], pdf_citation["end"])
    assert window.viewer.current_page == 2 and window.viewer.highlight_rects == pdf_citation["rects"]
    assert "verified" in window.viewer.notice_text
    qtbot.wait(50)
    SHOTS.mkdir(exist_ok=True)
    window.grab().save(str(SHOTS / "findings-tab-1280x720.png"))
    assert window.width() <= 1280


def test_an_unverified_citation_cannot_be_kept(window, built):
    window.open_run(built.run_id)
    forged = dict(built.record["citations"][0], quote="words the source does not hold", verified=False)
    assert window.findings.add_citation(forged, built.run_id) is None
    assert "quote differs from the source" in window.warnings[-1]
    assert list_findings(window.case) == []


def test_selected_text_is_kept_with_the_stored_text_as_its_quote(window):
    doc_id, start, end = span_of(window.case, EMAIL_PHRASE)
    window.viewer.show_document(doc_id)
    assert window.viewer.mode == "text"
    window.viewer.text_view.select_span(start, end)
    assert window.viewer.selected_span() == (start, end)
    assert window.viewer.request_finding()
    [finding] = list_findings(window.case)
    assert finding.verified and finding.row.quote == EMAIL_PHRASE and finding.row.origin == "selection"
    assert window.findings.model.index(0, SOURCE).data() == "selected in the viewer"
    window.viewer.text_view.moveCursor(window.viewer.text_view.textCursor().MoveOperation.Start)
    assert window.viewer.selected_span() is None and not window.viewer.request_finding()


def test_selection_offsets_survive_characters_qt_counts_differently():
    text = "a😀b\r\nc€d"
    for offset in range(len(text) + 1):
        if text[offset - 1 : offset + 1] != "\r\n":  # inside a CRLF pair both offsets are one Qt position
            assert python_offset(text, qt_position(text, offset)) == offset


def drag(widget, start: QPointF, end: QPointF) -> None:
    """A left-button drag as the platform delivers it (press, moves with the button held, release)."""
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    mods = Qt.KeyboardModifier.NoModifier
    events = [QMouseEvent(QEvent.Type.MouseButtonPress, start, start, left, left, mods)]
    for step in range(1, 6):
        point = start + (end - start) * (step / 5)
        events.append(QMouseEvent(QEvent.Type.MouseMove, point, point, none, left, mods))
    events.append(QMouseEvent(QEvent.Type.MouseButtonRelease, end, end, left, none, mods))
    for event in events:
        QApplication.sendEvent(widget, event)


def test_words_dragged_over_on_a_pdf_page_are_kept(qtbot, window, monkeypatch):
    doc_id, start, end = span_of(window.case, PDF_PHRASE)
    window.viewer.show_document(doc_id)
    window.viewer.pdf_view.show_page(2)
    qtbot.wait(20)
    assert window.viewer.mode == "pdf"
    boxes = window.case.pages(doc_id)[1].boxes
    first = next(b for b in boxes if b[0] == start)
    last = next(b for b in boxes if b[1] == end)
    canvas = window.viewer.pdf_view.canvas
    drag(canvas, canvas.rect_on_widget(first[2:]).center(), canvas.rect_on_widget(last[2:]).center())
    assert window.viewer.selected_span() == (start, end)
    assert len(window.viewer.pdf_selection.rects()) >= 1
    qtbot.wait(30)
    window.viewer.grab().save(str(SHOTS / "pdf-selection.png"))
    # a right-click on the page asks for the menu, which offers the dragged words
    asked: list = []
    monkeypatch.setattr(window.viewer, "_selection_menu", asked.append)
    window.viewer.pdf_selection.menu_requested.disconnect()
    window.viewer.pdf_selection.menu_requested.connect(asked.append)
    QApplication.sendEvent(canvas, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, QPoint(50, 50), QPoint(9, 9)))
    assert asked == [QPoint(9, 9)]
    [add] = [a for a in window.viewer.selection_menu().actions() if a.text() == "Add selection to findings…"]
    add.trigger()
    [finding] = list_findings(window.case)
    assert finding.verified and finding.row.quote == PDF_PHRASE and finding.page == 2
    # a plain click is not a selection
    drag(canvas, canvas.rect_on_widget(first[2:]).center(), canvas.rect_on_widget(first[2:]).center())
    assert window.viewer.selected_span() is None


def test_notes_are_edited_in_the_table_and_kept(window, qtmodeltester):
    doc_id, start, end = span_of(window.case, EMAIL_PHRASE)
    window.findings.add_selection(doc_id, start, end, note="first")
    model = window.findings.model
    qtmodeltester.check(model)
    assert model.flags(model.index(0, NOTE)) & Qt.ItemFlag.ItemIsEditable
    assert not model.flags(model.index(0, QUOTE)) & Qt.ItemFlag.ItemIsEditable
    assert model.setData(model.index(0, NOTE), "  Bob confirms it  ")
    assert store.finding_row(window.case, model.finding(0).id).note == "Bob confirms it"
    assert not model.setData(model.index(0, NOTE), "x" * (store.MAX_NOTE_CHARS + 1))
    assert "at most" in model.last_error
    empty = FindingsModel()
    qtmodeltester.check(empty)


def test_removing_a_finding_asks_first(window, monkeypatch):
    doc_id, start, end = span_of(window.case, EMAIL_PHRASE)
    window.findings.add_selection(doc_id, start, end, note="worth keeping")
    asked: list[str] = []
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]

    def question(parent, title, text, *args):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(findings_view.QMessageBox, "question", question)
    window.findings.delete_selected()
    assert "worth keeping" in asked[0] and len(list_findings(window.case)) == 1  # No: kept
    window.findings.delete_selected()
    assert list_findings(window.case) == [] and window.findings.stack.currentWidget() is window.findings.empty_label


def test_the_viewer_context_menu_offers_the_selection(window, monkeypatch):
    doc_id, start, end = span_of(window.case, EMAIL_PHRASE)
    viewer = window.viewer
    viewer.show_document(doc_id)
    assert viewer.text_view.contextMenuPolicy() == Qt.ContextMenuPolicy.CustomContextMenu  # our menu, not Qt's
    actions = viewer.selection_menu().actions()
    add = next(a for a in actions if "findings" in a.text())
    assert not add.isEnabled()  # nothing selected yet
    assert any("Copy" in a.text() for a in actions)  # the text's own entries stay
    viewer.text_view.select_span(start, end)
    add = next(a for a in viewer.selection_menu().actions() if a.text() == "Add selection to findings…")
    add.trigger()
    [finding] = list_findings(window.case)
    assert finding.row.quote == EMAIL_PHRASE


def test_the_document_menu_adds_and_removes_tags_and_notes(window, monkeypatch, qtmodeltester):
    doc_id, _, _ = span_of(window.case, EMAIL_PHRASE)
    store.add_tag(window.case, doc_id, "Antwerp")
    changed: list[int] = []
    window.browser.tags_changed.connect(changed.append)
    menu = QMenu()
    tag_bar.add_tag_actions(menu, window.browser, window.case, doc_id, window.browser.tags_changed)
    entries = {a.text(): a for a in menu.actions()}
    assert set(entries) >= {"Add tag…", "Remove tag", "Note…"}
    [remove] = entries["Remove tag"].menu().actions()
    assert remove.text() == "Antwerp"
    remove.trigger()
    assert store.tags_of(window.case, doc_id) == [] and changed == [doc_id]
    monkeypatch.setattr(tag_bar.QInputDialog, "getMultiLineText", lambda *a, **k: ("Ask Bob who relabelled", True))
    entries["Note…"].trigger()
    assert store.document_note(window.case, doc_id) == "Ask Bob who relabelled" and changed == [doc_id, doc_id]
    window.viewer.show_document(doc_id)
    assert "Ask Bob who relabelled" in window.viewer.tag_bar.tags_label.text()
    cell = window.browser.model.index_of(doc_id).siblingAtColumn(TAGS)
    assert cell.data() == "✎ " and "Note: Ask Bob who relabelled" in cell.data(Qt.ItemDataRole.ToolTipRole)
    # the document model with tags stays a well-behaved Qt model
    store.add_tag(window.case, doc_id, "Antwerp")
    window.browser.refresh_tags()
    qtmodeltester.check(window.browser.model)
    assert window.browser.model.index_of(doc_id).siblingAtColumn(TAGS).data() == "✎ Antwerp"


def test_tags_column_filter_and_viewer_strip(qtbot, window, monkeypatch):
    doc_id, _, _ = span_of(window.case, PDF_PHRASE)
    browser = window.browser
    assert browser.tree.isColumnHidden(TAGS)  # no tags in the case yet: no empty column
    # from the document list's context menu: the tag dialog offers the case's tags, typing a new one works
    monkeypatch.setattr(tag_bar.QInputDialog, "getItem", lambda *a, **k: ("key evidence", True))
    assert tag_bar.ask_tag(browser, window.case, [doc_id]) == "key evidence"
    browser.tags_changed.emit(doc_id)
    index = browser.model.index_of(doc_id).siblingAtColumn(TAGS)
    assert index.data() == "key evidence"
    assert [browser.tag_combo.itemText(i) for i in range(browser.tag_combo.count())] == ["Any tag", "key evidence"]
    window.splitter.setSizes([500, 400, 380])  # a pane wide enough for titles and tags both
    qtbot.waitUntil(lambda: browser.width() >= 460)
    assert not browser.tree.isColumnHidden(TAGS)

    browser.tag_combo.setCurrentIndex(1)
    docs, all_docs, _, _ = browser.proxy.counts()
    assert docs == 1 and all_docs > 1
    assert browser.proxy.rowCount() == 1 and browser.proxy.doc_id(browser.proxy.index(0, 0)) == doc_id
    assert "1 of" in browser.count_label.text()
    qtbot.wait(50)
    window.grab().save(str(SHOTS / "tags-column-1280x720.png"))

    # the viewer's strip shows it; removing it there clears the column and the filter that needed it
    window.viewer.show_document(doc_id)
    strip = window.viewer.tag_bar
    assert strip.isVisible() and strip.tags == ["key evidence"] and "key evidence" in strip.tags_label.text()
    strip._link("remove:key evidence")
    assert store.tags_of(window.case, doc_id) == []
    assert browser.model.index_of(doc_id).siblingAtColumn(TAGS).data() == ""
    assert browser.tag_combo.currentIndex() == 0 and not browser.proxy.active
    assert browser.proxy.counts()[0] == browser.proxy.counts()[1]


def test_export_findings_from_the_window(qtbot, window, tmp_path):
    doc_id, start, end = span_of(window.case, EMAIL_PHRASE)
    window.findings.add_selection(doc_id, start, end, note="for the report")
    out = tmp_path / "findings.md"
    future = window.findings.export("md", out)
    qtbot.waitUntil(lambda: future.done(), timeout=30_000)
    text = out.read_text(encoding="utf-8")
    assert "for the report" in text and "1 finding, all verified" in text
