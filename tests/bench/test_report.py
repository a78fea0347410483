"""The report's arithmetic: nearest-rank p90 and the long tail, stops by kind, citation rate, baseline, and the table."""

from __future__ import annotations

from rlm_desktop.bench.report import build_report, p90, render_html, text_table


def task(family, cost, status="completed", score=1.0, subcalls=0, cites=(0, 0), baseline=None):
    return {"suite": "small", "family": family, "id": f"{family}-{cost}", "question": "q?", "expected": "a",
            "scoring": "exact", "answer": "a", "score": score, "status": status, "error": None, "run_id": "r1",
            "cost_usd": cost, "subcalls": subcalls, "iterations": 2, "wall_s": 1.5, "citations": cites[0],
            "citations_verified": cites[1], "baseline": baseline}  # fmt: skip


def test_p90_is_nearest_rank():
    assert p90([1.0]) == 1.0
    assert p90([float(v) for v in range(1, 11)]) == 9.0
    assert p90([float(v) for v in range(1, 12)]) == 10.0


def test_summary_shows_the_tail_the_stops_and_the_citation_rate():
    tasks = [task("niah", c, cites=(2, 1)) for c in (0.01, 0.01, 0.02, 0.02, 0.03, 0.03, 0.04, 0.05, 0.06, 0.90)]
    tasks += [task("pairs", 0.5, "cap_reached", 0.0, subcalls=40), task("pairs", 0.1, "limit_reached", 0.5, 3,
              baseline={"score": 1.0, "cost_usd": 0.2, "error": None, "corpus_fraction": 0.25})]  # fmt: skip
    suites = [{"name": "small", "seed": 1, "tokens": 100_000, "case": "bench-small-seed1", "documents": 200}]
    report = build_report(suites, tasks, {"root_model": "r", "sub_model": "s", "endpoint": "e", "cap_usd": 1.0})
    rows = {r["family"]: r for r in report["summary"]}
    assert rows["niah"]["cost_usd"] == {"median": 0.03, "p90": 0.06, "max": 0.9, "total": 1.17}
    assert rows["niah"]["citations"] == {"given": 20, "verified": 10, "rate": 0.5}
    assert rows["pairs"]["stops"] == {"cap_reached": 1, "limit_reached": 1, "cancelled": 0, "failed": 0}
    assert rows["pairs"]["subcalls"] == {"median": 21.5, "max": 40}
    assert rows["pairs"]["accuracy"] == 0.25 and rows["pairs"]["citations"]["rate"] is None
    assert rows["pairs"]["baseline"]["accuracy"] == 1.0 and rows["niah"]["baseline"] is None
    assert rows["all"]["tasks"] == 12
    table = text_table(report)
    assert "small  pairs" in table and "base acc" in table
    pairs_line = next(line for line in table.splitlines() if line.startswith("small  pairs"))
    assert pairs_line.split()[11] == "2"  # stops: a cap and a limit
    page = render_html(report)
    assert page.count("<svg") == 4 and "median $0.0350" in page and "p90 $0.5000" in page
