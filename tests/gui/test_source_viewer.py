"""The source viewer on a real sample case: PDF pages with span rectangles, text with the span, emails."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pymupdf
import pytest
from builders import pdf_bytes
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from sample_case import EMAIL_PHRASE, PDF_PHRASE, build_sample_case

from rlm_desktop.engine.citations import build_citation
from rlm_desktop.gui.pdf_page_view import MUPDF_LOCK
from rlm_desktop.gui.source_viewer import EMPTY_MESSAGE, UNVERIFIED_MESSAGE, SourceViewer
from rlm_desktop.gui.span_text_view import qt_position
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")


@pytest.fixture
def sample(tmp_path, fake_openai):
    return build_sample_case(tmp_path, fake_openai)


@pytest.fixture
def case(sample):
    with Case.open(sample.case_path) as opened:
        yield opened


@pytest.fixture
def viewer(qtbot):
    widget = SourceViewer()
    qtbot.addWidget(widget)
    widget.resize(800, 900)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def citation(sample, kind: str) -> dict:
    return next(c for c in sample.record["citations"] if c["kind"] == kind)


def doc_titled(case: Case, title: str) -> int:
    return next(doc.id for doc in case.documents() if doc.title == title)


def settle(qtbot) -> None:
    """Let queued layout and scroll work run (the viewer re-centres once sizes are known)."""
    qtbot.wait(30)


def highlight_is_painted(viewer: SourceViewer, rect: list[float]) -> bool:
    """Whether the viewport shows the highlight colour over most of `rect` (PDF points) on screen."""
    view = viewer.pdf_view
    top_left = view.point_on_page(rect[0], rect[1])
    bottom_right = view.point_on_page(rect[2], rect[3])
    image = view.viewport().grab().toImage()
    if not image.rect().contains(top_left) or not image.rect().contains(bottom_right):
        return False
    yellow = total = 0
    for x in range(top_left.x() + 1, bottom_right.x() - 1, 3):
        for y in range(top_left.y() + 1, bottom_right.y() - 1, 3):
            colour = image.pixelColor(QPoint(x, y))
            total += 1
            yellow += colour.red() > 200 and colour.green() > 180 and colour.blue() < 190
    return total > 0 and yellow / total > 0.5


def test_empty_state_before_anything_is_open(viewer):
    assert viewer.stack.currentWidget() is viewer.empty_label
    assert viewer.empty_label.text() == EMPTY_MESSAGE
    assert viewer.current_doc_id is None and viewer.current_page is None
    assert viewer.page_count == 0 and viewer.highlighted_span is None and viewer.highlight_rects == []
    assert viewer.header.isHidden() and viewer.toolbar.isHidden()


def test_pdf_citation_opens_its_page_with_the_rectangles_drawn(viewer, qtbot, sample, case):
    viewer.set_case(case)
    cited = citation(sample, "pdf")
    with qtbot.waitSignal(viewer.document_opened) as opened:
        viewer.show_citation(cited)
    assert opened.args == [cited["doc_id"]]
    settle(qtbot)

    assert viewer.mode == "pdf"
    assert viewer.current_page == 2 == cited["page"]
    assert viewer.page_count == 2
    assert viewer.highlighted_span == (cited["start"], cited["end"])
    assert viewer.highlight_rects == cited["rects"]
    image = viewer.pdf_view.rendered_image
    assert image is not None and not image.isNull()
    page_width = case.pages(cited["doc_id"])[1].width
    assert image.width() == pytest.approx(page_width * viewer.zoom, abs=2)  # the page at the zoom shown
    # the span's rectangle is painted, in the highlight colour, inside the visible part of the view
    assert highlight_is_painted(viewer, cited["rects"][0])
    assert viewer.page_box.text() == "2 / 2"
    assert "verified" in viewer.notice_text and viewer.citation_notice.level == "ok"
    assert viewer.title_label.text() == "harbour report.pdf"
    assert viewer.location_label.full_text.endswith("harbour report.pdf")
    assert viewer.sha_label.text().startswith(f"SHA-256 {cited['sha256'][:12]}")
    assert cited["sha256"] in viewer.sha_label.toolTip()
    viewer.grab().save(str(SHOTS / "viewer_pdf.png"))


def test_email_citation_shows_the_text_with_the_quote_highlighted(viewer, qtbot, sample, case):
    viewer.set_case(case)
    cited = citation(sample, "email")
    viewer.show_citation(cited)
    settle(qtbot)

    assert viewer.mode == "text" and viewer.current_page is None
    assert viewer.highlighted_span == (cited["start"], cited["end"])
    assert viewer.text_view.highlighted_text() == cited["quote"] == EMAIL_PHRASE
    assert viewer.text_view.viewport().rect().contains(viewer.text_view.span_rect())
    assert viewer.toolbar.isHidden()
    panel = viewer.email_panel
    assert panel.isVisible()
    assert panel.value_text("from") == "Bob Example <bob@example.org>"
    assert panel.value_text("subject") == "Re: Blue Heron shipment"
    assert panel.value_text("date").startswith("Sat 06 May 2023, 16:45")
    assert not panel.values["cc"].isVisible()  # no Cc on this message: no empty row
    viewer.grab().save(str(SHOTS / "viewer_email.png"))


def test_attachment_chip_opens_the_stored_pdf_and_links_back(viewer, qtbot, sample, case, tmp_path):
    viewer.set_case(case)
    first_email = doc_titled(case, "Blue Heron shipment")
    viewer.show_document(first_email)
    chips = viewer.attachment_buttons()
    assert [chip.text() for chip in chips] == ["invoice 778.pdf"]
    # with every file on disk gone, the attachment can only come from the copy stored in the case
    shutil.move(sample.folder, tmp_path / "moved away")
    with qtbot.waitSignal(viewer.document_opened) as opened:
        qtbot.mouseClick(chips[0], Qt.MouseButton.LeftButton)
    attachment = doc_titled(case, "invoice 778.pdf")
    assert opened.args == [attachment] and viewer.current_doc_id == attachment
    assert viewer.mode == "pdf" and viewer.current_page == 1 and viewer.page_count == 1
    assert viewer.pdf_view.rendered_image is not None and not viewer.pdf_view.rendered_image.isNull()
    assert viewer.notice_text == ""
    assert viewer.parent_prefix.text() == "Attachment of:"
    assert viewer.parent_button.text() == "Blue Heron shipment"
    qtbot.mouseClick(viewer.parent_button, Qt.MouseButton.LeftButton)
    assert viewer.current_doc_id == first_email and viewer.mode == "text"


def test_zoom_and_page_navigation(viewer, qtbot, sample, case):
    viewer.set_case(case)
    viewer.show_citation(citation(sample, "pdf"))
    settle(qtbot)
    fitted = viewer.zoom
    assert viewer.fit_action.isChecked()
    width = viewer.pdf_view.rendered_image.width()

    viewer.zoom_in_action.trigger()
    assert viewer.zoom > fitted and not viewer.fit_action.isChecked()
    assert viewer.pdf_view.rendered_image.width() > width
    assert viewer.zoom_label.text() == f"{round(viewer.zoom * 100)}%"
    viewer.zoom_out_action.trigger()
    viewer.zoom_out_action.trigger()
    assert viewer.zoom < fitted
    viewer.fit_action.trigger()
    assert viewer.zoom == pytest.approx(fitted, abs=0.01) and viewer.fit_action.isChecked()

    shown = viewer.pdf_view.rendered_image.cacheKey()
    viewer.previous_action.trigger()
    assert viewer.current_page == 1 and viewer.page_box.text() == "1 / 2"
    assert viewer.highlight_rects == []  # the span is on page 2
    assert not viewer.previous_action.isEnabled() and viewer.next_action.isEnabled()
    viewer.next_action.trigger()
    assert viewer.current_page == 2 and viewer.highlight_rects
    assert viewer.pdf_view.rendered_image.cacheKey() == shown  # the page came back from the cache
    viewer.page_box.setValue(1)
    assert viewer.current_page == 1

    # keyboard: PgDn / PgUp page, Ctrl+- zooms out, wherever the focus is inside the viewer
    viewer.pdf_view.setFocus()
    qtbot.keyClick(viewer.pdf_view, Qt.Key.Key_PageDown)
    assert viewer.current_page == 2
    qtbot.keyClick(viewer.pdf_view, Qt.Key.Key_PageUp)
    assert viewer.current_page == 1
    before = viewer.zoom
    qtbot.keyClick(viewer.pdf_view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert viewer.zoom < before

    # the mouse wheel: Ctrl zooms; past the bottom of a page it turns to the next one
    before = viewer.zoom
    wheel(viewer, -120)
    assert viewer.current_page == 1  # still scrolling down the page
    wheel(viewer, 120, Qt.KeyboardModifier.ControlModifier)
    assert viewer.zoom > before
    bar = viewer.pdf_view.verticalScrollBar()
    bar.setValue(bar.maximum())
    wheel(viewer, -120)
    assert viewer.current_page == 2 and viewer.page_box.value() == 2


def wheel(viewer: SourceViewer, delta: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    view = viewer.pdf_view
    centre = QPointF(view.viewport().rect().center())
    event = QWheelEvent(
        centre,
        QPointF(view.viewport().mapToGlobal(centre.toPoint())),
        QPoint(0, 0),
        QPoint(0, delta),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), event)


def test_text_toggle_shows_the_extracted_text_of_a_pdf(viewer, qtbot, sample, case):
    viewer.set_case(case)
    viewer.show_citation(citation(sample, "pdf"))
    viewer.text_action.trigger()
    settle(qtbot)
    assert viewer.mode == "text" and viewer.highlight_rects == []
    assert viewer.text_view.highlighted_text() == PDF_PHRASE
    assert viewer.text_view.gutter.isVisible() and viewer.text_view.page_at_top() in (1, 2)
    assert not viewer.zoom_in_action.isEnabled() and viewer.page_action.isEnabled()
    viewer.page_action.trigger()
    assert viewer.mode == "pdf" and viewer.current_page == 2 and viewer.highlight_rects


def test_moved_or_changed_file_falls_back_to_text_with_a_notice(viewer, qtbot, tmp_path):
    sample = build_sample_case(tmp_path)
    pdf_path = sample.folder / "harbour report.pdf"
    with Case.open(sample.case_path) as case:
        doc = doc_titled(case, "harbour report.pdf")
        start = case.text(doc).index(PDF_PHRASE)
        cited = build_citation(case, "[c1]", doc, start, start + len(PDF_PHRASE), PDF_PHRASE)
        viewer.set_case(case)
        pdf_path.rename(tmp_path / "elsewhere.pdf")
        viewer.show_citation(cited)
        settle(qtbot)
        assert viewer.mode == "text"
        assert "Original file unavailable" in viewer.notice_text
        assert str(pdf_path) in viewer.notice_text
        assert viewer.info_notice.level == "warning" and viewer.info_notice.isVisible()
        assert viewer.text_view.highlighted_text() == PDF_PHRASE
        assert viewer.current_page == 2 and viewer.page_count == 2
        assert viewer.toolbar.isHidden()  # no pages to turn or zoom
        assert not viewer.page_action.isEnabled() and not viewer.text_action.isEnabled()

        # same name, other bytes: the hash check refuses it
        pdf_path.write_bytes(pdf_bytes(["Someone edited this file."]))
        viewer.show_document(doc_titled(case, "memo.docx"))
        viewer.show_citation(cited)
        assert viewer.mode == "text"
        assert "changed since it was ingested" in viewer.notice_text

        # the original put back: the next click shows the page again
        (tmp_path / "elsewhere.pdf").replace(pdf_path)
        viewer.show_citation(cited)
        assert (
            viewer.mode == "pdf"
            and viewer.current_page == 2
            and viewer.notice_text.startswith("Citation [c1]")
        )


def test_unverified_citation_is_flagged_but_the_document_is_shown(viewer, qtbot, sample, case):
    viewer.set_case(case)
    cited = dict(citation(sample, "pdf"), quote="left Rotterdam on 5 May 2023", verified=False)
    cited["problem"] = "quote differs from the source"
    viewer.show_citation(cited)
    settle(qtbot)
    assert viewer.citation_notice.isVisible() and viewer.citation_notice.level == "error"
    assert viewer.notice_text.startswith(UNVERIFIED_MESSAGE)
    assert "left Rotterdam on 5 May 2023" in viewer.notice_text
    assert viewer.mode == "pdf" and viewer.current_page == 2 and viewer.highlight_rects
    assert viewer.pdf_view.canvas.unverified  # what sits at the offsets is marked in red, not yellow
    assert not highlight_is_painted(viewer, viewer.highlight_rects[0])

    # offsets outside the document: nothing to highlight, the notice stays
    beyond = dict(cited, start=10_000, end=10_020, problem="offsets outside the document")
    viewer.show_citation(beyond)
    assert viewer.highlighted_span is None and viewer.highlight_rects == []
    assert UNVERIFIED_MESSAGE in viewer.notice_text
    assert viewer.current_doc_id == cited["doc_id"]


def test_unknown_document_and_closing_the_case(viewer, sample, case):
    viewer.set_case(case)
    viewer.show_document(999)
    assert viewer.current_doc_id is None and "not in this case" in viewer.empty_label.text()
    viewer.show_document(doc_titled(case, "notes.txt"))
    assert viewer.current_doc_id is not None and viewer.header.isVisible()
    viewer.set_case(None)
    assert viewer.current_doc_id is None and viewer.stack.currentWidget() is viewer.empty_label


def test_span_at_the_very_end_and_awkward_characters(viewer, qtbot, sample, case):
    viewer.set_case(case)
    notes = doc_titled(case, "notes.txt")
    text = case.text(notes)
    viewer.show_document(notes, (len(text) - 9, len(text)))
    assert viewer.text_view.highlighted_text() == text[-9:]
    assert viewer.location_label.full_text.endswith("notes.txt")

    # characters outside the BMP take two Qt positions and "\r\n" one: the highlight must still be exact
    awkward = "Emoji 😀 first\r\nthen 🎉 again\r\nand the target phrase here\n"
    doc = case.add_text_document("awkward.txt", awkward)
    start = awkward.index("target phrase")
    viewer.show_document(doc, (start, start + len("target phrase")))
    assert viewer.text_view.highlighted_text() == "target phrase"
    # two emoji before it count one more Qt position each; two "\r\n" count one less each
    assert qt_position(awkward, start) == start + 2 - 2
    assert qt_position(awkward, awkward.index("then")) == awkward.index("then") + 1 - 1
    assert qt_position(awkward, awkward.index("first")) == awkward.index("first") + 1
    assert viewer.location_label.full_text == "(no file on disk)"


def test_huge_text_opens_with_the_span_in_view(viewer, qtbot, sample, case):
    viewer.set_case(case)
    line = "Ledger line with amounts and names, nothing to see here.\n"
    huge = line * 40_000 + "The hidden payment of EUR 9,999 to Blue Heron.\n" + line * 100
    doc = case.add_text_document("ledger.txt", huge)
    start = huge.index("EUR 9,999")
    viewer.show_document(doc, (start, start + 9))
    settle(qtbot)
    assert viewer.text_view.highlighted_text() == "EUR 9,999"
    assert viewer.text_view.viewport().rect().contains(viewer.text_view.span_rect())


def _image_only_pdf(path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 540, 770), "A page with text on it.", fontsize=11)
    picture = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    picture.clear_with(200)
    doc.new_page().insert_image(pymupdf.Rect(100, 100, 500, 500), pixmap=picture)
    doc.save(path)
    doc.close()


def test_image_only_page_and_pdf_without_page_rows(viewer, qtbot, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    _image_only_pdf(folder / "scan.pdf")
    with Case.open(tmp_path / "case.sqlite") as case:
        ingest(case, [folder], jobs=1)
        scan = doc_titled(case, "scan.pdf")
        assert case.pages(scan)[1].image_only
        viewer.set_case(case)
        viewer.show_document(scan)
        assert viewer.mode == "pdf" and viewer.page_count == 2 and viewer.current_page == 1
        viewer.next_action.trigger()
        assert viewer.current_page == 2
        assert viewer.pdf_view.rendered_image is not None and not viewer.pdf_view.rendered_image.isNull()

        # a PDF whose page geometry was never stored: the page is drawn, the span cannot be marked on it
        data = (folder / "scan.pdf").read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        with case.transaction():
            case.put_blob(sha, data)
            bare = case.insert_document(
                kind="pdf", title="bare.pdf", text="A page with text on it.", sha256=sha, size=len(data)
            )
        viewer.show_document(bare, (2, 6))
        assert viewer.mode == "pdf" and viewer.current_page == 1 and viewer.page_count == 2
        assert viewer.highlight_rects == [] and "no word positions" in viewer.notice_text
        viewer.text_action.trigger()
        assert viewer.text_view.highlighted_text() == "page"


def test_damaged_pdf_falls_back_to_text(viewer, tmp_path):
    with Case.open(tmp_path / "case.sqlite") as case:
        data = b"%PDF-1.7 this is not really a PDF"
        sha = hashlib.sha256(data).hexdigest()
        with case.transaction():
            case.put_blob(sha, data)
            doc = case.insert_document(
                kind="pdf", title="broken.pdf", text="Some text.", sha256=sha, size=len(data)
            )
        viewer.set_case(case)
        viewer.show_document(doc, (5, 9))
        assert viewer.mode == "text" and "cannot be drawn" in viewer.notice_text
        assert viewer.text_view.highlighted_text() == "text"


def test_rendering_waits_while_an_ingest_holds_mupdf(viewer, qtbot, sample, case):
    viewer.set_case(case)
    assert MUPDF_LOCK.acquire(timeout=5)
    try:
        viewer.show_citation(citation(sample, "pdf"))
        assert viewer.pdf_view.rendered_image is None
        assert "Waiting for the PDF engine" in viewer.pdf_view.canvas.message
    finally:
        MUPDF_LOCK.release()
    qtbot.waitUntil(lambda: viewer.pdf_view.rendered_image is not None, timeout=3000)
    assert viewer.current_page == 2 and viewer.highlight_rects


def test_a_big_original_is_read_off_the_gui_thread_with_the_text_shown_meanwhile(
    viewer, qtbot, sample, case, monkeypatch
):
    import threading

    from rlm_desktop.gui import source_viewer
    from rlm_desktop.sources import source_bytes as real_source_bytes

    monkeypatch.setattr(source_viewer, "SYNC_LOAD_BYTES", 0)  # every original counts as big
    readers: list[threading.Thread] = []
    gate = threading.Event()

    def slow_source_bytes(case_, doc):
        readers.append(threading.current_thread())
        gate.wait(5)
        return real_source_bytes(case_, doc)

    monkeypatch.setattr(source_viewer, "source_bytes", slow_source_bytes)
    viewer.set_case(case)
    cited = citation(sample, "pdf")
    viewer.show_citation(cited)
    assert viewer.mode == "text" and "Loading the original pages" in viewer.notice_text
    assert viewer.highlighted_span == (cited["start"], cited["end"])  # the span is shown in the text at once
    gate.set()
    qtbot.waitUntil(lambda: viewer.mode == "pdf", timeout=5000)
    assert readers and all(t is not threading.main_thread() for t in readers)
    assert viewer.current_page == cited["page"] and viewer.highlight_rects == cited["rects"]
    assert "Loading" not in viewer.notice_text


def test_email_body_is_shown_without_repeating_its_headers(viewer, qtbot, sample, case):
    """The header panel shows From/To/Date/Subject; the text below starts at the body. The header lines stay
    in the stored text (offsets count them): hidden, and shown again for a passage inside them."""
    from rlm_desktop.gui.email_body import header_block_end

    viewer.set_case(case)
    reply = doc_titled(case, "Re: Blue Heron shipment")
    text = case.text(reply)
    assert text.startswith("From: ")
    body_at = header_block_end(text)
    assert body_at > 0 and text[body_at:].startswith("Confirmed:")
    viewer.show_document(reply)
    settle(qtbot)
    view = viewer.text_view
    document = view.document()
    assert viewer.email_panel.isVisible()
    first_shown = next(
        document.findBlockByNumber(n) for n in range(document.blockCount()) if document.findBlockByNumber(n).isVisible()
    )
    assert first_shown.text().startswith("Confirmed:")
    assert not document.findBlockByNumber(0).isVisible() and document.findBlockByNumber(0).text().startswith("From:")
    assert view.hidden_until == body_at
    viewer.grab().save(str(SHOTS / "viewer_email_body.png"))
    # a citation of the body keeps the headers hidden, and highlights the right characters
    start = text.index(EMAIL_PHRASE)
    viewer.show_document(reply, (start, start + len(EMAIL_PHRASE)))
    assert view.highlighted_text() == EMAIL_PHRASE and view.hidden_until == body_at
    # a passage inside the header lines shows them again
    viewer.show_document(reply, (0, 4))
    assert view.highlighted_text() == "From" and view.hidden_until == 0
    assert document.findBlockByNumber(0).isVisible()
    assert header_block_end("Just text\n\nno headers") == 0


def test_a_long_recipient_list_is_cut_with_all_in_the_tooltip(qtbot):
    from rlm_desktop.gui.document_header import MAX_ADDRESSES, EmailHeaderPanel

    panel = EmailHeaderPanel()
    qtbot.addWidget(panel)
    people = [f"user{i}@example.org" for i in range(200)]
    panel.set_meta({"from": ["a@example.org"], "to": people, "subject": "Many"})
    shown = panel.value_text("to")
    assert shown.startswith("user0@example.org, user1@example.org")
    assert shown.endswith(f"… and {200 - MAX_ADDRESSES} more") and "user199" not in shown
    assert panel.values["to"].toolTip().split("\n") == people
    panel.set_meta({"from": ["a@example.org"], "to": people[:3], "subject": "Few"})
    assert panel.value_text("to") == "user0@example.org, user1@example.org, user2@example.org"
