"""Provenance: which source spans (doc_id, start, end) a sub-call's prompt text was copied from."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

from rlm_desktop.corpus import Corpus
from rlm_desktop.store import queries

PROBE_CHARS = 48  # a probe of ~7 words is selective enough for FTS yet fits inside short excerpts
PROBE_TOKENS = 8
FTS_CANDIDATES = 100  # chunks per probe; rowid order means the lowest doc ids come first
OCCURRENCES_PER_CHUNK = 8
NEARBY_CHARS = 65_536  # how far past the previous span we look in its document before asking FTS
SKIP_MAX = 8  # never skip further than this on a miss, so long unsegmented (CJK) runs are still probed
SCANS_PER_PROMPT = 16  # a scan reads every text, so unsegmented model-written text must not trigger many
SCAN_DOCS = 8  # a full-text scan (probes without whole tokens) stops after this many matching documents
FTS_CACHE_SIZE = 20_000  # probe phrases of repeated prompt templates recur across thousands of sub-calls

# Token characters as FTS5's unicode61 tokenizer sees them (letters and digits; `_` is punctuation to it).
_TOKEN = re.compile(r"[^\W_]+")
_HAS_TOKEN_CHAR = re.compile(r"[^\W_]")


@dataclass(frozen=True)
class SourceSpan:
    """prompt[prompt_start:prompt_end] was copied from corpus.text_of(doc_id)[start:end].

    The two are equal character for character unless `normalized`, in which case they differ only in
    the length and kind of whitespace runs (the excerpt's whitespace was collapsed or replaced)."""

    doc_id: int
    start: int
    end: int
    prompt_start: int
    prompt_end: int
    normalized: bool = False

    @property
    def length(self) -> int:
        return self.prompt_end - self.prompt_start


class Attributor:
    """Finds the source spans of prompts against one corpus; caches FTS lookups across calls.

    Thread-safe (one call at a time), so a single instance can serve an engine's worker threads."""

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        # the corpus owns a read-only connection opened with check_same_thread=False; reuse it
        self._conn: sqlite3.Connection = corpus.connection
        self._members = frozenset(corpus.ids)
        # a subset is filtered in SQL, below SQLite's limit on bound parameters
        self._subset = 0 < len(self._members) <= 30_000 and not corpus.covers_whole_case
        self._lock = threading.Lock()
        self._fts_cache: OrderedDict[str, tuple[tuple[int, int, int], ...] | None] = OrderedDict()
        self._scan_ready = False

    def attribute(self, prompt: str, min_len: int = 16) -> list[SourceSpan]:
        """Maximal, non-overlapping source spans of at least `min_len` characters, in prompt order."""
        with self._lock:
            return _Walk(self, prompt, max(1, min_len)).run()

    # ---- candidate lookups -----------------------------------------------------------------------------

    def fts_chunks(self, tokens: list[str]) -> tuple[tuple[int, int, int], ...] | None:
        """(doc_id, chunk_start, chunk_end) of chunks holding the tokens as a phrase; None if FTS is unusable."""
        # an excerpt cut mid-word starts and ends with partial words, which FTS cannot match: query the
        # inner words, or let the last one be a prefix when there are too few (long ones only: short
        # prefixes expand to huge doclists); the regex check on the chunk then confirms the whole probe
        prefix = False
        if len(tokens) >= 4:
            tokens = tokens[1:-1]
        else:
            tokens = tokens[1:] if len(tokens) >= 2 else tokens
            prefix = len(tokens[-1]) >= 4
        # quoting makes every token a plain term: NEAR, AND, OR, NOT, `*` and `-` lose their meaning
        phrase = '"' + " ".join(tokens) + '"' + (" *" if prefix else "")
        cache = self._fts_cache
        if phrase in cache:
            cache.move_to_end(phrase)
            return cache[phrase]
        try:
            rows = queries.fts_chunk_spans(
                self._conn, phrase, self._members if self._subset else None, FTS_CANDIDATES
            )
            found: tuple[tuple[int, int, int], ...] | None = tuple(
                (d, s, e) for d, s, e in rows if d in self._members
            )
        except sqlite3.OperationalError:
            found = None
        cache[phrase] = found
        if len(cache) > FTS_CACHE_SIZE:
            cache.popitem(last=False)
        return found

    def scan(self, pattern: _Phrase) -> list[tuple[int, _Found]]:
        """Matches of `pattern` in whole texts, lowest doc ids first: the fallback when FTS cannot help."""
        if not self._scan_ready:
            self.corpus.load_all_texts()
            self._scan_ready = True
        found: list[tuple[int, _Found]] = []
        docs = 0
        for doc_id in sorted(self._members):
            hits = []
            for match in pattern.finditer(self.corpus.text_of(doc_id)):
                hits.append((doc_id, match))
                if len(hits) >= OCCURRENCES_PER_CHUNK:
                    break
            if hits:
                found.extend(hits)
                docs += 1
                if docs >= SCAN_DOCS:
                    break
        return found


class _Walk:
    """One left-to-right pass over a prompt: probe, find candidates, extend, keep the best, move on."""

    def __init__(self, owner: Attributor, prompt: str, min_len: int):
        self.owner = owner
        self.text_of = owner.corpus.text_of
        self.prompt = prompt
        self.min_len = min_len
        self.tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(prompt)]
        self.token_starts = [s for s, _ in self.tokens]
        self.scans_left = SCANS_PER_PROMPT

    def run(self) -> list[SourceSpan]:
        prompt, n = self.prompt, len(self.prompt)
        spans: list[SourceSpan] = []
        p = left = 0
        previous: tuple[int, int] | None = None
        while p < n:
            if prompt[p].isspace():
                p += 1
                continue
            span = self.match_at(p, left, previous)
            if span is not None:
                spans.append(span)
                p = left = span.prompt_end
                previous = (span.doc_id, span.end)
                continue
            # skip ahead a word (but not too far into a long unsegmented run)
            k = bisect.bisect_right(self.token_starts, p)
            nxt = self.token_starts[k] if k < len(self.token_starts) else n
            p = min(nxt, p + SKIP_MAX)
        return spans

    def probe(self, p: int) -> tuple[int, int, list[str]]:
        """The probe at p: (start, end, whole tokens); start/end bound the text the pattern is built from."""
        prompt = self.prompt
        window_end = min(len(prompt), p + PROBE_CHARS)
        line_end = prompt.find("\n", p, window_end)
        if line_end != -1 and line_end - p >= self.min_len:
            window_end = line_end  # a line is often one excerpt among instructions or other excerpts
        k = bisect.bisect_left(self.token_starts, p)
        words: list[tuple[int, int]] = []
        while k < len(self.tokens) and len(words) < PROBE_TOKENS:
            start, end = self.tokens[k]
            if end > window_end:
                break
            words.append((start, end))
            k += 1
        if not words:
            return p, window_end, []
        return words[0][0], words[-1][1], [prompt[s:e] for s, e in words]

    def match_at(self, p: int, left: int, previous: tuple[int, int] | None) -> SourceSpan | None:
        prompt = self.prompt
        start, end, words = self.probe(p)
        piece = prompt[start:end].strip()
        if not piece or not _HAS_TOKEN_CHAR.search(piece):
            return None  # punctuation and whitespace alone say nothing about where text came from
        if not words and end - p < self.min_len:
            return None
        start = prompt.index(piece, start)
        pattern = _whitespace_pattern(piece)
        best: SourceSpan | None = None
        if previous is not None:
            # excerpts are often contiguous: look just after the previous span, in its document, first
            doc_id, offset = previous
            text = self.text_of(doc_id)
            match = pattern.search(text, offset, offset + NEARBY_CHARS)
            if match is not None:
                best = self.extend(start, doc_id, text, match.start(), left)
                if best.prompt_end >= start + len(piece):
                    return best if best.length >= self.min_len else None
        chunks = self.owner.fts_chunks(words) if words else None
        if chunks is None:
            if self.scans_left <= 0:
                return best if best is not None and best.length >= self.min_len else None
            self.scans_left -= 1
            candidates = self.owner.scan(pattern)
        else:
            candidates = []
            for doc_id, chunk_start, chunk_end in chunks:
                text = self.text_of(doc_id)
                for i, match in enumerate(pattern.finditer(text, chunk_start, chunk_end)):
                    candidates.append((doc_id, match))
                    if i + 1 >= OCCURRENCES_PER_CHUNK:
                        break
        continuing = previous[0] if previous is not None else None
        for doc_id, match in candidates:
            span = self.extend(start, doc_id, self.text_of(doc_id), match.start(), left)
            if best is None or _rank(span, continuing) < _rank(best, continuing):
                best = span
        if best is None or best.length < self.min_len:
            return None
        return best

    def extend(self, i: int, doc_id: int, text: str, j: int, left: int) -> SourceSpan:
        """Grow the agreement of prompt[i:] and text[j:] both ways, whitespace runs counting as equal."""
        prompt_end, end, forward_normalized = _forward(self.prompt, i, text, j)
        prompt_start, start, backward_normalized = _backward(self.prompt, i, text, j, left)
        return SourceSpan(
            doc_id, start, end, prompt_start, prompt_end, forward_normalized or backward_normalized
        )


def _rank(span: SourceSpan, continuing: int | None) -> tuple[int, int, int, int]:
    """Longest first; on ties the document the previous span came from, then the lowest doc id."""
    return (-span.length, 0 if span.doc_id == continuing else 1, span.doc_id, span.start)


class _Found:
    """Where a phrase was found (the `start()` of a regex match)."""

    __slots__ = ("_start", "_end")

    def __init__(self, start: int, end: int):
        self._start, self._end = start, end

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end


class _Phrase:
    """A piece's words with a run of one or more whitespace characters between each two, as the regular
    expression `word\\s+word...` matches them (`\\s` and str.isspace() are the same set), found with str.find.

    Compiling that expression for each probe cost more than all its searches (every sub-call prompt has its
    own probes: about 0.1 ms a probe, half of the provenance of a short prompt; issue 15)."""

    __slots__ = ("parts",)

    def __init__(self, piece: str):
        self.parts = piece.split()

    def _end_at(self, text: str, i: int, endpos: int) -> int:
        """The end of the phrase starting at text[i] (its first word is there), or -1."""
        j = i + len(self.parts[0])
        for part in self.parts[1:]:
            k = j
            while k < endpos and text[k].isspace():
                k += 1
            if k == j or not text.startswith(part, k, endpos):
                return -1
            j = k + len(part)
        return j

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[_Found]:
        """Non-overlapping occurrences within text[pos:endpos], left to right (as `re.finditer`)."""
        endpos = len(text) if endpos is None else min(endpos, len(text))
        first = self.parts[0]
        i = text.find(first, pos, endpos)
        while i != -1:
            end = self._end_at(text, i, endpos)
            if end != -1:
                yield _Found(i, end)
                i = text.find(first, end, endpos)
            else:
                i = text.find(first, i + 1, endpos)

    def search(self, text: str, pos: int = 0, endpos: int | None = None) -> _Found | None:
        return next(self.finditer(text, pos, endpos), None)


def _whitespace_pattern(piece: str) -> _Phrase:
    return _Phrase(piece)


def _common_prefix(a: str, i: int, b: str, j: int, limit: int) -> int:
    """Length of the common prefix of a[i:] and b[j:], at most `limit`, by galloping slice compares."""
    if limit <= 0 or a[i] != b[j]:
        return 0
    good, step = 1, 32
    while True:
        probe = min(good + step, limit)
        if a[i + good : i + probe] != b[j + good : j + probe]:
            bad = probe
            break
        good = probe
        if good == limit:
            return limit
        step *= 2
    while bad - good > 1:  # invariant: the first `good` agree, the first `bad` do not
        mid = (good + bad) // 2
        if a[i + good : i + mid] == b[j + good : j + mid]:
            good = mid
        else:
            bad = mid
    return good


def _common_suffix(a: str, i: int, b: str, j: int, limit: int) -> int:
    """Length of the common suffix of a[:i] and b[:j], at most `limit`."""
    if limit <= 0 or a[i - 1] != b[j - 1]:
        return 0
    good, step = 1, 32
    while True:
        probe = min(good + step, limit)
        if a[i - probe : i - good] != b[j - probe : j - good]:
            bad = probe
            break
        good = probe
        if good == limit:
            return limit
        step *= 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if a[i - mid : i - good] == b[j - mid : j - good]:
            good = mid
        else:
            bad = mid
    return good


def _forward(a: str, i: int, b: str, j: int) -> tuple[int, int, bool]:
    """Ends (in a and b) of the agreement starting at a[i], b[j]; trailing whitespace is not included."""
    start, na, nb, normalized = i, len(a), len(b), False
    while True:
        k = _common_prefix(a, i, b, j, min(na - i, nb - j))
        i, j = i + k, j + k
        if i < na and j < nb and (a[i].isspace() or b[j].isspace()):
            # runs of unequal length agree on their common head: restart the skip at the run's start
            while i > start and a[i - 1].isspace():
                i, j = i - 1, j - 1
        if i < na and j < nb and a[i].isspace() and b[j].isspace():
            ia, jb = i, j
            while ia < na and a[ia].isspace():
                ia += 1
            while jb < nb and b[jb].isspace():
                jb += 1
            if ia < na and jb < nb and a[ia] == b[jb]:
                normalized = normalized or a[i:ia] != b[j:jb]
                i, j = ia, jb
                continue
        break
    # the last stretch agreed exactly and starts with a non-space, so trailing spaces pair up one to one
    while i > start and a[i - 1].isspace():
        i, j = i - 1, j - 1
    return i, j, normalized


def _backward(a: str, i: int, b: str, j: int, left: int) -> tuple[int, int, bool]:
    """Starts (in a and b) of the agreement ending before a[i], b[j], not going left of a[left]."""
    end, normalized = i, False
    while True:
        k = _common_suffix(a, i, b, j, min(i - left, j))
        i, j = i - k, j - k
        if i > left and j > 0 and (a[i - 1].isspace() or b[j - 1].isspace()):
            while i < end and a[i].isspace():
                i, j = i + 1, j + 1
        if i > left and j > 0 and a[i - 1].isspace() and b[j - 1].isspace():
            ia, jb = i, j
            while ia > left and a[ia - 1].isspace():
                ia -= 1
            while jb > 0 and b[jb - 1].isspace():
                jb -= 1
            if ia > left and jb > 0 and a[ia - 1] == b[jb - 1]:
                normalized = normalized or a[ia:i] != b[jb:j]
                i, j = ia, jb
                continue
        break
    while i < end and a[i].isspace():
        i, j = i + 1, j + 1
    return i, j, normalized


class AttributionQueue:
    """Attributes prompts on one worker thread in batches: the prompts a loop turn asked for go as one job.

    A sub-call's provenance runs beside its model call. Handing each prompt to the thread alone (a future, a
    queue put, a thread wake-up, a loop wake-up) cost about as much as attributing a short prompt; a wave of
    sub-calls starts in one loop turn, so its prompts share one hand-over each way. Only from the loop's thread.
    """

    def __init__(self, attributor: Attributor, pool: Executor, loop: asyncio.AbstractEventLoop):
        self.attributor, self.pool, self.loop = attributor, pool, loop
        self._pending: list[tuple[str, asyncio.Future[list[SourceSpan]]]] = []

    def spans(self, prompt: str) -> asyncio.Future[list[SourceSpan]]:
        """A future of `prompt`'s source spans (or of the error attributing it raised)."""
        future: asyncio.Future[list[SourceSpan]] = self.loop.create_future()
        if not self._pending:
            self.loop.call_soon(self._submit)  # after this turn, with the wave's other prompts
        self._pending.append((prompt, future))
        return future

    def _submit(self) -> None:
        batch, self._pending = self._pending, []
        try:
            self.pool.submit(self._work, batch)
        except RuntimeError as exc:  # the pool was shut down: the run is over
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    def _work(self, batch: list[tuple[str, asyncio.Future[list[SourceSpan]]]]) -> None:
        results: list[tuple[asyncio.Future[list[SourceSpan]], list[SourceSpan] | None, Exception | None]] = []
        for prompt, future in batch:
            try:
                results.append((future, self.attributor.attribute(prompt), None))
            except Exception as exc:
                results.append((future, None, exc))
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for these any more
            self.loop.call_soon_threadsafe(_deliver, results)


def _deliver(results) -> None:
    for future, spans, error in results:
        if future.done():  # cancelled while it waited
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(spans)


_attributors: weakref.WeakKeyDictionary[Corpus, Attributor] = weakref.WeakKeyDictionary()
_attributors_lock = threading.Lock()


def attribute(prompt: str, corpus: Corpus, min_len: int = 16) -> list[SourceSpan]:
    """The source spans `prompt` was made from (see `Attributor.attribute`); reuses one Attributor per corpus."""
    with _attributors_lock:
        attributor = _attributors.get(corpus)
        if attributor is None:
            attributor = _attributors[corpus] = Attributor(corpus)
    return attributor.attribute(prompt, min_len)
