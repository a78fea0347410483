"""Rich Text Format (.rtf) as plain text with its paragraphs, through striprtf."""

from __future__ import annotations

import re

from rlm_desktop.ingest.extracted import Extracted, ExtractionError
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import normalise_newlines

_CODEPAGE = re.compile(rb"\\ansicpg(\d+)")
MAX_RTF_BYTES = 256 * 1024 * 1024  # RTF is mostly markup and embedded pictures; past this it is not a memo


def extract_rtf(source: Source) -> Extracted:
    """An RTF document (kind "rtf"); the code page it declares decodes its \\'hh characters."""
    from striprtf.striprtf import rtf_to_text

    data = source.read_bytes()
    if len(data) > MAX_RTF_BYTES:
        raise ExtractionError(f"RTF file larger than {MAX_RTF_BYTES // 2**20} MB; not read")
    if not data.lstrip()[:5] == b"{\\rtf":
        raise ExtractionError("not an RTF document: it does not start with {\\rtf (damaged or misnamed)")
    found = _CODEPAGE.search(data[:4096])
    encoding = f"cp{found.group(1).decode()}" if found else "cp1252"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    try:
        text = rtf_to_text(data.decode("latin-1"), encoding=encoding, errors="replace")
    except RecursionError as exc:
        raise ExtractionError("RTF groups are nested too deeply to read") from exc
    text = normalise_newlines(text).strip("\n") + "\n"
    return Extracted(kind="rtf", title=source.name.rsplit("/", 1)[-1], text=text, meta={"format": "rtf"})
