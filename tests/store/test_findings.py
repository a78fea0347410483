"""Tags, notes and findings in a real case file: findings verify exactly as run citations do."""

from __future__ import annotations

import sqlite3

import pytest

from rlm_desktop.engine.citations import build_citation
from rlm_desktop.findings import (
    HASH_MOVED,
    DuplicateFinding,
    FindingNotVerified,
    add_citation,
    add_finding,
    get_finding,
    list_findings,
)
from rlm_desktop.store import findings as store
from rlm_desktop.store.case import TEXT_CHANGED, Case

TEXT = "The shipment left Rotterdam on 4 May 2023 under the name Blue Heron. Signed, the harbour master."
PHRASE = "left Rotterdam on 4 May 2023"


@pytest.fixture
def case(tmp_path):
    with Case.open(tmp_path / "c.sqlite") as c:
        c.doc_id = c.add_text_document("harbour.txt", TEXT)
        c.other_id = c.add_text_document("memo.txt", "Payments to Blue Heron Ltd were approved.")
        yield c


def tamper(path, doc_id: int, text: str) -> None:
    """Rewrite a stored text behind the app's back, as code that reached the case file could."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE documents SET text = ? WHERE id = ?", (text, doc_id))
    conn.commit()
    conn.close()


def test_tags_round_trip_and_are_kept_once_whatever_the_case(case, tmp_path):
    assert store.add_tag(case, case.doc_id, "  key   evidence ") == "key evidence"
    store.add_tag(case, case.doc_id, "KEY EVIDENCE")  # the same tag in other letters: kept once
    store.add_tag(case, case.doc_id, "Antwerp")
    store.add_tag(case, case.other_id, "antwerp")
    assert store.tags_of(case, case.doc_id) == ["Antwerp", "key evidence"]
    case.close()
    with Case.open(tmp_path / "c.sqlite") as again:  # they live in the file
        assert again.conn.execute("SELECT COUNT(*) FROM document_tags").fetchone()[0] == 3
        assert store.all_tags(again) == {1: ("Antwerp", "key evidence"), 2: ("antwerp",)}
        assert store.tag_names(again) == [("Antwerp", 2), ("key evidence", 1)]
        assert store.remove_tag(again, 1, "Key Evidence")
        assert not store.remove_tag(again, 1, "never there")
        assert store.tags_of(again, 1) == ["Antwerp"]


@pytest.mark.parametrize(
    ("tag", "reason"),
    [("", "empty"), ("   ", "empty"), ("x" * 65, "at most 64"), ("a\x00b", "control"), ("tab\u200bx", "control")],
)
def test_a_bad_tag_is_refused_with_its_reason(case, tag, reason):
    with pytest.raises(store.InvalidTag, match=reason):
        store.add_tag(case, case.doc_id, tag)
    assert store.tags_of(case, case.doc_id) == []


def test_a_tag_on_an_unknown_document_is_refused(case):
    with pytest.raises(KeyError, match="no document 99"):
        store.add_tag(case, 99, "x")


def test_document_notes_round_trip_and_an_empty_note_removes_it(case):
    store.set_document_note(case, case.doc_id, "  Ask the harbour master.  ")
    assert store.document_note(case, case.doc_id) == "Ask the harbour master."
    assert store.all_document_notes(case) == {case.doc_id: "Ask the harbour master."}
    store.set_document_note(case, case.doc_id, "")
    assert store.document_note(case, case.doc_id) == ""
    with pytest.raises(ValueError, match="at most"):
        store.set_document_note(case, case.doc_id, "x" * (store.MAX_NOTE_CHARS + 1))


def test_a_selection_becomes_a_finding_with_the_stored_text_as_its_quote(case):
    start = TEXT.index(PHRASE)
    finding = add_finding(case, case.doc_id, start, start + len(PHRASE), note="departure date")
    assert finding.verified and finding.problem is None
    assert finding.row.quote == PHRASE and finding.row.origin == "selection" and finding.row.run_id is None
    assert finding.row.text_sha256 == case.document(case.doc_id).text_sha256
    assert finding.title == "harbour.txt" and finding.source == "selected in the viewer"
    [listed] = list_findings(case)
    assert listed.verified and listed.row.note == "departure date"
    # the same check a run citation gets, given the same span
    assert build_citation(case, "x", case.doc_id, start, start + len(PHRASE), listed.row.quote)["verified"]


def test_a_citation_becomes_a_finding_only_when_its_quote_matches(case):
    start = TEXT.index(PHRASE)
    good = {"marker": "[c1]", "doc_id": case.doc_id, "start": start, "end": start + len(PHRASE), "quote": PHRASE}
    finding = add_citation(case, good, "run-1234abcd", note="")
    assert finding.verified and finding.row.origin == "[c1]" and finding.row.run_id == "run-1234abcd"
    assert finding.source == "citation [c1] of run run-1234"
    forged = dict(good, marker="[c2]", start=0, end=len(PHRASE))  # a quote that is not at these offsets
    with pytest.raises(FindingNotVerified, match="quote differs from the source"):
        add_citation(case, forged, "run-1234abcd")
    with pytest.raises(FindingNotVerified, match="no document span"):
        add_citation(case, {"marker": "[c3]"}, "run-1234abcd")
    assert [f.row.origin for f in list_findings(case)] == ["[c1]"]


def test_the_same_passage_is_kept_once(case):
    add_finding(case, case.doc_id, 4, 12)
    with pytest.raises(DuplicateFinding, match="already finding 1"):
        add_finding(case, case.doc_id, 4, 12, note="again")
    assert len(list_findings(case)) == 1


def test_offsets_outside_the_text_are_refused(case):
    with pytest.raises(FindingNotVerified, match="not a passage"):
        add_finding(case, case.doc_id, 10, len(TEXT) + 5)
    with pytest.raises(FindingNotVerified, match="not a passage"):
        add_finding(case, case.doc_id, 12, 12)
    with pytest.raises(KeyError, match="no document 42"):
        add_finding(case, 42, 0, 3)
    assert list_findings(case) == []


def test_a_selection_over_a_tampered_text_is_not_added(case):
    forged = TEXT.replace("4 May", "9 May")
    tamper(case.path, case.doc_id, forged)
    start = forged.index("left Rotterdam on 9 May")
    with pytest.raises(FindingNotVerified, match=TEXT_CHANGED):
        add_finding(case, case.doc_id, start, start + len(PHRASE))
    assert case.conn.execute("SELECT COUNT(*) FROM findings").fetchone()[0] == 0


def test_a_finding_whose_text_is_tampered_later_is_shown_unverified(case):
    start = TEXT.index(PHRASE)
    added = add_finding(case, case.doc_id, start, start + len(PHRASE), note="kept")
    tamper(case.path, case.doc_id, TEXT.replace("4 May", "9 May"))
    now = get_finding(case, added.id)
    assert not now.verified and now.problem == TEXT_CHANGED
    assert now.citation["verified"] is False
    assert now.row.note == "kept"  # nothing is lost


def test_a_finding_is_unverified_when_text_and_its_hash_were_both_rewritten(case):
    start = TEXT.index(PHRASE)
    added = add_finding(case, case.doc_id, start, start + len(PHRASE))
    # someone rewrote the text and recomputed its ingest hash: the quote still matches, the hash moved
    from rlm_desktop.store.migrations import text_sha256

    forged = TEXT.replace("Signed", "Approved")
    conn = sqlite3.connect(case.path)
    conn.execute("UPDATE documents SET text = ?, text_sha256 = ? WHERE id = ?", (forged, text_sha256(forged), 1))
    conn.commit()
    conn.close()
    now = get_finding(case, added.id)
    assert not now.verified and now.problem == HASH_MOVED


def test_finding_notes_are_edited_and_findings_deleted(case):
    added = add_finding(case, case.doc_id, 0, 12)
    store.set_finding_note(case, added.id, "the opening words")
    assert get_finding(case, added.id).row.note == "the opening words"
    with pytest.raises(KeyError):
        store.set_finding_note(case, 99, "x")
    assert store.delete_finding(case, added.id)
    assert list_findings(case) == []
    assert not store.delete_finding(case, added.id)


def test_marks_never_block_a_document_being_read_again(case):
    # an interrupted mailbox's messages are deleted and read again: a tag, a note or a finding on one must not
    # stop that, and the finding stays, shown as not verified
    store.add_tag(case, case.other_id, "payments")
    store.set_document_note(case, case.other_id, "check the dates")
    add_finding(case, case.other_id, 0, 8, note="kept")
    with case.transaction():
        case.delete_document_tree(case.other_id)
    [finding] = list_findings(case)
    assert not finding.verified and finding.problem == "no such document" and finding.row.note == "kept"


def test_tags_and_note_follow_a_changed_file_to_its_new_version(tmp_path):
    from rlm_desktop.ingest.pipeline import ingest

    memo = tmp_path / "memo.txt"
    memo.write_text("Payments were approved on 2 May.\n", encoding="utf-8")
    with Case.open(tmp_path / "c.sqlite") as c:
        ingest(c, [memo], jobs=1)
        [old] = c.documents()
        store.add_tag(c, old.id, "payments")
        store.set_document_note(c, old.id, "compare with the bank statement")
        add_finding(c, old.id, 0, 8)
        memo.write_text("Payments were approved on 3 May.\n", encoding="utf-8")
        ingest(c, [memo], jobs=1)
        [new] = c.documents()
        assert new.id != old.id and c.document(old.id).superseded_by == new.id
        assert store.tags_of(c, new.id) == ["payments"]
        assert store.document_note(c, new.id) == "compare with the bank statement"
        [finding] = list_findings(c)
        assert finding.row.doc_id == old.id and finding.verified  # the old text is kept: its span still holds
