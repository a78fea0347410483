"""The window's search box: the issue's everyday queries find their text, and a file name finds its document
(a name hit opens the document at its start)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_case import build_sample_case

from rlm_desktop.gui.document_browser import DocumentBrowser
from rlm_desktop.store.case import Case

SHOTS = Path("/tmp/shots")
MEMO = "Docket FAA-2020-0686: Mr. O'Brien (U.S.) wired $50,000; ask stefan@datenfreihafen.org about C++."


@pytest.fixture
def case(tmp_path):
    built = build_sample_case(tmp_path)
    opened = Case.open(built.case_path)
    opened.add_text_document("docket memo", MEMO)
    yield opened
    opened.close()


@pytest.fixture
def browser(qtbot, case):
    widget = DocumentBrowser()
    qtbot.addWidget(widget)
    widget.resize(420, 560)
    widget.set_case(case)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.mark.parametrize(
    "query", ["stefan@datenfreihafen.org", "FAA-2020-0686", "O'Brien", "$50,000", "U.S.", "C++"]
)
def test_the_issue_queries_find_their_text(browser, case, query):
    hits = browser.run_search(query)
    assert not browser.search_error.isVisible()
    assert [case.document(h.doc_id).title for h in hits] == ["docket memo"]
    assert "<b" in hits[0].html


def test_a_file_name_finds_its_document_and_opens_it_at_the_start(browser, case, qtbot):
    report = next(d for d in case.documents() if d.path and d.path.endswith("harbour report.pdf"))
    hits = browser.run_search("harbour report.pdf")
    assert hits[0].doc_id == report.id and (hits[0].start, hits[0].end) == (0, 0)
    assert "PDF, by its " in hits[0].html
    hits = browser.run_search("harbour")  # the name first, then passages that mention it
    assert hits[0].doc_id == report.id and "by its" in hits[0].html
    with qtbot.waitSignal(browser.span_activated) as got:
        browser.hits.itemActivated.emit(browser.hits.item(0))
    assert got.args == [report.id, 0, 0]
    SHOTS.mkdir(exist_ok=True)
    browser.grab().save(str(SHOTS / "search_names.png"))


def test_an_email_address_finds_the_mail_by_its_sender(browser, case):
    mail = next(d for d in case.documents(kind="email"))
    sender = mail.meta["from"][0].split("<")[-1].rstrip(">")
    hits = browser.run_search(sender)
    assert mail.id in {h.doc_id for h in hits}
    assert any("by its sender" in h.html for h in hits)


def test_a_word_in_too_many_passages_to_rank_says_its_hits_are_the_first_not_the_best(
    qtbot, tmp_path, monkeypatch
):
    from rlm_desktop.store import fts

    monkeypatch.setattr(fts, "RANK_CANDIDATES", 5)  # a small case stands for one where "the" is everywhere
    with Case.open(tmp_path / "c.sqlite") as case:
        for i in range(30):
            case.add_text_document(f"note {i}", f"the report of day {i}" + (" ledger" if i % 10 == 0 else ""))
        widget = DocumentBrowser()
        qtbot.addWidget(widget)
        widget.resize(420, 560)
        widget.set_case(case)
        widget.show()
        hits = widget.run_search("the")
        said = widget.hits_header.text()
        assert hits and "The first" in said and "in case order" in said and "too many passages" in said
        SHOTS.mkdir(exist_ok=True)
        widget.grab().save(str(SHOTS / "search_unranked.png"))
        widget.run_search("ledger")  # three passages: ranked, said as before
        assert widget.hits_header.text().startswith("3 hits for")
