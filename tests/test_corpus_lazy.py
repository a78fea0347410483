"""The lazy catalogue: a Corpus holds only runs of ids and reads documents' fields from the case when touched,
with the same answers as the case's own catalogue for every REPL API."""

from __future__ import annotations

import gc
import re
from collections import Counter
from dataclasses import fields as dataclass_fields

import pytest
from builders import make_mbox
from sample_case import write_documents

from rlm_desktop import corpus as corpus_module
from rlm_desktop.corpus import Corpus, Document
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case


@pytest.fixture(scope="module")
def case_path(tmp_path_factory):
    """PDFs, a DOCX, emails with an attachment, a mailbox of 7 messages, and a superseded text file."""
    root = tmp_path_factory.mktemp("lazy")
    folder = write_documents(root / "in")
    make_mbox(folder / "mail" / "box.mbox", 7)
    path = root / "case.sqlite"
    with Case.open(path) as case:
        ingest(case, [folder], jobs=1)
        (folder / "notes.txt").write_text("Call notes, second version: the manifest was late.\n", encoding="utf-8")
        ingest(case, [folder], jobs=1)  # the first notes.txt is superseded, leaving a gap in the ids
        case.checkpoint()
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 2 and 3 documents, 2 of each kept: every test crosses block edges and evicts blocks."""
    monkeypatch.setattr(corpus_module, "ENTRY_BLOCK", 2)
    monkeypatch.setattr(corpus_module, "NAMES_BLOCK", 3)
    monkeypatch.setattr(corpus_module, "BLOCKS_KEPT", 2)
    monkeypatch.setattr(corpus_module, "HANDLES_PRUNED_AT", 4)


def expected_catalogue(case_path):
    """What the eager catalogue held: every current document but mailbox containers, in id order."""
    with Case.open(case_path) as case:
        rows = [r for r in case.documents() if r.kind != "mailbox"]
        return [(r.id, r.kind, r.title, r.path, r.parent_id, r.meta, r.chars, case.text(r.id)) for r in rows]


def fields(doc: Document):
    return (doc.id, doc.kind, doc.title, doc.path, doc.parent_id, doc.meta, doc.chars, doc.text)


def test_every_document_field_matches_the_case(case_path, small_blocks):
    expected = expected_catalogue(case_path)
    with Case.open(case_path) as case:
        superseded = [r.id for r in case.documents(include_superseded=True) if r.superseded_by is not None]
        mailboxes = [r.id for r in case.documents(kind="mailbox")]
    assert superseded and mailboxes and len(expected) >= 13
    context = Corpus.open(case_path)
    assert len(context) == len(expected)
    assert context.ids == [e[0] for e in expected]
    assert [fields(d) for d in context] == expected
    assert [fields(context[i]) for i in range(len(context))] == expected
    assert [fields(context[i]) for i in range(-1, -len(context) - 1, -1)] == expected[::-1]
    assert [d.id for d in context[2:9:3]] == [e[0] for e in expected[2:9:3]]
    assert [d.id for d in context[::-1]] == [e[0] for e in expected[::-1]]
    for doc_id, *_ in expected:
        assert fields(context.by_id(doc_id))[0] == doc_id
    for missing in [*superseded, *mailboxes, 0, 10_000, "x"]:
        with pytest.raises(KeyError):
            context.by_id(missing)
    with pytest.raises(IndexError):
        context[len(expected)]
    emails = [d for d in context if d.kind == "email"]
    assert all(d.meta["message_id"] and "thread_id" in d.meta for d in emails)
    pdf = next(d for d in context if d.kind == "pdf" and d.parent_id is None)
    with Case.open(case_path) as case:
        assert pdf.pages == [(p.start, p.end) for p in case.pages(pdf.id)]
    assert repr(context) == f"<Corpus of {len(expected)} documents, {sum(e[6] for e in expected):,} characters>"


def test_a_document_is_one_object_while_held_and_a_handle_until_touched(case_path, small_blocks):
    context = Corpus.open(case_path)
    first = context[0]
    assert context.by_id(first.id) is first and next(iter(context)) is first
    assert first._entry is None and first._names is None  # nothing read yet
    assert not context._entries and not context._names
    meta = first.meta
    assert first.meta is meta  # parsed once
    for _ in context:  # more handles than the prune threshold: the held one survives pruning
        pass
    gc.collect()
    assert context.by_id(first.id) is first
    assert len(context._entries) <= 2 and len(context._names) <= 2  # blocks are bounded
    assert len(context._handles) <= 8  # dead handles are pruned


def test_a_subset_keeps_id_order_and_refuses_documents_it_cannot_see(case_path, small_blocks):
    expected = expected_catalogue(case_path)
    ids = [e[0] for e in expected]
    chosen = [ids[5], ids[1], ids[2], ids[-1], ids[1]]
    subset = Corpus.open(case_path, doc_ids=chosen)
    assert subset.ids == sorted(set(chosen)) and len(subset) == 4
    assert [fields(d) for d in subset] == [e for e in expected if e[0] in set(chosen)]
    with pytest.raises(KeyError):
        subset.by_id(ids[3])
    assert not subset.covers_whole_case
    with Case.open(case_path) as case:
        mailbox = case.documents(kind="mailbox")[0].id
    with pytest.raises(KeyError, match="no such documents"):
        Corpus.open(case_path, doc_ids=[ids[0], mailbox])


def test_grep_and_search_give_the_same_spans_as_over_the_texts(case_path, small_blocks):
    expected = expected_catalogue(case_path)
    context = Corpus.open(case_path)
    pattern = re.compile(r"quarterly figures|Blue Heron|manifest", re.I)
    want = [(e[0], m.start(), m.end(), m.group()) for e in expected for m in pattern.finditer(e[7])]
    assert [(h.doc_id, h.start, h.end, h.text) for h in context.grep(pattern)] == want
    context.cache_bytes = 1  # nothing fits in the cache: the whole corpus streams from the case
    assert [(h.doc_id, h.start, h.end, h.text) for h in context.grep(pattern)] == want
    hits = context.search("manifest")
    assert hits and all(context.by_id(h.doc_id).text[h.start : h.end].lower() == "manifest" for h in hits)
    assert context.grep("ask the harbour master") == []  # only in the superseded notes.txt


def test_the_overview_gives_the_figures_a_walk_over_every_document_gives(case_path, small_blocks):
    context = Corpus.open(case_path)

    def walked(docs):
        chars = sorted(d.chars for d in docs)
        dates = sorted(d for d in (x.meta.get("date") or x.meta.get("creation_date") for x in docs) if d)
        kinds = Counter(d.kind for d in docs)
        return (len(docs), kinds, sum(chars), chars[len(chars) // 2], chars[-1], dates[0], dates[-1])

    def figures(overview):
        return tuple(getattr(overview, f.name) for f in dataclass_fields(overview))

    whole = context.overview()
    assert figures(whole) == walked(list(context))
    assert whole.kinds["email"] >= 9 and whole.first_date < whole.last_date
    some = [context[1].id, context[4].id, context[-1].id]
    assert figures(context.subset(some).overview()) == walked([context.by_id(i) for i in some])
    with pytest.raises(KeyError):
        context.subset([10_000])
