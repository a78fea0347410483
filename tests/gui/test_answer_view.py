"""The answer view: markers become citation links, unverified ones are marked, banners say why a run ended."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from sample_case import build_sample_case

from rlm_desktop.engine.runs import load_run
from rlm_desktop.gui import theme
from rlm_desktop.gui.answer_view import EMPTY_TEXT, UNVERIFIED_TIP, AnswerView
from rlm_desktop.store.case import Case
from tests.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    with FakeOpenAIServer() as server:
        sample = build_sample_case(tmp_path_factory.mktemp("answer"), server)
    with Case.open(sample.case_path) as case:
        return load_run(case, sample.run_id)


def make_view(qtbot) -> AnswerView:
    view = AnswerView()
    qtbot.addWidget(view)
    view.resize(700, 420)
    view.show()
    qtbot.waitExposed(view)
    return view


def anchors(view: AnswerView) -> list[tuple[str, str, int]]:
    """(href, text, document position) of every link fragment in the answer."""
    found = []
    block = view.browser.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.charFormat().isAnchor():
                found.append((fragment.charFormat().anchorHref(), fragment.text(), fragment.position()))
            it += 1
        block = block.next()
    return found


def click_at(qtbot, view: AnswerView, position: int) -> None:
    cursor = QTextCursor(view.browser.document())
    cursor.setPosition(position + 1)
    point = view.browser.cursorRect(cursor).center()
    qtbot.mouseClick(view.browser.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_empty_state_before_any_run(qtbot):
    view = make_view(qtbot)
    assert EMPTY_TEXT in view.browser.toPlainText()
    assert not view.banner.isVisible()
    assert not view.activate_citation("[c1]")


def test_markers_are_links_and_a_click_emits_the_citation(qtbot, record):
    view = make_view(qtbot)
    view.set_answer(record["answer"], record["citations"], record["status"])
    assert not view.banner.isVisible()
    text = view.browser.toPlainText()
    assert text.startswith(record["answer"])  # the answer reads exactly as written
    links = anchors(view)
    in_answer = [(href, shown) for href, shown, pos in links if pos < len(record["answer"])]
    assert in_answer == [("cite:c1", "[c1]"), ("cite:c2", "[c2]")]
    # the numbered source list under the answer
    sources = text.split("Sources", 1)[1]
    assert sources.index("1.") < sources.index("[c1]") < sources.index("2.") < sources.index("[c2]")
    assert "harbour report.pdf, page 2" in sources
    assert "“left Rotterdam on 4 May 2023”" in sources and "✓ verified" in sources
    assert "Re: Blue Heron shipment" in sources and "⚠" not in sources
    _, _, position = next(link for link in links if link[0] == "cite:c2")
    with qtbot.waitSignal(view.citation_activated, timeout=2000) as blocker:
        click_at(qtbot, view, position)
    assert (
        blocker.args[0]["marker"] == "[c2]" and blocker.args[0]["doc_id"] == record["citations"][1]["doc_id"]
    )
    with qtbot.waitSignal(view.citation_activated, timeout=1000) as blocker:
        assert view.activate_citation("c1")
    assert blocker.args[0]["quote"] == "left Rotterdam on 4 May 2023"


def test_unverified_and_unknown_markers_are_marked(qtbot, record):
    view = make_view(qtbot)
    citations = [dict(c) for c in record["citations"]]
    citations[1].update(
        verified=False, quote="the containers were burnt", problem="quote differs from the source"
    )
    answer = record["answer"] + " A third claim [c9]."
    view.set_answer(answer, citations, "completed")
    links = anchors(view)
    unverified = [link for link in links if link[0] == "cite:c2"]
    assert unverified and all(shown.startswith("⚠") for _, shown, _ in unverified)
    cursor = QTextCursor(view.browser.document())
    cursor.setPosition(unverified[0][2] + 1)
    assert cursor.charFormat().foreground().color() == theme.UNVERIFIED
    verified = next(link for link in links if link[0] == "cite:c1")
    cursor.setPosition(verified[2] + 1)
    assert cursor.charFormat().foreground().color() != theme.UNVERIFIED
    # the unverified marker's tooltip says what is wrong
    cursor.setPosition(unverified[0][2] + 1)
    assert view.browser.tooltip_at(view.browser.cursorRect(cursor).center()) == UNVERIFIED_TIP
    assert view.tooltip_for("cite:c1").startswith("harbour report.pdf, page 2")
    # [c9] was never registered: red text, not a link, explained in the list
    assert "cite:c9" not in [href for href, _, _ in links]
    text = view.browser.toPlainText()
    position = text.index("[c9]")
    cursor.setPosition(position + 1)
    assert cursor.charFormat().foreground().color() == theme.UNVERIFIED and not cursor.charFormat().isAnchor()
    assert view.unknown_markers == ["c9"]
    assert "no citation was registered" in text and "⚠ unverified" in text
    assert not view.activate_citation("[c9]")


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("cancelled", "stopped by the user", "Stopped by you — the answer so far is below"),
        (
            "cap_reached",
            "the spending cap of $1.00 would be exceeded",
            "Spending cap reached — partial answer",
        ),
        ("limit_reached", "the limit of 500 sub-calls was reached", "Limit reached — partial answer"),
        ("failed", "ModelCallError: 401 invalid key", "Failed: ModelCallError: 401 invalid key"),
    ],
)
def test_banner_says_why_the_run_ended(qtbot, status, error, expected):
    view = make_view(qtbot)
    view.set_answer("Partial findings so far [c1].", [], status, error)
    assert view.banner.isVisible() and view.banner.text().startswith(expected)
    view.set_answer("Done.", [], "completed")
    assert not view.banner.isVisible()
    view.clear()
    assert EMPTY_TEXT in view.browser.toPlainText() and view.citations == []


def test_run_warnings_are_listed_under_the_answer(qtbot):
    from rlm_desktop.gui.answer_view import AnswerView

    view = AnswerView()
    qtbot.addWidget(view)
    warning = "the server reported no usage for gpt-5-mini; cost estimated with a tokenizer"
    view.set_answer("It was on 12 June.", [], "completed", warnings=[warning])
    assert warning in view.browser.toPlainText() and "Warnings" in view.browser.toPlainText()
    view.set_answer("It was on 12 June.", [], "completed")
    assert "Warnings" not in view.browser.toPlainText()


MARKDOWN_ANSWER = """## Findings

The shipment left on **4 May** [c1], *before* the invoice [c2].

- first point
- second point with `code`
  1. nested one

| Who | When |
|---|---|
| Bob | 6 May [c1] |

```
print(len(context))
```

<img src="file:///etc/passwd"> and [a link](http://example.org/x) stay text.
"""


def test_markdown_answers_render_with_clickable_markers(qtbot):
    """Headings, lists, tables, emphasis and code render as such; markers stay links, also in a table cell;
    raw HTML, images and links written by the model are shown as text, never loaded or followed."""
    view = make_view(qtbot)
    citations = [
        {"marker": "[c1]", "doc_id": 7, "title": "harbour report.pdf", "quote": "4 May", "verified": True},
        {"marker": "[c2]", "doc_id": 8, "title": "invoice.pdf", "quote": "invoice", "verified": False},
    ]
    view.set_answer(MARKDOWN_ANSWER, citations, "completed")
    document = view.browser.document()
    text = view.browser.toPlainText()
    assert "##" not in text and "**" not in text and "|---|" not in text and "```" not in text
    blocks, block = [], document.begin()
    while block.isValid():
        blocks.append(block)
        block = block.next()
    heading = next(b for b in blocks if b.text() == "Findings")
    assert heading.blockFormat().headingLevel() == 2
    listed = [b.text() for b in blocks if b.textList() is not None]
    assert "first point" in listed and "nested one" in listed
    nested = next(b for b in blocks if b.text() == "nested one")
    assert nested.textList().format().indent() > next(
        b for b in blocks if b.text() == "first point"
    ).textList().format().indent()
    cursor = QTextCursor(document)
    cursor.setPosition(text.index("Bob") + 1)
    assert cursor.currentTable() is not None and cursor.currentTable().rows() == 2
    cursor.setPosition(text.index("4 May") + 1)
    assert cursor.charFormat().fontWeight() >= 600  # bold
    cursor.setPosition(text.index("before") + 1)
    assert cursor.charFormat().fontItalic()
    cursor.setPosition(text.index("print(len") + 1)
    assert cursor.charFormat().fontFixedPitch() or "monospace" in cursor.charFormat().fontFamilies()
    assert '<img src="file:///etc/passwd">' in text and "[a link](http://example.org/x)" in text
    links = anchors(view)
    hrefs = [href for href, _, pos in links if pos < text.index("Sources")]
    assert hrefs == ["cite:c1", "cite:c2", "cite:c1"]  # the one in the table too
    assert all(not h.startswith(("http", "file")) for h, _, _ in links)
    _, shown, position = [link for link in links if link[0] == "cite:c1"][1]  # in the table cell
    with qtbot.waitSignal(view.citation_activated, timeout=2000) as blocker:
        click_at(qtbot, view, position)
    assert blocker.args[0]["doc_id"] == 7
    unverified = next(link for link in links if link[0] == "cite:c2")
    cursor.setPosition(unverified[2] + 1)
    assert cursor.charFormat().foreground().color() == theme.UNVERIFIED
