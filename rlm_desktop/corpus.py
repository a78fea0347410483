"""The corpus the RLM programs against: `context`, `Document`, `Hit`, `grep` and `search` (CONTRACTS REPL)."""

from __future__ import annotations

import re
import sqlite3
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote

from rlm_desktop.store import queries
from rlm_desktop.store.fts import search as search_case
from rlm_desktop.store.names import FIELDS


@dataclass(frozen=True)
class Hit:
    """A span of one document: `text` is exactly `context.by_id(doc_id).text[start:end]`.

    A `search` hit on a document's name (`field` "title", "file", "path", "author", "subject", "from", "to",
    "cc" or "bcc" instead of "text") is the empty span at the document's start, with the name in `name`.
    """

    doc_id: int
    start: int
    end: int
    text: str
    score: float | None = None
    _corpus: Corpus | None = field(default=None, repr=False, compare=False)
    field: str = "text"
    name: str | None = None

    def snippet(self, width: int = 80) -> str:
        """The hit with about `width` characters of context on each side, on one line; for a name hit,
        the name that matched ("file path: /cases/greek.pdf")."""
        if self.field != "text":
            label = FIELDS.get(self.field, self.field)
            name = " ".join((self.name or "").split())
            limit = max(2 * width, 40)
            return f"{label}: " + (name if len(name) <= limit else name[: limit - 1] + "…")
        if self._corpus is None:
            return self.text
        full = self._corpus.text_of(self.doc_id)
        left = max(0, self.start - width)
        right = min(len(full), self.end + width)
        body = full[left:right].replace("\n", " ").replace("\f", " ")
        return ("…" if left else "") + body + ("…" if right < len(full) else "")


class Document:
    """One document of the case; `text` loads on first use."""

    __slots__ = ("id", "kind", "title", "path", "parent_id", "meta", "chars", "_corpus", "_pages")

    def __init__(
        self,
        corpus: Corpus,
        id: int,
        kind: str,
        title: str,
        path: str | None,
        parent_id: int | None,
        meta: dict[str, Any],
        chars: int,
    ):
        self._corpus = corpus
        self.id = id
        self.kind = kind
        self.title = title
        self.path = path
        self.parent_id = parent_id
        self.meta = meta
        self.chars = chars
        self._pages: list[tuple[int, int]] | None = None

    @property
    def text(self) -> str:
        return self._corpus.text_of(self.id)

    @property
    def pages(self) -> list[tuple[int, int]]:
        """(start, end) character range of each PDF page, in page order; [] for documents without pages."""
        if self._pages is None:
            self._pages = self._corpus._page_ranges(self.id)
        return self._pages

    def __len__(self) -> int:
        return self.chars

    def __repr__(self) -> str:
        return f"Document(id={self.id}, kind={self.kind!r}, title={self.title!r}, chars={self.chars})"


TEXT_CACHE_BYTES = 256 * 1024 * 1024
"""Texts kept in memory, most recently used first. A 10M-token case fits; a 100M-token one (400M characters)
does not, so a whole-corpus pass streams its texts from the case instead of holding them all (issue 15)."""


class Corpus(Sequence[Document]):
    """The current (not superseded) documents of a case, or a subset of them, read-only."""

    def __init__(
        self, conn: sqlite3.Connection, docs: list[Document] | None = None, cache_bytes: int = TEXT_CACHE_BYTES
    ):
        self._conn = conn
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._cached_bytes = 0
        self.cache_bytes = cache_bytes
        self._docs: list[Document] = docs if docs is not None else []
        self._by_id: dict[int, Document] = {}

    @classmethod
    def open(
        cls, case_path: str | Path, doc_ids: Iterable[int] | None = None, immutable: bool = False
    ) -> Corpus:
        """Open a case file read-only. `immutable=True` is for read-only file systems (the sandbox): SQLite
        then ignores the WAL, so the writer must checkpoint first (`Case.checkpoint()`)."""
        uri = f"file:{quote(str(Path(case_path).absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        corpus = cls(conn)
        corpus._load_catalogue(None if doc_ids is None else list(doc_ids))
        return corpus

    def _load_catalogue(self, doc_ids: list[int] | None) -> None:
        wanted = None if doc_ids is None else set(doc_ids)
        for doc_id, kind, title, parent_id, meta, chars, path in queries.catalogue(self._conn):
            if wanted is not None and doc_id not in wanted:
                continue
            self._docs.append(Document(self, doc_id, kind, title, path, parent_id, meta, chars))
        self._by_id = {d.id: d for d in self._docs}
        self._whole = wanted is None  # a whole-case corpus searches without an id filter
        if wanted is not None:
            missing = wanted - self._by_id.keys()
            if missing:
                raise KeyError(f"no such documents in this case: {sorted(missing)[:10]}")

    # ---- sequence ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._docs)

    @overload
    def __getitem__(self, index: int) -> Document: ...
    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...
    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        return self._docs[index]

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs)

    def __repr__(self) -> str:
        return f"<Corpus of {len(self._docs)} documents, {sum(d.chars for d in self._docs):,} characters>"

    def by_id(self, doc_id: int) -> Document:
        try:
            return self._by_id[int(doc_id)]
        except KeyError:
            raise KeyError(f"no document with id {doc_id} in this context") from None

    @property
    def ids(self) -> list[int]:
        return [d.id for d in self._docs]

    # ---- text ----------------------------------------------------------------------------------------

    def text_of(self, doc_id: int) -> str:
        text = self._texts.get(doc_id)
        if text is not None:
            self._texts.move_to_end(doc_id)
            return text
        found = queries.document_text(self._conn, doc_id)
        if found is None:
            raise KeyError(f"no document with id {doc_id}")
        self._remember(doc_id, found)
        return found

    def _remember(self, doc_id: int, text: str) -> None:
        size = sys.getsizeof(text)  # what the string really holds: 1, 2 or 4 bytes a character
        if size > self.cache_bytes or doc_id in self._texts:
            return
        self._texts[doc_id] = text
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes:
            _, old = self._texts.popitem(last=False)
            self._cached_bytes -= sys.getsizeof(old)

    def texts(self, docs: Iterable[Document | int] | Document | int | None = None) -> Iterator[tuple[Document, str]]:
        """(document, text) for these documents (all by default) in order; the whole corpus streams from
        the case in one query, so memory stays within the cache however large the case is."""
        # a subset is read document by document, and so is a corpus whose texts are all in memory already
        if docs is not None or not self._whole or len(self._texts) >= len(self._docs):
            for doc in self._resolve_docs(docs):
                yield doc, self.text_of(doc.id)
            return
        for doc_id, text in queries.current_texts(self._conn):
            doc = self._by_id.get(doc_id)
            if doc is not None:
                self._remember(doc_id, text)
                yield doc, text

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    def _page_ranges(self, doc_id: int) -> list[tuple[int, int]]:
        return queries.page_ranges(self._conn, doc_id)

    # ---- finding -------------------------------------------------------------------------------------

    def _resolve_docs(self, docs: Iterable[Document | int] | Document | int | None) -> list[Document]:
        if docs is None:
            return self._docs
        if isinstance(docs, Document | int):
            docs = [docs]
        return [d if isinstance(d, Document) else self.by_id(d) for d in docs]

    def grep(
        self,
        pattern: str | re.Pattern[str],
        flags: int = 0,
        docs: Iterable[Document | int] | Document | int | None = None,
        max_hits: int = 1000,
    ) -> list[Hit]:
        """Regex matches over document texts, in document order, at most `max_hits`."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        hits: list[Hit] = []
        for doc, text in self.texts(docs):
            for match in regex.finditer(text):
                if match.end() == match.start():
                    continue  # empty matches (e.g. `x*`) are noise for an investigator
                hits.append(Hit(doc.id, match.start(), match.end(), match.group(0), None, self))
                if len(hits) >= max_hits:
                    return hits
        return hits

    def search(self, query: str, k: int = 20) -> list[Hit]:
        """Ranked hits for what a user typed (words, names, "phrases", AND/OR/NOT, NEAR, prefix*), best
        first: documents whose names match (title, file, path, subject, from, to, cc), then one hit per
        matching passage of text (BM25). See store/fts.search."""
        subset = None if self._whole else self.ids
        matches = search_case(self._conn, query, k, subset)
        hits = []
        for m in matches:
            if m.doc_id not in self._by_id:
                continue  # a mailbox container or other non-corpus document
            if m.field != "text":
                hits.append(Hit(m.doc_id, 0, 0, "", m.score, self, m.field, m.chunk_text))
                continue
            text = m.chunk_text[m.start - m.chunk_start : m.end - m.chunk_start]
            hits.append(Hit(m.doc_id, m.start, m.end, text, m.score, self))
        return hits

    def close(self) -> None:
        self._conn.close()

    @property
    def covers_whole_case(self) -> bool:
        return self._whole

    @property
    def connection(self) -> sqlite3.Connection:
        """The read-only connection (for engine code that queries the FTS index directly)."""
        return self._conn

    def load_all_texts(self) -> None:
        """Read texts now (one query) instead of one by one on first use, as many as the cache holds."""
        for _ in self.texts():
            if self._cached_bytes >= self.cache_bytes * 0.9:
                break
