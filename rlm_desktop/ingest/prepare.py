"""The pure half of ingesting a file: hash, detect, extract it and its attachments. Runs in worker processes."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_desktop.ingest.archive import ARCHIVE_MAX_DEPTH, expansion_budget
from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.limits import EXTRACTOR_MEMORY_BYTES, LimitExceeded
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.pages import pack_boxes

MAX_NESTING = 8  # attachments inside messages inside attachments...: deeper is almost surely hostile
# C0 controls other than \t \n \f \r become spaces, and lone surrogates (broken PDF fonts) U+FFFD: one code point
# for one, so offsets computed by extractors stay exact
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# Live member counts. The pipeline sets a reporter in each extractor process (a queue to the writer), or in the
# writer's thread when it extracts inline, called with (label, members read so far, unit) at most every
# `interval` seconds while a file's members are read. Per thread: two ingests in one process keep their own.
MemberReporter = Callable[[str, int, str], None]
_local = threading.local()


@dataclass
class _MemberCount:
    label: str
    unit: str
    count: int = 0
    last: float = field(default_factory=time.monotonic)


def set_member_reporter(reporter: MemberReporter | None, interval: float = 0.25) -> None:
    _local.reporter, _local.interval = reporter, interval


def _count_member() -> None:
    counting: _MemberCount | None = getattr(_local, "counting", None)  # the top-level file being extracted
    if counting is None:
        return
    counting.count += 1
    reporter = getattr(_local, "reporter", None)
    if reporter is not None and time.monotonic() - counting.last >= _local.interval:
        counting.last = time.monotonic()
        reporter(counting.label, counting.count, counting.unit)


def clean_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def reason_for(exc: BaseException) -> str:
    """A failure reason a user can act on."""
    if isinstance(exc, FileNotFoundError):
        return "the file disappeared while ingesting"
    if isinstance(exc, PermissionError):
        return "permission denied: the file cannot be read"
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    if isinstance(exc, ExtractionError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return (
            f"ran out of memory reading it (an extractor may use {EXTRACTOR_MEMORY_BYTES // 2**20:,} MB): "
            "the file is too large or hostile; not read"
        )
    return f"internal error while reading: {type(exc).__name__}: {exc}"


@dataclass
class Node:
    """An extracted document and its extracted children, ready to be written in one transaction."""

    extracted: Extracted
    sha256: str
    size: int
    origin: str | None = None
    children: list[Node] = field(default_factory=list)
    data: bytes | None = None  # an attachment's original bytes, kept so the viewer and reports can render it


@dataclass
class Prepared:
    """What a worker hands back for one top-level file."""

    sha256: str
    kind: str | None = None  # "mbox" means: stream it in the writer, nothing was extracted here
    node: Node | None = None
    error: str | None = None
    child_failures: list[tuple[str, str, str]] = field(default_factory=list)  # (where, reason, sha256)
    # an Outlook store's first messages (pst.read_batch from message 0: pst.StoreItem) and how many it holds
    first_batch: tuple[list[tuple[int, int, Any, str]], int] | None = None
    members: int = 0  # children read, nested ones included (an archive's members, a message's attachments)


def prepare_file(path: str, hint: str | None, size: int, label: str, password: str | None = None) -> Prepared:
    """Hash and extract one file with its attachments; never raises for a bad file. `password` opens an
    encrypted PDF or DOCX (this file only, not its attachments)."""
    file = Path(path)
    try:
        sha = sha256_file(file)
    except OSError as exc:
        return Prepared("", error=reason_for(exc))
    try:
        kind = hint or detect_kind(Source(file.name, path=file))
        if kind == "mbox":
            return Prepared(sha, kind)
        if kind == "pst":  # opened here (in the worker): a damaged store is named, and the writer, which streams
            # the rest, starts on the first batch read ahead with it (a small store is read in this one opening)
            from rlm_desktop.ingest import pipeline
            from rlm_desktop.ingest.pst import read_batch

            first = read_batch(path, 0, pipeline.MAILBOX_BATCH_MESSAGES, pipeline.MAILBOX_BATCH_BYTES)
            return Prepared(sha, kind, first_batch=first)
        _local.counting = counting = _MemberCount(label, "members" if kind == "archive" else "attachments")
        try:
            with expansion_budget():  # one budget for every archive in this file, nested ones included
                extracted = extract(Source(file.name, path=file, password=password), kind)
                failures: list[tuple[str, str, str]] = []
                archives = 1 if kind == "archive" else 0
                children = extract_children(extracted, label, 1, failures, archives)
                node = Node(extracted, sha, size, children=children)
        finally:
            _local.counting = None
        compact(node)
        return Prepared(sha, kind, node, child_failures=failures, members=counting.count)
    except Exception as exc:  # a bug or a library crash on one file must not stop the ingest
        return Prepared(sha, error=reason_for(exc))


def prepare_message(
    raw: bytes, name: str, label: str
) -> tuple[Node | None, str | None, list[tuple[str, str, str]]]:
    """Extract one mailbox message and its attachments: (node, error, attachment failures)."""
    from rlm_desktop.ingest.mail import extract_email

    try:
        extracted = extract_email(Source(name, data=raw))
    except Exception as exc:
        return None, reason_for(exc), []
    node, failures = message_node(extracted, raw, label)
    return node, None, failures


def message_node(extracted: Extracted, raw: bytes, label: str) -> tuple[Node, list[tuple[str, str, str]]]:
    """A message read (from an mbox or an Outlook store) as a node, its attachments extracted as children."""
    failures: list[tuple[str, str, str]] = []
    with expansion_budget():  # zipped attachments
        children = extract_children(extracted, label, 1, failures)
    node = Node(extracted, hashlib.sha256(raw).hexdigest(), len(raw), children=children)
    compact(node)
    return node, failures


def extract_children(
    extracted: Extracted, label: str, depth: int, failures: list[tuple[str, str, str]], archives: int = 0
) -> list[Node]:
    """The children of `extracted` as nodes; `archives` is how many archives enclose them."""
    nodes = []
    blobs, extracted.children = extracted.children, []  # the bytes live on in the child nodes only, not twice
    blobs.reverse()
    number = 0
    while blobs:  # popped as they are read, so an archive's members are not all held twice
        blob = blobs.pop()
        number += 1
        origin = blob.origin or f"attachment {number}"
        where = f"{label} › {blob.filename or origin}"
        nodes.append(_child(blob, origin, where, depth, failures, archives))
        _count_member()
    return nodes


def _child(
    blob: Blob, origin: str, where: str, depth: int, failures: list[tuple[str, str, str]], archives: int = 0
) -> Node:
    sha = hashlib.sha256(blob.data).hexdigest()
    source = Source(blob.filename or "attachment", data=blob.data)
    base_meta = {"filename": blob.filename, "content_type": blob.content_type}
    try:
        if depth > MAX_NESTING:
            raise ExtractionError(f"nested more than {MAX_NESTING} levels deep; not read further")
        kind = detect_kind(source, blob.content_type)
        if kind == "mbox":
            raise UnsupportedFormat("a mailbox inside an attachment is not read; save it and ingest it")
        if kind == "archive":
            archives += 1
            if archives > ARCHIVE_MAX_DEPTH:
                raise LimitExceeded(
                    f"an archive nested {archives} deep in archives (limit {ARCHIVE_MAX_DEPTH}); not read"
                )
        extracted = extract(source, kind)
        extracted.meta = {**base_meta, **extracted.meta}
        return Node(
            extracted,
            sha,
            len(blob.data),
            origin,
            extract_children(extracted, where, depth + 1, failures, archives),
            data=blob.data,
        )
    except Exception as exc:
        reason = reason_for(exc)
        if not isinstance(exc, UnsupportedFormat):
            failures.append((where, reason, sha))
        placeholder = Extracted(
            kind="attachment",
            title=blob.filename or origin,
            text="",
            meta={**base_meta, "not_extracted": reason},
        )
        return Node(placeholder, sha, len(blob.data), origin, data=blob.data)


def compact(node: Node) -> None:
    """Clean texts and pack word boxes once, here: cheaper to pickle, and the writer has less to do."""
    ex = node.extracted
    ex.text = clean_text(ex.text)
    ex.title = clean_text(ex.title)
    for page in ex.pages:
        if not isinstance(page.boxes, bytes):
            page.boxes = pack_boxes(page.boxes)  # type: ignore[assignment]
    for child in node.children:
        compact(child)
