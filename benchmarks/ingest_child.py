"""The ingesting process: runs in a fresh interpreter so its peak RSS is the ingest's alone.

    python -m benchmarks.ingest_child CASE DATA_DIR OUT_JSON [--profile STATS_FILE]

Ingests data/pdf, data/docx and data/mbox one after another (so each kind is timed on its own) and writes
timings, counts and ru_maxrss as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

KINDS = ("pdf", "docx", "mbox")


def _rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def run(case_path: Path, data_dir: Path) -> dict:
    from rlm_desktop.ingest.pipeline import ingest
    from rlm_desktop.store.case import Case

    results: dict = {"kinds": {}, "rss_before_ingest": _rss_bytes()}
    case = Case.open(case_path)
    try:
        for kind in KINDS:
            folder = data_dir / kind
            if not folder.exists():
                continue
            events = 0

            def count(_event: object) -> None:
                nonlocal events
                events += 1

            started = time.perf_counter()
            report = ingest(case, [folder], progress=count)
            seconds = time.perf_counter() - started
            results["kinds"][kind] = {
                "seconds": seconds,
                "added": report.added,
                "documents_added": report.documents_added,
                "failed": report.failed[:20],
                "failed_count": len(report.failed),
                "child_failures": report.child_failures[:20],
                "child_failure_count": len(report.child_failures),
                "events": events,
            }
        started = time.perf_counter()
        case.checkpoint()
        results["checkpoint_seconds"] = time.perf_counter() - started
        conn = case.conn
        results["pdf_pages_top_level"] = conn.execute(
            "SELECT COUNT(*) FROM pages p JOIN documents d ON d.id = p.doc_id WHERE d.parent_id IS NULL"
        ).fetchone()[0]
        results["emails"] = conn.execute("SELECT COUNT(*) FROM documents WHERE kind = 'email'").fetchone()[0]
        results["documents"] = case.count_documents()
        results["text_chars"], results["text_bytes"] = conn.execute(
            "SELECT SUM(chars), SUM(LENGTH(CAST(text AS BLOB))) FROM documents"
        ).fetchone()
        results["chunks"] = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    finally:
        case.close()
    results["peak_rss"] = _rss_bytes()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", type=Path, help="run under cProfile and dump the stats here")
    args = parser.parse_args(argv)
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        results = profiler.runcall(run, args.case, args.data_dir)
        profiler.dump_stats(args.profile)
    else:
        results = run(args.case, args.data_dir)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
