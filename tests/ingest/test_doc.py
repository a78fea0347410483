"""Word 97-2003 .doc: read by antiword (or LibreOffice) when installed, else a reason naming what to install.

No library here writes a .doc, so the success path is proven by hand on real files; these tests prove the
detection and both refusals with the real tools.
"""

from __future__ import annotations

import shutil

import pytest

from rlm_desktop.ingest.detect import detect_kind
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case

NOT_A_DOC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000)  # an OLE header without a Word stream


def test_an_ole_file_named_doc_is_a_doc():
    assert detect_kind(Source("old.doc", data=NOT_A_DOC)) == "doc"


def test_without_antiword_or_libreoffice_the_reason_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "old.doc").write_bytes(NOT_A_DOC)
    with Case.open(tmp_path / "case.sqlite") as case:
        (failure,) = ingest(case, [tmp_path / "old.doc"], jobs=1).failed
    assert "apt install antiword" in failure["error"] and "save the file as .docx" in failure["error"]


@pytest.mark.skipif(shutil.which("antiword") is None, reason="antiword is not installed")
def test_a_damaged_doc_gets_antiwords_reason(tmp_path):
    (tmp_path / "old.doc").write_bytes(NOT_A_DOC)
    (tmp_path / "note.txt").write_text("read anyway")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path], jobs=1)
    (failure,) = report.failed
    assert "antiword could not read this .doc file" in failure["error"] and "not a Word Document" in failure["error"]
    assert report.added == 1
