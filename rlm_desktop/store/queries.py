"""Read queries over a case file's connection, for readers that hold a bare sqlite3 connection: the REPL's
corpus (read-only, inside the sandbox), provenance, the sandbox host's check of quotes, the ingest pipeline.

Only the standard library: the sandboxed worker imports this, and must load nothing heavier.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

CatalogueRow = tuple[int, str, str, int | None, dict[str, Any], int, str | None]  # id, kind, title, parent, meta, chars, path


def catalogue(conn: sqlite3.Connection) -> Iterator[CatalogueRow]:
    """The current documents a REPL sees (mailbox containers left out), in id order, each with the
    alphabetically first of its paths."""
    paths: dict[int, str] = {}
    for path, doc_id in conn.execute("SELECT path, doc_id FROM paths ORDER BY path DESC"):
        paths[doc_id] = path
    rows = conn.execute(
        "SELECT id, kind, title, parent_id, meta, chars FROM documents"
        " WHERE superseded_by IS NULL AND kind != 'mailbox' ORDER BY id"
    )
    for doc_id, kind, title, parent_id, meta, chars in rows:
        yield doc_id, kind, title, parent_id, json.loads(meta), chars, paths.get(doc_id)


def document_text(conn: sqlite3.Connection, doc_id: int) -> str | None:
    row = conn.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
    return None if row is None else row[0]


def current_texts(conn: sqlite3.Connection) -> Iterator[tuple[int, str]]:
    """(id, text) of every current document but mailbox containers."""
    yield from conn.execute(
        "SELECT id, text FROM documents WHERE superseded_by IS NULL AND kind != 'mailbox' ORDER BY id"
    )


def page_ranges(conn: sqlite3.Connection, doc_id: int) -> list[tuple[int, int]]:
    rows = conn.execute("SELECT char_start, char_end FROM pages WHERE doc_id = ? ORDER BY number", (doc_id,))
    return [(s, e) for s, e in rows]


def text_slice(conn: sqlite3.Connection, doc_id: int, start: int, end: int) -> str | None:
    """text[start:end] of a document as stored, read without loading the whole text; None when the
    document or the span does not exist."""
    row = conn.execute(
        "SELECT substr(text, ?, ?), length(text) FROM documents WHERE id = ?", (start + 1, end - start, doc_id)
    ).fetchone()
    if row is None or row[1] is None or end > row[1]:
        return None
    return row[0]


def fts_chunk_spans(
    conn: sqlite3.Connection, match: str, doc_ids: Iterable[int] | None, limit: int
) -> list[tuple[int, int, int]]:
    """(doc id, chunk start, chunk end) of chunks matching an FTS5 query, at most `limit`, filtered to
    `doc_ids` inside SQL so other documents cannot use up the limit. Raises sqlite3.OperationalError for
    a query FTS5 cannot parse."""
    sql = (
        "SELECT c.doc_id, c.char_start, c.char_end FROM chunks_fts CROSS JOIN chunks c"
        " ON c.id = chunks_fts.rowid WHERE chunks_fts MATCH ?"
    )
    params: list[object] = [match]
    if doc_ids is not None:
        ids = sorted(doc_ids)
        sql += f" AND c.doc_id IN ({','.join('?' * len(ids))})"
        params.extend(ids)
    return [(d, s, e) for d, s, e in conn.execute(sql + " LIMIT ?", [*params, limit]).fetchall()]


def partial_mailboxes(conn: sqlite3.Connection, source_path: str) -> list[int]:
    """Mailbox containers left partial by an interrupted ingest of the file at `source_path`."""
    rows = conn.execute(
        "SELECT id FROM documents WHERE status = 'partial' AND kind = 'mailbox'"
        " AND json_extract(meta, '$.source_path') = ?",
        (source_path,),
    ).fetchall()
    return [r[0] for r in rows]
