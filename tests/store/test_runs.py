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
