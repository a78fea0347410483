"""Saving a run's steps: a step saved again replaces its row, in its first order."""

from __future__ import annotations

from rlm_desktop.store.case import Case
from rlm_desktop.store.runs import node_rows, save_run

HEADER = {"run_id": "r1", "question": "Q", "status": "running", "started": "2026-11-26T12:00:00Z",
          "cost_usd": 0.0, "cap_usd": None, "answer": ""}


def test_a_step_saved_again_keeps_one_row_with_its_last_data(tmp_path):
    with Case.open(tmp_path / "c.sqlite") as case:
        save_run(case, HEADER, [("n0", None, 0, {"status": "running"}), ("n1", "n0", 1, {"status": "running"})])
        save_run(case, {**HEADER, "status": "completed"}, [("n1", "n0", 1, {"status": "done", "response": "ok"})])
        assert list(node_rows(case, "r1")) == [
            ("n0", None, {"status": "running"}),
            ("n1", "n0", {"status": "done", "response": "ok"}),
        ]
        assert case.conn.execute("SELECT status FROM runs WHERE run_id = 'r1'").fetchone()[0] == "completed"


def test_a_run_saved_again_keeps_the_users_name_for_it_and_needs_no_sqlite_utils(tmp_path):
    from rlm_desktop.store.runs import run_row, set_label

    with Case.open(tmp_path / "c.sqlite") as case:
        save_run(case, HEADER, [])
        assert "db" not in vars(case)  # the upsert is plain SQL: sqlite-utils (and its plugin scan) not made
        set_label(case, "r1", "the March invoices")
        save_run(case, {**HEADER, "status": "completed", "answer": "A", "ended": "2026-11-26T12:01:00Z"}, [])
        row = run_row(case, "r1")
        assert (row.status, row.label, row.record["answer"]) == ("completed", "the March invoices", "A")
        assert case.conn.execute("SELECT count(*), max(ended) FROM runs").fetchone() == (1, "2026-11-26T12:01:00Z")
