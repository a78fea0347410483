"""A case: one SQLite file holding documents, their text, pages, email threads, FTS index and failures."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from rlm_desktop.paths import make_private_dirs
from rlm_desktop.store.fts import FtsMatch, chunk_bounds, search
from rlm_desktop.store.metadata import decode_meta, encode_meta
from rlm_desktop.store.migrations import migrate, text_sha256
from rlm_desktop.store.names import index_names, unindex_names
from rlm_desktop.store.pages import Page, pack_boxes, unpack_boxes


def _json(value: Any) -> str:
    """JSON for a metadata column; lone surrogates (from broken fonts or headers) cannot be stored as UTF-8."""
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "replace").decode("utf-8")


def _private_file(path: Path) -> None:
    """Create the case file readable only by its owner (0600), in a 0700 folder if the folder is new.

    SQLite gives the -wal and -shm files the database file's mode. An existing case left 0644 by an older
    version is tightened; a read-only file system (the sandbox's view) is left alone.
    """
    make_private_dirs(path.parent)
    # Never open (and close) an existing case file here: closing any descriptor of a file drops every POSIX
    # lock this process holds on it, so SQLite connections open elsewhere in the process would lose theirs and
    # another process (the window's engine child) could then write under them and corrupt the file.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))  # a new file: nobody holds it yet
    except FileExistsError:
        try:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            pass
    except OSError:
        return  # not writable here: SQLite reports what matters when it opens the file
    for suffix in ("-wal", "-shm"):
        try:
            os.chmod(path.with_name(path.name + suffix), 0o600)
        except OSError:
            pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class DocumentRow:
    """A document's catalogue entry (everything but its text)."""

    id: int
    kind: str
    title: str
    parent_id: int | None
    origin: str | None
    sha256: str
    size: int
    chars: int
    pages: int | None
    meta: dict[str, Any]
    status: str
    superseded_by: int | None
    added_at: str
    text_sha256: str | None = None  # SHA-256 of the text as extracted at ingest (None: never recorded)
    paths: tuple[str, ...] = field(default=())

    @property
    def path(self) -> str | None:
        return self.paths[0] if self.paths else None

    def to_json(self) -> dict[str, Any]:
        """The CONTRACTS `docs --json` object (plus a few extra fields)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "path": self.path,
            "paths": list(self.paths),
            "parent_id": self.parent_id,
            "sha256": self.sha256,
            "text_sha256": self.text_sha256,
            "size": self.size,
            "chars": self.chars,
            "pages": self.pages,
            "status": self.status,
            "meta": self.meta,
        }


TEXT_CHANGED = "stored text changed since ingest"


def text_problem(doc: DocumentRow, text: str) -> str | None:
    """Why `doc`'s stored `text` cannot be trusted (it no longer matches its ingest-time hash), or None."""
    if doc.text_sha256 is None:
        return "no text hash recorded for this document (the case was altered)"
    if text_sha256(text) != doc.text_sha256:
        return TEXT_CHANGED
    return None


@dataclass(frozen=True)
class PathRow:
    path: str
    doc_id: int
    size: int
    mtime_ns: int


_DOC_COLUMNS = (
    "id, kind, title, parent_id, origin, sha256, size, chars, pages, meta, status, superseded_by, added_at,"
    " text_sha256"
)


class Case:
    """Read and write access to one case file. Not thread-safe: use one Case per thread."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils on this connection, made on first use: a process's first one loads its plugins (a scan of
        every installed package's entry points, ~15 ms), which a run's start never needs."""
        return sqlite_utils.Database(self.conn)

    @classmethod
    def open(cls, path: str | Path) -> Case:
        """Open (creating and migrating as needed) the case file at `path`."""
        path = Path(path)
        _private_file(path)
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so a kill never leaves half a file
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
        return cls(path, conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Case:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: what runs inside is committed together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Fold the WAL into the main file, so read-only (immutable) readers see everything."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- writing -------------------------------------------------------------------------------------

    def insert_document(
        self,
        *,
        kind: str,
        title: str,
        text: str,
        sha256: str,
        size: int,
        meta: dict[str, Any] | None = None,
        parent_id: int | None = None,
        origin: str | None = None,
        pages: list[Page] | None = None,
        status: str = "complete",
    ) -> int:
        """Insert one document with its pages, chunks and FTS rows. Call inside `transaction()`."""
        meta = dict(meta or {})
        if kind == "email":
            meta.pop("thread_id", None)  # the case decides the thread
            thread_id = self._thread_of(meta)
            if thread_id is not None:
                meta["thread_id"] = thread_id  # stored with the rest: no second write of the metadata
        cur = self.conn.execute(
            "INSERT INTO documents (kind, title, parent_id, origin, sha256, size, chars, pages, meta, text,"
            " status, added_at, text_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                title,
                parent_id,
                origin,
                sha256,
                size,
                len(text),
                len(pages) if pages else None,
                encode_meta(_json(meta), kind),
                text,
                status,
                now_iso(),
                text_sha256(text),
            ),
        )
        doc_id = int(cur.lastrowid)
        if pages:
            self.conn.executemany(
                "INSERT INTO pages (doc_id, number, char_start, char_end, width, height, image_only, ocr, boxes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        doc_id,
                        p.number,
                        p.start,
                        p.end,
                        p.width,
                        p.height,
                        int(p.image_only),
                        int(p.ocr),
                        p.boxes if isinstance(p.boxes, bytes) else pack_boxes(p.boxes),
                    )
                    for p in pages
                ],
            )
        self._index_text(doc_id, text)
        if kind == "email":
            self._register_email(doc_id, meta)
        index_names(self.conn, doc_id)
        return doc_id

    def _index_text(self, doc_id: int, text: str) -> None:
        for start, end in chunk_bounds(text):
            cur = self.conn.execute(
                "INSERT INTO chunks (doc_id, char_start, char_end) VALUES (?, ?, ?)", (doc_id, start, end)
            )
            self.conn.execute(
                "INSERT INTO chunks_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, text[start:end])
            )

    def _unindex_text(self, doc_id: int) -> None:
        text = self.text(doc_id)
        rows = self.conn.execute("SELECT id, char_start, char_end FROM chunks WHERE doc_id = ?", (doc_id,))
        for chunk_id, start, end in rows.fetchall():
            # external-content FTS5 needs the exact old values to delete a row
            self.conn.execute(
                "INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', ?, ?)",
                (chunk_id, text[start:end]),
            )
        self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))

    def _thread_of(self, meta: dict[str, Any]) -> str | None:
        """A message's thread id: its thread's root id when known, else the subject's thread; None when it has
        neither (its own thread, named after its id)."""
        thread_key = meta.get("thread_key")
        subject_norm = meta.get("subject_norm") or None
        if thread_key:
            row = self.conn.execute(
                "SELECT thread_id FROM emails WHERE message_id = ? AND thread_id IS NOT NULL LIMIT 1",
                (thread_key,),
            ).fetchone()
            return row[0] if row else thread_key
        if subject_norm:
            row = self.conn.execute(
                "SELECT thread_id FROM emails WHERE subject_norm = ? LIMIT 1", (subject_norm,)
            ).fetchone()
            return row[0] if row else f"subject:{subject_norm}"
        return None

    def _register_email(self, doc_id: int, meta: dict[str, Any]) -> None:
        """Record the message in the emails table, with the thread id insert_document gave it (or its own)."""
        thread_id = meta.get("thread_id")
        if thread_id is None:
            thread_id = meta["thread_id"] = f"doc:{doc_id}"
            self.conn.execute(
                "UPDATE documents SET meta = ? WHERE id = ?", (encode_meta(_json(meta), "email"), doc_id)
            )
        sender = meta.get("from")
        if isinstance(sender, list):
            sender = sender[0] if sender else None
        self.conn.execute(
            "INSERT INTO emails (doc_id, message_id, in_reply_to, thread_id, subject_norm, sender, date)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                doc_id,
                meta.get("message_id"),
                meta.get("in_reply_to"),
                thread_id,
                meta.get("subject_norm") or None,
                sender,
                meta.get("date"),
            ),
        )

    def update_meta(self, doc_id: int, **values: Any) -> None:
        doc = self.document(doc_id)
        meta = doc.meta
        meta.update(values)
        self.conn.execute(
            "UPDATE documents SET meta = ? WHERE id = ?",
            (encode_meta(_json(meta), doc.kind), doc_id),
        )

    def set_status(self, doc_id: int, status: str) -> None:
        self.conn.execute("UPDATE documents SET status = ? WHERE id = ?", (status, doc_id))

    def link_path(self, path: str, doc_id: int, size: int, mtime_ns: int) -> None:
        old = self.path_row(path)
        self.conn.execute(
            "INSERT INTO paths (path, doc_id, size, mtime_ns, seen_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(path) DO UPDATE SET doc_id = excluded.doc_id, size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, seen_at = excluded.seen_at",
            (path, doc_id, size, mtime_ns, now_iso()),
        )
        # the path is a name the document is found by: the names index follows a path that moved
        if old is None or old.doc_id != doc_id:
            index_names(self.conn, doc_id)
        if old is not None and old.doc_id != doc_id:
            index_names(self.conn, old.doc_id)

    def point_path(self, path: str, doc_id: int, size: int, mtime_ns: int) -> None:
        """Point `path` at `doc_id`; the document it pointed at before is superseded by it if no path is left."""
        old = self.path_row(path)
        self.link_path(path, doc_id, size, mtime_ns)
        if old is not None and old.doc_id != doc_id:
            left = self.conn.execute("SELECT COUNT(*) FROM paths WHERE doc_id = ?", (old.doc_id,)).fetchone()[
                0
            ]
            if not left:
                self.supersede(old.doc_id, doc_id)

    def supersede(self, doc_id: int, by: int | None) -> None:
        """Retire a document and its descendants from search and the corpus; its text stays for old runs."""
        for descendant in [doc_id, *self.descendants(doc_id)]:
            self._unindex_text(descendant)
            unindex_names(self.conn, descendant)
            self.conn.execute(
                "UPDATE documents SET superseded_by = ? WHERE id = ?",
                (by if by is not None else -1, descendant),
            )
        if by is not None:
            from rlm_desktop.store.findings import carry_marks  # findings.py builds on this module

            carry_marks(self, doc_id, by)  # the investigator's tags and note follow the file to its new version

    def delete_document_tree(self, doc_id: int) -> None:
        """Remove a document that never completed (a partial mailbox being re-read) and its children."""
        for victim in [*reversed(self.descendants(doc_id)), doc_id]:
            self._unindex_text(victim)
            unindex_names(self.conn, victim)
            for table in ("pages", "emails"):
                self.conn.execute(f"DELETE FROM {table} WHERE doc_id = ?", (victim,))
            self.conn.execute("DELETE FROM paths WHERE doc_id = ?", (victim,))
            self.conn.execute("DELETE FROM documents WHERE id = ?", (victim,))

    def put_blob(self, sha256: str, data: bytes) -> None:
        """Keep an attachment's original bytes once per content hash."""
        self.conn.execute("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?, ?)", (sha256, data))

    def blob(self, sha256: str) -> bytes | None:
        row = self.conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return bytes(row[0]) if row else None

    def record_failure(self, path: str, error: str, sha256: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO failures (path, sha256, error, at) VALUES (?, ?, ?, ?)",
            (path, sha256, error, now_iso()),
        )

    def forget_failures(self, path: str) -> None:
        """The file at `path` has been read: it no longer belongs in the list of files that could not be."""
        self.conn.execute("DELETE FROM failures WHERE path = ?", (path,))

    # ---- reading -------------------------------------------------------------------------------------

    def path_row(self, path: str) -> PathRow | None:
        row = self.conn.execute(
            "SELECT path, doc_id, size, mtime_ns FROM paths WHERE path = ?", (path,)
        ).fetchone()
        return PathRow(*row) if row else None

    def find_top_level_by_sha(self, sha256: str) -> DocumentRow | None:
        row = self.conn.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE sha256 = ? AND parent_id IS NULL"
            " AND superseded_by IS NULL ORDER BY id LIMIT 1",
            (sha256,),
        ).fetchone()
        return self._row(row) if row else None

    def descendants(self, doc_id: int) -> list[int]:
        rows = self.conn.execute(
            "WITH RECURSIVE tree(id) AS (SELECT id FROM documents WHERE parent_id = ?"
            " UNION ALL SELECT d.id FROM documents d JOIN tree t ON d.parent_id = t.id) SELECT id FROM tree",
            (doc_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def _row(self, row: tuple[Any, ...], paths: tuple[str, ...] | None = None) -> DocumentRow:
        values = list(row)
        values[9] = decode_meta(values[9])
        if paths is None:
            paths = tuple(
                r[0]
                for r in self.conn.execute(
                    "SELECT path FROM paths WHERE doc_id = ? ORDER BY path", (values[0],)
                )
            )
        return DocumentRow(*values, paths=paths)

    def document(self, doc_id: int) -> DocumentRow:
        row = self.conn.execute(f"SELECT {_DOC_COLUMNS} FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(f"no document {doc_id} in this case")
        return self._row(row)

    def documents(self, *, kind: str | None = None, include_superseded: bool = False) -> list[DocumentRow]:
        """Every document in id order (attachments right after their email ids' creation order)."""
        where, params = [], []
        if not include_superseded:
            where.append("superseded_by IS NULL")
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {_DOC_COLUMNS} FROM documents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        paths: dict[int, list[str]] = {}
        for path, doc_id in self.conn.execute("SELECT path, doc_id FROM paths ORDER BY path"):
            paths.setdefault(doc_id, []).append(path)
        return [
            self._row(r, tuple(paths.get(r[0], ()))) for r in self.conn.execute(sql + " ORDER BY id", params)
        ]

    def children(self, doc_id: int, limit: int | None = None) -> tuple[list[DocumentRow], int]:
        """A document's current direct children (attachments, messages) in id order, at most `limit` of
        them, and how many there are in all (a mailbox may hold thousands)."""
        total = self.conn.execute(
            "SELECT COUNT(*) FROM documents WHERE parent_id = ? AND superseded_by IS NULL", (doc_id,)
        ).fetchone()[0]
        rows = self.conn.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE parent_id = ? AND superseded_by IS NULL ORDER BY id"
            " LIMIT ?",
            (doc_id, -1 if limit is None else limit),
        ).fetchall()
        return [self._row(r) for r in rows], total

    def text(self, doc_id: int) -> str:
        row = self.conn.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(f"no document {doc_id} in this case")
        return row[0]

    def pages(self, doc_id: int) -> list[Page]:
        rows = self.conn.execute(
            "SELECT number, char_start, char_end, width, height, image_only, ocr, boxes FROM pages"
            " WHERE doc_id = ? ORDER BY number",
            (doc_id,),
        )
        return [
            Page(number, start, end, width, height, unpack_boxes(boxes), bool(image_only), bool(ocr))
            for number, start, end, width, height, image_only, ocr, boxes in rows
        ]

    def search(self, query: str, limit: int = 20, doc_ids: list[int] | None = None) -> list[FtsMatch]:
        """Documents by their names, then passages of text, for what a user typed (store/fts.search)."""
        return search(self.conn, query, limit, doc_ids)

    def failures(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT path, sha256, error, at FROM failures ORDER BY id")
        return [{"path": p, "sha256": s, "error": e, "at": a} for p, s, e, a in rows]

    def count_documents(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM documents WHERE superseded_by IS NULL").fetchone()[0]

    def thread(self, thread_id: str) -> list[int]:
        rows = self.conn.execute(
            "SELECT e.doc_id FROM emails e JOIN documents d ON d.id = e.doc_id"
            " WHERE e.thread_id = ? AND d.superseded_by IS NULL ORDER BY e.date, e.doc_id",
            (thread_id,),
        )
        return [r[0] for r in rows]

    # ---- conveniences --------------------------------------------------------------------------------

    def add_text_document(
        self, title: str, text: str, kind: str = "text", meta: dict[str, Any] | None = None
    ) -> int:
        """Add a document straight from a string (tests, scripts); identity is the text's SHA-256."""
        import hashlib

        data = text.encode("utf-8")
        with self.transaction():
            return self.insert_document(
                kind=kind,
                title=title,
                text=text,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                meta=meta,
            )
