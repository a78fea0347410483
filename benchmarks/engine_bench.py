"""Engine benchmark: per-iteration overhead, run start, sub-call fan-out against the ideal, cancel, worker start.

    python -m benchmarks.engine_bench [--case PATH]   (default: the ingest benchmark's 10M-token case)

The scripted fake OpenAI-compatible server runs in its own process (benchmarks/fake_server.py) on 127.0.0.1
with TCP_NODELAY, so its work is not counted as the engine's; the sandbox is the real one. Figures are
medians of repeats, measured between the server's own request timestamps (one monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR / "tests"))

from fake_openai import FakeOpenAIServer  # noqa: E402
from rlm_script import PRICES, ROOT, SUB, Script, repl  # noqa: E402

from benchmarks.fake_server import ServerProcess  # noqa: E402
from rlm_desktop.engine.events import NodeStarted  # noqa: E402
from rlm_desktop.engine.handle import RunHandle  # noqa: E402
from rlm_desktop.engine.rlm import RunConfig, run_rlm  # noqa: E402
from rlm_desktop.sandbox.host import Sandbox  # noqa: E402
from rlm_desktop.store.case import Case  # noqa: E402


def config(server: FakeOpenAIServer, **overrides) -> RunConfig:
    values = dict(
        root_model=ROOT,
        sub_model=SUB,
        base_url=server.base_url,
        cap_usd=100.0,
        price_args=PRICES,
        max_retries=0,
        max_iterations=60,
    )
    values.update(overrides)
    return RunConfig(**values)


def small_case(path: Path) -> Path:
    if not path.exists():
        with Case.open(path) as case:
            for i in range(50):
                case.add_text_document(f"doc {i}", f"Document {i}: payments and invoices. " * 100)
    return path


def iteration_overhead(case_path: Path, turns: int = 40) -> tuple[float, float]:
    """(median engine time per root iteration, run start to first root request), both in seconds.

    An iteration's engine time is from the server finishing one root reply to the next root request
    arriving: reading the reply, running its code in the REPL, saving, events and building the request.
    """
    with ServerProcess([repl(f"x = {i} * 2\nprint(x)") for i in range(turns)] + [repl("FINAL('done')")]) as server:
        started = time.monotonic()
        record = asyncio.run(run_rlm(case_path, "Q", config(server), "k"))
        rows = server.requests()
    assert record["status"] == "completed", record.get("error")
    gaps = [b["arrived"] - a["ended"] for a, b in zip(rows, rows[1:], strict=False)]
    return statistics.median(gaps), rows[0]["arrived"] - started


# A fresh interpreter doing what `rlm-desktop ask` does before its first request: import the CLI and the engine,
# check the machine's isolation, start the run on a RunHandle. It prints when the run started (time.monotonic()).
COLD_CHILD = """
import sys, time
from rlm_desktop import cli  # noqa: F401  (what `rlm-desktop ask` imports before it runs)
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.rlm import RunConfig
from rlm_desktop.sandbox.isolation import check_isolation
url, case, root, sub, prices = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], tuple(sys.argv[5:])
config = RunConfig(root_model=root, sub_model=sub, base_url=url, cap_usd=100.0, price_args=prices, max_retries=0)
check_isolation(config.isolation, config.allow_weak_isolation)
started = time.monotonic()
handle = RunHandle(case, "Q", config, "k")
handle.start()
record = handle.wait(60)
assert record["status"] == "completed", record.get("error")
print(started)
"""


def cold_start(case_path: Path) -> tuple[float, float]:
    """(run start -> first root request, process launch -> first root request) for a process's first run."""
    with ServerProcess([repl("FINAL('done')")]) as server:
        launched = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", COLD_CHILD, server.base_url, str(case_path), ROOT, SUB, *PRICES],
            capture_output=True, text=True, timeout=120, cwd=ROOT_DIR,
        )
        assert proc.returncode == 0, proc.stderr
        first = server.requests()[0]["arrived"]
    return first - float(proc.stdout.split()[-1]), first - launched


# A sub-call's answer as models write them: 1,200 characters, streamed by the fake server in 100 chunks.
LONG_ANSWER = ("The invoice of March lists three payments to the supplier, each approved by the finance office. " * 13)[
    :1200
]


def fan_out(
    case_path: Path, calls: int = 100, latency: float = 0.1, concurrency: int = 8, answer: str = "sub answer"
) -> tuple[float, float, float]:
    """(measured, ideal, engine CPU seconds per sub-call) for one batch of `calls` sub-calls."""
    turns = [
        repl(f"rs = llm_query_batched([f'question {{i}}' for i in range({calls})])\nprint(len(rs))"),
        repl("FINAL('done')"),
    ]
    with ServerProcess(turns, sub_delay_s=latency, sub_answer=answer) as server:
        cpu = time.process_time()
        record = asyncio.run(
            run_rlm(case_path, "Q", config(server, concurrency=concurrency, max_subcalls=calls + 10), "k")
        )
        assert record["status"] == "completed", record.get("error")
        cpu = time.process_time() - cpu
        subs = [r for r in server.requests() if r["model"] == SUB]
    measured = max(r["ended"] for r in subs) - min(r["arrived"] for r in subs)
    ideal = math.ceil(calls / concurrency) * latency
    return measured, ideal, cpu / calls


def cancel_latency(case_path: Path, rounds: int = 5) -> list[float]:
    latencies = []
    for _ in range(rounds):
        with FakeOpenAIServer() as server:
            server.handler = Script(
                [repl("print(1)"), repl("rs = llm_query_batched([f'slow {i}' for i in range(8)])")],
                sub_delay_s=30,
            )
            handle = RunHandle(case_path, "Q", config(server), "k")
            in_flight = threading.Event()
            def on_event(event, in_flight=in_flight):
                if isinstance(event, NodeStarted) and event.node.kind == "llm_query":
                    in_flight.set()

            handle.subscribe(on_event)
            handle.start()
            in_flight.wait(30)
            server.wait_for_requests(2 + 8, timeout_s=10)
            started = time.perf_counter()
            handle.cancel()
            record = handle.wait(10)
            assert record["status"] == "cancelled", record["status"]
            latencies.append(time.perf_counter() - started)
    return latencies


def _descendant_rss_kb(pid: int) -> int:
    """Peak RSS (VmHWM) of the largest process under `pid`: the Python worker inside bwrap/unshare."""
    best, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except OSError:
            continue
    return best


async def worker_start(case_path: Path) -> dict[str, float]:
    started = time.perf_counter()
    sandbox = await Sandbox.start(case_path)
    start_s = time.perf_counter() - started
    result = await sandbox.execute("hits = grep(r'NDL-\\d+')\nprint(len(context), len(hits))")
    rss_kb = _descendant_rss_kb(sandbox.pid)
    await sandbox.close()
    return {
        "start_s": start_s,
        "isolation": sandbox.isolation,
        "first_grep_s": result.elapsed_s,
        "output": result.output.strip(),
        "peak_rss_mb": rss_kb / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case",
        type=Path,
        default=ROOT_DIR / "benchmarks" / "out" / "bench.rlmcase",
        help="a large case for the worker start figures (run benchmarks/run first)",
    )
    parser.add_argument(
        "--scale-out", action="store_true", help="also 1,000 sub-calls at concurrency 16, 64 and 256 (a team cluster)"
    )
    args = parser.parse_args(argv)
    work = ROOT_DIR / "benchmarks" / "out"
    work.mkdir(parents=True, exist_ok=True)
    small = small_case(work / "engine-small.sqlite")

    rows = []
    runs = [iteration_overhead(small) for _ in range(3)]
    per_iter = statistics.median(r[0] for r in runs)
    rows.append(("engine time per root iteration (reply received -> next request)", f"{per_iter * 1000:.1f} ms"))
    start = statistics.median(r[1] for r in runs)
    rows.append(("run start -> first root request", f"{start * 1000:.0f} ms"))
    cold = [cold_start(small) for _ in range(3)]
    rows.append(
        (
            "the same, a process's first run (a fresh `ask`-like process)",
            f"{statistics.median(c[0] for c in cold) * 1000:.0f} ms (process launch -> first request "
            f"{statistics.median(c[1] for c in cold) * 1000:.0f} ms)",
        )
    )
    for concurrency in (16, 8):
        results = [fan_out(small, concurrency=concurrency) for _ in range(3)]
        measured = statistics.median(r[0] for r in results)
        ideal = results[0][1]
        cpu = statistics.median(r[2] for r in results)
        rows.append(
            (
                f"100 sub-calls at 100 ms, concurrency {concurrency}",
                f"{measured:.2f} s vs ideal {ideal:.2f} s ({measured / ideal:.2f}x ideal; "
                f"engine CPU {cpu * 1000:.1f} ms per sub-call)",
            )
        )
    results = [fan_out(small, calls=200, concurrency=16, answer=LONG_ANSWER) for _ in range(3)]
    measured, ideal = statistics.median(r[0] for r in results), results[0][1]
    rows.append(
        (
            "200 sub-calls at 100 ms, concurrency 16, 1,200-char answers streamed in 100 chunks",
            f"{measured:.2f} s vs ideal {ideal:.2f} s ({measured / ideal:.2f}x ideal; "
            f"engine CPU {statistics.median(r[2] for r in results) * 1000:.1f} ms per sub-call)",
        )
    )
    if args.scale_out:
        for concurrency in (16, 64, 256):
            measured, ideal, cpu = fan_out(small, calls=1000, concurrency=concurrency)
            rows.append(
                (
                    f"1,000 sub-calls at 100 ms, concurrency {concurrency}",
                    f"{measured:.2f} s vs ideal {ideal:.2f} s ({measured / ideal:.2f}x ideal; "
                    f"{1000 / measured:.0f} calls/s; engine CPU {cpu * 1000:.1f} ms per sub-call)",
                )
            )
    latencies = cancel_latency(small)
    rows.append(
        (
            "cancel latency (5 runs, 8 calls in flight)",
            f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
            f"   {'PASS' if max(latencies) < 0.25 else 'FAIL'} (< 250 ms)",
        )
    )
    if args.case.exists():
        with Case.open(args.case) as case:
            chars = case.conn.execute("SELECT SUM(chars) FROM documents").fetchone()[0]
            case.checkpoint()
        figures = asyncio.run(worker_start(args.case))
        rows.append(
            (
                f"worker start on {chars / 4 / 1e6:.1f}M-token case ({figures['isolation']})",
                f"{figures['start_s'] * 1000:.0f} ms",
            )
        )
        rows.append(
            (
                "first whole-corpus grep in the worker",
                f"{figures['first_grep_s'] * 1000:.0f} ms ({figures['output']})",
            )
        )
        rows.append(("worker peak RSS after loading all text", f"{figures['peak_rss_mb']:.0f} MB"))
    else:
        rows.append(
            ("worker start on a 10M-token case", f"skipped: {args.case} not found (run benchmarks/run)")
        )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
