"""Chunking text for FTS5 and turning FTS5 matches into exact character offsets."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

CHUNK_TARGET = 1500
CHUNK_MAX = 3000
_OPEN, _CLOSE = "\x02", "\x03"


class InvalidQuery(ValueError):
    """The full-text query is not valid FTS5 syntax."""


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
    doc_id: int
    start: int
    end: int
    score: float  # higher is better (negated BM25)
    chunk_start: int
    chunk_text: str


def search_chunks(
    db: sqlite3.Connection, query: str, limit: int = 20, doc_ids: list[int] | None = None
) -> list[FtsMatch]:
    """Rank chunks with BM25 and locate the first matched phrase in each one exactly."""
    if not query.strip():
        raise InvalidQuery("empty search query")
    sql = (
        "SELECT c.doc_id, c.char_start, bm25(chunks_fts), highlight(chunks_fts, 0, char(2), char(3)) "
        "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
        "JOIN documents d ON d.id = c.doc_id "
        "WHERE chunks_fts MATCH ? AND d.superseded_by IS NULL"
    )
    params: list[object] = [query]
    if doc_ids is not None:
        # a temp table would scale further, but REPL subsets stay in the thousands at most
        sql += f" AND c.doc_id IN ({','.join('?' * len(doc_ids))})" if doc_ids else " AND 0"
        params.extend(doc_ids)
    sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
    params.append(int(limit))
    try:
        rows = db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if not any(word in str(exc) for word in ("locked", "disk", "corrupt", "no such table")):
            raise InvalidQuery(
                f'invalid search query {query!r}: {exc} (FTS5 syntax: words, "phrases", '
                "prefix*, AND/OR/NOT, NEAR(a b, 5))"
            ) from None
        raise
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
