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
    follows: str | None = None  # the previous run of its thread
    label: str | None = None  # the user's name for it
    reserved_usd: float = 0.0  # what its calls in flight had reserved at its last save (a running run's)


def save_run(case: Case, header: dict[str, Any], nodes: Iterable[tuple[str, str | None, int, dict[str, Any]]]) -> None:
    """Upsert a run's header and the given (node id, parent id, order, data) steps in one transaction.

    A run is saved many times while it goes: the first save makes its row, later ones update what
    changes (status, end, cost, answer, record), which sqlite-utils' upsert does by primary key.
    """
    row = {
        "run_id": header["run_id"],
        "question": header["question"],
        "status": header["status"],
        "started": header["started"],
        "ended": header.get("ended"),
        "cost_usd": header["cost_usd"],
        "cap_usd": header["cap_usd"],
        "answer": header["answer"],
        "pid": os.getpid(),
        "follows": header.get("follows"),
        "updated": now_iso(),
        "record": json.dumps(header, ensure_ascii=False),
    }
    with case.transaction():
        # An upsert by primary key in plain SQL (what sqlite-utils' upsert does): a run's first save then needs no
        # sqlite-utils, whose first use in a process loads its plugins (~15 ms before the first model request).
        case.conn.execute(_UPSERT_RUN, tuple(row[column] for column in _RUN_COLUMNS))
        # Plain executemany, not sqlite-utils' upsert_all: a run with many sub-calls saves thousands of steps, and
        # its per-row work (column checks, value conversion, an insert then an update) was most of a save.
        run_id = header["run_id"]
        case.conn.executemany(
            "INSERT INTO run_nodes (run_id, node_id, parent_id, seq, data) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, node_id) DO UPDATE SET parent_id = excluded.parent_id, seq = excluded.seq,"
            " data = excluded.data",
            [
                (run_id, node_id, parent_id, seq, json.dumps(data, ensure_ascii=False))
                for node_id, parent_id, seq, data in nodes
            ],
        )


_RUN_COLUMNS = (
    "run_id", "question", "status", "started", "ended", "cost_usd", "cap_usd", "answer", "pid", "follows", "updated",
    "record",
)  # fmt: skip
_UPSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' for _ in _RUN_COLUMNS)})"
    f" ON CONFLICT (run_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _RUN_COLUMNS[1:])}"
)


def end_abandoned_run(
    case: Case,
    run_id: str,
    status: str,
    error: str,
    cost: tuple[float, float, float] | None = None,
    in_flight_usd: float = 0.0,
) -> bool:
    """Close a run its engine process left `running` when it died or was killed: `status` and `error` into
    its row and record. `cost` is the engine's last (billed, held, held estimate) totals, newer than its
    last save; what its calls in flight had reserved (`in_flight_usd`, or as its last save recorded them if
    more) is counted as held: a server may bill a request the engine never saw end, and a cost is never
    dropped. False when the run had ended."""
    with case.transaction():
        row = case.conn.execute(
            "SELECT record FROM runs WHERE run_id = ? AND status = 'running'", (run_id,)
        ).fetchone()
        if row is None:
            return False
        record = json.loads(row[0])
        billed = float(record.get("cost_billed_usd", record.get("cost_usd")) or 0.0)
        held = float(record.get("cost_held_usd") or 0.0)
        estimate = float(record.get("cost_held_estimate_usd") or 0.0)
        if cost is not None and sum(cost[:2]) >= billed + held:
            billed, held, estimate = cost
        held += max(in_flight_usd, float(record.pop("cost_reserved_usd", 0.0) or 0.0))
        ended = now_iso()
        record.update(
            status=status,
            error=error,
            ended=ended,
            cost_usd=billed + held,
            cost_billed_usd=billed,
            cost_held_usd=held,
            cost_held_estimate_usd=estimate,
        )
        case.conn.execute(
            "UPDATE runs SET status = ?, ended = ?, cost_usd = ?, updated = ?, record = ? WHERE run_id = ?",
            (status, ended, billed + held, ended, json.dumps(record, ensure_ascii=False), run_id),
        )
    return True


def run_rows(case: Case) -> list[RunRow]:
    """Every run, newest first (without their records)."""
    return [
        RunRow(
            r["run_id"], r["question"], r["status"], r["started"], r["cost_usd"], r["pid"],
            follows=r["follows"], label=r["label"], reserved_usd=r["reserved"] or 0.0,
        )
        for r in case.db["runs"].rows_where(
            select="run_id, question, status, started, cost_usd, pid, follows, label,"
            " CASE status WHEN 'running' THEN json_extract(record, '$.cost_reserved_usd') END AS reserved",
            order_by="started desc",
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
        r["run_id"],
        r["question"],
        r["status"],
        r["started"],
        r["cost_usd"],
        r["pid"],
        json.loads(r["record"]),
        follows=r["follows"],
        label=r["label"],
    )


def node_rows(case: Case, run_id: str) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(node id, parent id, data) of a run's steps in the order they were first saved."""
    for r in case.db["run_nodes"].rows_where("run_id = ?", [run_id], order_by="seq"):
        yield r["node_id"], r["parent_id"], json.loads(r["data"])


LABEL_MAX_CHARS = 200


def set_label(case: Case, run_id: str, label: str | None) -> None:
    """Name a run (None or blank: back to its question); KeyError when there is no such run."""
    text = " ".join((label or "").split())
    if len(text) > LABEL_MAX_CHARS:
        raise ValueError(f"a run's name is at most {LABEL_MAX_CHARS} characters")
    with case.transaction():
        cur = case.conn.execute("UPDATE runs SET label = ? WHERE run_id = ?", (text or None, run_id))
    if cur.rowcount != 1:
        raise KeyError(f"no run {run_id!r} in this case")


def delete_run(case: Case, run_id: str) -> int:
    """Delete a run and its steps; its follow-ups then follow the run it followed, so the thread holds.

    Returns how many follow-ups were re-linked. KeyError when there is no such run.
    """
    with case.transaction():
        row = case.conn.execute("SELECT follows FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in this case")
        previous = row[0]
        relinked = case.conn.execute(
            "UPDATE runs SET follows = ?, record = json_set(record, '$.follows', ?) WHERE follows = ?",
            (previous, previous, run_id),
        ).rowcount
        case.conn.execute("DELETE FROM run_nodes WHERE run_id = ?", (run_id,))
        case.conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
    return relinked


def thread_ids(case: Case, run_id: str, limit: int = 1000) -> list[str]:
    """The run and the runs it follows, back to its thread's first: oldest first. KeyError: no such run."""
    chain: list[str] = []
    current: str | None = run_id
    while current is not None and current not in chain and len(chain) < limit:
        row = case.conn.execute("SELECT follows FROM runs WHERE run_id = ?", (current,)).fetchone()
        if row is None:
            if not chain:
                raise KeyError(f"no run {run_id!r} in this case")
            break  # the chain names a run that is gone: the thread starts here
        chain.append(current)
        current = row[0]
    chain.reverse()
    return chain
