"""Saving and reading runs in the case file; a crashed run stays readable as a partial record."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_desktop.engine.tree import Node
from rlm_desktop.redact import redact_record
from rlm_desktop.store.case import Case, now_iso


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    question: str
    status: str
    started: str
    cost_usd: float

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "question": self.question,
            "status": self.status,
            "started": self.started,
            "cost_usd": self.cost_usd,
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
        header = redact_record(header)
        with self.case.transaction():
            self.case.conn.execute(
                "INSERT INTO runs (run_id, question, status, started, ended, cost_usd, cap_usd, answer, pid,"
                " updated, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET status = excluded.status, ended = excluded.ended,"
                " cost_usd = excluded.cost_usd, answer = excluded.answer, updated = excluded.updated,"
                " record = excluded.record",
                (
                    header["run_id"],
                    header["question"],
                    header["status"],
                    header["started"],
                    header.get("ended"),
                    header["cost_usd"],
                    header["cap_usd"],
                    header["answer"],
                    os.getpid(),
                    now_iso(),
                    json.dumps(header, ensure_ascii=False),
                ),
            )
            for node in nodes:
                seq = self._seq.setdefault(node.id, len(self._seq))
                data = node.to_json()
                data.pop("children")
                data = redact_record(data)
                self.case.conn.execute(
                    "INSERT INTO run_nodes (run_id, node_id, parent_id, seq, data) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(run_id, node_id) DO UPDATE SET data = excluded.data",
                    (
                        header["run_id"],
                        node.id,
                        node.parent.id if node.parent else None,
                        seq,
                        json.dumps(data, ensure_ascii=False),
                    ),
                )


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
    rows = case.conn.execute(
        "SELECT run_id, question, status, started, cost_usd, pid FROM runs ORDER BY started DESC"
    )
    return [
        RunSummary(run_id, question, "failed" if _interrupted(status, pid) else status, started, cost)
        for run_id, question, status, started, cost, pid in rows
    ]


def load_run(case: Case, run_id: str) -> dict[str, Any]:
    """The saved run record; a run whose process died mid-way reads as `failed` with an explanation."""
    row = case.conn.execute(
        "SELECT run_id, record, status, pid FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        matches = case.conn.execute("SELECT run_id FROM runs WHERE run_id LIKE ?", (run_id + "%",)).fetchall()
        if len(matches) != 1:
            raise KeyError(
                f"no run {run_id!r} in this case" if not matches else f"run id {run_id!r} is ambiguous"
            )
        return load_run(case, matches[0][0])
    full_id, header, status, pid = row
    record = json.loads(header)
    if _interrupted(status, pid):
        record["status"] = "failed"
        record["error"] = "interrupted: the process running it ended before the run finished"
    rows = case.conn.execute(
        "SELECT node_id, parent_id, data FROM run_nodes WHERE run_id = ? ORDER BY seq", (full_id,)
    ).fetchall()
    nodes = {node_id: {**json.loads(data), "children": []} for node_id, _, data in rows}
    root = None
    for node_id, parent_id, _ in rows:
        if parent_id is None:
            root = nodes[node_id]
        elif parent_id in nodes:
            nodes[parent_id]["children"].append(nodes[node_id])
    record["tree"] = root
    return record
