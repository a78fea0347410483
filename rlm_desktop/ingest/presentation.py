"""Presentations (.pptx via python-pptx, .odp from its content.xml): slides in order with their notes; each
slide is a page, so a citation names its slide."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from rlm_desktop.ingest.extracted import Extracted, ExtractionError, Page
from rlm_desktop.ingest.limits import check_zip
from rlm_desktop.ingest.opendocument import NS, blocks, read_package
from rlm_desktop.ingest.source import Source


def extract_presentation(source: Source) -> Extracted:
    """A slide deck (kind "presentation")."""
    head = source.head(200)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ExtractionError("PowerPoint 97-2003 .ppt files are not read; save as .pptx (or install LibreOffice "
                              "and convert: soffice --headless --convert-to pptx)")  # fmt: skip
    if b"opendocument.presentation" in head:  # an ODF package starts with its stored mimetype
        slides, meta = _odp_slides(source)
    else:
        slides, meta = _pptx_slides(source)
    parts: list[str] = []
    pages: list[Page] = []
    offset = 0
    for number, (title, body, notes) in enumerate(slides, 1):
        chunk = f"Slide {number}" + (f": {title}" if title else "") + "\n"
        chunk += "".join(line + "\n" for line in body if line.strip())
        if notes.strip():
            chunk += "Notes:\n" + notes.strip() + "\n"
        pages.append(Page(number, offset, offset + len(chunk), 0.0, 0.0))
        parts.append(chunk + "\n")
        offset += len(chunk) + 1
    meta["slides"] = len(slides)
    title = meta.pop("title", "") or source.name.rsplit("/", 1)[-1]
    return Extracted(kind="presentation", title=title, text="".join(parts), meta=meta, pages=pages)


def _shape_lines(shape: Any) -> list[str]:
    lines: list[str] = []
    if getattr(shape, "shape_type", None) == 6 or hasattr(shape, "shapes"):  # a group: its shapes in order
        for inner in getattr(shape, "shapes", ()):
            lines.extend(_shape_lines(inner))
        return lines
    if getattr(shape, "has_table", False):
        for row in shape.table.rows:
            lines.append("\t".join(cell.text.replace("\n", " ").replace("\t", " ") for cell in row.cells).rstrip())
        return lines
    if getattr(shape, "has_text_frame", False):
        lines.extend(p.replace("\x0b", "\n") for p in (para.text for para in shape.text_frame.paragraphs))
    return lines


def _pptx_slides(source: Source) -> tuple[list[tuple[str, list[str], str]], dict[str, Any]]:
    import pptx

    data = source.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            check_zip(package, "PowerPoint package")
    except zipfile.BadZipFile as exc:
        raise ExtractionError("not a valid PPTX: the file is not a ZIP package (damaged or truncated)") from exc
    try:
        deck = pptx.Presentation(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - python-pptx names the missing or broken part
        raise ExtractionError(f"damaged PowerPoint file: {type(exc).__name__}: {exc}") from exc
    slides = []
    for slide in deck.slides:
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.replace("\n", " ").strip() if title_shape is not None else ""
        body: list[str] = []
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            body.extend(_shape_lines(shape))
        notes = ""
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text
        slides.append((title, body, notes))
    props = deck.core_properties
    meta: dict[str, Any] = {"format": "pptx"}
    if props.title:
        meta["title"] = props.title
    if props.author:
        meta["author"] = props.author
    if props.created:
        meta["created"] = props.created.isoformat()
    return slides, meta


def _odp_slides(source: Source) -> tuple[list[tuple[str, list[str], str]], dict[str, Any]]:
    root, meta = read_package(source, "OpenDocument presentation")
    slides = []
    for page in root.iter(f"{{{NS['draw']}}}page"):
        notes_el = page.find("presentation:notes", NS)
        notes = ""
        if notes_el is not None:
            notes = "\n".join(line for line in blocks(notes_el) if line.strip())
            page.remove(notes_el)
        title = ""
        for frame in page.iter(f"{{{NS['draw']}}}frame"):  # the frame the layout marks as the title
            if frame.get(f"{{{NS['presentation']}}}class") == "title":
                title = " ".join(line for line in blocks(frame) if line.strip())
                frame.getparent().remove(frame)
                break
        lines = [line for line in blocks(page) if line.strip()]
        slides.append((title, lines, notes))
    meta["format"] = "odp"
    return slides, meta
