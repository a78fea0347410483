"""A DOCX with tracked changes in the viewer: insertions underlined in green, deletions' text struck through in
red where it stood, each with its author and date as a tooltip; citations still land on the stored span."""

from __future__ import annotations

import pytest
from builders import REVISED_DOCX_TEXT, make_revised_docx
from PySide6.QtGui import QTextCursor

from rlm_desktop.gui.source_viewer import SourceViewer
from rlm_desktop.gui.span_text_view import DELETED, INSERTED
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case


@pytest.fixture
def case(tmp_path):
    (tmp_path / "in").mkdir()
    make_revised_docx(tmp_path / "in" / "memo.docx")
    with Case.open(tmp_path / "case.sqlite") as opened:
        ingest(opened, [tmp_path / "in"], jobs=1)
        yield opened


def test_tracked_changes_are_shown_with_author_and_date(qtbot, case):
    viewer = SourceViewer()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    viewer.set_case(case)
    (doc,) = case.documents()
    start = REVISED_DOCX_TEXT.index("EUR 400,000")
    viewer.show_document(doc.id, (start, start + len("EUR 400,000")))
    view = viewer.text_view
    shown = view.toPlainText()
    # the deleted words are back, where they stood, only on screen: the stored text is unchanged
    assert "EUR 40,000EUR 400,000" in shown and "Nobody objected.Signed, the secretary." in shown
    assert case.text(doc.id) == REVISED_DOCX_TEXT
    assert view.highlighted_text() == "EUR 400,000"  # the citation's span, not the deletion before it

    def fmt_at(position: int):
        cursor = QTextCursor(view.document())
        cursor.setPosition(position + 1)
        return cursor.charFormat()

    deleted = fmt_at(shown.index("EUR 40,000"))
    assert deleted.fontStrikeOut() and deleted.foreground().color() == DELETED
    assert deleted.toolTip() == "Deleted by Anna Berg, 2024-03-05 09:30 UTC (tracked change)"
    inserted = fmt_at(shown.index(" by the chair") + 2)
    assert inserted.fontUnderline() and inserted.foreground().color() == INSERTED
    assert inserted.toolTip() == "Inserted by Ben Ode, 2024-03-06 14:00 UTC (tracked change)"
    assert view.revision_at(start) == "Inserted by Anna Berg, 2024-03-05 09:30 UTC (tracked change)"
    assert view.revision_at(0) == ""
    assert "Tracked changes\n2 insertions" in viewer.notice_text and "2 deletions" in viewer.notice_text


def test_find_and_selection_land_on_the_stored_text_past_shown_deletions(qtbot, case):
    viewer = SourceViewer()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    viewer.set_case(case)
    (doc,) = case.documents()
    viewer.show_document(doc.id)
    view = viewer.text_view
    target = "Signed, the secretary."
    start = REVISED_DOCX_TEXT.index(target)
    view.show_find([(start, start + len(target))], 0)  # a find match after a deletion shown on screen
    [mark] = view.extraSelections()
    assert mark.cursor.selectedText() == target
    view.select_span(start, start + len(target))  # and a selection there maps back to the stored offsets
    assert view.textCursor().selectedText() == target
    assert view.selected_span() == (start, start + len(target))
