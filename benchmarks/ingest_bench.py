"""Ingestion and search benchmark: generate a seeded case folder, ingest it, time search and grep, check targets.

    python -m benchmarks.ingest_bench [--scale 1.0 | 100m] [--workdir benchmarks/out] [--profile] [--worker]

Prints a table with PASS/FAIL per target and writes the figures to WORKDIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import queries as q
from benchmarks.baselines import bare_mbox, bare_pdf
from benchmarks.generate import GENERATOR_VERSION, generate

TARGET_RATIO = 0.60
TARGET_P95_SECONDS = 0.050
TARGET_GREP_SECONDS = 2.0
TARGET_RSS_BYTES = 1.5 * 1024**3
REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_is_current(workdir: Path, scale: float, seed: int, mix: str = "default") -> dict[str, Any] | None:
    try:
        manifest = json.loads((workdir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    same = (manifest.get("version"), manifest.get("scale"), manifest.get("seed"), manifest.get("mix", "default")) == (
        GENERATOR_VERSION,
        scale,
        seed,
        mix,
    )
    return manifest if same and (workdir / "data").is_dir() else None


def run_ingest_child(case_path: Path, data_dir: Path, workdir: Path, profile: bool) -> dict[str, Any]:
    for suffix in ("", "-wal", "-shm"):
        Path(str(case_path) + suffix).unlink(missing_ok=True)
    out = workdir / "ingest_child.json"
    command = [sys.executable, "-m", "benchmarks.ingest_child", str(case_path), str(data_dir), str(out)]
    if profile:
        command += ["--profile", str(workdir / "ingest.prof")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=env)
    results = json.loads(out.read_text())
    results["process_seconds"] = time.perf_counter() - started
    return results


def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"scale": args.scale, "seed": args.seed, "mix": args.mix}
    if args.existing:
        return measure_existing(args, workdir, results)
    manifest = None if args.regenerate else _data_is_current(workdir, args.scale, args.seed, args.mix)
    if manifest is None:
        print(f"generating scale {args.scale} ({args.mix} mix) into {workdir / 'data'} ...", flush=True)
        manifest = generate(workdir, args.scale, args.seed, args.jobs, args.mix)
        results["generate_seconds"] = manifest["seconds"]
    else:
        print(f"reusing generated data in {workdir / 'data'}", flush=True)
    results["manifest"] = {k: v for k, v in manifest.items() if k != "needles"}
    needles = manifest["needles"]
    data_dir = workdir / "data"
    pdfs = sorted((data_dir / "pdf").rglob("*.pdf"))
    mboxes = sorted((data_dir / "mbox").glob("*.mbox"))
    results["input_bytes"] = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())

    earlier = _earlier_results(workdir) if args.reuse_baselines else {}
    if "bare_pdf" in earlier and "bare_mbox" in earlier:
        print("baselines: reusing the earlier run's", flush=True)
        results["bare_pdf"], results["bare_mbox"] = earlier["bare_pdf"], earlier["bare_mbox"]
    else:
        print("baselines ...", flush=True)
        results["bare_pdf"] = bare_pdf(pdfs)
        results["bare_mbox"] = bare_mbox(mboxes)

    print("ingesting in a child process ...", flush=True)
    case_path = workdir / "bench.rlmcase"
    results["ingest"] = run_ingest_child(case_path, data_dir, workdir, args.profile)
    return measure_case(args, case_path, data_dir, needles, results)


def _earlier_results(workdir: Path) -> dict[str, Any]:
    try:
        return json.loads((workdir / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def measure_existing(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Measure the case an earlier run ingested, without generating or ingesting again (a 100M ingest takes
    14 minutes): its ingest figures and baselines come from that run's files; the case is opened as the app
    would (migrating it if it is older), then measured."""
    from rlm_desktop.store.case import Case

    case_path = workdir / "bench.rlmcase"
    earlier = workdir / "results.json"
    if not case_path.exists() or not (workdir / "ingest_child.json").exists() or not earlier.exists():
        raise SystemExit(f"--existing needs a case measured before in {workdir} (bench.rlmcase, results.json)")
    before = json.loads(earlier.read_text())
    manifest = json.loads((workdir / "manifest.json").read_text())
    for key in ("manifest", "input_bytes", "bare_pdf", "bare_mbox", "generate_seconds"):
        if key in before:
            results[key] = before[key]
    results["ingest"] = json.loads((workdir / "ingest_child.json").read_text())
    results["existing_case"] = True
    started = time.perf_counter()
    with Case.open(case_path) as case:  # an older case is migrated here, as the app would on opening it
        results["open_and_migrate_seconds"] = time.perf_counter() - started
        case.checkpoint()
    return measure_case(args, case_path, workdir / "data", manifest["needles"], results)


def case_tables(case_path: Path, top: int = 12) -> list[dict[str, Any]]:
    """The largest tables and indexes of the case file (SQLite's dbstat), in MB."""
    import sqlite3

    conn = sqlite3.connect(f"file:{case_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT name, SUM(pgsize), SUM(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT ?", (top,)
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # an SQLite built without dbstat
    finally:
        conn.close()
    return [{"name": n, "mb": size / 2**20, "unused_mb": unused / 2**20} for n, size, unused in rows]


def measure_case(
    args: argparse.Namespace, case_path: Path, data_dir: Path, needles: list[dict[str, Any]], results: dict[str, Any]
) -> dict[str, Any]:
    from rlm_desktop.corpus import Corpus
    from rlm_desktop.store.case import Case

    results["case_bytes"] = sum(
        Path(str(case_path) + s).stat().st_size for s in ("", "-wal") if Path(str(case_path) + s).exists()
    )
    results["case_tables"] = case_tables(case_path)
    print("searching ...", flush=True)
    case = Case.open(case_path)
    try:
        query_list = q.build_queries(case.conn, args.seed, args.queries)
        results["needles_search"] = q.check_needles_search(case, needles, data_dir)
        results["fts_case"] = q.time_queries(case.search, query_list)
    finally:
        case.close()
    started = time.perf_counter()
    corpus = Corpus.open(case_path)
    results["corpus_open_seconds"] = time.perf_counter() - started
    results["corpus_documents"] = len(corpus)
    results["fts_corpus"] = q.time_queries(corpus.search, query_list)
    results["grep"] = q.time_grep(corpus, needles)
    corpus.close()
    if args.worker:
        print("the REPL worker on the case ...", flush=True)
        import asyncio

        from benchmarks.engine_bench import worker_start

        with Case.open(case_path) as case:
            case.checkpoint()
        results["worker"] = asyncio.run(worker_start(case_path))
    reference = args.reference
    if reference is not None and reference.exists():
        results["reference"] = json.loads(reference.read_text())
    return results


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def evaluate(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(label, value, target, passed) rows; passed is None for figures without a target."""
    ing = r["ingest"]
    kinds = ing["kinds"]
    rows: list[tuple[str, str, str, bool | None]] = []
    mb = 1024 * 1024
    total_seconds = sum(k["seconds"] for k in kinds.values())
    m = r["manifest"]["totals"]
    rows.append(
        ("input", f"{r['input_bytes'] / mb:.1f} MB in {sum(t['files'] for t in m.values())} files", "", None)
    )
    rows.append(
        (
            "text stored",
            f"{ing['text_chars'] / 1e6:.1f} M chars (~{ing['text_chars'] / 4e6:.2f} M tokens), "
            f"{ing['documents']} documents, {ing['chunks']} chunks",
            "",
            None,
        )
    )
    if "generate_seconds" in r:
        rows.append(("generate", _fmt_s(r["generate_seconds"]), "", None))
    pdf_s, mbox_s = kinds.get("pdf", {}).get("seconds", 0.0), kinds.get("mbox", {}).get("seconds", 0.0)
    pdf_rate = ing["pdf_pages_top_level"] / pdf_s if pdf_s else 0.0
    bare_pdf_rate = r["bare_pdf"]["pages"] / r["bare_pdf"]["seconds"] if r["bare_pdf"]["seconds"] else 0.0
    mbox_messages = r["manifest"]["totals"].get("mbox", {}).get("messages", 0)
    mbox_rate = mbox_messages / mbox_s if mbox_s else 0.0
    bare_mbox_rate = (
        r["bare_mbox"]["messages"] / r["bare_mbox"]["seconds"] if r["bare_mbox"]["seconds"] else 0.0
    )
    rows.append(
        (
            "ingest PDF",
            f"{ing['pdf_pages_top_level']} pages in {_fmt_s(pdf_s)} = {pdf_rate:.0f} pages/s",
            "",
            None,
        )
    )
    rows.append(
        (
            "bare PyMuPDF get_text",
            f"{r['bare_pdf']['pages']} pages in {_fmt_s(r['bare_pdf']['seconds'])} = {bare_pdf_rate:.0f} pages/s",
            "",
            None,
        )
    )
    pdf_ratio = pdf_rate / bare_pdf_rate if bare_pdf_rate else 0.0
    rows.append(
        ("PDF ingest / bare", f"{pdf_ratio:.0%}", f">= {TARGET_RATIO:.0%}", pdf_ratio >= TARGET_RATIO)
    )
    rows.append(
        (
            "ingest DOCX",
            f"{kinds.get('docx', {}).get('added', 0)} files in {_fmt_s(kinds.get('docx', {}).get('seconds', 0))}",
            "",
            None,
        )
    )
    rows.append(
        ("ingest mbox", f"{mbox_messages} messages in {_fmt_s(mbox_s)} = {mbox_rate:.0f} msg/s", "", None)
    )
    rows.append(
        (
            "bare stdlib mbox",
            f"{r['bare_mbox']['messages']} messages in {_fmt_s(r['bare_mbox']['seconds'])} = {bare_mbox_rate:.0f} msg/s",
            "",
            None,
        )
    )
    mbox_ratio = mbox_rate / bare_mbox_rate if bare_mbox_rate else 0.0
    rows.append(
        ("mbox ingest / bare", f"{mbox_ratio:.0%}", f">= {TARGET_RATIO:.0%}", mbox_ratio >= TARGET_RATIO)
    )
    rows.append(
        (
            "ingest overall",
            f"{_fmt_s(total_seconds)} wall, {r['input_bytes'] / mb / total_seconds:.2f} MB/s input, "
            f"{ing['text_bytes'] / mb / total_seconds:.2f} MB/s text",
            "",
            None,
        )
    )
    failures = sum(k["failed_count"] + k["child_failure_count"] for k in kinds.values())
    rows.append(("ingest failures", f"{failures}", "0", failures == 0))
    rows.append(
        (
            "peak RSS (ingest process)",
            f"{ing['peak_rss'] / mb:.0f} MB",
            "< 1536 MB",
            ing["peak_rss"] < TARGET_RSS_BYTES,
        )
    )
    rows.append(
        (
            "case file / text",
            f"{r['case_bytes'] / mb:.1f} MB / {ing['text_bytes'] / mb:.1f} MB = {r['case_bytes'] / ing['text_bytes']:.2f}x",
            "",
            None,
        )
    )
    for name, key in (("FTS Case.search", "fts_case"), ("FTS Corpus.search", "fts_corpus")):
        f = r[key]
        rows.append(
            (
                f"{name} p50 / p95 ({f['count']} q)",
                f"{_fmt_s(f['overall']['p50'])} / {_fmt_s(f['overall']['p95'])} (max {_fmt_s(f['overall']['max'])})",
                "p95 < 50 ms",
                f["overall"]["p95"] < TARGET_P95_SECONDS,
            )
        )
        for category, c in f["by_category"].items():
            rows.append(
                (
                    f"  {category} ({c['count']})",
                    f"{_fmt_s(c['p50'])} / {_fmt_s(c['p95'])} (max {_fmt_s(c['max'])})",
                    "",
                    None,
                )
            )
    found = sum(1 for n in r["needles_search"] if n["ok"])
    rows.append(
        (
            "needles found by search",
            f"{found} / {len(r['needles_search'])}",
            "all",
            found == len(r["needles_search"]),
        )
    )
    rows.append(
        ("Corpus.open", f"{_fmt_s(r['corpus_open_seconds'])} ({r['corpus_documents']} documents)", "", None)
    )
    for key, label in (
        ("literal_cold", "grep literal, cold (loads texts)"),
        ("literal_warm", "grep literal, warm"),
        ("regex", "grep regex NDL-codes"),
        ("regex_amounts", "grep regex $amounts (all hits)"),
    ):
        g = r["grep"][key]
        hits_ok = g.get("expected") is None or g["hits"] == g["expected"]
        expected = f" (expected {g['expected']})" if "expected" in g else ""
        target = key != "regex_amounts"
        rows.append(
            (
                label,
                f"{_fmt_s(g['seconds'])}, {g['hits']} hits{expected}",
                "< 2 s" if target else "",
                (g["seconds"] < TARGET_GREP_SECONDS and hits_ok) if target else None,
            )
        )
    if "worker" in r:
        w = r["worker"]
        rows.append(
            (
                "REPL worker: start, whole-corpus grep",
                f"{_fmt_s(w['start_s'])}, {_fmt_s(w['first_grep_s'])} ({w['output']})",
                "grep < 5 s",
                w["first_grep_s"] < 5.0,
            )
        )
        rows.append(
            ("REPL worker peak RSS", f"{w['peak_rss_mb']:.0f} MB", "< 1024 MB", w["peak_rss_mb"] < 1024)
        )
    if r["scale"] >= 10:
        ratio = r["case_bytes"] / ing["text_bytes"]
        rows.append(("case file / text (100M)", f"{ratio:.2f}x", "<= 4x", ratio <= 4.0))
        fts = r["fts_case"]["overall"]["p95"]
        rows.append(("FTS p95 (100M)", _fmt_s(fts), "< 100 ms", fts < 0.1))
    ref = r.get("reference")
    if ref and r["scale"] >= 10:
        ref_ing = ref["ingest"]
        ref_rate = ref["input_bytes"] / sum(k["seconds"] for k in ref_ing["kinds"].values())
        rate = r["input_bytes"] / total_seconds
        rows.append(
            (
                "ingest MB/s vs the 10M run",
                f"{rate / mb:.2f} vs {ref_rate / mb:.2f} MB/s = {rate / ref_rate:.0%}",
                ">= 80%",
                rate / ref_rate >= 0.8,
            )
        )
    return rows


def print_table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for label, value, target, passed in rows:
        verdict = "" if passed is None else ("PASS" if passed else "FAIL")
        lines.append(f"{label:<{widths[0]}}  {value:<{widths[1]}}  {target:<{widths[2]}}  {verdict}".rstrip())
    text = "\n".join(lines)
    print(text)
    return text


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        print(f"\n--- ingest profile, top {top} by {order} ---")
        stats.sort_stats(order).print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale",
        default="1.0",
        help="1.0 = about 10M tokens (default); 100m = 100M tokens of a mail-heavy dump in benchmarks/out/100m, "
        "checked against the 10M run's figures",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="generator processes")
    parser.add_argument("--queries", type=int, default=300, help="number of FTS queries timed")
    parser.add_argument("--regenerate", action="store_true", help="regenerate even if matching data exists")
    parser.add_argument("--profile", action="store_true", help="run the ingest under cProfile (slower)")
    parser.add_argument("--mix", choices=["default", "mail"], default=None, help="share of PDFs, mail and DOCX")
    parser.add_argument("--worker", action="store_true", help="also start the REPL worker on the case and grep")
    parser.add_argument(
        "--reuse-baselines",
        action="store_true",
        help="take the bare-library baselines from the work folder's earlier results (at 100M they take 14 minutes)",
    )
    parser.add_argument(
        "--existing",
        action="store_true",
        help="measure the case an earlier run left in the work folder (migrated if older), without generating or "
        "ingesting; ingest figures are that run's",
    )
    args = parser.parse_args(argv)
    args.reference = None
    if str(args.scale).lower() == "100m":
        args.scale, args.mix = 10.0, args.mix or "mail"
        args.worker = True
        args.reference = args.workdir.resolve() / "results.json"  # the 10M run, for throughput per MB
        args.workdir = args.workdir / "100m"
    else:
        args.scale = float(args.scale)
    args.mix = args.mix or "default"
    results = measure(args)
    rows = evaluate(results)
    print()
    results["table"] = print_table(rows)
    results["targets_passed"] = all(passed for *_, passed in rows if passed is not None)
    if results.get("case_tables"):
        print(
            "\nlargest parts of the case: "
            + "; ".join(f"{t['name']} {t['mb']:.0f} MB" for t in results["case_tables"][:8])
        )
    if "open_and_migrate_seconds" in results:
        print(f"existing case opened (and migrated if older) in {_fmt_s(results['open_and_migrate_seconds'])}")
    slow = results["fts_case"]["slowest"][:5]
    print(
        "\nslowest FTS queries (Case.search): "
        + "; ".join(f"{s['query']} {_fmt_s(s['seconds'])}" for s in slow)
    )
    print(f"baseline PDF:  {results['bare_pdf']['what']}")
    print(f"baseline mbox: {results['bare_mbox']['what']}")
    out = args.workdir.resolve() / "results.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    if args.profile:
        print_profile(args.workdir.resolve() / "ingest.prof")
    return 0 if results["targets_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
