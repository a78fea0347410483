"""A cited spreadsheet opens as a grid on the span's sheet with the cited cells highlighted."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest.test_spreadsheet import make_xlsx
from PySide6.QtCore import Qt

from rlm_desktop.engine.citations import build_citation
from rlm_desktop.gui.sheet_grid import HIGHLIGHT
from rlm_desktop.gui.source_viewer import SourceViewer
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")


@pytest.fixture
def workbook_case(tmp_path):
    make_xlsx(tmp_path / "payments.xlsx")
    with Case.open(tmp_path / "case.sqlite") as case:
        ingest(case, [tmp_path / "payments.xlsx"], jobs=1)
        yield case, case.documents()[0].id


def cite(case: Case, doc_id: int, quote: str) -> dict:
    start = case.text(doc_id).index(quote)
    return build_citation(case, "[c1]", doc_id, start, start + len(quote), quote)


def test_the_cited_cells_are_highlighted_on_their_sheet(qtbot, workbook_case):
    case, doc_id = workbook_case
    viewer = SourceViewer()
    qtbot.addWidget(viewer)
    viewer.resize(900, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.set_case(case)

    viewer.show_citation(cite(case, doc_id, "Zurich Bank AG\t1500.5"))
    grid = viewer.sheet_grid
    assert viewer.stack.currentWidget() is grid and grid.sheet_name == "Payments"
    assert [grid.tabs.tabText(i) for i in range(grid.tabs.count())] == ["Payments", "Q1 notes (hidden)"]
    assert grid.marked_cells == (1, 1, 1, 2)  # B2:C2
    model = grid.model
    assert model.data(model.index(1, 1)) == "Zurich Bank AG"
    assert model.data(model.index(1, 1), Qt.ItemDataRole.BackgroundRole).color() == HIGHLIGHT
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) is None
    assert model.headerData(2, Qt.Orientation.Horizontal) == "C" and model.headerData(4, Qt.Orientation.Vertical) == "5"
    qtbot.wait(30)  # let the layout settle before the screenshot
    SHOTS.mkdir(exist_ok=True)
    viewer.grab().save(str(SHOTS / "viewer_sheet.png"))

    viewer.show_citation(cite(case, doc_id, "offshore account"))  # on the hidden sheet, whose cells start at C4
    assert grid.sheet_name == "Q1 notes" and grid.marked_cells == (0, 0, 0, 0)
    assert model.headerData(0, Qt.Orientation.Horizontal) == "C" and model.headerData(0, Qt.Orientation.Vertical) == "4"
    grid.tabs.setCurrentIndex(0)  # the other sheet has no cited cells
    assert grid.sheet_name == "Payments" and grid.marked_cells is None
