"""OpenDocument text (.odt) from its content.xml: headings, paragraphs, lists and tables in order, like DOCX.

Also the shared reading of ODF packages (bounded like DOCX) and of ODF text runs, used for .odp slides.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from lxml import etree

from rlm_desktop.ingest.extracted import Extracted, ExtractionError
from rlm_desktop.ingest.limits import check_zip
from rlm_desktop.ingest.source import Source

NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, recover=True)
_T = f"{{{NS['text']}}}"
_TABLE = f"{{{NS['table']}}}"
_OFFICE = f"{{{NS['office']}}}"


def read_package(source: Source, what: str) -> tuple[Any, dict[str, str]]:
    """(content.xml root, document metadata) of an ODF package, refused first if it would expand too far."""
    data = source.read_bytes()
    try:
        package = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ExtractionError(f"not a valid {what}: the file is not a ZIP package (damaged or truncated)") from exc
    with package:
        check_zip(package, f"{what} package")
        names = set(package.namelist())
        if "content.xml" not in names:
            raise ExtractionError(f"not a valid {what}: it has no content.xml")
        manifest = package.read("META-INF/manifest.xml") if "META-INF/manifest.xml" in names else b""
        if b"encryption-data" in manifest:
            raise ExtractionError(f"the {what} is encrypted (password-protected); not read")
        root = etree.fromstring(package.read("content.xml"), _PARSER)
        meta: dict[str, str] = {}
        if "meta.xml" in names:
            info = etree.fromstring(package.read("meta.xml"), _PARSER)
            if info is not None:
                for key, path in (("title", "dc:title"), ("author", "meta:initial-creator"),
                                  ("created", "meta:creation-date"), ("modified", "dc:date")):  # fmt: skip
                    found = info.find(f".//{path}", NS)
                    if found is not None and (found.text or "").strip():
                        meta[key] = found.text.strip()
    if root is None:
        raise ExtractionError(f"not a valid {what}: content.xml is unreadable")
    return root, meta


def run_text(element: Any) -> str:
    """The text of a paragraph or heading: spans, links, spaces (text:s), tabs and line breaks kept."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            tag = child.tag if isinstance(child.tag, str) else ""
            if tag == _T + "s":
                parts.append(" " * int(child.get(_T + "c", "1") or 1))
            elif tag == _T + "tab":
                parts.append("\t")
            elif tag == _T + "line-break":
                parts.append("\n")
            elif tag in (_T + "note", _T + "tracked-changes") or tag.endswith("}annotation"):
                pass  # notes and comments are read after the body, not in the middle of a sentence
            else:
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(element)
    return "".join(parts)


def blocks(element: Any, skip_notes: bool = True) -> list[str]:
    """Paragraph and heading texts under `element` in document order; a table row's cells joined by tabs;
    footnotes left out unless `skip_notes` is false."""
    out: list[str] = []
    for node in element.iter(_T + "p", _T + "h", _TABLE + "table-row"):
        if node.tag == _TABLE + "table-row":
            cells = [" ".join(run_text(p) for p in cell.iter(_T + "p")) for cell in node.iter(_TABLE + "table-cell")]
            out.append("\t".join(cells).rstrip("\t"))
            continue
        if any(a.tag == _TABLE + "table-cell" for a in node.iterancestors()):
            continue  # already read with its row
        if skip_notes and any(a.tag == _T + "note" for a in node.iterancestors()):
            continue
        out.append(run_text(node))
    return out


def extract_odt(source: Source) -> Extracted:
    """An OpenDocument text as paragraphs (kind "odt"); footnotes and comments after the body."""
    root, info = read_package(source, "OpenDocument text")
    body = root.find(".//office:text", NS)
    if body is None:
        raise ExtractionError("not a valid OpenDocument text: it has no text body")
    paragraphs = blocks(body)
    notes = [" ".join(blocks(n, skip_notes=False)) for n in body.iter(_T + "note-body")]
    comments = [" ".join(run_text(p) for p in n.iter(_T + "p")) for n in body.iter(_OFFICE + "annotation")]
    text = "\n".join(paragraphs)
    if notes:
        text += "\n\nNotes:\n" + "\n".join(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    if comments:
        text += "\n\nComments:\n" + "\n".join(comments)
    title = info.get("title") or source.name.rsplit("/", 1)[-1]
    return Extracted(kind="odt", title=title, text=text + "\n", meta=info)
