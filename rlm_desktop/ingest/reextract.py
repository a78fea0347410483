"""Extract a document's original again, with the ingest's own extractors, in a bounded process.

At export (and in `verify`) the stored text is compared with what the original yields today: a stored text
edited after ingest, together with its text hash, still differs from a fresh extraction of the file.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from rlm_desktop.ingest.limits import EXTRACTOR_MEMORY_BYTES, limit_memory

if TYPE_CHECKING:
    from rlm_desktop.store.case import Case, DocumentRow

REEXTRACT_TIMEOUT_S = 60.0  # per document; OCR of a long scan can take this long, anything longer is skipped
REEXTRACT_MAX_BYTES = 256 * 1024 * 1024  # larger originals are hashed, not re-extracted


@dataclass(frozen=True)
class Job:
    """How to get a document's text from its original: a file on disk, stored bytes, or a mailbox message."""

    doc_id: int
    path: str | None = None  # a top-level file
    hint: str | None = None
    data: bytes | None = None  # an attachment's stored bytes
    filename: str = ""
    content_type: str = "application/octet-stream"
    mbox_offset: int | None = None  # a message inside the mailbox at `path`


@dataclass(frozen=True)
class Reextraction:
    status: str  # "matches" | "differs" | "unavailable"
    detail: str
    fresh: str | None = field(default=None, repr=False, compare=False)  # the text extracted now

    @property
    def summary(self) -> str:
        return {
            "matches": "matches re-extraction",
            "differs": "DIFFERS FROM RE-EXTRACTION",
        }.get(self.status, "original not available for re-extraction")


def job_for(case: Case, doc: DocumentRow) -> Job | Reextraction:
    """The job that re-extracts `doc`, or why there is none."""
    if doc.kind == "mailbox":
        return Reextraction("unavailable", "a mailbox's text is its messages, each checked as a document")
    if doc.meta.get("not_extracted"):
        return Reextraction("unavailable", "the original was never extracted (not a readable format)")
    if doc.parent_id is None:
        for path in doc.paths:
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            if size > REEXTRACT_MAX_BYTES:
                return Reextraction("unavailable", f"the original is too large to re-extract ({size:,} bytes)")
            return Job(doc.id, path=path, hint="email" if doc.kind == "email" else None)
        return Reextraction("unavailable", "the original file is not at its ingested path")
    blob = case.blob(doc.sha256)
    if blob is not None:
        if len(blob) > REEXTRACT_MAX_BYTES:
            return Reextraction("unavailable", f"the stored copy is too large to re-extract ({len(blob):,} bytes)")
        return Job(
            doc.id,
            data=blob,
            filename=str(doc.meta.get("filename") or doc.title),
            content_type=str(doc.meta.get("content_type") or "application/octet-stream"),
        )
    origin = doc.origin or ""
    if origin.startswith("message at byte "):
        parent = case.document(doc.parent_id)
        for path in parent.paths:
            if os.path.exists(path):
                return Job(doc.id, path=path, mbox_offset=int(origin.rsplit(" ", 1)[1]))
        return Reextraction("unavailable", "the mailbox file is not at its ingested path")
    return Reextraction("unavailable", "no original of its own (part of its parent document)")


def extract_text(job: Job) -> tuple[bool, str]:
    """(True, text as the ingest would store it) or (False, why not). Runs in the bounded process."""
    from rlm_desktop.ingest.extracted import Blob
    from rlm_desktop.ingest.prepare import _child, compact, prepare_file, prepare_message, reason_for

    try:
        if job.data is not None:
            failures: list[tuple[str, str, str]] = []
            node = _child(Blob(job.filename, job.data, job.content_type), "", job.filename, 1, failures)
            if node.extracted.meta.get("not_extracted"):
                return False, str(node.extracted.meta["not_extracted"])
            compact(node)
            return True, node.extracted.text
        assert job.path is not None
        if job.mbox_offset is not None:
            from rlm_desktop.ingest.mbox import iter_mbox

            for start, _end, raw in iter_mbox(Path(job.path), job.mbox_offset):
                if start != job.mbox_offset or not isinstance(raw, bytes):
                    break
                msg, error, _ = prepare_message(raw, f"message-{start}.eml", job.path)
                return (True, msg.extracted.text) if msg is not None else (False, error or "unreadable")
            return False, "the mailbox no longer has a message at that offset"
        prepared = prepare_file(job.path, job.hint, os.stat(job.path).st_size, job.path)
        if prepared.node is None:
            return False, prepared.error or "the file could not be read"
        return True, prepared.node.extracted.text
    except BaseException as exc:  # noqa: BLE001 - MemoryError included: report it, the process stays usable
        return False, reason_for(exc)


def _serve(conn: Connection) -> None:
    """The re-extraction process: memory-limited, it extracts each job it receives until told to stop."""
    limit_memory(EXTRACTOR_MEMORY_BYTES)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(extract_text(job))


class Reextractor:
    """One spawned, memory-limited process re-extracting documents one at a time, each with a timeout.

    A process that dies (a crashing library) or overruns is noticed at once and replaced for the next job.
    """

    def __init__(self, timeout_s: float = REEXTRACT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None

    def __enter__(self) -> Reextractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.conn.close()
            self.conn = None
        if self.process is not None:
            self.process.join(1.0)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self.process = None

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _start(self) -> Connection:
        if self.conn is None:
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            self.process = context.Process(target=_serve, args=(theirs,), name="rlm-reextract", daemon=True)
            self.process.start()
            theirs.close()
            self.conn = ours
        return self.conn

    def _extract(self, job: Job) -> tuple[bool, str] | str:
        """The worker's answer, or why there is none."""
        conn = self._start()
        assert self.process is not None
        deadline = time.monotonic() + self.timeout_s
        try:
            conn.send(job)
            while not conn.poll(0.1):
                if not self.process.is_alive():
                    code = self.process.exitcode
                    self._kill()
                    return f"the extractor process ended (exit code {code}): the file may be hostile"
                if time.monotonic() > deadline:
                    self._kill()  # it may be stuck in a library: end it, the next job gets a new one
                    return f"re-extraction took longer than {self.timeout_s:g} s; stopped"
            return conn.recv()
        except (EOFError, OSError) as exc:
            code = self.process.exitcode if self.process is not None else None
            self._kill()
            return f"the extractor process ended (exit code {code}): {type(exc).__name__}"

    def check(self, job: Job, stored_text: str) -> Reextraction:
        """Compare a fresh extraction of the original with `stored_text`."""
        answer = self._extract(job)
        if isinstance(answer, str):
            return Reextraction("unavailable", answer)
        ok, text = answer
        where = "the stored copy" if job.data is not None else job.path
        if not ok:
            return Reextraction("unavailable", f"re-extracting {where} failed: {text}")
        if text == stored_text:
            return Reextraction("matches", f"{where} re-extracted: same text ({len(text):,} characters)", text)
        return Reextraction("differs", f"{where} re-extracted: {_first_difference(stored_text, text)}", text)


def _first_difference(stored: str, fresh: str) -> str:
    """Where the stored text and a fresh extraction part, shown briefly."""
    i = next((n for n, (a, b) in enumerate(zip(stored, fresh, strict=False)) if a != b), min(len(stored), len(fresh)))
    return (
        f"the stored text differs at character {i:,} (stored {stored[i:i + 40]!r}, "
        f"original {fresh[i:i + 40]!r}; {len(stored):,} vs {len(fresh):,} characters)"
    )
