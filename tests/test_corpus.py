"""The REPL's corpus: sequence access, lazy text, grep and search spans that are exact."""

from __future__ import annotations

import re

import pytest
from builders import make_pdf

from rlm_desktop.corpus import Corpus
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case


@pytest.fixture
def case_path(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_pdf(src / "contract.pdf", ["Page one: parties.", "Page two: the fee is 12,500 USD."])
    (src / "a.txt").write_text("Alpha mentions the fee of 300 USD and nothing else.\n")
    (src / "b.txt").write_text("Beta: no money here.\n")
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        ingest(case, [src])
    return path


def test_sequence_and_documents(case_path):
    context = Corpus.open(case_path)
    assert len(context) == 3
    assert [d.title for d in context] == ["a.txt", "b.txt", "contract.pdf"]  # files are read in name order
    pdf = context[2]
    assert context.by_id(pdf.id) is pdf
    assert pdf.kind == "pdf" and pdf.path.endswith("contract.pdf") and pdf.parent_id is None
    assert len(pdf.pages) == 2
    start, end = pdf.pages[1]
    assert "12,500" in pdf.text[start:end]
    assert len(pdf) == len(pdf.text)
    with pytest.raises(KeyError, match="no document with id 999"):
        context.by_id(999)


def test_grep_spans_are_exact_and_bounded(case_path):
    context = Corpus.open(case_path)
    hits = context.grep(r"\d[\d,]* USD")
    assert [h.text for h in hits] == ["300 USD", "12,500 USD"]  # document order
    for h in hits:
        assert context.by_id(h.doc_id).text[h.start : h.end] == h.text
        assert h.text in h.snippet(10)
    assert len(context.grep(r"e", max_hits=5)) == 5
    assert context.grep("alpha", flags=re.I)[0].text == "Alpha"
    only_b = context.by_id(context[1].id)
    assert context.grep("USD", docs=[only_b]) == []
    assert context.grep("x*") == []  # empty matches are dropped


def test_search_is_ranked_with_exact_spans(case_path):
    context = Corpus.open(case_path)
    hits = context.search("fee")
    assert len(hits) == 2
    for h in hits:
        assert context.by_id(h.doc_id).text[h.start : h.end].lower() == "fee"
        assert h.score is not None


def test_a_subset_sees_only_its_documents(case_path):
    full = Corpus.open(case_path)
    alpha = next(d for d in full if d.title == "a.txt")
    subset = Corpus.open(case_path, doc_ids=[alpha.id])
    assert len(subset) == 1
    assert [h.doc_id for h in subset.search("fee")] == [alpha.id]
    assert [h.doc_id for h in subset.grep("USD")] == [alpha.id]
    with pytest.raises(KeyError):
        Corpus.open(case_path, doc_ids=[12345])


def test_read_only_and_immutable_views_after_checkpoint(case_path):
    with Case.open(case_path) as case:
        case.checkpoint()
    context = Corpus.open(case_path, immutable=True)
    assert len(context) == 3
    with pytest.raises(Exception, match="readonly"):
        context._conn.execute("DELETE FROM documents")


def test_a_case_larger_than_the_text_cache_streams_with_the_same_results(tmp_path):
    path = tmp_path / "big.sqlite"
    with Case.open(path) as case:
        for i in range(60):
            case.add_text_document(f"ledger {i}.txt", f"Ledger {i}. " + "payments and invoices " * 2000 + f"REF-{i}")
        case.checkpoint()
    whole = Corpus.open(path)
    expected = [(h.doc_id, h.start, h.text) for h in whole.grep(r"REF-\d+")]
    assert len(expected) == 60
    small = Corpus.open(path)
    small.cache_bytes = 200_000  # about four of the 44,000-character texts
    for _ in range(2):
        assert [(h.doc_id, h.start, h.text) for h in small.grep(r"REF-\d+")] == expected
        assert small.cached_bytes <= 200_000
    hit = small.grep(r"REF-7\b")[0]
    assert small.by_id(hit.doc_id).text[hit.start : hit.end] == "REF-7" and "REF-7" in hit.snippet(5)
    small.load_all_texts()
    assert small.cached_bytes <= 200_000
