"""An image's OCR words are highlighted on the image, in the viewer and in a report's page image."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from rlm_desktop.engine.citations import build_citation
from rlm_desktop.gui.source_viewer import SourceViewer
from rlm_desktop.ingest.pdf import find_tessdata
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.reports.images import render_citation_images
from rlm_desktop.store.case import Case

pytestmark = pytest.mark.skipif(find_tessdata() is None, reason="Tesseract's English data is not installed")
SHOTS = Path("/tmp/shots")


def scan(path: Path) -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=200)
    page.insert_text((20, 80), "Receipt 2291", fontsize=22)
    page.insert_text((20, 130), "Paid to Geneva Trust", fontsize=22)
    Image.open(io.BytesIO(page.get_pixmap(dpi=150).tobytes("png"))).convert("RGB").save(path, "JPEG", quality=92)
    return path


@pytest.fixture
def cited_image(tmp_path):
    scan(tmp_path / "receipt.jpg")
    with Case.open(tmp_path / "case.sqlite") as case:
        ingest(case, [tmp_path / "receipt.jpg"], jobs=1)
        (doc,) = case.documents()
        text = case.text(doc.id)
        start = text.index("Geneva Trust")
        cited = build_citation(case, "[c1]", doc.id, start, start + 12, "Geneva Trust")
        yield case, cited


def test_the_viewer_shows_the_image_with_the_cited_words_highlighted(qtbot, cited_image):
    case, cited = cited_image
    assert cited["verified"] and cited["page"] == 1 and len(cited["rects"]) == 1
    viewer = SourceViewer()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.set_case(case)
    viewer.show_citation(cited)
    qtbot.wait(50)
    assert viewer.mode == "pdf" and viewer.page_count == 1 and viewer.highlight_rects == cited["rects"]
    qtbot.waitUntil(lambda: viewer.pdf_view.rendered_image is not None)
    image = viewer.pdf_view.rendered_image
    assert not image.isNull() and image.width() > 300
    # the highlight is drawn over the words: yellowish pixels inside the rectangle on screen
    x0, y0, x1, y1 = cited["rects"][0]
    view = viewer.pdf_view
    top_left, bottom_right = view.point_on_page(x0, y0), view.point_on_page(x1, y1)
    shot = view.viewport().grab().toImage()
    colours = [shot.pixelColor(x, (top_left.y() + bottom_right.y()) // 2)
               for x in range(top_left.x() + 2, bottom_right.x() - 2, 4)]  # fmt: skip
    assert sum(c.red() > 200 and c.green() > 170 and c.blue() < 190 for c in colours) > len(colours) // 3
    SHOTS.mkdir(exist_ok=True)
    viewer.grab().save(str(SHOTS / "viewer_image.png"))


def test_a_report_renders_the_cited_region_of_the_image(cited_image):
    case, cited = cited_image
    images, note = render_citation_images(case, cited["doc_id"], cited)
    assert note is None and len(images) == 1 and images[0].page == 1
    region = Image.open(io.BytesIO(images[0].png))
    assert region.width > 100 and region.height > 20
