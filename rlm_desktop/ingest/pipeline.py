"""Ingest files and folders into a case: identity by SHA-256, one transaction per file, resumable mailboxes.

Extraction runs ahead in worker processes (`prepare.py`, pure); this module does all database work, in file
order, in the calling process. A worker that crashes (MuPDF on a hostile file) fails only that file.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_desktop.ingest import prepare
from rlm_desktop.ingest.limits import EXTRACTOR_MEMORY_BYTES, limit_memory
from rlm_desktop.ingest.prepare import Node, Prepared, prepare_file, prepare_message, reason_for
from rlm_desktop.ingest.progress import (
    CancelToken,
    FileFinished,
    FileProgressed,
    FileStarted,
    IngestEvent,
    IngestFinished,
    IngestReport,
    IngestStarted,
    MembersProgressed,
    ProgressCallback,
)
from rlm_desktop.store import queries
from rlm_desktop.store.case import Case, DocumentRow, PathRow

log = logging.getLogger(__name__)

MAILBOX_BATCH_MESSAGES = 200
MAILBOX_BATCH_BYTES = 8 * 1024 * 1024
POOL_MIN_FILES = 8  # below this, starting worker processes costs more than it saves
MEMBER_PROGRESS_INTERVAL = 0.25  # seconds between member counts of one file (read in a worker, then stored)
# Formats read in the ingesting process when there are few files: plain text cannot hide a decompression bomb,
# and an mbox is only sniffed there (its messages are streamed by the writer). Anything else (PDF, DOCX, mail
# with attachments) is extracted in a memory-limited worker process even for one file.
INLINE_SUFFIXES = frozenset((".txt", ".text", ".md", ".markdown", ".csv", ".tsv", ".log", ".json", ".mbox"))


@dataclass(frozen=True)
class WorkItem:
    path: Path
    hint: str | None = None  # a kind known from where the file sits (Maildir messages have no extension)
    password: str | None = field(default=None, repr=False)  # for an encrypted PDF/DOCX; never stored


def _noop(_: IngestEvent) -> None:
    pass


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
    jobs: int | None = None,
    extractor: Callable[..., Prepared] = prepare_file,
    password: str | None = None,
    passwords: Mapping[str, str] | None = None,
) -> IngestReport:
    """Ingest `paths` (files and folders, recursively) into `case`. Never raises for a bad file.

    `jobs` worker processes extract ahead of the writer (default: the number of cores, at most 4; one process
    for fewer than 8 files, none when they are all plain text; `jobs=1` extracts in this process, without the
    workers' memory limit). `extractor` replaces `prepare_file` (tests use it to crash a worker).
    `password` opens every encrypted PDF/DOCX among the files, `passwords` the one at each path (as given or
    absolute); they go to the extractors in memory and are never written to the case.
    """
    emit = progress or _noop
    own = case.path.absolute()
    items, skipped, missing = collect(
        paths, {own, *(own.with_name(own.name + suffix) for suffix in ("-wal", "-shm", "-journal"))}
    )
    if password or passwords:
        by_path = passwords or {}
        items = [
            dataclasses.replace(
                item, password=by_path.get(str(item.path)) or by_path.get(str(item.path.absolute())) or password
            )
            for item in items
        ]
    report = IngestReport(skipped=skipped)
    report.failed.extend(missing)
    emit(IngestStarted(len(items)))
    inline = jobs == 1 or (
        jobs is None and all(item.hint is None and item.path.suffix.lower() in INLINE_SUFFIXES for item in items)
    )
    jobs = jobs or min(os.cpu_count() or 1, 4)
    workers = jobs if len(items) >= POOL_MIN_FILES else 1
    with _Extractors(workers, inline=inline and workers == 1) as extractors:
        _Ingest(case, items, report, emit, cancel, extractors, extractor).run()
    report.documents = case.count_documents()
    emit(IngestFinished(report))
    return report


class _Extractors:
    """Runs `prepare_file` in worker processes (spawned: forking a process with threads is unsafe), each under a
    memory limit; or inline in this process for plain text and when the caller asks for one job."""

    def __init__(self, jobs: int, inline: bool = False):
        self.jobs = jobs
        self.inline = inline  # extract in this process (no memory limit): only for plain text, or when asked
        self.pool: ProcessPoolExecutor | None = None
        self.context = multiprocessing.get_context("spawn")
        self.members: Any = None  # a queue of (label, members read, unit) from the workers, made with the pool
        self.latest: dict[str, tuple[int, str]] = {}  # the last member count of each file being extracted

    def __enter__(self) -> _Extractors:
        if self.inline:
            prepare.set_member_reporter(self._note, MEMBER_PROGRESS_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.inline:
            prepare.set_member_reporter(None)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.members is not None:
            self.members.close()
            self.members.join_thread()

    def _note(self, label: str, members: int, unit: str) -> None:
        self.latest[label] = (members, unit)

    def member_count(self, label: str) -> tuple[int, str] | None:
        """The last count of members read for the file `label` (what the workers sent so far)."""
        if self.members is not None:
            import queue

            try:
                while True:
                    self._note(*self.members.get_nowait())
            except queue.Empty:
                pass
        return self.latest.get(label)

    def _initargs(self) -> tuple[object, ...]:
        if self.members is None:
            self.members = self.context.Queue()
        return (os.getpid(), self.members, MEMBER_PROGRESS_INTERVAL)

    def submit(self, fn: Callable[..., Prepared], *args: object) -> Future[Prepared]:
        if self.inline:
            future: Future[Prepared] = Future()
            future.set_result(fn(*args))
            return future
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                self.jobs, mp_context=self.context, initializer=_init_worker, initargs=self._initargs()
            )
        return self.pool.submit(fn, *args)

    def restart(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def isolated(self, fn: Callable[..., Prepared], *args: object) -> Prepared | None:
        """Run one call in a process of its own; None if that process crashed too."""
        with ProcessPoolExecutor(
            1, mp_context=self.context, initializer=_init_worker, initargs=self._initargs()
        ) as solo:
            try:
                return solo.submit(fn, *args).result()
            except BrokenProcessPool:
                return None


def _init_worker(parent_pid: int, members: Any = None, interval: float = MEMBER_PROGRESS_INTERVAL) -> None:
    """Prepare an extractor process: quiet, memory-limited, and gone as soon as the ingest that started it is;
    it sends the member counts of long files to `members` (a queue the writer reads while it waits)."""
    # A bomb the format checks miss (a PDF stream, a nested archive) gets MemoryError here, failing its file
    # with a reason instead of swapping the machine to a halt.
    limit_memory(EXTRACTOR_MEMORY_BYTES)
    # Libraries (Tesseract, MuPDF) print to stderr; what matters comes back in the results.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)

    # A SIGKILLed ingest cannot shut its pool down, and idle workers never notice: watch the parent.
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if members is not None:
        prepare.set_member_reporter(lambda label, count, unit: members.put((label, count, unit)), interval)


@dataclass
class _Planned:
    item: WorkItem
    key: str
    stat: os.stat_result | None = None
    row: PathRow | None = None
    unchanged: bool = False
    error: str | None = None
    future: Future[Prepared] | None = None

    def args(self) -> tuple[object, ...]:
        assert self.stat is not None
        args: tuple[object, ...] = (self.key, self.item.hint, self.stat.st_size, self.key)
        return (*args, self.item.password) if self.item.password else args


class _Ingest:
    """Writes files in order while the extractors work ahead on the next ones."""

    def __init__(
        self,
        case: Case,
        items: list[WorkItem],
        report: IngestReport,
        emit: ProgressCallback,
        cancel: CancelToken | None,
        extractors: _Extractors,
        extractor: Callable[..., Prepared],
    ):
        self.prepare = extractor
        self.case = case
        self.items = items
        self.report = report
        self.emit = emit
        self.cancel = cancel
        self.extractors = extractors
        self.planned: dict[int, _Planned] = {}
        self.next_plan = 0
        self.shown = ""  # the file being written, as given
        self.storing: list[Any] | None = None  # [members written, total, unit, last sent] for a file's children

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def plan_ahead(self, upto: int) -> None:
        while self.next_plan < len(self.items) and self.next_plan <= upto:
            index = self.next_plan
            self.next_plan += 1
            self.planned[index] = plan = self._plan(self.items[index])
            if not plan.unchanged and plan.error is None:
                plan.future = self.extractors.submit(self.prepare, *plan.args())

    def _plan(self, item: WorkItem) -> _Planned:
        key = str(item.path.absolute())
        plan = _Planned(item, key)
        try:
            plan.stat = item.path.stat()
        except OSError as exc:
            plan.error = reason_for(exc)
            return plan
        plan.row = self.case.path_row(key)
        row = plan.row
        if row and row.size == plan.stat.st_size and row.mtime_ns == plan.stat.st_mtime_ns:
            doc = self.case.document(row.doc_id)
            plan.unchanged = doc.status == "complete" and doc.superseded_by is None
        return plan

    def run(self) -> None:
        total = len(self.items)
        window = max(2, 2 * self.extractors.jobs)
        for index, item in enumerate(self.items):
            if self.cancelled():
                self.report.cancelled = True
                break
            self.plan_ahead(index + window)
            plan = self.planned.pop(index)
            shown = self.shown = str(item.path)
            self.emit(FileStarted(shown, index, total))
            try:
                status, error = self._one(plan)
            except Exception as exc:  # a bug in the writer must not lose the rest of the folder
                log.exception("ingest of %s failed", shown)
                status, error = "failed", reason_for(exc)
            if status == "failed":
                self.report.failed.append({"path": shown, "error": error or "unknown error"})
                self.case.record_failure(plan.key, error or "unknown error")
            elif status == "cancelled":
                self.report.cancelled = True
            else:
                setattr(self.report, status, getattr(self.report, status) + 1)
                self.case.forget_failures(plan.key)  # read now (a password given, a file fixed)
            self.emit(FileFinished(shown, index, total, status, error))
            if status == "cancelled":
                break
        for plan in self.planned.values():  # planned ahead but never reached (cancelled)
            if plan.future is not None:
                plan.future.cancel()

    def _wait(self, plan: _Planned) -> None:
        """Wait for the file's extraction, passing on how many of its members the extractor has read."""
        assert plan.future is not None
        sent = None
        while True:
            done, _ = wait([plan.future], timeout=MEMBER_PROGRESS_INTERVAL)
            latest = self.extractors.member_count(plan.key)
            if latest is not None and latest != sent:
                sent = latest
                self.emit(MembersProgressed(self.shown, latest[0], unit=latest[1]))
            if done:
                break
        self.extractors.latest.pop(plan.key, None)

    def _result(self, plan: _Planned) -> Prepared:
        assert plan.future is not None
        try:
            self._wait(plan)
            return plan.future.result()
        except BrokenProcessPool:
            # some file crashed a worker; retry this one alone so only the guilty file fails
            self.extractors.restart()
            for other in self.planned.values():
                done = other.future is not None and other.future.done() and not other.future.cancelled()
                if other.future is not None and not (done and other.future.exception() is None):
                    other.future = self.extractors.submit(self.prepare, *other.args())
            result = self.extractors.isolated(self.prepare, *plan.args())
            if result is None:
                return Prepared(
                    "",
                    error="the extractor crashed on this file (it is malformed or hostile); "
                    "the rest of the ingest went on",
                )
            return result

    def _one(self, plan: _Planned) -> tuple[str, str | None]:
        if plan.error is not None:
            return "failed", plan.error
        if plan.unchanged:
            return "unchanged", None
        prepared = self._result(plan)
        if prepared.error is not None and not prepared.sha256:
            return "failed", prepared.error
        case = self.case
        existing = case.find_top_level_by_sha(prepared.sha256)
        if existing and existing.status == "complete":
            with case.transaction():  # the same bytes elsewhere: one document, one more path
                self._point_path(plan, existing.id)
            return "unchanged", None
        if prepared.error is not None:
            return "failed", prepared.error
        if prepared.kind in ("mbox", "pst"):
            return self._mailbox(plan, prepared.sha256, existing, prepared.kind, prepared.first_batch)
        assert prepared.node is not None
        members = _count_nodes(prepared.node) - 1
        unit = "members" if prepared.kind == "archive" else "attachments"
        self.storing = [0, members, unit, time.monotonic()] if members else None
        try:
            with case.transaction():
                doc_id = self._write(prepared.node, None)
                self._record_child_failures(prepared.child_failures)
                self._point_path(plan, doc_id)
        finally:
            self.storing = None
        if members:
            self.emit(MembersProgressed(self.shown, members, members, stored=True, unit=unit))
        return ("updated" if plan.row else "added"), None

    def _record_child_failures(self, failures: list[tuple[str, str, str]]) -> None:
        for where, reason, sha in failures:
            self.case.record_failure(where, reason, sha)
            self.report.child_failures.append({"path": where, "error": reason})

    def _point_path(self, plan: _Planned, doc_id: int) -> None:
        assert plan.stat is not None
        self.case.point_path(plan.key, doc_id, plan.stat.st_size, plan.stat.st_mtime_ns)

    def _write(self, node: Node, parent_id: int | None) -> int:
        ex = node.extracted
        meta = dict(ex.meta)
        if ex.warnings:
            meta["warnings"] = ex.warnings
        doc_id = self.case.insert_document(
            kind=ex.kind,
            title=ex.title,
            text=ex.text,
            sha256=node.sha256,
            size=node.size,
            meta=meta,
            parent_id=parent_id,
            origin=node.origin,
            pages=ex.pages or None,
        )
        if node.data is not None:
            self.case.put_blob(node.sha256, node.data)
        self.report.documents_added += 1
        for child in node.children:
            self._write(child, doc_id)
            storing = self.storing
            if storing is not None:
                storing[0] += 1
                if time.monotonic() - storing[3] >= MEMBER_PROGRESS_INTERVAL and storing[0] < storing[1]:
                    storing[3] = time.monotonic()
                    self.emit(MembersProgressed(self.shown, storing[0], storing[1], stored=True, unit=storing[2]))
        return doc_id

    def _pst_batch(self, path: Path, start: int) -> tuple[list[tuple[int, int, Any, str]], int]:
        """The next messages of an Outlook store, read by libpff in an extractor process."""
        from rlm_desktop.ingest.extracted import ExtractionError
        from rlm_desktop.ingest.pst import read_batch

        future = self.extractors.submit(read_batch, str(path), start, MAILBOX_BATCH_MESSAGES, MAILBOX_BATCH_BYTES)
        try:
            return future.result()
        except BrokenProcessPool:
            self.extractors.restart()
            raise ExtractionError(
                f"the Outlook store crashed its reader after message {start} (damaged or hostile); "
                "the messages before it are kept"
            ) from None

    def _pst_stream(
        self, path: Path, first: list[tuple[int, int, Any, str]], total: int
    ) -> Iterator[tuple[int, int, Any, str]]:
        items = first
        while items:
            yield from items
            if len(items) < MAILBOX_BATCH_MESSAGES and items[-1][1] >= total:
                break  # that was the last message: no need to open the store again to find nothing
            items, _ = self._pst_batch(path, items[-1][1])

    def _mailbox(
        self,
        plan: _Planned,
        sha: str,
        existing: DocumentRow | None,
        fmt: str = "mbox",
        first_batch: tuple[list[tuple[int, int, Any, str]], int] | None = None,
    ) -> tuple[str, str | None]:
        """Stream an mbox (or an Outlook store) in batches; each batch commits with the offset (the message
        number in a store) to resume from after a kill."""
        from rlm_desktop.ingest.mbox import Skipped, iter_mbox

        case, path = self.case, Path(plan.key)
        assert plan.stat is not None
        if existing is not None:  # a partial mailbox with these bytes: a killed ingest, resume it
            container_id = existing.id
            meta = existing.meta
            offset, count = int(meta.get("resume_offset", 0)), int(meta.get("messages", 0))
        else:
            offset, count = 0, 0
            with case.transaction():
                # a partial read of an older version of this file can never be resumed: drop it
                for orphan in queries.partial_mailboxes(case.conn, plan.key):
                    case.delete_document_tree(orphan)
                container_id = case.insert_document(
                    kind="mailbox",
                    title=path.name,
                    text="",
                    sha256=sha,
                    size=plan.stat.st_size,
                    meta={"resume_offset": 0, "messages": 0, "format": fmt, "source_path": plan.key},
                    status="partial",
                )
                self.report.documents_added += 1
        if fmt == "pst":
            if first_batch is not None and offset == 0:  # read ahead with the check (not for a resumed store)
                first, total = first_batch
            else:
                first, total = self._pst_batch(path, offset)  # progress counts messages
            stream = self._pst_stream(path, first, total)
        else:
            total = plan.stat.st_size
            stream = ((start, end, raw, None) for start, end, raw in iter_mbox(path, offset))
        batch: list[Node] = []
        failures: list[tuple[str, str, str]] = []
        batch_bytes = 0

        def flush(next_offset: int, last: bool) -> None:
            nonlocal batch, failures, batch_bytes, count
            with case.transaction():
                for node in batch:
                    self._write(node, container_id)
                self._record_child_failures(failures)
                count += len(batch)
                case.update_meta(container_id, resume_offset=next_offset, messages=count)
                if last:
                    case.set_status(container_id, "complete")
                    self._point_path(plan, container_id)
            batch, failures, batch_bytes = [], [], 0
            self.emit(FileProgressed(str(plan.item.path), next_offset, total, count))

        for start, end, raw, folder in stream:
            if fmt == "pst":
                where = f"{plan.key} › {folder or '(top)'} › message {start + 1}"
            else:
                where = f"{plan.key} › message at byte {start}"
            if isinstance(raw, (Skipped, str)):  # too large, or damaged in the store: fails alone, the rest goes on
                failures.append((where, raw if isinstance(raw, str) else raw.reason, ""))
                node, error, child_failures = None, None, []
            elif isinstance(raw, tuple):  # an Outlook item, read into a node in the extractor (pst.StoreItem)
                node, child_failures = raw
                batch_bytes += node.size
            else:
                node, error, child_failures = prepare_message(raw, f"message-{start}.eml", where)
                if node is None:
                    failures.append((where, error or "unreadable message", ""))
                batch_bytes += len(raw)
            if node is not None:
                if fmt == "pst":  # its RFC 5322 bytes came with it (node.data), kept like an attachment
                    node.origin = f"message {start + 1} in {folder or '(top)'}"
                    node.extracted.meta["folder"] = folder
                else:
                    node.origin = f"message at byte {start}"
                batch.append(node)
                failures.extend(child_failures)
            if len(batch) >= MAILBOX_BATCH_MESSAGES or batch_bytes >= MAILBOX_BATCH_BYTES:
                flush(end, last=False)
                if self.cancelled():
                    return "cancelled", None
        flush(total, last=True)
        return ("updated" if plan.row and plan.row.doc_id != container_id else "added"), None


def _count_nodes(node: Node) -> int:
    return 1 + sum(_count_nodes(child) for child in node.children)
