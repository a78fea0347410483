"""Ingest progress events (typed, immutable, past tense) and the report an ingest returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class IngestStarted:
    total_files: int


@dataclass(frozen=True)
class FileStarted:
    path: str
    index: int  # 0-based position among total_files
    total_files: int


@dataclass(frozen=True)
class FileProgressed:
    """Inside a large file (a mailbox): bytes read so far and messages stored."""

    path: str
    bytes_done: int
    bytes_total: int
    messages: int


@dataclass(frozen=True)
class MembersProgressed:
    """Inside a file that holds others (an archive's members, a message's attachments, nested ones counted too):
    how many were read so far in the extractor (`stored` False, `total` unknown), then how many of `total` are
    written to the case (`stored` True). Sent for files that take a while, at most a few times a second."""

    path: str
    members: int
    total: int | None = None
    stored: bool = False
    unit: str = "members"  # "members" (archive) or "attachments"


def members_text(event: MembersProgressed) -> str:
    """"1,204 members read" while extracting, "300 of 1,204 members stored" while writing."""
    if event.stored and event.total is not None:
        return f"{event.members:,} of {event.total:,} {event.unit} stored"
    return f"{event.members:,} {event.unit} read"


@dataclass(frozen=True)
class FileFinished:
    path: str
    index: int
    total_files: int
    status: str  # added, updated, unchanged, failed, cancelled
    error: str | None = None


@dataclass(frozen=True)
class IngestFinished:
    report: IngestReport


IngestEvent = IngestStarted | FileStarted | FileProgressed | MembersProgressed | FileFinished | IngestFinished
ProgressCallback = Callable[[IngestEvent], None]


class CancelToken(Protocol):
    """Anything with `is_set()`, e.g. `threading.Event`."""

    def is_set(self) -> bool: ...


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    documents: int = 0  # documents in the case afterwards (attachments and messages included)
    documents_added: int = 0  # documents written by this ingest, children included
    child_failures: list[dict[str, str]] = field(default_factory=list)  # attachments that could not be read
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        """The CONTRACTS `ingest --json` object, plus extra keys."""
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "documents": self.documents,
            "updated": self.updated,
            "skipped": self.skipped,
            "documents_added": self.documents_added,
            "attachment_failures": self.child_failures,
            "cancelled": self.cancelled,
        }
