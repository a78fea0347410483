"""The run panel: the tree grows live and keeps the user's choices; the detail pane and the excerpt view."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtTest import QAbstractItemModelTester
from sample_case import QUESTION, answer_script, build_sample_case, run_config

from rlm_desktop.engine.events import (
    NodeFinished,
    NodeStarted,
    NodeUpdated,
    NodeView,
    RunFinished,
    RunStarted,
)
from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.runs import load_run
from rlm_desktop.gui import theme
from rlm_desktop.gui.excerpt_view import MAX_RENDER_CHARS
from rlm_desktop.gui.run_panel import RunPanel
from rlm_desktop.store.case import Case
from tests.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample case with its finished run, built once for this module."""
    with FakeOpenAIServer() as server:
        return build_sample_case(tmp_path_factory.mktemp("run-panel"), server)


@pytest.fixture
def case(sample):
    with Case.open(sample.case_path) as opened:
        yield opened


def make_panel(qtbot) -> RunPanel:
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 760)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def pdf_sub_call(record: dict, case: Case) -> dict:
    """The llm_query node whose prompt quotes the PDF."""
    stack = [record["tree"]]
    while stack:
        node = stack.pop()
        stack.extend(node["children"])
        spans = node.get("prompt_spans") or []
        if node["kind"] == "llm_query" and spans and case.document(spans[0]["doc_id"]).kind == "pdf":
            return node
    raise AssertionError("no sub-call quotes the PDF")


def point_inside(view, position: int):
    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    return view.cursorRect(cursor).center()


def check_excerpt(qtbot, panel: RunPanel, node: dict, case: Case) -> None:
    """The prompt's source span is highlighted, named in its tooltip, and a click emits its document span."""
    span = node["prompt_spans"][0]
    excerpt = panel.detail.excerpt
    assert "copied from harbour report.pdf" in panel.detail.primary.caption.text()
    assert len(excerpt.highlights) == 1
    begin, end, number = excerpt.highlights[0]
    shown = excerpt.document().toPlainText()
    doc_text = case.text(span["doc_id"])[span["start"] : span["end"]]
    assert shown[begin:end] == doc_text.replace("\f", "\n")  # a page break shows as a line break
    assert shown[begin:end] == node["text"][span["prompt_start"] : span["prompt_end"]].replace("\f", "\n")
    cursor = QTextCursor(excerpt.document())
    cursor.setPosition(begin + 3)
    fmt = cursor.charFormat()
    assert fmt.background().color() == theme.HIGHLIGHT_TEXT
    assert fmt.isAnchor() and fmt.anchorHref() == f"span:{number}"
    cursor.setPosition(begin)  # the character before the highlight is plain text
    assert not cursor.charFormat().isAnchor()
    # the click lands on the middle of the highlighted passage
    point = point_inside(excerpt, (begin + end) // 2)
    tip = excerpt.tooltip_at(point)
    assert "harbour report.pdf" in tip and "page 1" in tip and f"{span['start']:,}–{span['end']:,}" in tip
    with qtbot.waitSignal(panel.span_activated, timeout=2000) as blocker:
        qtbot.mouseClick(excerpt.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert blocker.args == [span["doc_id"], span["start"], span["end"]]


def test_saved_run_excerpt_highlights_the_pdf_span_and_a_click_emits_it(qtbot, sample, case):
    panel = make_panel(qtbot)
    panel.set_case(case)
    record = load_run(case, sample.run_id)
    panel.load_record(record)
    assert panel.selected_node().kind == "root"  # a saved run opens on its question and answer
    assert "4 May 2023" in panel.detail.primary.view.toPlainText()
    node = pdf_sub_call(record, case)
    assert panel.select_node(node["id"])
    assert not panel.follow.isChecked()
    check_excerpt(qtbot, panel, node, case)
    assert panel.detail.secondary.view.toPlainText() == "4 May 2023"
    assert "Sub-call" in panel.detail.header.text() and "gpt-5-mini" in panel.detail.header.text()
    # every node of the saved run is open in the tree
    for view in panel.model.views():
        if panel.model.hasChildren(panel.model.index_of(view.id)):
            assert panel.tree.isExpanded(panel.model.index_of(view.id))


def test_detail_pane_shows_what_each_kind_of_step_did(qtbot, sample, case):
    panel = make_panel(qtbot)
    panel.set_case(case)
    record = load_run(case, sample.run_id)
    panel.load_record(record)
    first_code = next(v for v in panel.model.views() if v.kind == "code")
    panel.select_node(first_code.id)
    primary, secondary = panel.detail.primary.view, panel.detail.secondary.view
    assert primary.toPlainText() == first_code.text
    cursor = QTextCursor(primary.document())
    cursor.setPosition(2)
    assert cursor.charFormat().font().fixedPitch() or cursor.charFormat().fontFamilies() == [
        theme.monospace().family()
    ]
    assert "Blue Heron" in secondary.toPlainText()  # what the search printed
    assert panel.detail.primary.caption.text().startswith("<b>Code</b>")

    iteration = next(v for v in panel.model.views() if v.kind == "iteration" and v.detail.get("number") == 2)
    panel.select_node(iteration.id)
    text = panel.detail.primary.view.toPlainText()
    assert "llm_query(" in text and "```" not in text  # code blocks shown as code, without the fences
    assert not panel.detail.secondary.isVisible()

    panel.select_node(record["tree"]["id"])
    assert panel.detail.primary.view.toPlainText() == f"Question\n{QUESTION}\n\nAnswer\n{record['answer']}"
    assert not panel.detail.secondary.isVisible()

    final_code = next(v for v in panel.model.views() if v.kind == "code" and v.detail.get("final"))
    panel.select_node(final_code.id)
    secondary_text = panel.detail.secondary.view.toPlainText()
    assert "FINAL answer" in secondary_text and "[c1]" in secondary_text
    assert "harbour report.pdf" in secondary_text  # the citation it registered, named


class Bridge(QObject):
    """Carries engine events to the GUI thread through a queued connection, as the window's bridge does."""

    event = Signal(object)


def test_live_run_fills_the_tree_keeps_expansion_and_highlights_the_excerpt(qtbot, tmp_path, fake_openai):
    sample = build_sample_case(tmp_path)  # the documents only: the run happens live here
    fake_openai.handler = answer_script()
    panel = make_panel(qtbot)
    case = Case.open(sample.case_path)
    panel.set_case(case)
    bridge = Bridge()
    finished: list[RunFinished] = []
    bridge.event.connect(panel.apply, Qt.ConnectionType.QueuedConnection)
    bridge.event.connect(
        lambda e: finished.append(e) if isinstance(e, RunFinished) else None,
        Qt.ConnectionType.QueuedConnection,
    )
    expanded_when_later_rows_came: list[tuple[str, bool]] = []

    def on_insert(parent, first, last):
        # at every insert, the iterations and code blocks seen so far are still open
        for view in panel.model.views():
            index = panel.model.index_of(view.id)
            if view.kind in ("iteration", "code") and panel.model.hasChildren(index):
                expanded_when_later_rows_came.append((view.id, panel.tree.isExpanded(index)))

    panel.model.rowsInserted.connect(on_insert, Qt.ConnectionType.QueuedConnection)
    handle = RunHandle(sample.case_path, QUESTION, run_config(fake_openai), "sk-test")
    handle.subscribe(lambda event: bridge.event.emit(event))
    handle.start()
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)
    qtbot.wait(200)  # the follow timer settles
    record = handle.wait(5)
    kinds = [v.kind for v in panel.model.views()]
    assert kinds == ["root", "iteration", "code", "iteration", "code", "llm_query", "llm_query"]
    assert all(v.status != "running" for v in panel.model.views())
    assert expanded_when_later_rows_came and all(open_ for _, open_ in expanded_when_later_rows_came)
    for view in panel.model.views():
        index = panel.model.index_of(view.id)
        if panel.model.hasChildren(index):
            assert panel.tree.isExpanded(index), view.id
    # nobody clicked: the tree followed the run to its newest step
    assert panel.follow.isChecked()
    assert panel.selected_node().id == list(panel.model.views())[-1].id
    # the root now shows the answer from the RunFinished record
    panel.select_node(record["tree"]["id"])
    assert panel.detail.primary.view.toPlainText().endswith(record["answer"])
    node = pdf_sub_call(record, case)
    panel.select_node(node["id"])
    check_excerpt(qtbot, panel, node, case)
    case.close()


def view(node_id: str, parent: str | None, kind: str, text: str = "", **changes) -> NodeView:
    values = dict(
        id=node_id,
        parent_id=parent,
        kind=kind,
        model=None,
        status="running",
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        started="2025-03-01T12:00:00.000+00:00",
        ended=None,
        text=text,
        detail={},
        spans=(),
    )
    values.update(changes)
    return NodeView(**values)


def test_user_collapse_and_selection_survive_later_inserts(qtbot):
    panel = make_panel(qtbot)
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    panel.apply(NodeStarted("r", view("n1", "n0", "iteration", detail={"number": 1})))
    panel.apply(NodeStarted("r", view("n2", "n1", "code", "a = 1")))
    model, tree = panel.model, panel.tree
    assert tree.isExpanded(model.index_of("n0")) and tree.isExpanded(model.index_of("n1"))
    qtbot.waitUntil(lambda: panel.selected_node() is not None and panel.selected_node().id == "n2")
    tree.collapse(model.index_of("n1"))  # the user closes iteration 1
    panel.apply(NodeStarted("r", view("n3", "n1", "code", "b = 2")))
    panel.apply(NodeStarted("r", view("n4", "n0", "iteration", detail={"number": 2})))
    panel.apply(NodeStarted("r", view("n5", "n4", "code", "c = 3")))
    assert not tree.isExpanded(model.index_of("n1"))  # stays closed though it got a new child
    assert tree.isExpanded(model.index_of("n4"))  # a new iteration opens by itself
    qtbot.waitUntil(lambda: panel.selected_node().id == "n5")  # following the newest step
    # the user clicks iteration 2: following stops, later steps do not move the selection
    rect = tree.visualRect(model.index_of("n4"))
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.selected_node().id == "n4" and not panel.follow.isChecked()
    panel.apply(NodeUpdated("r", view("n4", "n0", "iteration", "```repl\nc = 3\n```", detail={"number": 2})))
    panel.apply(NodeStarted("r", view("n6", "n5", "llm_query", "Summarise: …", model="gpt-5-mini")))
    panel.apply(NodeFinished("r", view("n6", "n5", "llm_query", "Summarise: …", status="done")))
    qtbot.wait(200)
    assert panel.selected_node().id == "n4"
    assert "c = 3" in panel.detail.primary.view.toPlainText()  # the update of the selected step is shown
    assert tree.isExpanded(model.index_of("n5")) and not tree.isExpanded(model.index_of("n1"))
    # turning following back on jumps to the newest step
    panel.follow.setChecked(True)
    assert panel.selected_node().id == "n6"
    panel.clear()
    assert model.rowCount() == 0 and panel.follow.isChecked() and panel.detail.node_id is None


def test_huge_prompt_is_capped_and_sub_investigations_are_shown(qtbot):
    panel = make_panel(qtbot)
    prompt = "Read this: " + "lorem ipsum dolor sit amet " * 20_000  # 540k characters
    spans = [
        {"doc_id": 3, "start": 0, "end": 5000, "prompt_start": 11, "prompt_end": 5011},
        {"doc_id": 4, "start": 0, "end": 100, "prompt_start": 400_000, "prompt_end": 400_100},  # not drawn
    ]
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    panel.apply(NodeStarted("r", view("n1", "n0", "rlm_query", "Who signed?", detail={"doc_ids": [3, 4]})))
    panel.apply(
        NodeFinished(
            "r",
            view(
                "n1",
                "n0",
                "rlm_query",
                "Who signed?",
                status="done",
                detail={"doc_ids": [3], "answer": "Ann [c2.1]"},
            ),
        )
    )
    panel.apply(NodeStarted("r", view("n2", "n0", "llm_query", prompt, detail={"prompt_spans": spans})))
    begin = time.perf_counter()
    panel.select_node("n2")
    assert time.perf_counter() - begin < 3
    shown = panel.detail.excerpt.document().toPlainText()
    assert len(shown) < MAX_RENDER_CHARS + 200 and "showing the first 200,000 of" in shown
    assert [h[2] for h in panel.detail.excerpt.highlights] == [0]
    assert "document 3" in panel.detail.excerpt.tooltip_at(point_inside(panel.detail.excerpt, 100))
    assert panel.detail.secondary.view.toPlainText() == "Waiting for the sub-model…"
    panel.select_node("n1")
    assert "Who signed?" in panel.detail.primary.view.toPlainText()
    assert "document 3" in panel.detail.primary.view.toPlainText()
    assert panel.detail.secondary.view.toPlainText() == "Ann [c2.1]"


def test_a_shown_panel_keeps_up_with_thousands_of_live_steps(qtbot):
    panel = make_panel(qtbot)
    panel.apply(RunStarted("big", "q", view("n0", None, "root", "q")))
    begin = time.perf_counter()
    for i in range(1, 31):
        panel.apply(NodeStarted("big", view(f"i{i}", "n0", "iteration", detail={"number": i})))
        panel.apply(NodeStarted("big", view(f"c{i}", f"i{i}", "code", "llm_query_batched(chunks)")))
        for j in range(100):
            sub = view(f"s{i}.{j}", f"c{i}", "llm_query", f"Summarise chunk {j}", model="gpt-5-mini")
            panel.apply(NodeStarted("big", sub))
            panel.apply(NodeFinished("big", view(f"s{i}.{j}", f"c{i}", "llm_query", sub.text, status="done")))
        qtbot.wait(1)  # let the window paint and the follow timer fire now and then, as in a real run
    elapsed = time.perf_counter() - begin
    assert len(panel.model) == 1 + 30 * 102
    assert elapsed < 10, f"{elapsed:.1f} s for 6,000 events"
    qtbot.waitUntil(lambda: panel.selected_node().id == "s30.99")


def test_thinking_is_folded_away_and_never_run(qtbot, tmp_path):
    import asyncio

    from rlm_desktop.engine.rlm import run_rlm
    from tests.fake_openai import Reply
    from tests.rlm_script import repl

    with FakeOpenAIServer() as server:
        sample = build_sample_case(tmp_path)
        script = answer_script()
        draft = "<think>I could just guess.\n" + repl("FINAL('a guessed answer')") + "\n</think>\n"
        turns = list(script.root_turns)
        script.root_turns = ["(answered by the queue)", turns[0], draft + turns[1]]
        sub_model = run_config(server).sub_model

        def handler(request):
            reply = script(request)
            reply.usage_mode = "none" if request["model"] == sub_model else "full"
            return reply

        server.handler = handler
        server.queue(Reply(text="", reasoning="Let me think about Rotterdam.", finish_reason="stop"))
        record = asyncio.run(run_rlm(sample.case_path, QUESTION, run_config(server), "sk-test"))
    assert record["status"] == "completed" and "guessed" not in record["answer"]
    panel = make_panel(qtbot)
    panel.load_record(record)
    iterations = [n for n in panel.model.views() if n.kind == "iteration"]
    first, third = iterations[0], iterations[2]
    panel.select_node(first.id)
    assert panel.detail.thinking_button.isVisible() and not panel.detail.thinking.isVisible()
    assert "never run" in panel.detail.thinking_button.text()
    assert "Unusable reply: the model only reasoned" in panel.detail.secondary.view.toPlainText()
    panel.select_node(third.id)
    qtbot.mouseClick(panel.detail.thinking_button, Qt.MouseButton.LeftButton)
    assert panel.detail.thinking.isVisible()
    assert "a guessed answer" in panel.detail.thinking.toPlainText()
    panel.resize(1280, 720)
    panel.grab().save(str(tmp_path / "thinking.png"))
    sub = next(n for n in panel.model.views() if n.kind == "llm_query")
    assert panel.model.data(panel.model.index_of(sub.id, 4)).startswith("~")  # estimated cost marked


def test_the_detail_keeps_up_with_the_newest_step_while_steps_keep_coming(qtbot):
    panel = make_panel(qtbot)
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    panel.apply(NodeStarted("r", view("i1", "n0", "iteration", detail={"number": 1})))
    panel.apply(NodeStarted("r", view("c1", "i1", "code", "llm_query_batched(chunks)")))
    shown = []
    for j in range(25):
        panel.apply(NodeStarted("r", view(f"s{j}", "c1", "llm_query", f"Summarise chunk {j}", model="gpt-5-mini")))
        qtbot.wait(40)  # a new step every 40 ms, more often than the pane redraws
        shown.append(panel.detail.node_id)
    # the pane moved along with the run (several sub-calls shown in turn), not waiting for a lull
    assert len({s for s in shown if s and s.startswith("s")}) >= 3, shown


def test_painting_and_laying_out_the_tree_never_calls_into_python(qtbot):
    """The tree's cells are Qt's own items: a repaint or a relayout after inserts runs no Python (with a Python
    model each visible cell's roles and each row's index, parent and children were Python calls, per frame)."""
    import sys

    panel = make_panel(qtbot)
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    panel.apply(NodeStarted("r", view("i1", "n0", "iteration", detail={"number": 1})))
    panel.apply(NodeStarted("r", view("c1", "i1", "code", "llm_query_batched(chunks)")))
    for j in range(300):
        panel.apply(NodeStarted("r", view(f"s{j}", "c1", "llm_query", f"Summarise chunk {j}", model="gpt-5-mini")))
    qtbot.waitUntil(lambda: panel.selected_node() is not None and panel.selected_node().id == "s299")
    qtbot.wait(150)  # the detail pane's redraw is over
    called: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            called.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    panel.model.flush_changes()
    panel.tree.doItemsLayout()  # what an insert under an open parent costs the view
    sys.setprofile(profile)
    try:
        panel.tree.doItemsLayout()
        panel.tree.viewport().repaint()
        panel.tree.header().viewport().repaint()
    finally:
        sys.setprofile(None)
    assert not [c for c in called if "run_tree_model" in c], called
    assert len(called) < 20, called  # the viewport's event filter, once per event: no call per row or cell
    assert panel.tree.viewport().grab().toImage().width() > 0


def test_the_step_count_is_relabelled_once_per_burst_and_is_right(qtbot):
    panel = make_panel(qtbot)
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    qtbot.waitUntil(lambda: panel.count_label.text() == "1 step")
    texts: list[str] = []
    original = panel.count_label.setText
    panel.count_label.setText = lambda text: (texts.append(text), original(text))  # type: ignore[method-assign]
    panel.apply(NodeStarted("r", view("c1", "n0", "code", "llm_query_batched(chunks)")))
    for j in range(40):
        panel.apply(NodeStarted("r", view(f"s{j}", "c1", "llm_query", f"Summarise chunk {j}")))
    qtbot.waitUntil(lambda: panel.count_label.text() == "42 steps")
    assert texts == ["42 steps"]


def test_the_selected_step_redraws_when_it_changes_inside_a_range_of_changes(qtbot):
    """Changes are told to the view as one range per parent: the selected step need not be the range's first."""
    panel = make_panel(qtbot)
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    panel.apply(NodeStarted("r", view("c1", "n0", "code", "llm_query_batched(chunks)")))
    for j in range(3):
        panel.apply(NodeStarted("r", view(f"s{j}", "c1", "llm_query", f"Summarise chunk {j}")))
    panel.model.flush_changes()
    assert panel.select_node("s1")
    qtbot.waitUntil(lambda: panel.detail.node_id == "s1")
    assert "Waiting for the sub-model" in panel.detail.secondary.view.toPlainText()
    for j in range(3):  # s0 and s2 change in the same turn: the range is s0..s2
        panel.apply(NodeFinished("r", view(f"s{j}", "c1", "llm_query", f"Summarise chunk {j}", status="done",
                                           detail={"response": f"The summary of chunk {j}."})))
    qtbot.waitUntil(lambda: "The summary of chunk 1." in panel.detail.secondary.view.toPlainText())
    assert panel.model.data(panel.model.index_of("s1", 1)) == "done"


def _big_record(iterations: int, subs: int) -> dict:
    def node(node_id, kind, children=(), text="x", model=None):
        return {
            "id": node_id, "kind": kind, "model": model, "status": "done", "prompt_tokens": 10,
            "completion_tokens": 5, "cost_usd": 0.001, "started": "2026-11-26T10:00:00+00:00",
            "ended": "2026-11-26T10:00:01+00:00", "text": text, "spans": [], "children": list(children),
        }  # fmt: skip

    its = []
    for a in range(iterations):
        calls = [node(f"s{a}.{b}", "llm_query", text=f"Summarise part {a}.{b}", model="gpt-5-mini") for b in range(subs)]
        its.append(node(f"i{a}", "iteration", [node(f"c{a}", "code", calls, text="llm_query_batched(parts)")]))
    return {"run_id": "big", "question": "Q?", "status": "completed", "answer": "", "citations": [],
            "cost_usd": 0.5, "cap_usd": None, "tree": node("root", "root", its, text="Q?")}  # fmt: skip


@pytest.mark.qt_log_level_fail("WARNING")
@pytest.mark.qt_log_ignore("propagateSizeHints")  # the offscreen platform's, on showing a window
def test_a_big_saved_run_makes_its_deeper_rows_when_they_are_first_shown(qtbot):
    """A saved run of more than LAZY_ABOVE steps opens with its root, iterations and code rows made; a code
    row's sub-calls are made when it is expanded or one of them is asked for. What shows is what a run of any
    size shows, and the model stays a valid Qt model throughout."""
    panel = make_panel(qtbot)
    model, tree = panel.model, panel.tree
    model.LAZY_ABOVE = 50  # the real bound is 2,000 steps; the test's run is smaller to stay quick
    # Qt's model tester checks the model on every change it signals (its findings are warnings: this test
    # fails on them)
    tester = QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Warning)
    panel.load_record(_big_record(iterations=4, subs=30))
    assert len(model) == 1 + 4 * 32 and sorted(v.id for v in model.views())[:2] == ["c0", "c1"]
    code = model.index_of("c0")
    assert model.rowCount(code) == 1 and not tree.isExpanded(code)  # one row stands for its 30 sub-calls
    assert model.node(model.index(0, 0, code)) is None  # and is no step
    tree.expand(code)  # as a click on its arrow does
    assert model.rowCount(code) == 30
    assert [model.node(model.index(r, 0, code)).id for r in (0, 29)] == ["s0.0", "s0.29"]
    assert model.index(0, 0, code).data() == "Sub-call: Summarise part 0.0"
    deep = model.index_of("s3.7")  # a citation or a search asks for a step not made yet: its way is made
    assert deep.isValid() and model.node(deep).id == "s3.7" and model.rowCount(model.index_of("c3")) == 30
    assert model.rowCount(model.index_of("c2")) == 1  # the others wait
    panel._select(deep)
    assert panel.selected_node().id == "s3.7" and "Summarise part 3.7" in panel.detail.primary.view.toPlainText()
    tree.expand(model.index_of("c1"))
    panel.grab().save("/tmp/run_panel_big_saved_run.png")  # looked at: the rows read as any run's
    del tester


def test_a_narrow_panel_gives_the_detail_its_wrapped_header_and_its_sections_never_overlap(qtbot):
    """At 1280x720 the right column is ~420 px wide and a sub-call's header wraps to two lines, which the
    layout's minimum did not count: the panel gave the detail a line too little and the response's caption was
    drawn under the prompt."""
    panel = make_panel(qtbot)
    panel.resize(412, 440)
    panel.apply(RunStarted("r", "q", view("n0", None, "root", "q")))
    panel.apply(NodeStarted("r", view("n1", "n0", "iteration", detail={"number": 1})))
    panel.apply(NodeStarted("r", view("n2", "n1", "code", "rs = llm_query_batched(parts)")))
    finished = view(
        "n3", "n2", "llm_query", "When did the shipment leave? Text: Harbour report, spring 2023.\n" * 4,
        model="gpt-5-mini", status="done", prompt_tokens=126, completion_tokens=5, cost_usd=0.00004,
        ended="2025-03-01T12:00:00.270+00:00", detail={"response": "4 May 2023"},
    )  # fmt: skip
    panel.apply(NodeStarted("r", finished))
    panel.apply(NodeFinished("r", finished))
    panel.follow.setChecked(False)
    panel._select(panel.model.index_of("n3"))
    qtbot.wait(200)
    detail = panel.detail
    header = detail.header.heightForWidth(detail.width())
    assert header > detail.header.fontMetrics().lineSpacing() * 1.5  # it does wrap at this width
    assert detail.height() >= detail.minimumHeight() >= header + detail.splitter.minimumSizeHint().height()
    primary, secondary = detail.primary.geometry(), detail.secondary.geometry()
    assert detail.secondary.isVisible()
    assert primary.bottom() < secondary.top()  # the response's caption is not under the prompt
