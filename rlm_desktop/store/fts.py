"""Chunking text for FTS5, the one search over texts and names, and FTS5 matches as exact character offsets."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from rlm_desktop.store.search_query import SYNTAX_HELP, InvalidQuery, parse_query

__all__ = ["FtsMatch", "InvalidQuery", "chunk_bounds", "search", "search_chunks", "search_names"]

CHUNK_TARGET = 1500
CHUNK_MAX = 3000
_OPEN, _CLOSE = "\x02", "\x03"
_SQLITE_TROUBLE = ("locked", "busy", "disk", "corrupt", "no such table", "readonly", "malformed")


def chunk_bounds(text: str) -> list[tuple[int, int]]:
    """Split `text` into contiguous ranges of about CHUNK_TARGET characters, at paragraph, line or word breaks.

    Breaking at natural boundaries keeps most phrases inside one chunk, so phrase queries still match.
    """
    bounds: list[tuple[int, int]] = []
    n = len(text)
    start = 0
    while start < n:
        if n - start <= CHUNK_MAX:
            bounds.append((start, n))
            break
        cut = -1
        for sep in ("\n\n", "\n", " "):
            pos = text.rfind(sep, start + CHUNK_TARGET // 2, start + CHUNK_MAX)
            if pos != -1:
                cut = pos + len(sep)
                break
        if cut == -1:
            cut = start + CHUNK_MAX
        bounds.append((start, cut))
        start = cut
    return bounds


@dataclass(frozen=True)
class FtsMatch:
    """A search hit. In the text (`field` "text"): text[start:end] is the first matched phrase, inside the
    chunk `chunk_text` that starts at `chunk_start`. On a name (`field` "path", "from", ...; see
    store/names.py): start = end = chunk_start = 0, an empty span at the document's start, and
    `chunk_text` is the name that matched."""

    doc_id: int
    start: int
    end: int
    score: float  # higher is better (negated BM25)
    chunk_start: int
    chunk_text: str
    field: str = "text"


def search(db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None) -> list[FtsMatch]:
    """The one search of a case, for the window, `rlm-desktop search` and the REPL's `search`.

    `query` is what a user typed (store/search_query.py). Documents whose names match (title, file name,
    path, author, an email's subject, from, to, cc) come first, one hit per document, then passages of
    text, best first by BM25; names take at most half of `limit` when there are text hits to show.
    """
    fts = parse_query(query).fts
    names = search_names(db, fts, limit, doc_ids, parsed=True)
    texts = search_chunks(db, fts, limit, doc_ids, parsed=True)
    shown = min(len(names), max(limit - len(texts), (limit + 1) // 2))
    return names[:shown] + texts[: limit - shown]


def _run(db: sqlite3.Connection, query: str, sql: str, params: list[object]) -> list[tuple]:
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if any(word in str(exc) for word in _SQLITE_TROUBLE):
            raise
        # parse_query makes queries FTS5 accepts; should one still be refused, say so without SQLite's words
        raise InvalidQuery(
            f"the search {query!r} could not be run as written; try plain words or \"a phrase\" "
            f"(search understands {SYNTAX_HELP})"
        ) from None


def search_names(
    db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None, parsed: bool = False
) -> list[FtsMatch]:
    """Documents whose names match, best first, one hit each (its best-matching name). A case file from
    before migration m005 (opened read-only, never migrated) has no names index: no name hits."""
    fts = query if parsed else parse_query(query).fts
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'names_fts'").fetchone() is None:
        return []
    sql = (
        "SELECT n.doc_id, n.field, n.value, bm25(names_fts) FROM names_fts JOIN doc_names n"
        " ON n.id = names_fts.rowid JOIN documents d ON d.id = n.doc_id"
        " WHERE names_fts MATCH ? AND d.superseded_by IS NULL"
    )
    params: list[object] = [fts]
    if doc_ids is not None:
        sql += f" AND n.doc_id IN ({','.join('?' * len(doc_ids))})" if doc_ids else " AND 0"
        params.extend(doc_ids)
    sql += " ORDER BY bm25(names_fts) LIMIT ?"
    params.append(int(limit) * 4)  # a document may match on several names
    matches: dict[int, FtsMatch] = {}
    for doc_id, field, value, bm25 in _run(db, query, sql, params):
        if doc_id not in matches:
            matches[doc_id] = FtsMatch(doc_id, 0, 0, -bm25, 0, value, field)
        if len(matches) >= limit:
            break
    return list(matches.values())


def search_chunks(
    db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None, parsed: bool = False
) -> list[FtsMatch]:
    """Rank chunks of text with BM25 and locate the first matched phrase in each one exactly. `query` is
    what a user typed, or with `parsed` an FTS5 expression from parse_query."""
    fts = query if parsed else parse_query(query).fts
    sql = (
        "SELECT c.doc_id, c.char_start, bm25(chunks_fts), highlight(chunks_fts, 0, char(2), char(3)) "
        "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
        "JOIN documents d ON d.id = c.doc_id "
        "WHERE chunks_fts MATCH ? AND d.superseded_by IS NULL"
    )
    params: list[object] = [fts]
    if doc_ids is not None:
        # a temp table would scale further, but REPL subsets stay in the thousands at most
        sql += f" AND c.doc_id IN ({','.join('?' * len(doc_ids))})" if doc_ids else " AND 0"
        params.extend(doc_ids)
    sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
    params.append(int(limit))
    rows = _run(db, query, sql, params)
    matches = []
    for doc_id, chunk_start, bm25, marked in rows:
        start, end, plain = _first_highlight(marked)
        matches.append(FtsMatch(doc_id, chunk_start + start, chunk_start + end, -bm25, chunk_start, plain))
    return matches


def _first_highlight(marked: str) -> tuple[int, int, str]:
    """Offsets of the first highlighted run in a chunk, in the chunk's own (unmarked) text."""
    open_at = marked.find(_OPEN)
    plain = marked.replace(_OPEN, "").replace(_CLOSE, "")
    if open_at == -1:  # a NOT-only match cannot be highlighted; point at the chunk's start
        return 0, 0, plain
    close_at = marked.find(_CLOSE, open_at)
    return open_at, close_at - 1, plain
