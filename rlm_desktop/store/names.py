"""The names index: each document's title, file name, paths, author, and an email's subject, senders and
recipients, in their own FTS5 table (`names_fts`, migration m005) so a search finds a document by them.

One row per (document, field) in `doc_names`; `names_fts` indexes its `value` with the same tokenizer as the
text. Rows are written when a document is inserted or gains or loses a path, and removed when it is
superseded or deleted, so only current documents are found.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from rlm_desktop.store.metadata import decode_meta

# field name in the index -> how a hit on it is described ("matched its file path")
FIELDS = {
    "subject": "subject",
    "from": "sender",
    "to": "recipients (To)",
    "cc": "recipients (Cc)",
    "bcc": "recipients (Bcc)",
    "title": "title",
    "file": "file name",
    "path": "file path",
    "author": "author",
}
MAX_VALUE_CHARS = 20_000  # a To: line of thousands of addresses is still indexed, within reason

SCHEMA = """
CREATE TABLE doc_names (
    id INTEGER PRIMARY KEY,
    doc_id INTEGER NOT NULL REFERENCES documents(id),
    field TEXT NOT NULL,        -- one of names.FIELDS
    value TEXT NOT NULL
);
CREATE INDEX doc_names_doc ON doc_names(doc_id);
CREATE VIRTUAL TABLE names_fts USING fts5(
    value, content='doc_names', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
"""


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    return "" if value is None else str(value).strip()


def name_fields(kind: str, title: str, meta: dict[str, Any], paths: Iterable[str]) -> list[tuple[str, str]]:
    """The (field, value) pairs a document is found by; a value already given by an earlier field is not
    repeated (an email's title is its subject)."""
    pairs: list[tuple[str, str]] = []
    if kind == "email":
        for key in ("subject", "from", "to", "cc", "bcc"):
            pairs.append((key, _text(meta.get(key))))
    pairs.append(("title", _text(title)))
    pairs.append(("file", _text(meta.get("filename"))))
    pairs.append(("path", "\n".join(sorted(paths))))
    pairs.append(("author", _text(meta.get("author"))))
    seen: set[str] = set()
    kept = []
    for key, value in pairs:
        value = value.replace("\x00", " ")[:MAX_VALUE_CHARS]
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            kept.append((key, value))
    return kept


def unindex_names(conn: sqlite3.Connection, doc_id: int) -> None:
    """Take a document out of the names index (external-content FTS5 needs the old values to delete)."""
    conn.execute(
        "INSERT INTO names_fts (names_fts, rowid, value) SELECT 'delete', id, value FROM doc_names"
        " WHERE doc_id = ?",
        (doc_id,),
    )
    conn.execute("DELETE FROM doc_names WHERE doc_id = ?", (doc_id,))


def index_names(conn: sqlite3.Connection, doc_id: int) -> None:
    """(Re)write a document's rows from its catalogue entry and paths; a superseded document gets none."""
    unindex_names(conn, doc_id)
    row = conn.execute(
        "SELECT kind, title, meta, superseded_by FROM documents WHERE id = ?", (doc_id,)
    ).fetchone()
    if row is None or row[3] is not None:
        return
    kind, title, meta_json, _ = row
    try:
        meta = decode_meta(meta_json)
    except ValueError:
        meta = {}
    paths = [r[0] for r in conn.execute("SELECT path FROM paths WHERE doc_id = ?", (doc_id,))]
    for key, value in name_fields(kind, title, meta if isinstance(meta, dict) else {}, paths):
        cur = conn.execute("INSERT INTO doc_names (doc_id, field, value) VALUES (?, ?, ?)", (doc_id, key, value))
        conn.execute("INSERT INTO names_fts (rowid, value) VALUES (?, ?)", (cur.lastrowid, value))


def rebuild_names(conn: sqlite3.Connection) -> None:
    """Index every current document's names at once (migration m005): one pass, then one FTS5 rebuild."""
    paths: dict[int, list[str]] = {}
    for path, doc_id in conn.execute("SELECT path, doc_id FROM paths"):
        paths.setdefault(doc_id, []).append(path)
    conn.execute("DELETE FROM doc_names")

    def rows() -> Iterable[tuple[int, str, str]]:
        docs = conn.execute("SELECT id, kind, title, meta FROM documents WHERE superseded_by IS NULL ORDER BY id")
        for doc_id, kind, title, meta_json in docs.fetchall():
            try:
                meta = decode_meta(meta_json)
            except ValueError:
                meta = {}
            fields = name_fields(kind, title, meta if isinstance(meta, dict) else {}, paths.get(doc_id, []))
            for key, value in fields:
                yield doc_id, key, value

    conn.executemany("INSERT INTO doc_names (doc_id, field, value) VALUES (?, ?, ?)", rows())
    conn.execute("INSERT INTO names_fts (names_fts) VALUES ('rebuild')")

