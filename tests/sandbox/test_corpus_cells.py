"""The REPL over a real case: context, grep, search, cite and quote, in every isolation mode."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from rlm_desktop.sandbox.host import ISOLATIONS, Sandbox, SandboxError
from rlm_desktop.store.case import Case

MEMO = "The quick brown fox paid $500 to Acme Corp on 2021-03-04."
OTHER = "Nothing here.  Acme   corp is fine."


@pytest.fixture(params=ISOLATIONS)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def build_case(tmp_path: Path, keep_writer_open: bool):
    path = tmp_path / "cases" / "c.sqlite"
    path.parent.mkdir()
    case = Case.open(path)
    memo = case.add_text_document("memo", MEMO)
    other = case.add_text_document("other", OTHER)
    if not keep_writer_open:
        case.close()
    return path, case, memo, other


def run_cells(mode: str, tmp_path: Path, case_path: Path, cells: list[str], doc_ids=None):
    async def scenario():
        try:
            sandbox = await Sandbox.start(
                case_path,
                doc_ids,
                {"cell_timeout_s": 5},
                None,
                scratch_dir=tmp_path / "scratch",
                isolation=mode,
                allow_weak=mode == "rlimits",
            )
        except SandboxError as exc:
            pytest.skip(f"isolation {mode} is not available here: {exc}")
        try:
            return [await sandbox.execute(code) for code in cells], sandbox
        finally:
            await sandbox.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("keep_writer_open", [True, False], ids=["wal-live", "checkpointed"])
def test_context_grep_search_over_the_case(mode, tmp_path, keep_writer_open):
    path, case, memo, other = build_case(tmp_path, keep_writer_open)
    cells = [
        "print(len(context), [d.title for d in context])",
        "print([(h.doc_id, h.start, h.end) for h in grep('Acme')])",
        "print([h.doc_id for h in search('fox')])",
        f"print(context.by_id({memo}).text[:9])",
    ]
    results, sandbox = run_cells(mode, tmp_path, path, cells)
    case.close()
    assert sandbox.documents == 2
    assert [r.error for r in results] == [None] * 4
    assert results[0].output == "2 ['memo', 'other']\n"
    assert results[1].output == f"[({memo}, 33, 37), ({other}, 15, 19)]\n"
    assert results[2].output == f"[{memo}]\n"
    assert results[3].output == "The quick\n"


def test_cite_and_quote_register_verified_spans_with_unique_markers(mode, tmp_path):
    path, case, memo, other = build_case(tmp_path, keep_writer_open=False)
    cells = [
        f"a = quote({memo}, 'paid $500')\nb = cite(context.by_id({memo}), 0, 3)\nprint(a, b)",
        f"print(quote({memo}, 'paid $500'), cite({other}, 0, 7))",
        f"quote({other}, 'acme corp')",
        f"cite({memo}, 5, 999)",
        "cite(12345, 0, 1)",
    ]
    results, _ = run_cells(mode, tmp_path, path, cells)
    assert results[0].output == "[c1] [c2]\n"
    assert results[0].citations == [
        {"marker": "[c1]", "doc_id": memo, "start": 20, "end": 29, "quote": "paid $500"},
        {"marker": "[c2]", "doc_id": memo, "start": 0, "end": 3, "quote": "The"},
    ]
    assert results[1].output == "[c1] [c3]\n"  # the same span keeps its marker
    assert [c["marker"] for c in results[1].citations] == ["[c1]", "[c3]"]
    assert results[1].citations[1]["quote"] == OTHER[:7]
    assert "ValueError" in results[2].error and f"cite({other}, 15, 26)" in results[2].error
    assert results[2].citations == []
    assert "document's length" in results[3].error
    assert "no document with id 12345" in results[4].error


def test_a_subset_context_hides_other_documents_and_the_case_stays_read_only(mode, tmp_path):
    path, case, memo, other = build_case(tmp_path, keep_writer_open=False)
    cells = [
        "print([d.id for d in context])",
        f"cite({other}, 0, 3)",
        f"import sqlite3\nsqlite3.connect({str(path)!r}).execute('DELETE FROM documents')",
        f"open({str(path)!r}, 'r+b').write(b'x')",
        "import sys\nprint(sorted(m for m in sys.modules if 'subprocess' in m or 'ctypes' in m))",
    ]
    results, _ = run_cells(mode, tmp_path, path, cells, doc_ids=[memo])
    assert results[0].output == f"[{memo}]\n"
    assert "no document" in results[1].error
    assert results[2].error and results[3].error
    assert results[4].output == "[]\n"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 2
    assert path.read_bytes()[:6] == b"SQLite"


def test_worker_start_failure_reports_the_corpus_error(tmp_path):
    path, case, memo, other = build_case(tmp_path, keep_writer_open=False)
    with pytest.raises(SandboxError, match="no such documents"):
        asyncio.run(Sandbox.start(path, [memo, 9999], {}, None, scratch_dir=tmp_path / "scratch"))


def test_repl_search_takes_what_users_type_and_finds_names(mode, tmp_path):
    path = tmp_path / "cases" / "c.sqlite"
    path.parent.mkdir()
    with Case.open(path) as case:
        memo = case.add_text_document(
            "memo", "FAA-2020-0686: O'Brien (U.S.) wired $50,000 to stefan@datenfreihafen.org re C++."
        )
        greek = case.add_text_document("greek.pdf", "Olives and marble.")
    queries = ["stefan@datenfreihafen.org", "FAA-2020-0686", "O'Brien", "$50,000", "U.S.", "C++"]
    cells = [
        f"print([[(h.doc_id, h.field) for h in search(q)] for q in {queries!r}])",
        "h = search('greek.pdf')[0]\nprint(h.doc_id, h.field, h.start, h.end, repr(h.text), h.snippet())",
        "search('NEAR(a b, x)')",
    ]
    results, _ = run_cells(mode, tmp_path, path, cells)
    assert results[0].error is None and results[1].error is None
    assert results[0].output == repr([[(memo, "text")]] * len(queries)) + "\n"
    assert results[1].output == f"{greek} title 0 0 '' title: greek.pdf\n"
    assert "InvalidQuery" in results[2].error and "must be a whole number" in results[2].error
