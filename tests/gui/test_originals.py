""" "Open original" and "Save attachment as…" in the viewer: the bytes handed out are the ones ingested (their
SHA-256 is the document's), an attachment goes out through a private temp copy."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog
from sample_case import build_sample_case

from rlm_desktop.gui.source_viewer import SourceViewer
from rlm_desktop.store.case import Case


class _Opened(QObject):
    """Takes the file URLs the app asks the desktop to open (Qt's own hook for them), instead of a viewer."""

    def __init__(self):
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def opened():
    handler = _Opened()
    QDesktopServices.setUrlHandler("file", handler, "open")
    yield handler
    QDesktopServices.unsetUrlHandler("file")


@pytest.fixture
def case(tmp_path):
    sample = build_sample_case(tmp_path)
    with Case.open(sample.case_path) as opened_case:
        yield opened_case


@pytest.fixture
def viewer(qtbot, case):
    widget = SourceViewer()
    qtbot.addWidget(widget)
    widget.resize(800, 700)
    widget.show()
    widget.set_case(case)
    return widget


def _doc(case, kind, with_parent):
    return next(d for d in case.documents() if d.kind == kind and (d.parent_id is not None) == with_parent)


def test_open_original_opens_the_file_at_its_path(viewer, case, opened):
    doc = _doc(case, "pdf", with_parent=False)
    viewer.show_document(doc.id)
    assert viewer.doc_header.open_button.isVisible() and not viewer.doc_header.save_button.isVisible()
    viewer.doc_header.open_button.click()
    assert [u.toLocalFile() for u in opened.urls] == [doc.path]


def test_an_attachment_opens_through_a_private_copy_and_saves_its_exact_bytes(
    viewer, case, opened, tmp_path, monkeypatch
):
    attachment = _doc(case, "pdf", with_parent=True)
    viewer.show_document(attachment.id)
    header = viewer.doc_header
    assert header.save_button.isVisible() and header.save_button.text() == "Save attachment as…"

    header.open_button.click()
    (url,) = opened.urls
    copy = Path(url.toLocalFile())
    assert copy.name == "invoice 778.pdf"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == attachment.sha256
    assert stat.S_IMODE(copy.parent.parent.stat().st_mode) == 0o700  # only this user can read the copies

    target = tmp_path / "saved" / "invoice.pdf"
    target.parent.mkdir()
    asked = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (asked.append(a), (str(target), ""))[1])
    )
    header.save_button.click()
    assert asked and asked[0][2].endswith("invoice 778.pdf")  # the attachment's own name is suggested
    assert hashlib.sha256(target.read_bytes()).hexdigest() == attachment.sha256
