"""Plain text, Markdown and HTML files: decode, normalise line ends, hand back the text."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from rlm_desktop.ingest.extracted import Extracted, UnsupportedFormat
from rlm_desktop.ingest.html_text import html_title, html_to_text
from rlm_desktop.ingest.source import Source

MARKDOWN_SUFFIXES = frozenset((".md", ".markdown", ".mdown", ".mkd"))
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """(encoding, BOM length) if the bytes start with a Unicode byte order mark."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text_bytes(data: bytes, name: str, preferred: str | None = None) -> tuple[str, list[str]]:
    """Decode file bytes: BOM, else `preferred` (e.g. an HTML meta charset), else UTF-8, else cp1252."""
    warnings: list[str] = []
    found = bom_encoding(data)
    if found:
        encoding, skip = found
        return data[skip:].decode(encoding, errors="replace"), warnings
    if preferred:
        try:
            return data.decode(codecs.lookup(preferred).name), warnings
        except (LookupError, UnicodeDecodeError):
            warnings.append(f"{name}: declared charset '{preferred}' did not decode; guessed instead")
    try:
        return data.decode("utf-8"), warnings
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1252", errors="replace")
    warnings.append(f"{name}: not valid UTF-8; decoded as cp1252 (the characters may be wrong)")
    return text, warnings


def _reject_binary(source: Source, head: bytes) -> None:
    if bom_encoding(head):
        return  # UTF-16/32 text is full of NUL bytes
    if b"\x00" in head:
        raise UnsupportedFormat(f"{source.name} looks like a binary file (NUL bytes), not text")


def extract_text(source: Source) -> Extracted:
    """A .txt/.md/.csv/.log/.json/... file as text (kind "markdown" for Markdown, else "text")."""
    _reject_binary(source, source.head(8192))
    text, warnings = decode_text_bytes(source.read_bytes(), source.name)
    text = normalise_newlines(text)
    is_markdown = source.suffix in MARKDOWN_SUFFIXES
    title = Path(source.name).name
    if is_markdown:
        heading = re.search(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", text, re.M)
        if heading:
            title = heading.group(1).strip()
    return Extracted(kind="markdown" if is_markdown else "text", title=title, text=text, warnings=warnings)


def extract_html(source: Source) -> Extracted:
    """An HTML page as readable text (kind "html"; title from <title>, else the file name)."""
    head = source.head(8192)
    _reject_binary(source, head)
    data = source.read_bytes()
    meta_charset = _META_CHARSET.search(data[:4096])
    preferred = meta_charset.group(1).decode("ascii", "replace") if meta_charset else None
    html, warnings = decode_text_bytes(data, source.name, preferred)
    title = html_title(html) or Path(source.name).name
    text = normalise_newlines(html_to_text(html))
    return Extracted(kind="html", title=title, text=text, warnings=warnings)
