"""Search and grep measurements on an ingested case: FTS latency by query kind, needle checks, grep times."""

from __future__ import annotations

import random
import re
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from rlm_desktop.bench.prose import COMMON, COMPANIES, FIRST_NAMES, LAST_NAMES, MONTHS, VOCABULARY

_WORD = re.compile(r"^[a-z]{3,}$")


def _phrases(conn: sqlite3.Connection, rng: random.Random, count: int) -> list[str]:
    """Two- and three-word phrases taken from stored texts, so they exist in the case."""
    max_id = conn.execute("SELECT MAX(id) FROM documents").fetchone()[0] or 0
    phrases: list[str] = []
    attempts = 0
    while len(phrases) < count and attempts < count * 50:
        attempts += 1
        row = conn.execute(
            "SELECT substr(text, 1, 4000) FROM documents WHERE id = ? AND chars > 200",
            (rng.randint(1, max_id),),
        ).fetchone()
        if not row:
            continue
        words = row[0].split()
        if len(words) < 10:
            continue
        at = rng.randrange(len(words) - 3)
        picked = words[at : at + rng.choice((2, 3))]
        if all(_WORD.match(w) for w in picked):
            phrases.append('"' + " ".join(picked) + '"')
    return phrases


def build_queries(conn: sqlite3.Connection, seed: int, total: int = 300) -> list[tuple[str, str]]:
    """(category, FTS5 query) pairs: words across the frequency range, phrases, prefixes, ORs, entities."""
    rng = random.Random(f"{seed}:queries")
    head, mid, tail = VOCABULARY[: len(COMMON)], VOCABULARY[300:3000], VOCABULARY[3000:]
    share = total / 300
    n = lambda k: max(1, round(k * share))  # noqa: E731
    queries: list[tuple[str, str]] = []
    queries += [("word-common", rng.choice(head)) for _ in range(n(40))]
    queries += [("word-mid", rng.choice(mid)) for _ in range(n(40))]
    queries += [("word-rare", rng.choice(tail)) for _ in range(n(20))]
    queries += [("phrase", p) for p in _phrases(conn, rng, n(60))]
    queries += [("prefix", rng.choice(mid + head)[: rng.randint(3, 5)] + "*") for _ in range(n(60))]
    queries += [("or", f"{rng.choice(mid)} OR {rng.choice(mid + head)}") for _ in range(n(30))]
    queries += [("or", f"{rng.choice(LAST_NAMES)} OR {rng.choice(COMPANIES)}") for _ in range(n(20))]
    for _ in range(n(30)):
        roll = rng.random()
        if roll < 0.5:
            queries.append(("entity", f'"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"'))
        elif roll < 0.8:
            queries.append(("entity", f"{rng.choice(COMPANIES)} {rng.choice(mid)}"))
        else:
            queries.append(("entity", f'"{rng.choice(MONTHS)} {rng.randint(1, 28)}"'))
    return [(category, q.replace("'", "")) for category, q in queries]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def time_queries(search: Any, queries: list[tuple[str, str]], limit: int = 20) -> dict[str, Any]:
    """Run every query once (after a short warm-up) and summarise latencies overall and per category."""
    for _, query in queries[:10]:
        search(query, limit)
    timings: list[tuple[float, str, str, int]] = []
    for category, query in queries:
        started = time.perf_counter()
        hits = search(query, limit)
        timings.append((time.perf_counter() - started, category, query, len(hits)))
    by_category: dict[str, list[float]] = {}
    for seconds, category, _, _ in timings:
        by_category.setdefault(category, []).append(seconds)
    return {
        "count": len(timings),
        "overall": _percentiles([t[0] for t in timings]),
        "by_category": {c: {"count": len(v), **_percentiles(v)} for c, v in by_category.items()},
        "slowest": [
            {"seconds": s, "category": c, "query": q, "hits": h}
            for s, c, q, h in sorted(timings, reverse=True)[:8]
        ],
        "zero_hit_queries": sum(1 for t in timings if t[3] == 0),
    }


def check_needles_search(case: Any, needles: list[dict[str, Any]], data_dir: Path) -> list[dict[str, Any]]:
    """Each needle's phrase must come back as the top hit, in a document from the file it was planted in."""
    results = []
    for needle in needles:
        hits = case.search(f'"{needle["phrase"]}"', 5)
        ok, found_in = False, None
        if len(hits) == 1:
            doc_id = hits[0].doc_id
            root = doc_id
            while (parent := case.document(root).parent_id) is not None:
                root = parent
            paths = case.document(root).paths
            found_in = paths[0] if paths else None
            text = case.text(doc_id)[hits[0].start : hits[0].end]
            ok = (
                found_in is not None
                and Path(found_in).resolve() == (data_dir / needle["file"]).resolve()
                and text.lower() in (needle["phrase"], needle["phrase"].split()[0])
            )
        results.append({"host": needle["host"], "hits": len(hits), "found_in": found_in, "ok": ok})
    return results


def time_grep(corpus: Any, needles: list[dict[str, Any]]) -> dict[str, Any]:
    """A literal (cold: loads every text) and two regexes over the whole corpus, with hit-count checks."""
    out: dict[str, Any] = {}
    needle = needles[len(needles) // 2]
    literal = f"{needle['phrase']} {needle['code']}"
    started = time.perf_counter()
    hits = corpus.grep(re.escape(literal))
    out["literal_cold"] = {
        "seconds": time.perf_counter() - started,
        "pattern": literal,
        "hits": len(hits),
        "expected": 1,
    }
    started = time.perf_counter()
    hits = corpus.grep(re.escape(literal))
    out["literal_warm"] = {
        "seconds": time.perf_counter() - started,
        "pattern": literal,
        "hits": len(hits),
        "expected": 1,
    }
    pattern = r"NDL-\d{4}-[A-Z]{3}"
    started = time.perf_counter()
    hits = corpus.grep(pattern)
    out["regex"] = {
        "seconds": time.perf_counter() - started,
        "pattern": pattern,
        "hits": len(hits),
        "expected": len(needles),
    }
    pattern = r"\$\d{1,3}(?:,\d{3})*\.\d{2}"
    started = time.perf_counter()
    hits = corpus.grep(pattern, max_hits=10**9)
    out["regex_amounts"] = {"seconds": time.perf_counter() - started, "pattern": pattern, "hits": len(hits)}
    return out
