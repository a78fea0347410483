"""Our engine beside the peer engine, rlms 0.1.3 (alexzhang13/rlm, local REPL), on the same scripted workloads.

    python -m benchmarks.peer_bench [--repeats 3]

The peer is installed into its own throwaway venv (benchmarks/out/peer-venv, never a project dependency) and
runs in a child process; ours runs in this process. Both talk to the same scripted fake OpenAI-compatible
server in its own process (benchmarks/fake_server.py, TCP_NODELAY, chunked keep-alive streams). Repeats
alternate between the engines and figures are medians, so a busy moment of the machine hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR / "tests"))

from rlm_script import PRICES, ROOT, SUB, repl  # noqa: E402

from benchmarks.fake_server import ServerProcess  # noqa: E402
from rlm_desktop.engine.rlm import RunConfig, run_rlm  # noqa: E402
from rlm_desktop.store.case import Case  # noqa: E402

PEER = "rlms==0.1.3"
OUT = ROOT_DIR / "benchmarks" / "out"
VENV = OUT / "peer-venv"
PRICE = {ROOT: (1.25, 10.0), SUB: (0.25, 2.0)}  # the same as PRICES, USD per million tokens in/out


def peer_python() -> Path:
    """The peer's venv, made on first use."""
    python = VENV / "bin" / "python"
    marker = VENV / f".{PEER}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PEER], check=True)
        marker.touch()
    return python


def final(engine: str) -> str:
    return repl("FINAL('done')") if engine == "ours" else repl('answer["content"] = "done"\nanswer["ready"] = True')


class Trial:
    """One workload run by one engine against its own server process: the server's request timings."""

    def __init__(self, engine: str, turns: list[str], sub_delay_s: float = 0.0, report_cost: bool = False,
                 sub_answer: str = "sub answer"):
        self.engine = engine
        self.server = ServerProcess(turns, sub_delay_s=sub_delay_s, sub_answer=sub_answer,
                                    report_cost=PRICE if report_cost else None)

    def run(self, *, concurrency: int = 16, cap: float | None = None, case: Path, context_file: Path | None = None,
            max_iterations: int = 60) -> dict:
        with self.server as server:
            if self.engine == "ours":
                config = RunConfig(
                    root_model=ROOT, sub_model=SUB, base_url=server.base_url, cap_usd=cap if cap else 100.0,
                    price_args=PRICES, max_retries=0, max_iterations=max_iterations, concurrency=concurrency,
                    max_subcalls=100_000,
                )
                started = time.monotonic()
                record = asyncio.run(run_rlm(case, "Q", config, "k"))
                result = {"started": started, "ended": time.monotonic(), "error": record.get("error"),
                          "cost": record["cost_usd"], "status": record["status"]}
            else:
                spec = {"base_url": server.base_url, "root": ROOT, "sub": SUB, "concurrency": concurrency,
                        "cap": cap, "max_iterations": max_iterations,
                        "context_file": str(context_file) if context_file else None, "context": "peer context"}
                out = subprocess.run([str(peer_python()), str(ROOT_DIR / "benchmarks" / "peer_driver.py"),
                                      json.dumps(spec)], capture_output=True, text=True, cwd=OUT, timeout=600)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{"started"')]
                if not lines:
                    raise RuntimeError(f"the peer failed: {out.stderr[-2000:]}")
                result = json.loads(lines[-1])
                result["status"] = "completed" if result["error"] is None else "stopped"
            result["requests"] = server.requests()
        return result


def iteration(engine: str, case: Path) -> tuple[float, float]:
    turns = [repl(f"x = {i} * 2\nprint(x)") for i in range(40)] + [final(engine)]
    r = Trial(engine, turns).run(case=case)
    roots = [q for q in r["requests"] if q["model"] == ROOT]
    gaps = [b["arrived"] - a["ended"] for a, b in zip(roots, roots[1:], strict=False)]
    return statistics.median(gaps), roots[0]["arrived"] - r["started"]


def fan_out(engine: str, case: Path, concurrency: int, calls: int = 100, latency: float = 0.1) -> float:
    turns = [repl(f"rs = llm_query_batched([f'question {{i}}' for i in range({calls})])\nprint(len(rs))"),
             final(engine)]
    r = Trial(engine, turns, sub_delay_s=latency).run(case=case, concurrency=concurrency)
    subs = [q for q in r["requests"] if q["model"] == SUB]
    assert len(subs) == calls, (engine, len(subs), r.get("error"))
    measured = max(q["ended"] for q in subs) - min(q["arrived"] for q in subs)
    return measured / (math.ceil(calls / concurrency) * latency)


def big_context(engine: str, case: Path, text_file: Path) -> float:
    code = ("hits = grep(r'NEEDLE-\\d+')\nprint(len(hits))" if engine == "ours"
            else "import re\nhits = re.findall(r'NEEDLE-\\d+', context)\nprint(len(hits))")
    r = Trial(engine, [repl(code), final(engine)]).run(case=case, context_file=text_file)
    assert r["status"] == "completed", r
    return r["ended"] - r["started"]


def capped(engine: str, case: Path, report_cost: bool, cap: float) -> tuple[float, str]:
    """(USD the server billed, how the run ended) for a run that wants more than the cap allows."""
    turns = [repl(f"rs = llm_query_batched([f'summarise part {{i}} of batch {turn}: ' + 'x' * 4000 "
                  f"for i in range(20)])\nprint(len(rs))") for turn in range(12)] + [final(engine)]
    # each sub-call answers about 2,000 tokens (~$0.004): a dozen batches of 20 want about $1
    r = Trial(engine, turns, report_cost=report_cost, sub_answer="finding " * 1000).run(case=case, cap=cap)
    billed = 0.0
    for q in r["requests"]:  # what the server billed, at the same prices for both engines
        usage = q.get("usage") or {}
        price_in, price_out = PRICE[q["model"]]
        billed += (usage.get("prompt_tokens", 0) * price_in + usage.get("completion_tokens", 0) * price_out) / 1e6
    return billed, r["status"]


def cases() -> tuple[Path, Path, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    small = OUT / "peer-small.sqlite"
    if not small.exists():
        with Case.open(small) as case:
            for i in range(50):
                case.add_text_document(f"doc {i}", f"Document {i}: payments and invoices. " * 100)
    big, text = OUT / "peer-40mb.sqlite", OUT / "peer-40mb.txt"
    if not big.exists() or not text.exists():
        para = "The quarterly ledger lists payments, invoices and transfers between the subsidiaries. "
        docs = []
        for i in range(400):
            body = para * (100_000 // len(para))
            if i % 40 == 7:
                body += f" NEEDLE-{i} "
            docs.append(body)
        text.write_text("\n\n".join(docs), encoding="utf-8")
        big.unlink(missing_ok=True)
        with Case.open(big) as case:
            for i, body in enumerate(docs):
                case.add_text_document(f"ledger {i}.txt", body)
            case.checkpoint()
    return small, big, text


def median_of(repeats: int, measure: Callable[[str], object]) -> dict[str, list]:
    results: dict[str, list] = {"rlms": [], "ours": []}
    for _ in range(repeats):
        for engine in ("rlms", "ours"):  # alternate, so a busy moment of the machine hits both
            results[engine].append(measure(engine))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["iteration", "fanout", "context", "cap"], help="one figure only")
    args = parser.parse_args(argv)
    peer_python()
    small, big, text = cases()
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, rlms: float, ours: float, unit: str, digits: int = 1) -> None:
        rows.append((name, f"{rlms:.{digits}f} {unit}", f"{ours:.{digits}f} {unit}", f"{rlms / ours:.2f}x"))

    if args.only in (None, "iteration"):
        it = median_of(args.repeats, lambda e: iteration(e, small))
        add("engine time per root iteration", statistics.median(r[0] for r in it["rlms"]) * 1000,
            statistics.median(r[0] for r in it["ours"]) * 1000, "ms")
        add("run start -> first root request", statistics.median(r[1] for r in it["rlms"]) * 1000,
            statistics.median(r[1] for r in it["ours"]) * 1000, "ms", 0)
    if args.only in (None, "fanout"):
        for concurrency in (16, 8):
            fo = median_of(args.repeats, lambda e, c=concurrency: fan_out(e, small, c))
            add(f"100 sub-calls at 100 ms, concurrency {concurrency} (x ideal)", statistics.median(fo["rlms"]),
                statistics.median(fo["ours"]), "x", 2)
        # Where the engine's own CPU per sub-call shows: many calls, many in flight (a team's serving cluster).
        fo = median_of(args.repeats, lambda e: fan_out(e, small, 64, calls=1000))
        add("1,000 sub-calls at 100 ms, concurrency 64 (x ideal)", statistics.median(fo["rlms"]),
            statistics.median(fo["ours"]), "x", 2)
    if args.only in (None, "context"):
        bc = median_of(args.repeats, lambda e: big_context(e, big, text))
        add("40 MB context: a whole-corpus regex, start to answer", statistics.median(bc["rlms"]),
            statistics.median(bc["ours"]), "s", 2)
    if args.only in (None, "cap"):
        cap = 0.30
        for report_cost in (True, False):
            spent = {e: capped(e, small, report_cost, cap) for e in ("rlms", "ours")}
            rows.append((
                f"cap ${cap:.2f}, provider {'reports' if report_cost else 'does not report'} cost: billed",
                f"${spent['rlms'][0]:.4f} ({spent['rlms'][1]})", f"${spent['ours'][0]:.4f} ({spent['ours'][1]})",
                ""))
    width = [max(len(r[i]) for r in rows + [("figure", PEER, "ours", "ratio")]) for i in range(4)]
    for row in [("figure", PEER, "ours", "rlms/ours")] + rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
