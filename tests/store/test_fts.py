"""Chunking covers the text exactly; FTS hits carry exact character offsets."""

import pytest

from rlm_desktop.store.case import Case
from rlm_desktop.store.fts import CHUNK_MAX, InvalidQuery, chunk_bounds


@pytest.mark.parametrize(
    "text", ["", "short", "word " * 5000, "x" * 10000, ("para\n\n" + "line\n" * 50) * 200]
)
def test_chunks_are_contiguous_and_bounded(text):
    bounds = chunk_bounds(text)
    assert "".join(text[s:e] for s, e in bounds) == text
    assert all(0 < e - s <= CHUNK_MAX for s, e in bounds)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


@pytest.fixture
def case(tmp_path):
    with Case.open(tmp_path / "c.sqlite") as case:
        yield case


def test_hits_point_at_the_exact_text_even_deep_in_a_long_document(case):
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * 2000
    text = filler + "Die Überweisung nach Zürich über €5.000 erfolgte am 3. März.\n" + filler
    doc_id = case.add_text_document("long", text)
    for query, expected in [
        ("zurich", "Zürich"),
        ('"erfolgte am"', "erfolgte am"),
        ("uberw*", "Überweisung"),
    ]:
        (hit,) = case.search(query)
        assert hit.doc_id == doc_id
        assert text[hit.start : hit.end] == expected


def test_ranking_prefers_the_more_relevant_document(case):
    weak = case.add_text_document("weak", "a passing mention of invoices among many other words " * 20)
    strong = case.add_text_document("strong", "invoice invoices invoice: the invoice total")
    hits = case.search("invoice OR invoices")
    assert [h.doc_id for h in hits][:1] == [strong]
    assert weak in [h.doc_id for h in hits]
    assert hits[0].score >= hits[-1].score


def test_bad_query_says_what_is_wrong(case):
    case.add_text_document("d", "some text")
    assert [h.chunk_text for h in case.search('"some tex')] == []  # an unclosed quote closes at the end
    assert len(case.search('"some text')) == 1
    with pytest.raises(InvalidQuery, match="whole number"):
        case.search("NEAR(some text, many)")
    with pytest.raises(InvalidQuery, match="empty"):
        case.search("   ")


def test_superseded_documents_leave_the_index(case):
    doc_id = case.add_text_document("old", "the secret codeword is pelican")
    assert case.search("pelican")
    with case.transaction():
        case.supersede(doc_id, None)
    assert case.search("pelican") == []
    assert case.text(doc_id) == "the secret codeword is pelican"  # kept for old citations
