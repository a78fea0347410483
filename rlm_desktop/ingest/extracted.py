"""What every extractor returns: plain data, no I/O, no store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_desktop.store.pages import Page  # the store keeps pages; extractors produce them

__all__ = ["Blob", "Extracted", "ExtractionError", "Page", "UnsupportedFormat"]


class ExtractionError(Exception):
    """A file could not be turned into text; the message is shown to the user as the reason."""


PASSWORD_REASONS = ("PDF is encrypted and needs a password", "DOCX is encrypted and needs a password")


def needs_password(reason: str) -> bool:
    """Whether a failure's reason is an encrypted file that its password would open (or a wrong password)."""
    return reason.startswith(PASSWORD_REASONS)


class UnsupportedFormat(ExtractionError):
    """The file's type is one we do not read (the message names the type and, if any, the way out)."""


@dataclass
class Blob:
    """An embedded file (attachment, nested message) to be ingested in turn as a child document."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    # where it sits in its parent, e.g. "attachment 2" or "message/rfc822 part 1.3"
    origin: str = ""


@dataclass
class Extracted:
    """A document as extracted: the exact text the engine will see, plus what we know about it.

    `text` is final: offsets into it are what citations point at, so extractors must not post-edit it
    after computing page ranges or boxes.
    """

    kind: str  # pdf, docx, email, text, markdown, html, mailbox, attachment
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    pages: list[Page] = field(default_factory=list)
    children: list[Blob] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
