"""Find within the open document: Ctrl+F in the viewer, Enter / Shift+Enter / F3, "3 of 17", Escape; on the
text and on PDF pages; inside the real window, where Ctrl+F elsewhere still searches all documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from sample_case import EMAIL_PHRASE, PDF_PHRASE, build_sample_case

from rlm_desktop.gui.find_bar import find_spans
from rlm_desktop.gui.main_window import MainWindow
from rlm_desktop.gui.source_viewer import SourceViewer
from rlm_desktop.gui.span_text_view import FIND_CURRENT, qt_position
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


def test_find_spans_ignores_case_and_bends_spaces():
    text = "The harbour.\nthe HARBOUR master\r\nof the\nharbour; harbourage"
    assert [text[s:e] for s, e in find_spans(text, "harbour")] == ["harbour", "HARBOUR", "harbour", "harbour"]
    assert [text[s:e] for s, e in find_spans(text, "the  harbour")] == ["The harbour", "the HARBOUR", "the\nharbour"]
    assert find_spans(text, "   ") == [] and find_spans(text, "zebra") == []
    assert find_spans(text, "(") == []  # words are literal, not patterns
    assert len(find_spans("a" * 50, "a", limit=7)) == 7


@pytest.fixture
def sample(tmp_path):
    return build_sample_case(tmp_path)


@pytest.fixture
def case(sample):
    with Case.open(sample.case_path) as opened:
        yield opened


@pytest.fixture
def viewer(qtbot, case):
    widget = SourceViewer()
    qtbot.addWidget(widget)
    widget.resize(800, 700)
    widget.set_case(case)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def doc_of_kind(case: Case, kind: str):
    return next(d for d in case.documents() if d.kind == kind)


def test_ctrl_f_finds_in_the_text_and_steps_through_matches(viewer, case, qtbot):
    mail = next(d for d in case.documents(kind="email") if EMAIL_PHRASE in case.text(d.id))
    text = case.text(mail.id)
    span = (text.index(EMAIL_PHRASE), text.index(EMAIL_PHRASE) + len(EMAIL_PHRASE))
    viewer.show_document(mail.id, span)
    viewer.text_view.setFocus()
    qtbot.waitUntil(lambda: viewer.text_view.hasFocus())
    qtbot.keyClick(viewer.text_view, Qt.Key.Key_F, CTRL)
    bar = viewer.find_bar
    assert bar.isVisible() and QApplication.focusWidget() is bar.edit

    expected = [(m.start(), m.end()) for m in re.finditer("(?i)e", text)]
    assert len(expected) >= 3
    qtbot.keyClicks(bar.edit, "E")
    first = next(i for i, (s, _) in enumerate(expected) if s >= span[0])  # found from the highlighted passage
    assert first > 0
    assert bar.count_text == f"{first + 1} of {len(expected)}"
    assert viewer.text_view.find_current == expected[first]
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert bar.count_text == f"{(first + 1) % len(expected) + 1} of {len(expected)}"
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return, SHIFT)
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return, SHIFT)
    assert bar.current == (first - 1) % len(expected)
    qtbot.keyClick(bar.edit, Qt.Key.Key_F3)
    assert bar.current == first
    selections = viewer.text_view.extraSelections()
    assert len(selections) == 1 + len(expected)  # the passage, and every match lit
    (current,) = [s for s in selections if s.format.background().color() == FIND_CURRENT]
    cursor = current.cursor
    assert cursor.selectedText() == text[expected[first][0] : expected[first][1]]  # marked: what was found
    assert cursor.selectionStart() == qt_position(text, expected[first][0])
    assert viewer.text_view.highlighted_text() == EMAIL_PHRASE  # the passage keeps its highlight

    bar.edit.selectAll()
    qtbot.keyClicks(bar.edit, "zebra crossing")
    assert bar.count_text == "No matches" and viewer.text_view.find_current is None
    qtbot.keyClick(bar.edit, Qt.Key.Key_Escape)
    assert not bar.isVisible()
    assert len(viewer.text_view.extraSelections()) == 1  # only the passage's highlight is left
    assert viewer.text_view.hasFocus()


def test_find_on_pdf_pages_marks_the_match_and_turns_the_page(viewer, case, qtbot):
    pdf = doc_of_kind(case, "pdf")
    text = case.text(pdf.id)
    start = text.index(PDF_PHRASE)
    viewer.show_document(pdf.id, (start, start + len(PDF_PHRASE)))
    qtbot.waitUntil(lambda: viewer.mode == "pdf" and viewer.current_page == 2)
    span_rects = viewer.highlight_rects
    viewer.pdf_view.setFocus()
    qtbot.waitUntil(lambda: viewer.pdf_view.hasFocus())
    qtbot.keyClick(viewer.pdf_view, Qt.Key.Key_F, CTRL)
    qtbot.keyClicks(viewer.find_bar.edit, "harbour")
    count = text.lower().count("harbour")
    assert count >= 2 and viewer.find_bar.count_text.endswith(f" of {count}")
    seen_pages = set()
    for _ in range(count):
        seen_pages.add(viewer.current_page)
        match = viewer.find_bar.matches[viewer.find_bar.current]
        assert viewer.highlight_rects, match  # the match is marked on its page
        qtbot.keyClick(viewer.find_bar.edit, Qt.Key.Key_Return)
    assert seen_pages == {1, 2}  # "Harbour report" on page 1, "harbour master" on page 2
    viewer.text_action.trigger()  # the extracted text instead of the page: the same match, marked there
    current = viewer.find_bar.matches[viewer.find_bar.current]
    assert viewer.mode == "text" and viewer.text_view.find_current == current
    viewer.page_action.trigger()
    assert viewer.mode == "pdf" and viewer.highlight_rects
    qtbot.keyClick(viewer.find_bar.edit, Qt.Key.Key_Escape)
    viewer.show_document(pdf.id, (start, start + len(PDF_PHRASE)))
    assert viewer.highlight_rects == span_rects  # the passage's own marks are back


def test_opening_another_document_closes_the_find(viewer, case, qtbot):
    pdf, docx = doc_of_kind(case, "pdf"), doc_of_kind(case, "docx")
    viewer.show_document(docx.id)
    viewer.open_find()
    qtbot.keyClicks(viewer.find_bar.edit, "the")
    viewer.show_document(pdf.id)
    assert not viewer.find_bar.isVisible()


@pytest.fixture
def window(qtbot, sample, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    home = sample.case_path.parent.parent
    win = MainWindow(home, Settings())
    qtbot.addWidget(win)
    win.resize(1280, 720)
    win.show()
    win.open_case("sample")
    qtbot.waitExposed(win)
    yield win
    win.shutdown()


def test_in_the_window_ctrl_f_finds_in_the_viewer_and_searches_elsewhere(window, qtbot):
    case = window.case
    pdf = doc_of_kind(case, "pdf")
    window.viewer.show_document(pdf.id)
    qtbot.waitUntil(lambda: window.viewer.mode == "pdf")
    window.viewer.pdf_view.setFocus()
    qtbot.waitUntil(lambda: window.viewer.pdf_view.hasFocus())
    qtbot.keyClick(window.viewer.pdf_view, Qt.Key.Key_F, CTRL)
    assert window.viewer.find_bar.isVisible()
    assert QApplication.focusWidget() is window.viewer.find_bar.edit  # not the case's search box
    qtbot.keyClicks(window.viewer.find_bar.edit, "Rotterdam")
    assert window.viewer.find_bar.count_text == "1 of 1" and window.viewer.current_page == 2
    qtbot.wait(50)
    SHOTS.mkdir(exist_ok=True)
    window.grab().save(str(SHOTS / "find_in_document_1280x720.png"))
    assert window.width() <= 1280

    qtbot.keyClick(window.viewer.find_bar.edit, Qt.Key.Key_Escape)
    assert not window.viewer.find_bar.isVisible()
    window.browser.tree.setFocus()
    qtbot.waitUntil(lambda: window.browser.tree.hasFocus())
    qtbot.keyClick(window.browser.tree, Qt.Key.Key_F, CTRL)  # outside the viewer: search all documents
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.browser.search_box)
    assert not window.viewer.find_bar.isVisible()
