"""The runs in a case file: one row per run (its record without the tree) and one per step of its tree."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rlm_desktop.store.case import Case, now_iso


@dataclass(frozen=True)
class RunRow:
    run_id: str
    question: str
    status: str
    started: str
    cost_usd: float
    pid: int | None
    record: dict[str, Any] | None = None  # the saved header (the run record without its tree)


def save_run(case: Case, header: dict[str, Any], nodes: Iterable[tuple[str, str | None, int, dict[str, Any]]]) -> None:
    """Upsert a run's header and the given (node id, parent id, order, data) steps in one transaction.

    A run is saved many times while it goes: the first save makes its row, later ones update what
    changes (status, end, cost, answer, record), which sqlite-utils' upsert does by primary key.
    """
    with case.transaction():
        case.db["runs"].upsert(
            {
                "run_id": header["run_id"],
                "question": header["question"],
                "status": header["status"],
                "started": header["started"],
                "ended": header.get("ended"),
                "cost_usd": header["cost_usd"],
                "cap_usd": header["cap_usd"],
                "answer": header["answer"],
                "pid": os.getpid(),
                "updated": now_iso(),
                "record": json.dumps(header, ensure_ascii=False),
            },
            pk="run_id",
        )
        rows = [
            {
                "run_id": header["run_id"],
                "node_id": node_id,
                "parent_id": parent_id,
                "seq": seq,
                "data": json.dumps(data, ensure_ascii=False),
            }
            for node_id, parent_id, seq, data in nodes
        ]
        if rows:
            case.db["run_nodes"].upsert_all(rows, pk=("run_id", "node_id"))


def run_rows(case: Case) -> list[RunRow]:
    """Every run, newest first (without their records)."""
    return [
        RunRow(r["run_id"], r["question"], r["status"], r["started"], r["cost_usd"], r["pid"])
        for r in case.db["runs"].rows_where(
            select="run_id, question, status, started, cost_usd, pid", order_by="started desc"
        )
    ]


def run_row(case: Case, run_id: str) -> RunRow:
    """One run by its id or a unique prefix of it; KeyError names what is wrong."""
    found = list(case.db["runs"].rows_where("run_id = ?", [run_id]))
    if not found:
        found = list(case.db["runs"].rows_where("run_id LIKE ?", [run_id + "%"], limit=2))
        if len(found) != 1:
            raise KeyError(f"no run {run_id!r} in this case" if not found else f"run id {run_id!r} is ambiguous")
    r = found[0]
    return RunRow(
        r["run_id"], r["question"], r["status"], r["started"], r["cost_usd"], r["pid"], json.loads(r["record"])
    )


def node_rows(case: Case, run_id: str) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(node id, parent id, data) of a run's steps in the order they were first saved."""
    for r in case.db["run_nodes"].rows_where("run_id = ?", [run_id], order_by="seq"):
        yield r["node_id"], r["parent_id"], json.loads(r["data"])
