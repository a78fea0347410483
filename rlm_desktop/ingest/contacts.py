"""Contact cards (.vcf, vCard 2.1 to 4.0, read with a small parser): one document per contact.

A file with one card is that contact's document; a file with several is a listing whose children are the cards,
each kept as its own small original.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import decode_text_bytes, normalise_newlines

MAX_CARDS = 50_000

_CARD = re.compile(r"^BEGIN:VCARD\s*$(.*?)^END:VCARD\s*$", re.M | re.S | re.I)
_LABELS = {"FN": "Name", "ORG": "Organisation", "TITLE": "Title", "EMAIL": "Email", "TEL": "Phone",
           "ADR": "Address", "URL": "Web", "BDAY": "Birthday", "NOTE": "Note", "NICKNAME": "Nickname"}  # fmt: skip


def _unescape(value: str) -> str:
    return re.sub(r"\\([nN,;\\])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def _card_fields(body: str) -> list[tuple[str, dict[str, str], str]]:
    unfolded = re.sub(r"\r?\n[ \t]", "", body)  # RFC 6350 line folding
    fields = []
    for line in unfolded.splitlines():
        if ":" not in line:
            continue
        head, value = line.split(":", 1)
        name, *params = head.split(";")
        name = name.split(".")[-1].upper()  # "item1.EMAIL" groups
        options = {}
        for param in params:
            key, _, val = param.partition("=")
            options[key.upper()] = val if val else key
        if options.get("ENCODING", "").upper() in ("QUOTED-PRINTABLE", "QUOTED_PRINTABLE"):
            import quopri

            value = quopri.decodestring(value.encode("latin-1", "replace")).decode(
                options.get("CHARSET", "utf-8"), "replace"
            )
        fields.append((name, options, value))
    return fields


def _card_document(body: str, name: str) -> Extracted:
    fields = _card_fields(body)
    lines = []
    meta: dict[str, Any] = {"format": "vcf", "emails": [], "phones": []}
    for field, options, value in fields:
        if field == "N" and not any(f == "FN" for f, _, _ in fields):
            parts = [p for p in value.split(";") if p]
            field, value = "FN", " ".join(reversed(parts[:2])) if parts else value
        if field not in _LABELS or not value.strip():
            continue
        if field == "ADR" or field == "ORG":
            value = ", ".join(p for p in value.split(";") if p.strip())
        value = _unescape(value).strip()
        kind = options.get("TYPE", "")
        lines.append(f"{_LABELS[field]}{f' ({kind.lower()})' if kind and field in ('EMAIL', 'TEL', 'ADR') else ''}: {value}")
        if field == "FN":
            meta["name"] = value
        elif field == "EMAIL":
            meta["emails"].append(value)
        elif field == "TEL":
            meta["phones"].append(value)
        elif field == "ORG":
            meta["organisation"] = value
    title = meta.get("name") or (meta["emails"][0] if meta["emails"] else name)
    return Extracted(kind="contact", title=title, text="\n".join(lines) + "\n", meta=meta)


def extract_contacts(source: Source) -> Extracted:
    """A .vcf file: the contact itself when it holds one card, else a listing with one child per card."""
    text, _ = decode_text_bytes(source.read_bytes(), source.name)
    text = normalise_newlines(text)
    cards = list(_CARD.finditer(text))
    name = source.name.rsplit("/", 1)[-1]
    if not cards:
        raise ExtractionError("not a contact file: no BEGIN:VCARD ... END:VCARD card in it")
    if len(cards) > MAX_CARDS:
        raise ExtractionError(f"the file has {len(cards):,} contacts (limit {MAX_CARDS:,}); split it")
    if len(cards) == 1:
        return _card_document(cards[0].group(1), name)
    children = []
    lines = [f"Contacts {name} ({len(cards)} cards)"]
    for number, card in enumerate(cards, 1):
        one = _card_document(card.group(1), name)
        lines.append(one.title)
        children.append(Blob(f"contact-{number}.vcf", card.group(0).encode("utf-8") + b"\n", "text/vcard",
                             origin=f"card {number}"))  # fmt: skip
    return Extracted(kind="contact", title=name, text="\n".join(lines) + "\n", meta={"format": "vcf",
                     "contacts": len(cards)}, children=children)  # fmt: skip
