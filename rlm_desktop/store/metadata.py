"""How a document's metadata is stored: compressed JSON since migration m008 (zlib with a preset dictionary of
the keys ingest writes), plain JSON text before it and for mailbox containers, whose resume state SQL reads.

Metadata was the largest part of a mail-heavy case after the texts (an email's headers as JSON: 630 bytes on
average, 300 MB at 100M tokens); compressed it takes about a third. Only the standard library: the sandboxed
REPL worker reads metadata through this.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

_FORMAT = 1  # the first byte of compressed metadata: which dictionary it was compressed with
_DICTIONARY = json.dumps(
    [
        {"page_count": 1, "title": "", "author": "", "subject": "", "keywords": "", "creator": "", "producer": ""},
        {"creation_date": "", "mod_date": None, "pdf_format": "PDF 1.4", "encrypted": False, "repaired": False},
        {"image_only_pages": [], "ocr_pages": [], "garbled_pages": [], "filename": "", "source_path": ""},
        {"created": "", "paragraphs": 1, "tables": 0, "has_comments": False, "has_footnotes": False},
        {"tracked_changes": False, "metadata_title": "", "sheets": [], "slides": 0, "format": ""},
        {"from": [""], "to": [""], "cc": [], "bcc": [], "date": "2020-01-01T00:00:00+00:00"},
        {"date_raw": "Mon, 1 Jan 2020 00:00:00 +0000", "subject": "Re: ", "message_id": "<@mail.", "in_reply_to": None},
        {"references": [], "subject_norm": "", "thread_key": "<", "attachments": [], "charsets": ["utf-8"]},
        {"charset_problems": [], "thread_id": "<", "Fwd: ": ".com>", ".org>": ".example>"},
    ],
    separators=(",", ":"),
).encode("utf-8")
_SMALL = 48  # shorter JSON is kept as text: compressing would not pay for its header


def encode_meta(text: str, kind: str) -> str | bytes:
    """What to store for a document's metadata, given as JSON text."""
    if kind == "mailbox" or len(text) < _SMALL:
        return text
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY)
    return bytes([_FORMAT]) + packer.compress(text.encode("utf-8", "surrogatepass")) + packer.flush()


def meta_text(value: str | bytes | None) -> str:
    """The JSON text of stored metadata, whichever way it was stored."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    if not value or value[0] != _FORMAT:
        raise ValueError("stored metadata is in an unknown format (a newer RLM Desktop wrote it?)")
    unpacker = zlib.decompressobj(-15, _DICTIONARY)
    return (unpacker.decompress(value[1:]) + unpacker.flush()).decode("utf-8", "surrogatepass")


def decode_meta(value: str | bytes | None) -> dict[str, Any]:
    """The metadata dict of a stored value ({} for none)."""
    return json.loads(meta_text(value))
