"""The document browser on a real case: tree, filters, counts, full-text search, signals and keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QDate, QModelIndex, Qt
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QApplication
from sample_case import EMAIL_PHRASE, PDF_PHRASE, build_sample_case

from rlm_desktop.gui.document_browser import (
    SEARCH_PLACEHOLDER,
    DocumentBrowser,
    query_terms,
    snippet_html,
)
from rlm_desktop.gui.document_model import DATE, SIZE, TITLE
from rlm_desktop.store.case import Case
from rlm_desktop.store.fts import FtsMatch

SHOTS = Path("/tmp/shots")


@pytest.fixture
def case(tmp_path):
    built = build_sample_case(tmp_path)
    opened = Case.open(built.case_path)
    yield opened
    opened.close()


@pytest.fixture
def browser(qtbot, case):
    widget = DocumentBrowser()
    qtbot.addWidget(widget)
    widget.resize(380, 520)
    widget.set_case(case)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def find_row(view_model, title, parent=None):
    parent = QModelIndex() if parent is None else parent
    for r in range(view_model.rowCount(parent)):
        index = view_model.index(r, TITLE, parent)
        if index.data().startswith(title):
            return index
    raise AssertionError(title)


def test_tree_counts_and_placeholder(browser):
    assert browser.search_box.placeholderText() == SEARCH_PLACEHOLDER
    assert browser.count_label.text() == "6 documents, 1 thread"
    assert browser.stack.currentWidget() is browser.tree
    assert [browser.kind_combo.itemText(i) for i in range(browser.kind_combo.count())] == [
        "All kinds",
        "Word",
        "Email",
        "PDF",
        "Text",
    ]
    assert browser.date_from.text() == "any date" and browser.date_to.text() == "any date"
    assert not browser.clear_filters_button.isEnabled()


def test_filters_from_widgets_update_tree_and_count(browser, qtbot):
    browser.kind_combo.setCurrentIndex(browser.kind_combo.findData("pdf"))
    assert browser.count_label.text() == "2 of 6 documents match, in 1 of 1 threads"
    thread = find_row(browser.proxy, "Blue Heron shipment —")
    assert browser.tree.isExpanded(thread)  # matches inside threads are shown, not hidden in folds
    email = browser.proxy.index(0, TITLE, thread)
    assert browser.proxy.index(0, TITLE, email).data() == "invoice 778.pdf"

    browser.kind_combo.setCurrentIndex(0)
    qtbot.keyClicks(browser.sender_box, "bob")
    qtbot.waitUntil(lambda: browser.count_label.text().startswith("1 of 6"))
    browser.date_from.setDate(QDate(2030, 1, 1))
    assert browser.count_label.text().startswith("0 of 6")
    assert browser.stack.currentWidget() is browser.empty_label
    assert "No documents match" in browser.empty_label.text()
    browser.clear_filters()
    assert browser.count_label.text() == "6 documents, 1 thread"
    assert browser.date_from.text() == "any date" and browser.sender_box.text() == ""
    assert browser.stack.currentWidget() is browser.tree


def test_document_activation_and_thread_fold(browser, qtbot, case):
    thread = find_row(browser.proxy, "Blue Heron shipment —")
    browser.tree.setCurrentIndex(thread)
    browser.tree.setFocus()
    with qtbot.assertNotEmitted(browser.document_activated):
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert browser.tree.isExpanded(thread)
    reply = browser.proxy.index(1, TITLE, thread)
    browser.tree.setCurrentIndex(reply)
    with qtbot.waitSignal(browser.document_activated) as got:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert case.document(got.args[0]).title == "Re: Blue Heron shipment"


def test_select_document_expands_and_clears_hiding_filters(browser, case):
    invoice = next(d for d in case.documents() if d.title == "invoice 778.pdf")
    browser.kind_combo.setCurrentIndex(browser.kind_combo.findData("text"))
    assert browser.select_document(invoice.id)
    assert browser.selected_doc_id() == invoice.id
    assert browser.kind_combo.currentIndex() == 0  # the filter hid it, so it was cleared
    assert browser.tree.isExpanded(browser.tree.currentIndex().parent())
    assert not browser.select_document(9999)


def test_full_text_search_hits_and_span_signal(browser, qtbot, case):
    qtbot.keyClicks(browser.search_box, '"relabelled in Antwerp"')
    qtbot.keyClick(browser.search_box, Qt.Key.Key_Return)
    assert browser.showing_hits() and browser.hit_count() == 1
    doc_id, start, end = browser.hit(0)
    assert case.text(doc_id)[start:end] == "relabelled in Antwerp"  # the whole phrase
    html_text = browser.hits.item(0).data(Qt.ItemDataRole.UserRole + 11)
    assert "Re: Blue Heron shipment" in html_text and ">relabelled in Antwerp</b>" in html_text
    with qtbot.waitSignal(browser.span_activated) as got:
        browser.hits.itemActivated.emit(browser.hits.item(0))
    assert got.args == [doc_id, start, end]
    # Esc returns to the tree and clears the box
    qtbot.keyClick(browser.search_box, Qt.Key.Key_Escape)
    assert not browser.showing_hits() and browser.search_box.text() == ""
    assert browser.stack.currentWidget() is browser.tree


def test_search_pdf_hit_names_the_page_and_prefix(browser, case):
    hits = browser.run_search("Rotterd*")
    assert len(hits) == 1
    assert "PDF, page 2" in hits[0].html and "<b" in hits[0].html
    hit_text = case.text(hits[0].doc_id)[hits[0].start : hits[0].end]
    assert hit_text == "Rotterdam" and hit_text in PDF_PHRASE
    hits = browser.run_search("invoice")
    titles = {h.title for h in hits}
    assert "invoice 778.pdf" in titles
    attachment = next(h for h in hits if h.title == "invoice 778.pdf")
    assert "in Blue Heron shipment" in attachment.html  # where the attachment lives
    assert browser.run_search("zebra") == [] and "No documents contain" in browser.hits_header.text()


def test_invalid_query_is_shown_inline(browser):
    assert browser.run_search("NEAR(blue heron, soon)") == []
    assert browser.search_error.isVisible()
    assert "must be a whole number, not 'soon'" in browser.search_error.text()
    assert not browser.showing_hits()
    hits = browser.run_search("Antwerp")  # a good query afterwards works and hides the message
    assert hits and not browser.search_error.isVisible()
    assert EMAIL_PHRASE.endswith("Antwerp")


def test_ctrl_f_focuses_search(browser, qtbot):
    browser.activateWindow()
    browser.tree.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is browser.tree)
    qtbot.keyClick(browser.tree, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is browser.search_box)


def test_refresh_keeps_expansion_and_sees_new_documents(browser, case):
    thread = find_row(browser.proxy, "Blue Heron shipment —")
    browser.tree.expand(thread)
    case.add_text_document("late note.txt", "A note added while the window was open.")
    browser.refresh()
    assert browser.count_label.text() == "7 documents, 1 thread"
    assert browser.tree.isExpanded(find_row(browser.proxy, "Blue Heron shipment —"))
    assert find_row(browser.proxy, "late note.txt").isValid()


def test_no_case(qtbot):
    widget = DocumentBrowser()
    qtbot.addWidget(widget)
    assert widget.count_label.text() == "0 documents"
    assert widget.stack.currentWidget() is widget.empty_label
    assert not widget.search_box.isEnabled()
    assert widget.run_search("anything") == []


def test_snippet_bolds_all_query_words():
    text = "Intro. " + "x " * 60 + "Payments to Blue Heron Ltd were approved & payable. " + "y " * 100
    start = text.index("Blue")
    match = FtsMatch(1, 1000 + start, 1000 + start + 4, 1.0, 1000, text)
    html_text = snippet_html(match, query_terms('"blue heron" AND pay*'))
    assert html_text.startswith("…") and html_text.endswith("…")
    assert ">Blue Heron</b>" in html_text  # adjacent words merge into one bold run
    assert ">Payments</b>" in html_text and ">payable</b>" in html_text
    assert "&amp;" in html_text
    assert query_terms('a OR b NOT "c d" NEAR(e f, 3) text:g h*') == [
        ("a", False),
        ("b", False),
        ("c", False),
        ("d", False),
        ("e", False),
        ("f", False),
        ("text", False),  # no column filters: "text:g" is the words text and g
        ("g", False),
        ("h", True),
    ]


def test_screenshots(browser, qtbot, case):
    SHOTS.mkdir(exist_ok=True)
    thread = find_row(browser.proxy, "Blue Heron shipment —")
    browser.tree.expand(thread)
    first = browser.proxy.index(0, TITLE, thread)
    browser.tree.expand(first)
    browser.tree.setCurrentIndex(browser.proxy.index(0, TITLE, first))
    qtbot.wait(50)
    tree_shot = browser.grab()
    browser.run_search('"Blue Heron"')
    qtbot.wait(50)
    search_shot = browser.grab()
    search_shot.save(str(SHOTS / "browser_search.png"))
    tree_shot.save(str(SHOTS / "browser_tree.png"))
    # both states side by side in one picture
    both = QPixmap(
        tree_shot.width() + search_shot.width() + 12, max(tree_shot.height(), search_shot.height())
    )
    both.fill(QColor("white"))
    painter = QPainter(both)
    painter.drawPixmap(0, 0, tree_shot)
    painter.drawPixmap(tree_shot.width() + 12, 0, search_shot)
    painter.end()
    assert both.save(str(SHOTS / "browser.png"))
    # a wide pane shows every column
    browser.clear_search()
    browser.resize(760, 360)
    qtbot.waitUntil(lambda: not browser.tree.isColumnHidden(SIZE))
    browser.grab().save(str(SHOTS / "browser_wide.png"))


def test_header_sorts_the_tree(browser):
    browser.tree.sortByColumn(DATE, Qt.SortOrder.DescendingOrder)
    top = [browser.proxy.index(r, TITLE).data() for r in range(browser.proxy.rowCount())]
    assert top[0].startswith("Blue Heron shipment —")  # latest message 2023-05-06
    assert top[1] == "memo.docx"  # 2013 (its file properties); undated documents last
    thread = browser.proxy.index(0, TITLE)
    assert browser.proxy.index(0, TITLE, thread).data() == "Re: Blue Heron shipment"
    browser.tree.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
    assert browser.proxy.index(0, TITLE).data() == "harbour report.pdf"


def test_click_and_arrow_keys_preview_the_document(browser, qtbot, case):
    """Triage: a click or an arrow key opens the document, no Enter or double-click needed; keys held
    down open only the row they stop on, after the short pause."""
    opened: list[int] = []
    browser.document_activated.connect(opened.append)
    first = browser.proxy.index(0, TITLE)
    with qtbot.waitSignal(browser.document_activated, timeout=2000) as got:
        qtbot.mouseClick(
            browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=browser.tree.visualRect(first).center()
        )
    assert got.args == [browser.proxy.doc_id(first)]
    opened.clear()
    browser.tree.setFocus()
    for _ in range(2):  # an arrow key held down: rows passed without a pause between them
        qtbot.keyClick(browser.tree, Qt.Key.Key_Down)
    landed = browser.selected_doc_id()
    assert landed is not None and not opened  # nothing opened while the key was moving
    qtbot.waitUntil(lambda: opened == [landed], timeout=2000)
    qtbot.wait(150)
    assert opened == [landed]  # once, for the row the key stopped on


def test_refresh_and_filters_do_not_open_documents(browser, qtbot, case):
    """Only the user's moves preview: a refresh that keeps the selection, or a filter, opens nothing."""
    invoice = next(d for d in case.documents() if d.title == "invoice 778.pdf")
    opened: list[int] = []
    browser.document_activated.connect(opened.append)
    assert browser.select_document(invoice.id)
    browser.refresh()
    browser.kind_combo.setCurrentIndex(browser.kind_combo.findData("text"))
    qtbot.wait(200)
    assert opened == []


def test_arrow_keys_in_search_hits_preview_the_passage(browser, qtbot, case):
    browser.run_search("Blue OR Rotterdam")
    assert browser.hit_count() >= 2
    spans: list[tuple[int, int, int]] = []
    browser.span_activated.connect(lambda d, s, e: spans.append((d, s, e)))
    qtbot.wait(150)
    assert spans == []  # the search itself opens nothing: the viewer keeps what it shows
    browser.hits.setFocus()
    qtbot.keyClick(browser.hits, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: spans == [browser.hit(1)], timeout=2000)


def test_recipient_box_filters_and_columns_follow_the_pane(browser, qtbot):
    from rlm_desktop.gui.document_model import FROM, KIND, TO

    qtbot.keyClicks(browser.recipient_box, "alice@")  # the reply went to Alice
    qtbot.waitUntil(lambda: browser.count_label.text().startswith("1 of 6"))
    thread = find_row(browser.proxy, "Blue Heron shipment —")
    assert browser.proxy.index(0, TITLE, thread).data() == "Re: Blue Heron shipment"
    assert browser.proxy.index(0, TO, thread).data() == "Alice Example"
    browser.clear_filters()
    assert browser.recipient_box.text() == "" and browser.count_label.text() == "6 documents, 1 thread"
    browser.resize(900, 520)
    qtbot.waitUntil(lambda: not browser.tree.isColumnHidden(TO))
    assert not browser.tree.isColumnHidden(FROM) and browser.tree.isColumnHidden(KIND)
    browser.resize(380, 520)
    qtbot.waitUntil(lambda: browser.tree.isColumnHidden(TO))
    assert not browser.tree.isColumnHidden(DATE)


def test_a_big_case_is_read_off_the_gui_thread_and_then_shown_whole(qtbot, case, monkeypatch):
    """Past SYNC_TREE_MAX documents the tree is built on a worker thread: the browser says it is reading, the
    collector is paused only meanwhile, and the tree then shows as a small case's would."""
    import gc

    from rlm_desktop.gui import document_browser

    monkeypatch.setattr(document_browser, "SYNC_TREE_MAX", 2)  # the sample's 6 documents count as many
    widget = DocumentBrowser()
    qtbot.addWidget(widget)
    widget.resize(380, 520)
    widget.show()
    widget.set_case(case)
    assert widget.big_case
    if widget.model.tree.document_count == 0:  # the worker may already be done: either way the same end
        assert widget.empty_label.text() == "Reading the case's documents…"
        assert widget.stack.currentWidget() is widget.empty_label
    qtbot.waitUntil(lambda: widget.model.tree.document_count == 6, timeout=10_000)
    assert widget.count_label.text() == "6 documents, 1 thread"
    assert widget.stack.currentWidget() is widget.tree
    assert gc.isenabled()
    assert find_row(widget.proxy, "Blue Heron shipment —").isValid()  # the emails' thread, as at once
    old = widget.model.tree
    widget.refresh_in_background()  # an ingest's refresh replaces the tree; the old one is taken apart
    qtbot.waitUntil(lambda: widget.model.tree is not old, timeout=10_000)
    assert widget.model.tree.document_count == 6 and old.by_id == {} and old.root.children == []
