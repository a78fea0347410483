"""Chunking text for FTS5, the one search over texts and names, and FTS5 matches as exact character offsets."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
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
    score: float  # higher is better (negated BM25); 0 when not ranked
    chunk_start: int
    chunk_text: str
    field: str = "text"
    ranked: bool = True  # False: the query matched too much to rank (COMMON_SHARE); first matches in case order


def search(db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None) -> list[FtsMatch]:
    """The one search of a case, for the window, `rlm-desktop search` and the REPL's `search`.

    `query` is what a user typed (store/search_query.py). Documents whose names match (title, file name,
    path, author, an email's subject, from, to, cc) come first, one hit per document, then passages of
    text, best first by BM25; names take at most half of `limit` when there are text hits to show. A query
    matching more than RANK_CANDIDATES rows is ranked among its first ones in case order, and a stop-word
    search (COMMON_SHARE) gives its first matches unranked (`ranked` False, score 0).
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


RANK_CANDIDATES = 2000
"""Matches ranked at most: a query matching more passages (or names) is ranked among its first RANK_CANDIDATES
matches in case order (ids), not all of them. BM25 costs about 10 µs a row in SQLite, so ranking every one
of 460,000 passages holding "of" took 2 s at 100M tokens (issue 15)."""
COMMON_SHARE = 0.10
"""A query that matches about this share of all rows or more is a stop-word search ("of", "the and"): its
hits are simply its first matches in case order (score 0), unranked. BM25 gives such terms an IDF of about
zero anyway, and computing even that IDF reads every row they occur in."""


def _best_rows(
    db: sqlite3.Connection,
    query: str,
    table: str,
    fts: str,
    limit: int,
    join: str = "",
    where: str = "",
    params: Sequence[object] = (),
) -> tuple[list[tuple[int, float]], bool]:
    """(rowid, score) of the best `limit` rows of the FTS5 `table` matching `fts` (with an optional join and
    filter on it), best first, and whether they were ranked. Never ranks more than RANK_CANDIDATES rows.

    One pass finds the first RANK_CANDIDATES matches in rowid order (FTS5's own order: it stops there). Fewer:
    all are ranked. More: how densely they sit in the first rows tells a stop-word search (COMMON_SHARE),
    whose first `limit` matches are the answer, unranked; any other query is ranked among those first ones.
    """
    base = f"FROM {table}{join} WHERE {table} MATCH ?{where}"
    probe = f"SELECT {table}.rowid {base} ORDER BY {table}.rowid LIMIT ?"
    first = [r[0] for r in _run(db, query, probe, [fts, *params, RANK_CANDIDATES])]
    bound, bound_params = "", []
    if len(first) >= RANK_CANDIDATES:
        if not where and len(first) / (first[-1] - first[0] + 1) >= COMMON_SHARE:
            return [(rowid, 0.0) for rowid in first[:limit]], False
        bound, bound_params = f" AND {table}.rowid <= ?", [first[-1]]
    sql = f"SELECT {table}.rowid, -bm25({table}) {base}{bound} ORDER BY bm25({table}) LIMIT ?"
    return _run(db, query, sql, [fts, *params, *bound_params, limit]), True


def _subset(doc_ids: list[int] | None, column: str) -> tuple[str, list[object]]:
    if doc_ids is None:
        return "", []
    if not doc_ids:
        return " AND 0", []
    # a temp table would scale further, but REPL subsets stay in the thousands at most
    return f" AND {column} IN ({','.join('?' * len(doc_ids))})", list(doc_ids)


def _current(db: sqlite3.Connection, doc_ids: set[int]) -> set[int]:
    """Which of these documents are current. Superseded documents leave both indexes (Case.supersede); this
    only guards the few hits shown against a case altered by hand."""
    if not doc_ids:
        return set()
    marks = ",".join("?" * len(doc_ids))
    rows = db.execute(
        f"SELECT id FROM documents WHERE id IN ({marks}) AND superseded_by IS NULL", list(doc_ids)
    )
    return {r[0] for r in rows}


def search_names(
    db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None, parsed: bool = False
) -> list[FtsMatch]:
    """Documents whose names match, best first, one hit each (its best-matching name). A case file from
    before migration m005 (opened read-only, never migrated) has no names index: no name hits."""
    fts = query if parsed else parse_query(query).fts
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'names_fts'").fetchone() is None:
        return []
    where, params = _subset(doc_ids, "n.doc_id")
    join = " CROSS JOIN doc_names n ON n.id = names_fts.rowid" if where else ""
    # a document may match on several names
    best, ranked = _best_rows(db, query, "names_fts", fts, int(limit) * 4, join, where, params)
    if not best:
        return []
    marks = ",".join("?" * len(best))
    rows = db.execute(f"SELECT id, doc_id, field, value FROM doc_names WHERE id IN ({marks})", [r for r, _ in best])
    names = {row[0]: row[1:] for row in rows}
    current = _current(db, {names[r][0] for r, _ in best if r in names})
    matches: dict[int, FtsMatch] = {}
    for rowid, score in best:
        if rowid not in names:
            continue
        doc_id, field, value = names[rowid]
        if doc_id in current and doc_id not in matches:
            matches[doc_id] = FtsMatch(doc_id, 0, 0, score, 0, value, field, ranked)
        if len(matches) >= limit:
            break
    return list(matches.values())


def search_chunks(
    db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None, parsed: bool = False
) -> list[FtsMatch]:
    """Rank chunks of text with BM25 (see RANK_CANDIDATES and COMMON_SHARE for queries matching very many)
    and locate the first matched phrase in each one exactly. `query` is what a user typed, or with
    `parsed` an FTS5 expression from parse_query."""
    fts = query if parsed else parse_query(query).fts
    where, params = _subset(doc_ids, "c.doc_id")
    join = " CROSS JOIN chunks c ON c.id = chunks_fts.rowid" if where else ""
    best, ranked = _best_rows(db, query, "chunks_fts", fts, int(limit), join, where, params)
    if not best:
        return []
    rowids = [r for r, _ in best]
    marks = ",".join("?" * len(rowids))
    rows = db.execute(f"SELECT id, doc_id, char_start FROM chunks WHERE id IN ({marks})", rowids)
    chunks = {r[0]: r[1:] for r in rows}
    # highlight() only for the rows shown: one pass over the range they span (a rowid IN (...) would start
    # the query again for each, expanding a prefix each time), CASE keeping the others unread
    marked = dict(
        _run(
            db,
            query,
            f"SELECT rowid, CASE WHEN rowid IN ({marks}) THEN highlight(chunks_fts, 0, char(2), char(3)) END"
            " FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid BETWEEN ? AND ?",
            [*rowids, fts, min(rowids), max(rowids)],
        )
    )
    current = _current(db, {chunks[r][0] for r in rowids if r in chunks})
    matches = []
    for rowid, score in best:
        if rowid not in chunks or marked.get(rowid) is None or chunks[rowid][0] not in current:
            continue
        doc_id, chunk_start = chunks[rowid]
        start, end, plain = _first_highlight(marked[rowid])
        matches.append(
            FtsMatch(doc_id, chunk_start + start, chunk_start + end, score, chunk_start, plain, "text", ranked)
        )
    return matches


def _first_highlight(marked: str) -> tuple[int, int, str]:
    """Offsets of the first highlighted run in a chunk, in the chunk's own (unmarked) text."""
    open_at = marked.find(_OPEN)
    plain = marked.replace(_OPEN, "").replace(_CLOSE, "")
    if open_at == -1:  # a NOT-only match cannot be highlighted; point at the chunk's start
        return 0, 0, plain
    close_at = marked.find(_CLOSE, open_at)
    return open_at, close_at - 1, plain
