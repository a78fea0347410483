"""The benchmark's report: a summary per suite and family, as a plain table, JSON, and HTML with inline SVG plots."""

from __future__ import annotations

import html
import math
import statistics
from typing import Any

STOP_STATUSES = ("cap_reached", "limit_reached", "cancelled", "failed")


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile (with ten tasks or fewer it is the largest or the second largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _spread(values: list[float], digits: int = 6) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "p90": 0.0, "max": 0.0, "total": 0.0}
    return {
        "median": round(statistics.median(values), digits),
        "p90": round(p90(values), digits),
        "max": round(max(values), digits),
        "total": round(sum(values), digits),
    }


def summarize(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of a group of task results (see the README's JSON shape)."""
    given = sum(t["citations"] for t in tasks)
    verified = sum(t["citations_verified"] for t in tasks)
    subcalls = [float(t["subcalls"]) for t in tasks]
    row: dict[str, Any] = {
        "tasks": len(tasks),
        "accuracy": round(statistics.fmean(t["score"] for t in tasks), 4) if tasks else 0.0,
        "cost_usd": _spread([t["cost_usd"] for t in tasks]),
        "subcalls": {"median": statistics.median(subcalls) if tasks else 0, "max": max(subcalls, default=0)},
        "wall_s": _spread([t["wall_s"] for t in tasks], 3),
        "stops": {status: sum(1 for t in tasks if t["status"] == status) for status in STOP_STATUSES},
        "citations": {"given": given, "verified": verified, "rate": round(verified / given, 4) if given else None},
        "baseline": None,
    }
    baselines = [t["baseline"] for t in tasks if t.get("baseline")]
    if baselines:
        row["baseline"] = {
            "accuracy": round(statistics.fmean(b["score"] for b in baselines), 4),
            "cost_usd": _spread([b["cost_usd"] for b in baselines]),
            "errors": sum(1 for b in baselines if b.get("error")),
            "corpus_fraction": round(statistics.fmean(b.get("corpus_fraction", 0.0) for b in baselines), 4),
        }
    return row


def build_report(suites: list[dict[str, Any]], tasks: list[dict[str, Any]], config: dict[str, Any],
                 stopped: bool = False, aborted: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The whole report: suites, config, every task, and a summary per (suite, family) plus each suite's "all".

    `stopped`: Ctrl-C ended it; `aborted`: why it gave up early (tasks kept failing)."""
    summary = []
    for suite in suites:
        mine = [t for t in tasks if t["suite"] == suite["name"]]
        families = list(dict.fromkeys(t["family"] for t in mine))
        for family in families:
            summary.append({"suite": suite["name"], "family": family,
                            **summarize([t for t in mine if t["family"] == family])})  # fmt: skip
        if len(families) > 1:
            summary.append({"suite": suite["name"], "family": "all", **summarize(mine)})
    return {"suites": suites, "config": config, "stopped": stopped, "aborted": aborted, "summary": summary,
            "tasks": tasks}


def _money(value: float) -> str:
    return f"${value:.4f}" if value < 10 else f"${value:,.2f}"


def text_table(report: dict[str, Any]) -> str:
    """The summary as a plain table for the terminal."""
    baseline = any(row["baseline"] for row in report["summary"])
    head = ["suite", "family", "tasks", "accuracy", "cost med", "cost p90", "cost max", "sub med", "sub max",
            "wall med", "stops", "cites ok"]  # fmt: skip
    if baseline:
        head += ["base acc", "base cost"]
    rows = [head]
    for row in report["summary"]:
        stops = row["stops"]["cap_reached"] + row["stops"]["limit_reached"]
        rate = row["citations"]["rate"]
        line = [row["suite"], row["family"], str(row["tasks"]), f"{row['accuracy']:.2f}",
                _money(row["cost_usd"]["median"]), _money(row["cost_usd"]["p90"]), _money(row["cost_usd"]["max"]),
                f"{row['subcalls']['median']:g}", f"{row['subcalls']['max']:g}", f"{row['wall_s']['median']:.1f} s",
                str(stops), "-" if rate is None else f"{rate:.0%}"]  # fmt: skip
        if baseline:
            b = row["baseline"]
            line += ["-", "-"] if b is None else [f"{b['accuracy']:.2f}", _money(b["cost_usd"]["median"])]
        rows.append(line)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    cfg = report["config"]
    total = sum(t["cost_usd"] for t in report["tasks"]) + sum(
        (t["baseline"] or {}).get("cost_usd", 0.0) for t in report["tasks"]
    )
    lines.append("")
    lines.append(f"root {cfg['root_model']}, sub {cfg['sub_model']} at {cfg['endpoint']}; "
                 f"cap {'none' if cfg['cap_usd'] is None else _money(cfg['cap_usd'])} per task; "
                 f"spent {_money(total)} in all")  # fmt: skip
    lines.append("accuracy: mean score (exact and regex 0/1, numbers 0.75^error, sets F1); stops: cap or limit")
    if report.get("stopped"):
        lines.append("stopped before the end: the figures cover the tasks that ran")
    for task in report["tasks"]:
        if task["status"] == "failed":
            lines.append(f"failed: {task['suite']} {task['id']}: {task['error']}")
    return "\n".join(lines)


# ---- HTML with inline SVG -------------------------------------------------------------------------

_COLORS = {"rlm": "#2f6db5", "baseline": "#d08a2b", "line": "#b03030", "grid": "#dddddd", "text": "#222222"}


def _svg_bars(title: str, labels: list[str], series: list[tuple[str, list[float], str]], maximum: float,
              fmt: Any) -> str:  # fmt: skip
    """Horizontal grouped bars: one group per label, one bar per series."""
    bar, gap, left, width = 14, 10, 190, 380
    group = bar * len(series) + gap
    height = 40 + group * len(labels) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold" fill="{_COLORS["text"]}">{html.escape(title)}</text>']  # fmt: skip
    maximum = maximum or 1.0
    for j, (name, _, color) in enumerate(series):  # the legend, top right
        x = left + width - 90 * (len(series) - j)
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="16" font-size="11">{html.escape(name)}</text>')  # fmt: skip
    for tick in range(5):
        x = left + width * tick / 4
        parts.append(f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="{height - 24}" stroke="{_COLORS["grid"]}"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
                     f'{html.escape(fmt(maximum * tick / 4))}</text>')  # fmt: skip
    for i, label in enumerate(labels):
        y0 = 36 + i * group
        parts.append(f'<text x="{left - 6}" y="{y0 + bar * len(series) / 2 + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{html.escape(label)}</text>')  # fmt: skip
        for j, (name, values, color) in enumerate(series):
            value = values[i]
            w = max(0.0, width * value / maximum)
            y = y0 + j * bar
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{color}">'
                         f'<title>{html.escape(name)}: {html.escape(fmt(value))}</title></rect>')  # fmt: skip
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 4}" font-size="10">{html.escape(fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_tail(title: str, values: list[float], fmt: Any) -> str:
    """Every task's value, largest first, with the median (dashed) and p90 (dotted) lines: the long tail at a glance."""
    ordered = sorted(values, reverse=True)
    left, top, width, height = 70, 44, 520, 150
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{top + height + 30}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="16" font-size="14" font-weight="bold" fill="{_COLORS["text"]}">{html.escape(title)}</text>']  # fmt: skip
    if not ordered:
        return "".join(parts) + '<text x="0" y="50" font-size="12">no tasks</text></svg>'
    median, tail = statistics.median(ordered), p90(ordered)
    parts.append(f'<text x="0" y="34" font-size="11" fill="{_COLORS["line"]}">median {html.escape(fmt(median))} '
                 f'(dashed) · p90 {html.escape(fmt(tail))} (dotted) · max {html.escape(fmt(ordered[0]))}</text>')  # fmt: skip
    maximum = ordered[0] or 1.0
    step = width / len(ordered)
    for i, value in enumerate(ordered):
        h = height * value / maximum
        parts.append(f'<rect x="{left + i * step:.1f}" y="{top + height - h:.1f}" width="{max(step - 1, 0.5):.1f}" '
                     f'height="{h:.1f}" fill="{_COLORS["rlm"]}"><title>{html.escape(fmt(value))}</title></rect>')  # fmt: skip
    for value, dash in ((median, "6 4"), (tail, "2 3")):
        y = top + height - height * value / maximum
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="{_COLORS["line"]}" '
                     f'stroke-width="1.5" stroke-dasharray="{dash}"/>')  # fmt: skip
    for value in (maximum, 0.0):
        y = top + height - height * value / maximum
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{html.escape(fmt(value))}</text>')
    parts.append(f'<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" stroke="#888"/>')
    parts.append(f'<text x="{left}" y="{top + height + 16}" font-size="10">{len(ordered)} tasks, largest first</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: the plots, the summary and every task (question, expected, answer, score)."""
    e = html.escape
    rows = [r for r in report["summary"] if r["family"] != "all"] or report["summary"]
    labels = [f"{r['suite']} · {r['family']}" for r in rows]
    series = [("RLM", [r["accuracy"] for r in rows], _COLORS["rlm"])]
    if any(r["baseline"] for r in rows):
        series.append(("baseline", [(r["baseline"] or {}).get("accuracy", 0.0) for r in rows], _COLORS["baseline"]))
    tasks = report["tasks"]
    plots = [
        _svg_bars("Accuracy per family and size", labels, series, 1.0, lambda v: f"{v:.2f}"),
        _svg_tail("Cost per task (USD)", [t["cost_usd"] for t in tasks], lambda v: f"${v:.4f}"),
        _svg_tail("Sub-calls per task", [float(t["subcalls"]) for t in tasks], lambda v: f"{v:g}"),
        _svg_tail("Wall time per task (s)", [t["wall_s"] for t in tasks], lambda v: f"{v:.1f} s"),
    ]
    cfg = report["config"]
    summary_rows = "".join(
        f"<tr><td>{e(r['suite'])}</td><td>{e(r['family'])}</td><td>{r['tasks']}</td><td>{r['accuracy']:.2f}</td>"
        f"<td>{_money(r['cost_usd']['median'])}</td><td>{_money(r['cost_usd']['p90'])}</td>"
        f"<td>{_money(r['cost_usd']['max'])}</td><td>{r['subcalls']['median']:g}</td><td>{r['subcalls']['max']:g}</td>"
        f"<td>{r['wall_s']['median']:.1f} s</td><td>{r['stops']['cap_reached']}</td><td>{r['stops']['limit_reached']}</td>"
        f"<td>{'-' if r['citations']['rate'] is None else format(r['citations']['rate'], '.0%')}</td>"
        f"<td>{'-' if not r['baseline'] else format(r['baseline']['accuracy'], '.2f')}</td></tr>"
        for r in report["summary"]
    )
    task_rows = "".join(
        f"<tr><td>{e(t['suite'])}</td><td>{e(t['id'])}</td><td>{e(t['question'])}</td>"
        f"<td>{e(_expected(t['expected']))}</td><td class='answer'>{e(t['answer'][:600])}</td>"
        f"<td>{t['score']:.2f}</td><td>{e(str(t['status']))}</td><td>{_money(t['cost_usd'])}</td>"
        f"<td>{t['subcalls']}</td><td>{t['wall_s']:.1f}</td><td><code>{e(str(t['run_id']))}</code></td></tr>"
        for t in tasks
    )
    stopped = "<p><b>Stopped before the end</b>: the figures cover the tasks that ran.</p>" if report["stopped"] else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>RLM Desktop benchmark</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 12px 0 24px; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }} td.answer {{ max-width: 360px; white-space: pre-wrap; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 24px; }}
</style></head><body>
<h1>RLM Desktop benchmark</h1>
<p>Root model <b>{e(cfg['root_model'])}</b>, sub model <b>{e(cfg['sub_model'])}</b> at {e(cfg['endpoint'])};
cap per task {e('none' if cfg['cap_usd'] is None else _money(cfg['cap_usd']))}.
Suites: {e(', '.join(_suite_label(s) for s in report['suites']))}.</p>
{stopped}
<div class="plots">{''.join(plots)}</div>
<h2>Summary</h2>
<table><tr><th>suite</th><th>family</th><th>tasks</th><th>accuracy</th><th>cost median</th><th>cost p90</th>
<th>cost max</th><th>sub-calls median</th><th>sub-calls max</th><th>wall median</th><th>cap stops</th>
<th>limit stops</th><th>citations verified</th><th>baseline accuracy</th></tr>{summary_rows}</table>
<p>Accuracy is the mean score: exact and regex answers score 0 or 1, numbers 0.75<sup>|error|</sup> (OOLONG),
sets their F1. Every run is saved in its case: <code>rlm-desktop show RUN_ID --case CASE</code>.</p>
<h2>Tasks</h2>
<table><tr><th>suite</th><th>task</th><th>question</th><th>expected</th><th>answer</th><th>score</th><th>status</th>
<th>cost</th><th>sub-calls</th><th>wall (s)</th><th>run</th></tr>{task_rows}</table>
</body></html>
"""


def _suite_label(suite: dict[str, Any]) -> str:
    if suite.get("questions"):
        return f"{suite['name']} (questions from {suite['questions']})"
    return f"{suite['name']} (seed {suite['seed']}, {suite['tokens']:,} tokens, {suite['documents']:,} documents)"


def _expected(value: str | list[str]) -> str:
    return "; ".join(value) if isinstance(value, list) else value
