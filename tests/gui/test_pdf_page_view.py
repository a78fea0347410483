"""The PDF page view: Fit fills the view's width and follows it when the view is resized."""

from __future__ import annotations

from builders import pdf_bytes

from rlm_desktop.gui.pdf_page_view import PAGE_MARGIN, PdfPageView


def page_width_on_screen(view: PdfPageView) -> int:
    return view.canvas.page_pixels().width()


def test_fit_fills_the_width_and_refits_on_resize(qtbot):
    view = PdfPageView()
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    qtbot.waitExposed(view)
    view.load(pdf_bytes(["A page of text to read at the width of the view."]), 1)
    view.show_page(1)
    qtbot.wait(50)  # the scroll area lays out the page (and shows its scroll bar)
    assert view.fit_width
    # the page takes the view's width but for thin margins and room for the scroll bar
    spare = view.viewport().width() - page_width_on_screen(view)
    assert 0 <= spare <= 2 * PAGE_MARGIN + 4 and spare <= 20  # under 20 px of grey in all
    wide_zoom = view.zoom
    view.resize(600, 700)
    qtbot.waitUntil(lambda: view.zoom < wide_zoom - 0.1, timeout=2000)
    qtbot.wait(50)
    spare = view.viewport().width() - page_width_on_screen(view)
    assert 0 <= spare <= 2 * PAGE_MARGIN + 4
    assert view.rendered_image is not None and abs(view.rendered_image.width() - page_width_on_screen(view)) <= 2
    # a zoom of the user's own stays when the view is resized; Fit brings it back
    view.zoom_in()
    chosen = view.zoom
    view.resize(800, 700)
    qtbot.wait(100)
    assert view.zoom == chosen and not view.fit_width
    view.fit_to_width()
    qtbot.wait(50)
    spare = view.viewport().width() - page_width_on_screen(view)
    assert view.fit_width and 0 <= spare <= 2 * PAGE_MARGIN + 4
