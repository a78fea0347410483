"""The `bench` subcommand: its arguments, and the run from suites (or a question file) to the printed report."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rlm_desktop.bench.suites import FAMILIES, MAX_TASKS, SUITES

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3


class BenchUsageError(ValueError):
    """Wrong bench arguments: the CLI turns it into exit code 2 with the message."""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register `bench` with the run options `ask` takes (same names, same meaning) and its own."""
    p = sub.add_parser(
        "bench",
        parents=parents,
        help="accuracy, cost and time of the configured models on generated RLM task suites",
        description="Ask generated task suites (needle in a haystack, aggregation, pairs, multi-hop; built once per "
        "seed and size as real cases) or your own question file through the RLM with the configured models and "
        "cap, score every answer, and report accuracy, cost (median, p90, max), sub-calls, wall time, cap or "
        "limit stops and citation verification. Real figures need a real endpoint: every task is a paid run.",
    )
    p.add_argument(
        "--suite",
        action="append",
        default=[],
        metavar="NAME",
        help=f"a generated suite: {', '.join(f'{k} (~{v:,} tokens)' for k, v in SUITES.items())}; repeatable "
        "or comma-separated (default small)",
    )
    p.add_argument("--questions", type=Path, metavar="FILE", help="your own YAML or CSV question set, over --case")
    p.add_argument("--seed", type=int, default=1, metavar="N", help="the suites' random seed (default 1)")
    p.add_argument("--tokens", type=int, metavar="N", help="generate the suites at this size instead")
    p.add_argument(
        "--tasks", type=int, default=3, metavar="N", help=f"questions per family, 1 to {MAX_TASKS} (default 3)"
    )
    p.add_argument("--family", action="append", default=[], choices=FAMILIES, help="only these families; repeatable")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also ask each question straight to the root model, the corpus stuffed up to its context window",
    )
    p.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report with plots")
    # The run options of `ask`, under the same names (the CLI builds the run config from them the same way).
    p.add_argument("--price", action="append", default=[], metavar="MODEL=IN:OUT",
                   help="USD per million input:output tokens; repeatable")  # fmt: skip
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--cap", type=float, metavar="USD", help="hard spending cap for each task")
    cap.add_argument("--no-cap", action="store_true", help="run without a spending cap")
    p.add_argument("--max-depth", type=int, metavar="N")
    p.add_argument("--max-iterations", type=int, metavar="N")
    p.add_argument("--max-subcalls", type=int, metavar="N")
    p.add_argument("--max-seconds", type=float, metavar="S", help="wall-clock limit for each task")
    p.add_argument("--concurrency", type=int, metavar="N")
    p.add_argument("--root-max-tokens", type=int, metavar="N")
    p.add_argument("--sub-max-tokens", type=int, metavar="N")
    p.add_argument("--output-chars", type=int, metavar="N")
    p.add_argument("--request-timeout", type=float, metavar="S")
    p.add_argument("--context-window", action="append", default=[], metavar="MODEL=TOKENS")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--allow-weak-isolation", action="store_true")
    p.add_argument("--isolation", choices=["auto", "bwrap", "landlock", "unshare", "rlimits"], default="auto",
                   help=argparse.SUPPRESS)  # fmt: skip
    return p


def _suite_names(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for text in args.suite for n in text.split(",") if n.strip()]
    for name in names:
        if name not in SUITES:
            raise BenchUsageError(f"unknown suite {name!r}: choose from {', '.join(SUITES)}")
    return list(dict.fromkeys(names))


def run_bench(args: argparse.Namespace, home: Path, config: Any, api_key: str) -> int:
    """Prepare the suites, ask every task, print the report; the exit code (0 ran to the end, 1 every task
    failed, 3 stopped by Ctrl-C or SIGTERM)."""
    from rlm_desktop.bench.questions import QuestionFileError, load_questions
    from rlm_desktop.bench.report import build_report, render_html, text_table
    from rlm_desktop.bench.runner import Runner
    from rlm_desktop.bench.suites import prepare_suite
    from rlm_desktop.engine.models import public_url
    from rlm_desktop.paths import case_path

    if not 1 <= args.tasks <= MAX_TASKS:
        raise BenchUsageError(f"--tasks must be from 1 to {MAX_TASKS}")
    names = _suite_names(args)
    if args.questions is not None and (names or args.family or args.tokens is not None):
        raise BenchUsageError("--questions asks your own questions over --case; it takes no --suite, --family or --tokens")
    if args.questions is None and args.case:
        raise BenchUsageError("--case picks the case for --questions; generated suites build their own cases")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    plan: list[tuple[dict[str, Any], Path, list[Any]]] = []
    if args.questions is not None:
        path = case_path(home, args.case or "default")
        if not path.exists():
            raise BenchUsageError(f"no case {path.stem!r} at {path} (ingest files into it first)")
        try:
            tasks = load_questions(args.questions)
        except QuestionFileError as exc:
            raise BenchUsageError(str(exc)) from None
        plan.append(({"name": path.stem, "seed": None, "tokens": None, "case": path.stem,
                      "questions": str(args.questions)}, path, tasks))  # fmt: skip
    else:
        for name in names or ["small"]:
            try:
                suite = prepare_suite(home, name, args.seed, args.tokens, progress)
            except ValueError as exc:
                raise BenchUsageError(str(exc)) from None
            except KeyboardInterrupt:  # nothing is marked built: the next bench starts this suite again
                print(f"rlm-desktop: stopped while building suite {name!r}", file=sys.stderr)
                return EXIT_STOPPED
            except (RuntimeError, OSError) as exc:
                print(f"rlm-desktop: error: could not build suite {name!r}: {exc}", file=sys.stderr)
                return EXIT_FAILED
            families = args.family or list(FAMILIES)
            per_family: dict[str, int] = {}
            tasks = []
            for task in suite.tasks:
                if task.family in families and per_family.get(task.family, 0) < args.tasks:
                    per_family[task.family] = per_family.get(task.family, 0) + 1
                    tasks.append(task)
            plan.append((suite.describe(), suite.case_path, tasks))

    from rlm_desktop.secrets import run_sub_key

    runner = Runner(config, api_key, progress, sub_api_key=run_sub_key(home, config))

    def stop(signum: int, frame: object) -> None:
        runner.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    results: list[dict[str, Any]] = []
    try:
        for suite, path, tasks in plan:
            results.extend(runner.run(path, tasks, suite["name"], baseline=args.baseline))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    cfg = {"root_model": config.root_model, "sub_model": config.sub_model, "endpoint": public_url(config.base_url),
           "cap_usd": config.cap_usd, "baseline": bool(args.baseline)}  # fmt: skip
    report = build_report([s for s, _, _ in plan], results, cfg, runner.stopped.is_set(), runner.aborted)
    if args.html is not None:
        try:
            tmp = args.html.with_name(args.html.name + ".tmp")
            tmp.write_text(render_html(report), encoding="utf-8")
            os.replace(tmp, args.html)
        except OSError as exc:
            print(f"rlm-desktop: error: cannot write the HTML report {args.html}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print(text_table(report))
        if args.html is not None:
            print(f"HTML report: {args.html}")
    if runner.stopped.is_set():
        return EXIT_STOPPED
    if runner.aborted:
        print(f"rlm-desktop: error: benchmark stopped: {runner.aborted}", file=sys.stderr)
        return EXIT_FAILED
    if results and all(r["status"] == "failed" for r in results):
        return EXIT_FAILED
    return EXIT_OK
