"""Read queries over a case file's connection, for readers that hold a bare sqlite3 connection: the REPL's
corpus (read-only, inside the sandbox), provenance, the sandbox host's check of quotes, the ingest pipeline.

Only the standard library: the sandboxed worker imports this, and must load nothing heavier.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

Entry = tuple[str, int | None, int]
"""kind, parent id, chars: what a document's entry in the REPL's catalogue holds."""
Names = tuple[str, str | bytes, str | None]
"""title, metadata as stored (store/metadata.py), the alphabetically first of its paths."""

CURRENT = "superseded_by IS NULL AND kind != 'mailbox'"
"""The documents a REPL sees: current ones, mailbox containers left out (index documents_current, m008)."""


def current_id_runs(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    """(first, last) id of each run of consecutive ids of the documents a REPL sees, in id order: a case
    of any size opens with one index scan and a handful of rows (gaps-and-islands in SQL)."""
    return conn.execute(
        "SELECT MIN(id), MAX(id) FROM (SELECT id, id - ROW_NUMBER() OVER (ORDER BY id) AS run"
        f" FROM documents WHERE {CURRENT}) GROUP BY run ORDER BY 1"
    ).fetchall()


def current_chars(conn: sqlite3.Connection) -> int:
    return conn.execute(f"SELECT COALESCE(SUM(chars), 0) FROM documents WHERE {CURRENT}").fetchone()[0]


def current_figures(conn: sqlite3.Connection) -> tuple[dict[str, int], int, int, int]:
    """Documents of each kind, total, median and largest size in characters, of the documents a REPL sees."""
    kinds = dict(conn.execute(f"SELECT kind, COUNT(*) FROM documents WHERE {CURRENT} GROUP BY kind").fetchall())
    count = sum(kinds.values())
    total, largest = conn.execute(
        f"SELECT COALESCE(SUM(chars), 0), COALESCE(MAX(chars), 0) FROM documents WHERE {CURRENT}"
    ).fetchone()
    row = conn.execute(
        f"SELECT chars FROM documents WHERE {CURRENT} ORDER BY chars LIMIT 1 OFFSET ?", (count // 2,)
    ).fetchone()
    return kinds, total, row[0] if row else 0, largest


def current_email_date_range(conn: sqlite3.Connection) -> tuple[str | None, str | None]:
    """The first and last date of the current emails (their `date` metadata, kept in the emails table)."""
    return conn.execute(
        "SELECT MIN(e.date), MAX(e.date) FROM emails e JOIN documents d ON d.id = e.doc_id"
        " WHERE e.date IS NOT NULL AND e.date != '' AND d.superseded_by IS NULL AND d.kind != 'mailbox'"
    ).fetchone()


def current_other_metas(conn: sqlite3.Connection) -> Iterator[str | bytes]:
    """The stored metadata of the documents a REPL sees other than emails (whose dates are in their table)."""
    for (meta,) in conn.execute(f"SELECT meta FROM documents WHERE {CURRENT} AND kind != 'email'"):
        yield meta


def entries(conn: sqlite3.Connection, first: int, last: int) -> dict[int, Entry]:
    """Kind, parent and size of the documents a REPL sees with ids first..last (from the covering index
    documents_current, without reading the documents' rows)."""
    rows = conn.execute(
        f"SELECT id, kind, parent_id, chars FROM documents WHERE id BETWEEN ? AND ? AND {CURRENT}", (first, last)
    )
    return {i: (k, p, c) for i, k, p, c in rows}


def names(conn: sqlite3.Connection, first: int, last: int) -> dict[int, Names]:
    """Title, metadata and first path of the documents with ids first..last."""
    paths = dict(
        conn.execute(
            "SELECT doc_id, MIN(path) FROM paths WHERE doc_id BETWEEN ? AND ? GROUP BY doc_id", (first, last)
        ).fetchall()
    )
    rows = conn.execute("SELECT id, title, meta FROM documents WHERE id BETWEEN ? AND ?", (first, last))
    return {i: (t, m, paths.get(i)) for i, t, m in rows}


def document_text(conn: sqlite3.Connection, doc_id: int) -> str | None:
    row = conn.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
    return None if row is None else row[0]


def current_texts(conn: sqlite3.Connection) -> Iterator[tuple[int, str]]:
    """(id, text) of every current document but mailbox containers."""
    yield from conn.execute(f"SELECT id, text FROM documents WHERE {CURRENT} ORDER BY id")


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
