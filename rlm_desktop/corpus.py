"""The corpus the RLM programs against: `context`, `Document`, `Hit`, `grep` and `search` (CONTRACTS REPL)."""

from __future__ import annotations

import re
import sqlite3
import sys
import weakref
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote

from rlm_desktop.store import queries
from rlm_desktop.store.fts import search as search_case
from rlm_desktop.store.metadata import decode_meta
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
    """One document of the case: a light handle; its catalogue fields are read from the case on first use
    (a block of neighbouring documents at a time), its metadata parsed when first asked for, and `text`
    loaded on first use."""

    __slots__ = ("id", "_corpus", "_entry", "_names", "_meta", "_pages", "__weakref__")

    def __init__(self, corpus: Corpus, id: int, entry: queries.Entry | None = None):
        self._corpus = corpus
        self.id = id
        self._entry = entry
        self._names: queries.Names | None = None
        self._meta: dict[str, Any] | None = None
        self._pages: list[tuple[int, int]] | None = None

    def _get_entry(self) -> queries.Entry:
        if self._entry is None:
            self._entry = self._corpus._lookup(self.id, self._corpus._entries, queries.entries, ENTRY_BLOCK)
        return self._entry

    def _get_names(self) -> queries.Names:
        if self._names is None:
            self._names = self._corpus._lookup(self.id, self._corpus._names, queries.names, NAMES_BLOCK)
        return self._names

    @property
    def kind(self) -> str:
        return (self._entry or self._get_entry())[0]

    @property
    def parent_id(self) -> int | None:
        return (self._entry or self._get_entry())[1]

    @property
    def chars(self) -> int:
        return (self._entry or self._get_entry())[2]

    @property
    def title(self) -> str:
        return (self._names or self._get_names())[0]

    @property
    def meta(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = decode_meta((self._names or self._get_names())[1])
        return self._meta

    @property
    def path(self) -> str | None:
        return (self._names or self._get_names())[2]

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


@dataclass(frozen=True)
class Overview:
    """A corpus in figures: how many documents of each kind, their sizes in characters, their date range."""

    documents: int
    kinds: Counter[str]
    total_chars: int
    median_chars: int
    largest_chars: int
    first_date: str | None
    last_date: str | None


TEXT_CACHE_BYTES = 256 * 1024 * 1024
"""Texts kept in memory, most recently used first. A 10M-token case fits; a 100M-token one (400M characters)
does not, so a whole-corpus pass streams its texts from the case instead of holding them all (issue 15)."""

ENTRY_BLOCK = 4096
"""Documents whose kind, parent and size are read together (from an index: a few pages a block)."""
NAMES_BLOCK = 256
"""Documents whose title, metadata and path are read together (from their rows: a few hundred kB a block)."""
BLOCKS_KEPT = 64
HANDLES_PRUNED_AT = 65_536
"""Blocks of each kind kept, most recently used first (about 16,000 documents' titles and metadata)."""


class Corpus(Sequence[Document]):
    """The current (not superseded) documents of a case, or a subset of them, read-only.

    Only the documents' ids are held, as runs of consecutive ids, so opening a case of any size takes one
    index scan and little memory (issue 15: 486,000 documents made a REPL take 25 s and 2 GB when each
    became a Document with its metadata parsed at open). A `Document` is made when one is touched, and is
    the same object as long as anything holds it; its fields are read from the case in blocks.
    """

    def __init__(self, conn: sqlite3.Connection, cache_bytes: int = TEXT_CACHE_BYTES):
        self._conn = conn
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._cached_bytes = 0
        self.cache_bytes = cache_bytes
        self._run_first: list[int] = []  # first id of each run of consecutive member ids
        self._run_at: list[int] = []  # position in the corpus of each run's first id
        self._count = 0
        self._whole = True
        self._handles: dict[int, weakref.ref[Document]] = {}
        self._prune_at = HANDLES_PRUNED_AT
        self._entries: OrderedDict[int, dict[int, queries.Entry]] = OrderedDict()
        self._names: OrderedDict[int, dict[int, queries.Names]] = OrderedDict()

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

    def subset(self, doc_ids: Iterable[int]) -> Corpus:
        """These documents of this corpus (KeyError for any it does not hold), on the same connection: do not
        close it, close this one."""
        wanted = sorted({int(i) for i in doc_ids})
        missing = [i for i in wanted if self._position(i) is None]
        if missing:
            raise KeyError(f"no such documents in this context: {missing[:10]}")
        part = Corpus(self._conn, self.cache_bytes)
        part._set_runs(_runs_of(wanted))
        part._whole = False
        return part

    def _load_catalogue(self, doc_ids: list[int] | None) -> None:
        self._set_runs(queries.current_id_runs(self._conn))
        self._whole = doc_ids is None  # a whole-case corpus searches without an id filter
        if doc_ids is None:
            return
        wanted = sorted({int(i) for i in doc_ids})
        missing = [i for i in wanted if self._position(i) is None]
        if missing:
            raise KeyError(f"no such documents in this case: {missing[:10]}")
        self._set_runs(_runs_of(wanted))

    def _set_runs(self, runs: Iterable[tuple[int, int]]) -> None:
        self._run_first, self._run_at, count = [], [], 0
        for first, last in runs:
            self._run_first.append(first)
            self._run_at.append(count)
            count += last - first + 1
        self._count = count

    def _position(self, doc_id: int) -> int | None:
        """Where document `doc_id` is in this corpus, or None when it is not in it."""
        run = bisect_right(self._run_first, doc_id) - 1
        if run < 0:
            return None
        at = self._run_at[run] + doc_id - self._run_first[run]
        end = self._run_at[run + 1] if run + 1 < len(self._run_at) else self._count
        return at if at < end else None

    def _id_at(self, position: int) -> int:
        run = bisect_right(self._run_at, position) - 1
        return self._run_first[run] + position - self._run_at[run]

    def _document(self, doc_id: int) -> Document:
        """The one Document for `doc_id` while anything holds it (weak references, pruned now and then:
        a WeakValueDictionary costs more than the rest of making a handle)."""
        ref = self._handles.get(doc_id)
        doc = ref() if ref is not None else None
        if doc is None:
            doc = Document(self, doc_id)
            self._handles[doc_id] = weakref.ref(doc)
            if len(self._handles) > self._prune_at:
                self._handles = {k: r for k, r in self._handles.items() if r() is not None}
                self._prune_at = max(HANDLES_PRUNED_AT, 2 * len(self._handles))
        return doc

    def _lookup(self, doc_id: int, cache: OrderedDict[int, dict[int, Any]], read: Any, size: int) -> Any:
        """Document `doc_id`'s part of the catalogue, from the block of `size` ids it is in (read once)."""
        block = doc_id // size
        rows = cache.get(block)
        if rows is None:
            rows = cache[block] = read(self._conn, block * size, block * size + size - 1)
            if len(cache) > BLOCKS_KEPT:
                cache.popitem(last=False)
        else:
            cache.move_to_end(block)
        try:
            return rows[doc_id]
        except KeyError:
            raise KeyError(f"document {doc_id} is no longer in the case") from None

    # ---- sequence ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Document: ...
    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...
    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        if isinstance(index, slice):
            return [self._document(self._id_at(i)) for i in range(self._count)[index]]
        try:
            position = range(self._count)[index]
        except IndexError:
            raise IndexError("context index out of range") from None
        return self._document(self._id_at(position))

    def __iter__(self) -> Iterator[Document]:
        for doc_id in self._iter_ids():
            yield self._document(doc_id)

    def _iter_ids(self) -> Iterator[int]:
        for run, first in enumerate(self._run_first):
            end = self._run_at[run + 1] if run + 1 < len(self._run_at) else self._count
            yield from range(first, first + end - self._run_at[run])

    def __contains__(self, value: object) -> bool:
        return isinstance(value, Document) and value._corpus is self and self._position(value.id) is not None

    def __repr__(self) -> str:
        return f"<Corpus of {len(self)} documents, {self._total_chars():,} characters>"

    def _total_chars(self) -> int:
        if self._whole:
            return queries.current_chars(self._conn)
        return sum(d.chars for d in self)

    def overview(self) -> Overview:
        """What the documents are, in figures (the opening summary a run shows its root model): for the whole
        case from indexes and the emails table, without making a Document for each of them."""
        if not self._whole:
            docs = list(self)
            chars = sorted(d.chars for d in docs)
            dates = sorted(d for d in (doc.meta.get("date") or doc.meta.get("creation_date") for doc in docs) if d)
            return Overview(
                len(docs),
                Counter(d.kind for d in docs),
                sum(chars),
                chars[len(chars) // 2] if chars else 0,
                chars[-1] if chars else 0,
                dates[0] if dates else None,
                dates[-1] if dates else None,
            )
        kinds, total, median, largest = queries.current_figures(self._conn)
        dates = [d for d in queries.current_email_date_range(self._conn) if d]
        for meta in queries.current_other_metas(self._conn):
            found = decode_meta(meta)
            date = found.get("date") or found.get("creation_date")
            if date:
                dates.append(date)
        dates.sort()
        return Overview(
            len(self), Counter(kinds), total, median, largest, dates[0] if dates else None, dates[-1] if dates else None
        )

    def by_id(self, doc_id: int) -> Document:
        try:
            wanted = int(doc_id)
        except (TypeError, ValueError):
            raise KeyError(f"no document with id {doc_id} in this context") from None
        if self._position(wanted) is None:
            raise KeyError(f"no document with id {doc_id} in this context")
        return self._document(wanted)

    @property
    def ids(self) -> list[int]:
        return list(self._iter_ids())

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
        for doc_id, text in self._id_texts(docs):
            yield self._document(doc_id), text

    def _id_texts(self, docs: Iterable[Document | int] | Document | int | None) -> Iterator[tuple[int, str]]:
        """(id, text) as `texts` gives them, without a Document for each (a whole-corpus grep at 100M tokens
        passes 486,000 texts)."""
        # a subset is read document by document, and so is a corpus whose texts are all in memory already
        if docs is not None or not self._whole or len(self._texts) >= len(self):
            ids = self._iter_ids() if docs is None else (doc.id for doc in self._resolve_docs(docs))
            for doc_id in ids:
                yield doc_id, self.text_of(doc_id)
            return
        position = self._position
        for doc_id, text in queries.current_texts(self._conn):
            if position(doc_id) is not None:  # not a document ingested since this corpus opened
                self._remember(doc_id, text)
                yield doc_id, text

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    def _page_ranges(self, doc_id: int) -> list[tuple[int, int]]:
        return queries.page_ranges(self._conn, doc_id)

    # ---- finding -------------------------------------------------------------------------------------

    def _resolve_docs(self, docs: Iterable[Document | int] | Document | int | None) -> Iterable[Document]:
        if docs is None:
            return iter(self)
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
        for doc_id, text in self._id_texts(docs):
            for match in regex.finditer(text):
                if match.end() == match.start():
                    continue  # empty matches (e.g. `x*`) are noise for an investigator
                hits.append(Hit(doc_id, match.start(), match.end(), match.group(0), None, self))
                if len(hits) >= max_hits:
                    return hits
        return hits

    def search(self, query: str, k: int = 20) -> list[Hit]:
        """Ranked hits for what a user typed (words, names, "phrases", AND/OR/NOT, NEAR, prefix*), best
        first: documents whose names match (title, file, path, subject, from, to, cc), then one hit per
        matching passage of text (BM25). A query matching very many passages is ranked among its first 2,000
        matches in case order; a stop-word search ("of", "the and") is not ranked at all: its first matches in
        case order, with score 0. See store/fts.search."""
        subset = None if self._whole else self.ids
        matches = search_case(self._conn, query, k, subset)
        hits = []
        for m in matches:
            if self._position(m.doc_id) is None:
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


def _runs_of(sorted_ids: list[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive ids in an ascending list."""
    runs: list[tuple[int, int]] = []
    for doc_id in sorted_ids:
        if runs and runs[-1][1] == doc_id - 1:
            runs[-1] = (runs[-1][0], doc_id)
        else:
            runs.append((doc_id, doc_id))
    return runs
