"""Ordered schema migrations, each recorded in the case's `_migrations` table when applied."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: `executescript` would COMMIT and break the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:80]}")


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; its name is recorded so it never runs twice."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            parent_id INTEGER REFERENCES documents(id),
            origin TEXT,                -- where inside the parent it came from, e.g. 'attachment 2'
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            chars INTEGER NOT NULL,
            pages INTEGER,
            meta TEXT NOT NULL DEFAULT '{}',
            text TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'complete',  -- 'partial' while a mailbox is still being read
            superseded_by INTEGER,      -- set when a changed file replaced it; kept so old citations resolve
            added_at TEXT NOT NULL
        );
        CREATE INDEX documents_sha256 ON documents(sha256);
        CREATE INDEX documents_parent ON documents(parent_id);

        -- every path a top-level document was found at (same bytes at two paths: one document, two rows)
        CREATE TABLE paths (
            path TEXT PRIMARY KEY,
            doc_id INTEGER NOT NULL REFERENCES documents(id),
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            seen_at TEXT NOT NULL
        );
        CREATE INDEX paths_doc ON paths(doc_id);

        CREATE TABLE pages (
            doc_id INTEGER NOT NULL REFERENCES documents(id),
            number INTEGER NOT NULL,
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            width REAL NOT NULL,
            height REAL NOT NULL,
            image_only INTEGER NOT NULL DEFAULT 0,
            ocr INTEGER NOT NULL DEFAULT 0,
            boxes BLOB NOT NULL,        -- packed (start, end, x0, y0, x1, y1) per word, see store/pages.py
            PRIMARY KEY (doc_id, number)
        );

        CREATE TABLE emails (
            doc_id INTEGER PRIMARY KEY REFERENCES documents(id),
            message_id TEXT,
            in_reply_to TEXT,
            thread_id TEXT,
            subject_norm TEXT,
            sender TEXT,
            date TEXT
        );
        CREATE INDEX emails_message_id ON emails(message_id);
        CREATE INDEX emails_thread ON emails(thread_id);
        CREATE INDEX emails_subject ON emails(subject_norm);

        -- FTS5 indexes chunks of the text; the text itself lives once, in documents.text
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            doc_id INTEGER NOT NULL REFERENCES documents(id),
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL
        );
        CREATE INDEX chunks_doc ON chunks(doc_id);
        CREATE VIEW chunk_text AS
            SELECT c.id AS id, substr(d.text, c.char_start + 1, c.char_end - c.char_start) AS text
            FROM chunks c JOIN documents d ON d.id = c.doc_id;
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, content='chunk_text', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
        );

        CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            sha256 TEXT,
            error TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX failures_path ON failures(path);
        """,
    )


def pending(path: Path) -> list[str]:
    """The migrations an existing case file has not had yet, read without writing to it (a missing file or one
    that is not a case: none, Case.open says what is wrong). The window and the CLI say so before a long one."""
    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    except sqlite3.Error:  # no _migrations table yet, or not a database
        return []
    finally:
        db.close()
    return [name for name, _ in MIGRATIONS if name not in done]


SLOW_UPGRADE_BYTES = 64 * 1024 * 1024
"""A case file this big with migrations pending is upgraded with a notice (m008 rewrites every page's word
boxes, then VACUUM copies the file: about two minutes for a 100M-token case)."""


def slow_upgrade(path: Path) -> list[str]:
    """The pending migrations of a case big enough that applying them takes a noticeable time, else []."""
    try:
        big = path.stat().st_size >= SLOW_UPGRADE_BYTES
    except OSError:
        return []
    return pending(path) if big else []


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations this case has not had yet, in order; return the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    known = {name for name, _ in MIGRATIONS}
    unknown = done - known
    if unknown:
        raise RuntimeError(
            f"this case was written by a newer RLM Desktop (migrations {sorted(unknown)}); update the app"
        )
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    if VACUUM_AFTER & set(applied):
        try:
            db.execute("VACUUM")
        except sqlite3.OperationalError:
            pass  # no room for the copy VACUUM writes, or a transaction open: the case is smaller next time
    return applied


@migration
def m002_runs(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- one row per RLM run; `record` is the CONTRACTS run record, rewritten as the run goes
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            question TEXT NOT NULL,
            status TEXT NOT NULL,       -- running, completed, cancelled, cap_reached, limit_reached, failed
            started TEXT NOT NULL,
            ended TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            cap_usd REAL,
            answer TEXT NOT NULL DEFAULT '',
            pid INTEGER,                -- the process running it, to tell a crashed run from a live one
            updated TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX runs_started ON runs(started);

        -- the recursion tree, one row per node, so a long run saves only what changed
        CREATE TABLE run_nodes (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            node_id TEXT NOT NULL,
            parent_id TEXT,
            seq INTEGER NOT NULL,       -- creation order: children are listed in it
            data TEXT NOT NULL,         -- the node's JSON without its children
            PRIMARY KEY (run_id, node_id)
        );
        """,
    )


@migration
def m003_blobs(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- original bytes of documents that have no file of their own (attachments), by content hash,
        -- so a PDF attachment can be rendered and a report can prove its hash
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            data BLOB NOT NULL
        );
        """,
    )


def text_sha256(text: str) -> str:
    """SHA-256 of a document's stored text (UTF-8; a lone surrogate, which an old case may hold, kept as is)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@migration
def m004_text_hashes(db: sqlite3.Connection) -> None:
    # The SHA-256 of the extracted text, next to the file's: a stored text rewritten after ingest (by hand, or
    # by code that reached the case file) no longer matches it, so citations checked against it say so.
    db.execute("ALTER TABLE documents ADD COLUMN text_sha256 TEXT")
    db.create_function("rlm_text_sha256", 1, lambda text: text_sha256(text or ""), deterministic=True)
    db.execute("UPDATE documents SET text_sha256 = rlm_text_sha256(text)")


@migration
def m005_search_names(db: sqlite3.Connection) -> None:
    # Names are searchable (file names, paths, titles, authors, email subjects, senders and recipients): a
    # second FTS5 table over them, filled here for the documents already in the case (store/names.py).
    # Titles that were junk PDF/DOCX metadata (a path, "Untitled", "10811.exe") become the file name, by
    # the rule ingest uses now (store/titles.py); the metadata title stays in meta["metadata_title"].
    import json
    import posixpath

    from rlm_desktop.store.metadata import decode_meta
    from rlm_desktop.store.names import SCHEMA, rebuild_names
    from rlm_desktop.store.titles import choose_title

    run_script(db, SCHEMA)
    first_path: dict[int, str] = {}
    for path, doc_id in db.execute("SELECT path, doc_id FROM paths ORDER BY path DESC"):
        first_path[doc_id] = path
    rows = db.execute(
        "SELECT id, title, meta FROM documents WHERE superseded_by IS NULL AND kind IN ('pdf', 'docx')"
    ).fetchall()
    for doc_id, title, meta_json in rows:
        meta = decode_meta(meta_json)  # text here, unless written by a newer app into an older case (tests)
        raw = meta.get("title")
        if not isinstance(raw, str) or " ".join(raw.split()) != " ".join(title.split()):
            continue  # the title did not come from the metadata
        path = first_path.get(doc_id)
        file_name = meta.get("filename") or (posixpath.basename(path.replace("\\", "/")) if path else None)
        if not file_name:
            continue
        chosen = choose_title(raw, file_name)
        if chosen != " ".join(title.split()):
            meta["metadata_title"] = raw
            db.execute(
                "UPDATE documents SET title = ?, meta = ? WHERE id = ?",
                (chosen, json.dumps(meta, ensure_ascii=False), doc_id),
            )
    rebuild_names(db)


@migration
def m006_findings(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- No foreign keys to documents here: an interrupted mailbox's messages are deleted and read again
        -- (Case.delete_document_tree), and a mark on one must not stop that; a finding whose document is gone
        -- stays, shown as not verified ("no such document").

        -- an investigator's labels on documents; one tag once per document whatever its letter case
        CREATE TABLE document_tags (
            doc_id INTEGER NOT NULL,
            tag TEXT NOT NULL COLLATE NOCASE,
            added TEXT NOT NULL,
            PRIMARY KEY (doc_id, tag)
        );
        CREATE INDEX document_tags_tag ON document_tags(tag);

        -- one free-text note per document
        CREATE TABLE document_notes (
            doc_id INTEGER PRIMARY KEY,
            note TEXT NOT NULL,
            updated TEXT NOT NULL
        );

        -- spans the investigator kept as evidence; added only after they verified as cite() verifies them, and
        -- verified again whenever shown or exported (text_sha256: the stored text's hash when it was added)
        CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            doc_id INTEGER NOT NULL,
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            quote TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            run_id TEXT,                -- the run whose citation it came from; NULL for a viewer selection
            origin TEXT NOT NULL,       -- the citation's marker, e.g. '[c2]', or 'selection'
            text_sha256 TEXT
        );
        CREATE INDEX findings_doc ON findings(doc_id);
        """,
    )


@migration
def m007_run_threads(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- a follow-up question names the run it follows: the runs of a thread form a chain back to its first
        ALTER TABLE runs ADD COLUMN follows TEXT;
        -- the user's own name for a run (null: the question stands for it)
        ALTER TABLE runs ADD COLUMN label TEXT;
        CREATE INDEX runs_follows ON runs(follows);
        """,
    )


VACUUM_AFTER = {"m008_lean_case"}
"""Migrations that free much of a case: the file is rewritten (VACUUM) after them so it shrinks on disk."""


@migration
def m008_lean_case(db: sqlite3.Connection) -> None:
    # Issue 15: a 100M-token case was 5.35x its text. Word boxes took 24 bytes a word (a quarter of the file):
    # they are repacked at about 8, as precise (store/pages.py). Metadata is compressed (store/metadata.py). The
    # index on every document's hash served only the lookup of top-level files by content (attachments are never
    # looked up by it): it now holds those alone.
    # The REPL's catalogue (corpus.py) reads kinds, parents and sizes of current documents from a covering
    # index instead of their rows, which hold their text.
    from rlm_desktop.store.metadata import encode_meta
    from rlm_desktop.store.pages import pack_boxes, unpack_first_format

    # every box before this migration is in the first format (an older app wrote them all)
    db.create_function("rlm_repack_boxes", 1, lambda data: pack_boxes(unpack_first_format(data)))
    db.execute("UPDATE pages SET boxes = rlm_repack_boxes(boxes) WHERE length(boxes) > 0")
    # metadata compressed (store/metadata.py): an email's headers as JSON were 300 MB at 100M tokens
    db.create_function("rlm_pack_meta", 2, encode_meta)
    db.execute(
        "UPDATE documents SET meta = rlm_pack_meta(meta, kind) WHERE typeof(meta) = 'text' AND kind != 'mailbox'"
    )
    run_script(
        db,
        """
        DROP INDEX IF EXISTS documents_sha256;
        CREATE INDEX documents_top_sha256 ON documents(sha256) WHERE parent_id IS NULL;
        -- the documents a REPL sees (store/queries.CURRENT) and what its catalogue shows, without reading their rows
        CREATE INDEX documents_current ON documents(id, kind, parent_id, chars, superseded_by)
            WHERE superseded_by IS NULL AND kind != 'mailbox';
        """,
    )
