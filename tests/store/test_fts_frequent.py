"""A query matching very many passages is never ranked in full: a stop-word search takes its first matches in
case order, a frequent one is ranked among its first RANK_CANDIDATES matches, a rare one is ranked in full."""

from __future__ import annotations

import pytest

from rlm_desktop.store import fts
from rlm_desktop.store.case import Case


@pytest.fixture
def case(tmp_path, monkeypatch):
    monkeypatch.setattr(fts, "RANK_CANDIDATES", 5)
    with Case.open(tmp_path / "c.sqlite") as case:
        for i in range(120):
            # "the" is in every passage; "ledger" in every 16th, more often in some; "zebra" in three
            words = ["the report of day", str(i)]
            if i % 16 == 0:
                words += ["ledger"] * (1 + i % 7) + ["entry"]
            if i in (7, 50, 90):
                words += ["zebra crossing"]
            case.add_text_document(f"doc {i}", " ".join(words) + " filler " * (i % 5) + " the end.")
        yield case


def statements(case, fn):
    seen: list[str] = []
    case.conn.set_trace_callback(seen.append)
    try:
        return fn(), seen
    finally:
        case.conn.set_trace_callback(None)


def reference(case, query: str, bound: int | None = None) -> list[tuple[int, float]]:
    """Every match ranked by BM25, as the search did before it bounded the work (optionally rowid <= bound)."""
    sql = "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?"
    params: list[object] = [query]
    if bound is not None:
        sql += " AND rowid <= ?"
        params.append(bound)
    return case.conn.execute(sql + " ORDER BY bm25(chunks_fts) LIMIT 5", params).fetchall()


def doc_of_chunk(case, rowid: int) -> int:
    return case.conn.execute("SELECT doc_id FROM chunks WHERE id = ?", (rowid,)).fetchone()[0]


def test_a_stop_word_is_not_ranked_its_first_matches_come_in_case_order(case):
    hits, sql = statements(case, lambda: fts.search_chunks(case.conn, "the", 5))
    assert not any("bm25(" in s for s in sql)  # nothing was ranked
    assert [h.doc_id for h in hits] == [1, 2, 3, 4, 5]
    assert all(not h.ranked and h.score == 0.0 for h in hits)
    for h in hits:
        assert case.text(h.doc_id)[h.start : h.end].lower() == "the"  # spans still exact


def test_a_frequent_word_is_ranked_among_its_first_matches_only(case):
    hits, sql = statements(case, lambda: fts.search_chunks(case.conn, "ledger", 5))
    ranking = [s for s in sql if "bm25(" in s]
    assert len(ranking) == 1 and "rowid <= " in ranking[0]
    # 8 passages hold "ledger" (documents 1, 17, 33, ...): the first 5 are ranked, 81, 97 and 113 are not
    fifth = case.conn.execute(
        "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'ledger' ORDER BY rowid LIMIT 1 OFFSET 4"
    ).fetchone()[0]
    expected = reference(case, '"ledger"', fifth)
    assert [(h.doc_id, pytest.approx(h.score)) for h in hits] == [(doc_of_chunk(case, r), s) for r, s in expected]
    assert all(h.ranked for h in hits)
    assert sorted(h.doc_id for h in hits) == [1, 17, 33, 49, 65]
    assert all(case.text(h.doc_id)[h.start : h.end] == "ledger" for h in hits)


def test_a_rare_word_is_ranked_in_full_as_before(case):
    hits, sql = statements(case, lambda: fts.search_chunks(case.conn, '"zebra crossing"', 5))
    assert all("rowid <= " not in s for s in sql if "bm25(" in s)
    expected = reference(case, '"zebra crossing"')
    assert [(h.doc_id, pytest.approx(h.score)) for h in hits] == [(doc_of_chunk(case, r), s) for r, s in expected]
    assert {h.doc_id for h in hits} == {8, 51, 91} and all(h.ranked for h in hits)


def test_a_subset_is_ranked_within_it_and_names_follow_the_same_rule(case):
    subset = list(range(1, 121, 2))  # odd ids: "ledger" is only in documents 1, 17, 33, ... (i % 16 == 0)
    hits = fts.search_chunks(case.conn, "ledger", 50, subset)
    assert hits and {h.doc_id for h in hits} <= set(subset) and all(h.ranked for h in hits)
    names, sql = statements(case, lambda: fts.search_names(case.conn, "doc", 5))
    assert not any("bm25(" in s for s in sql)  # every title holds "doc": a stop word among the names
    assert [m.doc_id for m in names] == [1, 2, 3, 4, 5] and all(m.field == "title" for m in names)
    found = case.search("zebra crossing", 5)  # the one search: still whole and exact
    assert {m.doc_id for m in found} == {8, 51, 91}
