"""Ingest files and folders into a case: identity by SHA-256, one transaction per file, resumable mailboxes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.progress import (
    CancelToken,
    FileFinished,
    FileProgressed,
    FileStarted,
    IngestEvent,
    IngestFinished,
    IngestReport,
    IngestStarted,
    ProgressCallback,
)
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case

log = logging.getLogger(__name__)

MAX_NESTING = 8  # attachments inside messages inside attachments...: deeper is almost surely hostile
MAILBOX_BATCH_MESSAGES = 200
MAILBOX_BATCH_BYTES = 8 * 1024 * 1024
# C0 controls other than \t \n \f \r become spaces, and lone surrogates (broken PDF fonts) U+FFFD: one code point
# for one, so offsets computed by extractors stay exact
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class WorkItem:
    path: Path
    hint: str | None = None  # a kind known from where the file sits (Maildir messages have no extension)


@dataclass
class _Node:
    """An extracted document and its extracted children, ready to be written in one transaction."""

    extracted: Extracted
    sha256: str
    size: int
    origin: str | None = None
    children: list[_Node] = field(default_factory=list)


def _noop(_: IngestEvent) -> None:
    pass


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def clean_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))


def collect(
    paths: list[str | Path], exclude: set[Path] = frozenset()
) -> tuple[list[WorkItem], list[dict[str, str]], list[dict[str, str]]]:
    """Expand files and folders into work items; also what was skipped and what does not exist.

    `exclude` holds absolute paths never to ingest (the case file itself when it sits in the folder).
    """
    from rlm_desktop.ingest.mbox import is_maildir, iter_maildir

    items: list[WorkItem] = []
    skipped: list[dict[str, str]] = []
    missing: list[dict[str, str]] = []

    def add_maildir(folder: Path) -> None:
        items.extend(WorkItem(p, "email") for p in iter_maildir(folder))
        for sub in sorted(folder.iterdir()):  # Maildir++ subfolders are hidden: ".Sent", ".Archive"
            if sub.is_dir() and sub.name not in {"cur", "new", "tmp"} and is_maildir(sub):
                add_maildir(sub)

    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            missing.append({"path": str(root), "error": "no such file or folder"})
            continue
        if root.is_file():
            if root.absolute() in exclude:
                skipped.append({"path": str(root), "reason": "the case's own database file"})
            else:
                items.append(WorkItem(root))
            continue
        if is_maildir(root):
            add_maildir(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                sub = here / name
                if is_maildir(sub):
                    add_maildir(sub)
                elif name.startswith("."):
                    skipped.append({"path": str(sub), "reason": "hidden folder"})
                else:
                    keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                file = here / name
                if name.startswith("."):
                    skipped.append({"path": str(file), "reason": "hidden file"})
                elif file.absolute() in exclude:
                    skipped.append({"path": str(file), "reason": "the case's own database file"})
                elif not file.is_file():
                    skipped.append({"path": str(file), "reason": "not a regular file"})
                else:
                    items.append(WorkItem(file))
    return items, skipped, missing


def ingest(
    case: Case,
    paths: list[str | Path],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> IngestReport:
    """Ingest `paths` (files and folders, recursively) into `case`. Never raises for a bad file."""
    emit = progress or _noop
    own = case.path.absolute()
    items, skipped, missing = collect(
        paths, {own, *(own.with_name(own.name + suffix) for suffix in ("-wal", "-shm", "-journal"))}
    )
    report = IngestReport(skipped=skipped)
    for entry in missing:
        report.failed.append(entry)
    emit(IngestStarted(len(items)))
    for index, item in enumerate(items):
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            break
        shown = str(item.path)
        emit(FileStarted(shown, index, len(items)))
        try:
            status = _FileIngest(case, item, report, emit, cancel).run()
            error = None
        except (ExtractionError, OSError) as exc:
            status, error = "failed", _reason(exc)
        except Exception as exc:  # a bug or a library crash on one file must not stop the ingest
            log.exception("ingest of %s failed", shown)
            status, error = "failed", f"internal error while reading the file: {type(exc).__name__}: {exc}"
        if status == "failed":
            report.failed.append({"path": shown, "error": error or "unknown error"})
            case.record_failure(str(item.path.absolute()), error or "unknown error")
        elif status == "cancelled":
            report.cancelled = True
        else:
            setattr(report, status, getattr(report, status) + 1)
        emit(FileFinished(shown, index, len(items), status, error))
        if status == "cancelled":
            break
    report.documents = case.count_documents()
    emit(IngestFinished(report))
    return report


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the file disappeared while ingesting"
    if isinstance(exc, PermissionError):
        return "permission denied: the file cannot be read"
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


class _FileIngest:
    """Ingest one top-level file: decide unchanged / added / updated, then write it atomically."""

    def __init__(
        self,
        case: Case,
        item: WorkItem,
        report: IngestReport,
        emit: ProgressCallback,
        cancel: CancelToken | None,
    ):
        self.case = case
        self.item = item
        self.report = report
        self.emit = emit
        self.cancel = cancel
        self.path = item.path.absolute()
        self.key = str(self.path)
        self.stat = self.path.stat()

    def run(self) -> str:
        case = self.case
        row = case.path_row(self.key)
        if row and row.size == self.stat.st_size and row.mtime_ns == self.stat.st_mtime_ns:
            doc = case.document(row.doc_id)
            if doc.status == "complete" and doc.superseded_by is None:
                return "unchanged"
        sha = sha256_file(self.path)
        existing = case.find_top_level_by_sha(sha)
        if existing and existing.status == "complete":
            with case.transaction():  # the same bytes elsewhere: one document, one more path
                self._replace_path(row, existing.id)
            return "unchanged"
        source = Source(self.item.path.name, path=self.path)
        kind = self.item.hint or detect_kind(source)
        if kind == "mbox":
            return self._mailbox(sha, row, existing)
        extracted = extract(source, kind)
        node = _Node(extracted, sha, self.stat.st_size, children=self._children(extracted, self.key, 1))
        with case.transaction():
            doc_id = self._write(node, None)
            self._replace_path(row, doc_id)
        return "updated" if row else "added"

    def _replace_path(self, old: object, doc_id: int) -> None:
        """Point this path at `doc_id`; the document it pointed at before is retired if no path is left."""
        case = self.case
        if old is not None and old.doc_id != doc_id:  # type: ignore[attr-defined]
            case.conn.execute("DELETE FROM paths WHERE path = ?", (self.key,))
            old_id = old.doc_id  # type: ignore[attr-defined]
            left = case.conn.execute("SELECT COUNT(*) FROM paths WHERE doc_id = ?", (old_id,)).fetchone()[0]
            if not left:
                case.supersede(old_id, doc_id)
        case.link_path(self.key, doc_id, self.stat.st_size, self.stat.st_mtime_ns)

    def _children(self, extracted: Extracted, label: str, depth: int) -> list[_Node]:
        nodes = []
        for number, blob in enumerate(extracted.children, 1):
            origin = blob.origin or f"attachment {number}"
            where = f"{label} › {blob.filename or origin}"
            nodes.append(self._child(blob, origin, where, depth))
        return nodes

    def _child(self, blob: Blob, origin: str, where: str, depth: int) -> _Node:
        sha = hashlib.sha256(blob.data).hexdigest()
        source = Source(blob.filename or "attachment", data=blob.data)
        base_meta = {"filename": blob.filename, "content_type": blob.content_type}
        try:
            if depth > MAX_NESTING:
                raise ExtractionError(f"nested more than {MAX_NESTING} levels deep; not read further")
            kind = detect_kind(source, blob.content_type)
            if kind == "mbox":
                raise UnsupportedFormat("a mailbox inside an attachment is not read; save it and ingest it")
            extracted = extract(source, kind)
            extracted.meta = {**base_meta, **extracted.meta}
            children = self._children(extracted, where, depth + 1)
            return _Node(extracted, sha, len(blob.data), origin, children)
        except Exception as exc:
            reason = (
                _reason(exc)
                if isinstance(exc, ExtractionError | OSError)
                else (f"internal error while reading the attachment: {type(exc).__name__}: {exc}")
            )
            if not isinstance(exc, UnsupportedFormat):
                self.case.record_failure(where, reason, sha)
                self.report.child_failures.append({"path": where, "error": reason})
            placeholder = Extracted(
                kind="attachment",
                title=blob.filename or origin,
                text="",
                meta={**base_meta, "not_extracted": reason},
            )
            return _Node(placeholder, sha, len(blob.data), origin)

    def _write(self, node: _Node, parent_id: int | None, status: str = "complete") -> int:
        ex = node.extracted
        meta = dict(ex.meta)
        if ex.warnings:
            meta["warnings"] = ex.warnings
        doc_id = self.case.insert_document(
            kind=ex.kind,
            title=ex.title,
            text=clean_text(ex.text),
            sha256=node.sha256,
            size=node.size,
            meta=meta,
            parent_id=parent_id,
            origin=node.origin,
            pages=ex.pages or None,
            status=status,
        )
        self.report.documents_added += 1
        for child in node.children:
            self._write(child, doc_id)
        return doc_id

    def _mailbox(self, sha: str, row: object, existing: object) -> str:
        """Stream an mbox in batches; each batch commits with the offset to resume from after a kill."""
        from rlm_desktop.ingest.mail import extract_email
        from rlm_desktop.ingest.mbox import iter_mbox

        case = self.case
        if existing is not None:  # a partial mailbox with these bytes: a killed ingest, resume it
            container_id = existing.id  # type: ignore[attr-defined]
            meta = existing.meta  # type: ignore[attr-defined]
            offset, count = int(meta.get("resume_offset", 0)), int(meta.get("messages", 0))
        else:
            offset, count = 0, 0
            with case.transaction():
                # a partial read of an older version of this file can never be resumed: drop it
                for (orphan,) in case.conn.execute(
                    "SELECT id FROM documents WHERE status = 'partial' AND kind = 'mailbox'"
                    " AND json_extract(meta, '$.source_path') = ?",
                    (self.key,),
                ).fetchall():
                    case.delete_document_tree(orphan)
                container_id = case.insert_document(
                    kind="mailbox",
                    title=self.item.path.name,
                    text="",
                    sha256=sha,
                    size=self.stat.st_size,
                    meta={"resume_offset": 0, "messages": 0, "format": "mbox", "source_path": self.key},
                    status="partial",
                )
                self.report.documents_added += 1
        total = self.stat.st_size
        batch: list[_Node] = []
        batch_bytes = 0
        failures: list[tuple[str, str]] = []

        def flush(next_offset: int) -> None:
            nonlocal batch, batch_bytes, count, failures
            with case.transaction():
                for node in batch:
                    self._write(node, container_id)
                for where, reason in failures:
                    case.record_failure(where, reason)
                count += len(batch)
                case.update_meta(container_id, resume_offset=next_offset, messages=count)
            batch, batch_bytes, failures = [], 0, []
            self.emit(FileProgressed(str(self.item.path), next_offset, total, count))

        for start, end, raw in iter_mbox(self.path, offset):
            where = f"{self.key} › message at byte {start}"
            try:
                extracted = extract_email(Source(f"message-{start}.eml", data=raw))
                node = _Node(
                    extracted,
                    hashlib.sha256(raw).hexdigest(),
                    len(raw),
                    f"message at byte {start}",
                    self._children(extracted, where, 1),
                )
                batch.append(node)
            except Exception as exc:
                reason = _reason(exc) if isinstance(exc, ExtractionError) else f"{type(exc).__name__}: {exc}"
                failures.append((where, reason))
                self.report.child_failures.append({"path": where, "error": reason})
            batch_bytes += len(raw)
            if len(batch) >= MAILBOX_BATCH_MESSAGES or batch_bytes >= MAILBOX_BATCH_BYTES:
                flush(end)
                if self.cancel is not None and self.cancel.is_set():
                    return "cancelled"
        with case.transaction():
            for node in batch:
                self._write(node, container_id)
            for where, reason in failures:
                case.record_failure(where, reason)
            count += len(batch)
            case.update_meta(container_id, resume_offset=total, messages=count)
            case.set_status(container_id, "complete")
            self._replace_path(row, container_id)
        return "updated" if row and row.doc_id != container_id else "added"  # type: ignore[attr-defined]
