"""Saving and reading runs in the case file; a crashed run stays readable as a partial record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_desktop.engine.record import node_dict
from rlm_desktop.engine.tree import Node
from rlm_desktop.redact import redact_record
from rlm_desktop.store import runs as stored
from rlm_desktop.store.case import Case
from rlm_desktop.store.runs import node_rows, run_row, run_rows, save_run


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    question: str
    status: str
    started: str
    cost_usd: float
    follows: str | None = None  # the previous run of its thread
    label: str | None = None  # the user's name for the run

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "question": self.question,
            "status": self.status,
            "started": self.started,
            "cost_usd": self.cost_usd,
            "follows": self.follows,
            "label": self.label,
        }


class RunStore:
    """Writes one run into the case through its own connection (the engine thread owns it)."""

    def __init__(self, case_path: str | Path):
        self.case = Case.open(case_path)
        self._seq: dict[str, int] = {}

    def close(self) -> None:
        self.case.close()

    def save(self, header: dict[str, Any], nodes: list[Node]) -> None:
        """Upsert the run's header (the record without its tree) and the given (changed) nodes.

        Everything goes through `redact_record` first: this is the one place runs are written, so no error
        echoing the API key, no key-shaped string and no `base_url` credential ever reaches the case.
        """
        steps = []
        for node in nodes:
            seq = self._seq.setdefault(node.id, len(self._seq))
            data = node_dict(node, children=False)
            steps.append((node.id, node.parent.id if node.parent else None, seq, redact_record(data)))
        save_run(self.case, redact_record(header), steps)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _interrupted(status: str, pid: int | None) -> bool:
    return status == "running" and not _alive(pid)


def list_runs(case: Case) -> list[RunSummary]:
    return [_summary(r) for r in run_rows(case)]


def _summary(row: stored.RunRow) -> RunSummary:
    if _interrupted(row.status, row.pid):  # as load_run reads it: failed, its calls in flight held
        return RunSummary(
            row.run_id, row.question, "failed", row.started, row.cost_usd + row.reserved_usd, row.follows, row.label
        )
    return RunSummary(row.run_id, row.question, row.status, row.started, row.cost_usd, row.follows, row.label)


def threaded(runs: list[RunSummary]) -> list[tuple[RunSummary, int]]:
    """Runs (newest thread first) with each follow-up under the run it follows: (run, depth in its thread)."""
    by_id = {r.run_id: r for r in runs}
    children: dict[str, list[RunSummary]] = {}
    heads = []
    for r in runs:  # newest first
        if r.follows in by_id and r.follows != r.run_id:
            children.setdefault(r.follows, []).append(r)
        else:
            heads.append(r)
    out: list[tuple[RunSummary, int]] = []
    seen: set[str] = set()

    def walk(run: RunSummary, depth: int) -> None:
        if run.run_id in seen:
            return
        seen.add(run.run_id)
        out.append((run, depth))
        for child in reversed(children.get(run.run_id, [])):  # a thread reads oldest first
            walk(child, depth + 1)

    for head in heads:
        walk(head, 0)
    for r in runs:  # a cycle (never made by the app) is still listed
        if r.run_id not in seen:
            walk(r, 0)
    return out


def threads(runs: list[RunSummary]) -> list[tuple[RunSummary, list[RunSummary]]]:
    """Runs grouped by thread: (first run, its follow-ups oldest first), the thread with the newest run first."""
    by_id = {r.run_id: r for r in runs}

    def first_of(run: RunSummary) -> RunSummary:
        seen = {run.run_id}
        while run.follows in by_id and run.follows not in seen:
            run = by_id[run.follows]
            seen.add(run.run_id)
        return run

    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        groups.setdefault(first_of(r).run_id, []).append(r)
    out = []
    for head_id, members in groups.items():
        follow_ups = sorted((r for r in members if r.run_id != head_id), key=lambda r: r.started)
        out.append((by_id[head_id], follow_ups))
    out.sort(key=lambda group: max(r.started for r in (group[0], *group[1])), reverse=True)
    return out


def delete_run(case: Case, run_id: str) -> int:
    """Delete a saved run (not one still running); its follow-ups stay in the thread. Returns how many
    follow-ups were re-linked to the run it followed. KeyError: unknown; ValueError: still running."""
    row = run_row(case, run_id)
    if row.status == "running" and _alive(row.pid):
        raise ValueError(f"run {row.run_id} is still running: stop it first")
    return stored.delete_run(case, row.run_id)


def rename_run(case: Case, run_id: str, label: str | None) -> None:
    """Give a run a name of the user's (blank: none)."""
    stored.set_label(case, run_row(case, run_id).run_id, label)


HISTORY_MAX_RUNS = 50  # the newest runs of a long thread: the REPL's `history` travels in one protocol frame


def thread_history(case: Case, run_id: str, limit: int = HISTORY_MAX_RUNS) -> list[dict[str, Any]]:
    """The thread a follow-up of `run_id` continues (its newest `limit` runs), oldest first: each run's
    question, answer, run id and verified citations (doc_id, start, end, quote, marker). KeyError when the
    run is unknown."""
    history = []
    for rid in stored.thread_ids(case, run_row(case, run_id).run_id)[-limit:]:
        record = run_row(case, rid).record or {}  # the header is enough: the tree is not read
        history.append(
            {
                "run_id": rid,
                "question": record.get("question", ""),
                "answer": record.get("answer", ""),
                "status": record.get("status", ""),
                "citations": [
                    {k: c[k] for k in ("marker", "doc_id", "start", "end", "quote")}
                    for c in record.get("citations") or []
                    if c.get("verified")
                ],
            }
        )
    return history


def load_run(case: Case, run_id: str) -> dict[str, Any]:
    """The saved run record; a run whose process died mid-way reads as `failed` with an explanation."""
    row = run_row(case, run_id)  # KeyError: unknown or ambiguous
    record = dict(row.record or {})
    record["follows"] = row.follows  # runs saved before threads existed follow nothing
    if row.label:
        record["label"] = row.label
    if _interrupted(row.status, row.pid):
        record["status"] = "failed"
        record["error"] = "interrupted: the process running it ended before the run finished"
        # its calls in flight may have been billed: held at what they had reserved, as a stopped call is
        reserved = float(record.pop("cost_reserved_usd", 0.0) or 0.0)
        record["cost_held_usd"] = float(record.get("cost_held_usd") or 0.0) + reserved
        record["cost_usd"] = float(record.get("cost_usd") or 0.0) + reserved
    steps = list(node_rows(case, row.run_id))
    nodes = {node_id: {**data, "children": []} for node_id, _, data in steps}
    root = None
    for node_id, parent_id, _ in steps:
        if parent_id is None:
            root = nodes[node_id]
        elif parent_id in nodes:
            nodes[parent_id]["children"].append(nodes[node_id])
    record["tree"] = root
    return record
