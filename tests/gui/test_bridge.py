"""The run bridge hands a run's events to the window in order, skipping only what later events supersede."""

from __future__ import annotations

from rlm_desktop.engine.events import (
    CallRetriedEvent,
    CostChanged,
    NodeFinished,
    NodeStarted,
    NodeUpdated,
    NodeView,
    RunFinished,
    RunStarted,
)
from rlm_desktop.gui.bridge import RunBridge


def node(node_id: str, status: str = "running", text: str = "") -> NodeView:
    return NodeView(
        id=node_id, parent_id=None if node_id == "n0" else "n0", kind="root" if node_id == "n0" else "llm_query",
        model=None, status=status, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
        started="2025-03-01T12:00:00.000+00:00", ended=None, text=text, detail={}, spans=(),
    )


def cost(run_id: str, calls: int) -> CostChanged:
    return CostChanged(run_id, 0.001 * calls, 0.0, 1.0, calls, 10 * calls, calls, 0.1 * calls)


def test_a_backlog_keeps_every_start_and_finish_and_only_the_newest_updates_and_cost(qtbot):
    bridge = RunBridge()
    shown: list[object] = []
    bridge.run_event.connect(shown.append)
    events = [
        RunStarted("r", "q", node("n0")),
        NodeStarted("r", node("a")),
        NodeUpdated("r", node("a", text="first words")),
        cost("r", 1),
        NodeStarted("r", node("b")),
        NodeUpdated("r", node("a", text="first words and more")),  # supersedes the update above
        NodeUpdated("r", node("b", text="b's only update")),  # nothing later for b: kept
        CallRetriedEvent("r", "a", 1, "timeout", 0.5),
        cost("r", 2),
        NodeFinished("r", node("a", status="done", text="all of a")),  # supersedes a's updates
        cost("r", 3),  # the newest snapshot: kept, the two above are not
        cost("other", 9),  # another run's snapshot supersedes nothing of this run
        RunFinished("r", "completed", {"run_id": "r"}),
    ]
    for event in events:
        bridge._enqueue(event)  # as the engine's thread does
    bridge.flush()
    assert shown == [
        events[0],
        events[1],
        events[4],
        events[6],
        events[7],
        events[9],
        events[10],
        events[11],
        events[12],
    ]


def test_events_arriving_while_the_backlog_drains_are_kept_in_order(qtbot):
    bridge = RunBridge()
    bridge.SLICE_MS = 0  # one event per slice: the backlog outlives several turns of the event loop
    bridge.FRAME_MS = 1
    shown: list[object] = []
    bridge.run_event.connect(shown.append)
    first = [RunStarted("r", "q", node("n0"))] + [NodeStarted("r", node(f"s{i}")) for i in range(5)]
    for event in first:
        bridge._enqueue(event)
    qtbot.waitUntil(lambda: len(shown) >= 2)
    later = [NodeUpdated("r", node("s0", text="x")), NodeFinished("r", node("s0", status="done"))]
    for event in later:
        bridge._enqueue(event)
    qtbot.waitUntil(lambda: len(shown) == len(first) + 1, timeout=3000)
    assert shown == first + [later[1]]  # the update was superseded by the finish queued after it
