"""GUI responsiveness: how long the window's main thread stalls during a large ingest and a busy run,
and how fast Stop ends a run, measured with a 10 ms heartbeat timer on the real window (offscreen).

    python -m benchmarks.gui_bench [--scale 0.1] [--subcalls 300]

Targets (issue 15): during the ingest and a run of 300 sub-calls the GUI thread stalls at most 30 ms, p99
under 16 ms; opening a 20,000-document case never stalls it 50 ms; Stop ends the run within 250 ms. An idle
window's heartbeat is printed too: on a shared machine it is the floor under every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR / "tests"))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from rlm_script import PRICES, ROOT, SUB, repl  # noqa: E402

from benchmarks.fake_server import ServerProcess  # noqa: E402
from benchmarks.generate import generate  # noqa: E402
from rlm_desktop.engine.events import NodeStarted, RunFinished  # noqa: E402
from rlm_desktop.gui.bridge import Heartbeat, configure_gui_thread  # noqa: E402
from rlm_desktop.gui.main_window import MainWindow  # noqa: E402
from rlm_desktop.settings import Settings  # noqa: E402

OUT = ROOT_DIR / "benchmarks" / "out"


def spin_until(predicate, timeout_s: float) -> bool:
    """Run the event loop until `predicate()` holds, as the app waits: blocked in the loop, checking every 10 ms
    (polling processEvents kept the GUI thread always busy, and a busy thread waits longer for a core when the
    machine is shared)."""
    if predicate():
        return True
    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() > deadline else None)
    timer.start()
    loop.exec()
    timer.stop()
    return predicate()


def settle(ms: int = 200) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def make_window(home: Path, server: ServerProcess, stream: bool = True) -> MainWindow:
    prices = dict(p.split("=") for p in PRICES)
    settings = Settings(base_url=server.base_url, root_model=ROOT, sub_model=SUB, cap_usd=50.0, prices=prices)
    settings.stream = stream
    settings.max_iterations = 30
    settings.max_subcalls = 5000
    settings.save(home)
    window = MainWindow(home, settings)
    window.resize(1400, 900)
    window.show()
    window.open_case("bench")
    return window


def measure_ingest(window: MainWindow, data: Path) -> dict:
    beat = Heartbeat(10)
    beat.start()
    started = time.perf_counter()
    done: list[object] = []
    window.ingest.finished.connect(done.append)
    window.ingest_paths([data])
    spin_until(lambda: bool(done), 3600)
    beat.stop()
    report = done[0]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "documents_added": getattr(report, "documents_added", None),
        **beat.summary(),
    }


def measure_run(window: MainWindow, server: ServerProcess, subcalls: int) -> dict:
    batches = max(1, subcalls // 100)
    turns = [repl("print(len(context))")]
    for b in range(batches):
        turns.append(
            repl(
                f"docs = [d for d in context][:100]\n"
                f"rs = llm_query_batched([f'Summarise part {b}.{{i}}: ' + d.text[:3000] for i, d in enumerate(docs)])\n"
                "print(len(rs))"
            )
        )
    turns.append(repl("FINAL('done after ' + str(len(rs)) + ' summaries')"))
    server.set_script(turns, sub_answer="A short summary of the part. " * 5, sub_delay_s=0.02)
    beat = Heartbeat(10)
    nodes: list[object] = []
    finished: list[object] = []
    window.ask_panel.bridge.run_event.connect(
        lambda e: (
            nodes.append(e)
            if isinstance(e, NodeStarted)
            else finished.append(e)
            if isinstance(e, RunFinished)
            else None
        )
    )
    beat.start()
    started = time.perf_counter()
    cpu = time.thread_time()  # the GUI thread's own CPU: unlike the stalls, hardly moved by other load
    window.ask_panel.ask("Summarise every document")
    spin_until(lambda: bool(finished), 900)
    beat.stop()
    cpu = time.thread_time() - cpu
    status = finished[0].status if finished else "timeout"
    return {
        "status": status,
        "seconds": round(time.perf_counter() - started, 1),
        "nodes": len(nodes),
        "tree_rows": window.ask_panel.tree.model.rowCount(),
        "gui_thread_cpu_s": round(cpu, 2),
        **beat.summary(),
    }


def measure_stop(window: MainWindow, server: ServerProcess, rounds: int = 5) -> dict:
    latencies = []
    for _ in range(rounds):
        server.set_script(
            [repl("print(1)"), repl("rs = llm_query_batched([f'slow {i}' for i in range(8)])")], sub_delay_s=30
        )
        started_subcall: list[object] = []
        finished: list[object] = []

        def on_event(e, started_subcall=started_subcall, finished=finished):
            if isinstance(e, NodeStarted) and e.node.kind == "llm_query":
                started_subcall.append(e)
            elif isinstance(e, RunFinished):
                finished.append(e)

        window.ask_panel.bridge.run_event.connect(on_event)
        spin_until(lambda: not window.ask_panel.running, 30)  # the previous run has handed back
        window.ask_panel.ask("A run to stop")
        if not spin_until(lambda started_subcall=started_subcall: bool(started_subcall), 60):
            raise RuntimeError("the run to stop never reached its sub-calls")
        settle(300)
        t0 = time.perf_counter()
        window.act_stop.trigger()
        spin_until(lambda finished=finished: bool(finished), 30)
        latencies.append((time.perf_counter() - t0) * 1000)
        window.ask_panel.bridge.run_event.disconnect(on_event)
        assert finished and finished[0].status == "cancelled", finished
        spin_until(lambda: not window.ask_panel.running, 30)
    latencies.sort()
    return {"median_ms": round(latencies[len(latencies) // 2], 1), "max_ms": round(latencies[-1], 1)}


def write_mailbox(path: Path, messages: int) -> None:
    """An mbox of `messages` short emails in threads of five (In-Reply-To/References), 30 senders."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(messages):
            thread, turn = divmod(i, 5)
            root = f"<t{thread}.0@bench.example>"
            day = 1 + i % 28
            out.write(
                f"From sender{i % 30}@bench.example Mon Jan {day:2d} 10:00:00 2024\n"
                f"From: Sender {i % 30} <sender{i % 30}@bench.example>\n"
                f"To: Team {thread % 7} <team{thread % 7}@bench.example>\n"
                f"Subject: {'Re: ' if turn else ''}Shipment {thread} status\n"
                f"Date: Mon, {day:02d} Jan 2024 10:{turn:02d}:00 +0000\n"
                f"Message-ID: <t{thread}.{turn}@bench.example>\n"
                + (f"In-Reply-To: <t{thread}.{turn - 1}@bench.example>\nReferences: {root}\n" if turn else "")
                + f"\nThe containers of shipment {thread} moved on day {day}; note {i}.\n\n"
            )


def measure_case_open(window: MainWindow, home: Path, tmp: Path, documents: int) -> dict:
    """Open a case of `documents` emails (built beforehand by `ingest`, not timed) with the heartbeat running:
    the GUI thread's longest stall while the document tree is read and shown, and when it was shown."""
    import subprocess

    name = f"open{documents}"
    mbox = tmp / f"{name}.mbox"
    write_mailbox(mbox, documents)
    subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "ingest", str(mbox), "--home", str(home), "--case", name, "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    previous = window.case_name
    beat = Heartbeat(10)
    beat.start()
    started = time.perf_counter()
    QTimer.singleShot(30, lambda: window.open_case(name))
    shown = spin_until(lambda: window.browser.model.tree.document_count >= documents, 120)
    shown_s = time.perf_counter() - started - 0.03
    settle(300)  # the first paint of the tree, the rest of the event loop's turn
    beat.stop()
    result = {"documents": window.browser.model.tree.document_count, "shown_after_s": round(shown_s, 2), **beat.summary()}
    if not shown:
        result["error"] = "the documents were not shown within 120 s"
    if previous:
        window.open_case(previous)
    return result


def measure_idle(seconds: float = 3.0) -> dict:
    """The heartbeat with nothing running: what the shared machine alone costs the GUI thread."""
    beat = Heartbeat(10)
    beat.start()
    settle(int(seconds * 1000))
    beat.stop()
    return beat.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=0.1, help="corpus size; 1.0 = 10M tokens (default 0.1)"
    )
    parser.add_argument("--subcalls", type=int, default=300, help="sub-calls in the busy run (default 300)")
    parser.add_argument("--no-stream", action="store_true", help="ask for whole replies (streaming is the default)")
    parser.add_argument(
        "--open-documents", type=int, default=20_000, help="documents in the case whose opening is timed (default 20,000)"
    )
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication([])
    configure_gui_thread()  # as the app does
    results: dict = {"scale": args.scale}
    # The model server runs in its own process, as a real one would: in this one its threads would compete
    # with the window for the GIL and be counted as the window's stalls.
    with tempfile.TemporaryDirectory() as tmp, ServerProcess([repl("print(1)")]) as server:
        data_root = Path(tmp) / "corpus"
        manifest = generate(data_root, args.scale, jobs=2)
        results["corpus_chars"] = manifest["chars_estimate"]
        os.environ["OPENAI_API_KEY"] = "sk-bench"
        window = make_window(Path(tmp) / "home", server, stream=not args.no_stream)
        results["stream"] = not args.no_stream
        settle()
        results["idle"] = measure_idle()
        print("idle window:", json.dumps(results["idle"]), flush=True)
        results["case_open"] = measure_case_open(window, Path(tmp) / "home", Path(tmp), args.open_documents)
        print("case open:", json.dumps(results["case_open"]), flush=True)
        results["ingest"] = measure_ingest(window, data_root / "data")
        print("ingest:", json.dumps(results["ingest"]), flush=True)
        results["run"] = measure_run(window, server, args.subcalls)
        print("busy run:", json.dumps(results["run"]), flush=True)
        results["stop"] = measure_stop(window, server)
        print("stop:", json.dumps(results["stop"]), flush=True)
        window.shutdown()
        window.close()
    app.processEvents()
    OUT.mkdir(exist_ok=True)
    run, ingest, opened = results["run"], results["ingest"], results["case_open"]
    checks = {
        "busy run: stall max < 30 ms": run["max_ms"] < 30,
        "busy run: stall p99 < 16 ms": run["p99_ms"] < 16,
        "ingest: stall max < 30 ms": ingest["max_ms"] < 30,
        "ingest: stall p99 < 16 ms": ingest["p99_ms"] < 16,
        f"opening a {opened['documents']:,}-document case: stall max < 50 ms": opened["max_ms"] < 50,
        "Stop: median < 250 ms": results["stop"]["median_ms"] < 250,
    }
    results["checks"] = checks
    (OUT / "gui.json").write_text(json.dumps(results, indent=2))
    print(f"idle window (the machine alone): stall max {results['idle']['max_ms']} ms, p99 {results['idle']['p99_ms']} ms")
    for label, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
