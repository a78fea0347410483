"""Word 97-2003 .doc: read by antiword (or LibreOffice) when installed, else a reason naming what to install.

No library here writes a .doc: `fixtures/memo.doc` is a real one LibreOffice saved (see fixtures/README.md for
its provenance); the tests read it with the real tools, each alone by hiding the other.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rlm_desktop.ingest.detect import detect_kind
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case

NOT_A_DOC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000)  # an OLE header without a Word stream
MEMO = Path(__file__).parent / "fixtures" / "memo.doc"
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
needs_antiword = pytest.mark.skipif(shutil.which("antiword") is None, reason="antiword is not installed "
                                    "(packaging/bootstrap.sh installs it: apt install antiword)")  # fmt: skip


def hide(monkeypatch, *names: str) -> None:
    """Make the reader find no `names` (antiword, or LibreOffice) though they are installed: the other one alone
    is tried. Ingests here run in this process (jobs=1), where the lookup is patched."""
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in names else which(name, *a, **k))


def assert_memo_text(text: str) -> None:
    assert "Payment memorandum" in text
    assert "M. Keller approved the transfer of 25,000 CHF to Geneva Trust SA, Zürich branch." in text
    assert "PAY-0042-00017" in text and "Zug Commodities AG" in text and "1,250.50" in text
    assert "Naïve café résumé" in text and "“like these”" in text and "€" in text


def test_an_ole_file_named_doc_is_a_doc():
    assert detect_kind(Source("old.doc", data=NOT_A_DOC)) == "doc"


def test_without_antiword_or_libreoffice_the_reason_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "old.doc").write_bytes(NOT_A_DOC)
    with Case.open(tmp_path / "case.sqlite") as case:
        (failure,) = ingest(case, [tmp_path / "old.doc"], jobs=1).failed
    assert "apt install antiword" in failure["error"] and "save the file as .docx" in failure["error"]


@needs_antiword
def test_a_damaged_doc_gets_antiwords_reason(tmp_path, monkeypatch):
    hide(monkeypatch, "soffice", "libreoffice")  # LibreOffice, when installed, would be tried next
    (tmp_path / "old.doc").write_bytes(NOT_A_DOC)
    (tmp_path / "note.txt").write_text("read anyway")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path], jobs=1)
    (failure,) = report.failed
    assert "antiword could not read this .doc file" in failure["error"] and "not a Word Document" in failure["error"]
    assert report.added == 1


@needs_antiword
def test_a_real_word_97_doc_is_read_by_antiword(tmp_path, monkeypatch):
    hide(monkeypatch, "soffice", "libreoffice")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "memo.doc").write_bytes(MEMO.read_bytes())
    (tmp_path / "in" / "memo copy.dat").write_bytes(MEMO.read_bytes())  # the same bytes: one document
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "in"], jobs=1)
        assert report.failed == [] and report.added == 1 and report.unchanged == 1
        (doc,) = case.documents()
        assert doc.kind == "doc" and doc.meta["reader"] == "antiword" and doc.title in ("memo copy.dat", "memo.doc")
        assert_memo_text(case.text(doc.id))
        assert ingest(case, [tmp_path / "in"], jobs=1).unchanged == 2
    assert detect_kind(Source("renamed.bin", data=MEMO.read_bytes())) == "doc"  # by content, not by name


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed; antiword reads .doc files")
def test_libreoffice_reads_it_when_antiword_is_missing(tmp_path, monkeypatch):
    hide(monkeypatch, "antiword")
    (tmp_path / "memo.doc").write_bytes(MEMO.read_bytes())
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "memo.doc"], jobs=1)
        assert report.failed == []
        (doc,) = case.documents()
        assert doc.meta["reader"] == "libreoffice"
        assert_memo_text(case.text(doc.id))
