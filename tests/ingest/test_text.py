"""extract_text / extract_html: decoding (BOM, UTF-8, cp1252 fallback), newlines, binary refusal."""

from __future__ import annotations

import codecs

import pytest

from rlm_desktop.ingest.extracted import UnsupportedFormat
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import extract_html, extract_text


def test_utf8_text_with_crlf_and_cr_is_normalised() -> None:
    result = extract_text(Source(name="notes.txt", data="één\r\ntwee\rdrie\n".encode()))
    assert result.kind == "text"
    assert result.text == "één\ntwee\ndrie\n"
    assert result.warnings == []


@pytest.mark.parametrize(
    ("bom", "encoding"),
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
    ],
)
def test_bom_selects_encoding(bom: bytes, encoding: str) -> None:
    data = bom + "Grüße 日本\r\n".encode(encoding)
    result = extract_text(Source(name="bom.txt", data=data))
    assert result.text == "Grüße 日本\n"
    assert not result.text.startswith("\ufeff")


def test_cp1252_fallback_is_a_warning() -> None:
    data = "Caf\u00e9 \u2013 \u20ac5".encode("cp1252")
    result = extract_text(Source(name="old.csv", data=data))
    assert result.text == "Café – €5"
    assert any("cp1252" in warning for warning in result.warnings)


def test_markdown_kind_and_title_from_heading() -> None:
    result = extract_text(Source(name="readme.md", data=b"intro\n\n# The Title #\n\nbody\n"))
    assert result.kind == "markdown"
    assert result.title == "The Title"


def test_binary_file_is_refused(tmp_path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(UnsupportedFormat, match="binary"):
        extract_text(Source(name=path.name, path=path))


def test_html_title_text_and_meta_charset() -> None:
    html = (
        '<html><head><meta charset="iso-8859-15"><title>Rapport \xa4</title></head>'
        "<body><h1>Titre</h1><p>Montant: 5 \xa4</p></body></html>"
    ).encode("latin-1")
    result = extract_html(Source(name="page.html", data=html))
    assert result.kind == "html"
    assert result.title == "Rapport €"
    assert result.text == "Titre\n\nMontant: 5 €"


def test_html_without_title_uses_file_name() -> None:
    result = extract_html(Source(name="bare.htm", data=b"<p>hi</p>\r\n<p>there</p>"))
    assert result.title == "bare.htm"
    assert "\r" not in result.text
