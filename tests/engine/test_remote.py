"""A question thread run in a child process (the window's engine): its events arrive typed, its REPL stays alive
between questions, Stop ends it, a killed child leaves its run saved, and the key travels only in the pipe."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.events import CostChanged, NodeFinished, NodeStarted, RunFinished, RunStarted
from rlm_desktop.engine.remote import RemoteRunHandle, RemoteSession
from rlm_desktop.engine.rlm import RunConfig
from rlm_desktop.engine.runs import list_runs, load_run
from rlm_desktop.store.case import Case

FACT = "The shipment of 40 containers left Rotterdam on 4 May 2023 under the name Blue Heron."
FIRST = [
    repl("hits = search('Rotterdam')\nshipment_doc = hits[0].doc_id\nprint(shipment_doc)"),
    repl("rs = llm_query_batched([f'part {i}' for i in range(3)])\nprint(len(rs))"),
    repl("m = quote(shipment_doc, 'left Rotterdam on 4 May 2023')\nFINAL(f'It left on 4 May 2023 {m}.')"),
]
SECOND = [
    repl("print('kept:', shipment_doc)"),
    repl("FINAL('It was document ' + str(shipment_doc))"),
]
KEY = "sk-remote-Zq81xPw"  # key-shaped, not word-like (redaction removes a remembered key's pieces)


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        for i in range(3):
            case.add_text_document(f"filler {i}.txt", f"Routine memo {i}. Nothing about ships here.\n" * 20)
        case.add_text_document("manifest.txt", "Manifest\n\n" + FACT + "\n")
    return path


@pytest.fixture
def session():
    session = RemoteSession(idle_close_s=1)  # a thread's REPL outlives its run, then closes when idle
    yield session
    session.close()


def config(fake):
    return RunConfig(
        root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES, max_retries=0
    )


def ask(session, case_path, fake, question, follows=None):
    handle = RemoteRunHandle(case_path, question, config(fake), KEY, follows=follows, session=session)
    events: list[object] = []
    handle.subscribe(events.append)
    handle.start()
    return handle, events


def test_a_thread_in_a_child_process_sends_its_events_and_keeps_its_repl(fake_openai, case_path, session):
    # a usage error is raised in the caller, before anything runs
    with pytest.raises(ValueError, match="nosuchrun"):
        RemoteRunHandle(case_path, "q", config(fake_openai), KEY, follows="nosuchrun", session=session).start()
    assert not fake_openai.chat_requests
    fake_openai.handler = Script(FIRST)
    handle, events = ask(session, case_path, fake_openai, "When did it leave?")
    first = handle.wait(60)
    assert first["status"] == "completed" and first["answer"].startswith("It left on 4 May 2023")
    assert session.pid != os.getpid() and session.alive
    # the same typed events as in-process, in order, the run's end last
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[-1].record["run_id"] == first["run_id"] == handle.run_id
    subcalls = {e.node.id for e in events if isinstance(e, NodeFinished) and e.node.kind == "llm_query"}
    assert len(subcalls) == 3 and any(isinstance(e, CostChanged) and e.calls >= 4 for e in events)
    with Case.open(case_path) as case:  # saved by the child, in the case
        assert [r.status for r in list_runs(case)] == ["completed"]
    # the REPL worker lives in the child's process tree, and stays for the thread's next question
    repl_pid = session.repl_pid
    assert repl_pid is not None and session.pid in _ancestors(repl_pid)
    script = Script(SECOND)
    fake_openai.handler = script
    handle, _ = ask(session, case_path, fake_openai, "Which document?", follows=first["run_id"])
    second = handle.wait(60)
    assert second["status"] == "completed" and second["follows"] == first["run_id"]
    doc_id = first["citations"][0]["doc_id"]
    assert f"kept: {doc_id}" in script.root_requests[1]["messages"][-1]["content"]  # run 1's variable
    assert session.repl_pid == repl_pid
    # idle, the thread's REPL closes by itself, and the window hears of it (its follow-up bar says so)
    _wait_until(lambda: session.repl_pid is None, 15)
    assert not os.path.exists(f"/proc/{repl_pid}") or _zombie(repl_pid)
    assert session.alive  # the thread's engine stays for its next question


def test_stop_ends_a_remote_run_at_once_and_it_is_saved_cancelled(fake_openai, case_path, session):
    fake_openai.handler = Script([repl("print(1)"), repl("import time\ntime.sleep(30)")])
    handle, events = ask(session, case_path, fake_openai, "A run to stop")
    _wait_until(lambda: any(isinstance(e, NodeStarted) and e.node.kind == "code" for e in events), 30)
    time.sleep(0.2)  # the second cell is running
    started = time.monotonic()
    handle.cancel()
    record = handle.wait(10)
    assert record["status"] == "cancelled" and time.monotonic() - started < 5
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"
    with Case.open(case_path) as case:
        assert load_run(case, handle.run_id)["status"] == "cancelled"
    assert session.alive  # the thread goes on: its next question uses the same process


def test_a_killed_engine_process_ends_the_run_with_a_reason_and_leaves_it_saved(fake_openai, case_path, session):
    fake_openai.handler = Script([repl("print('working')"), repl("import time\ntime.sleep(60)")])
    handle, events = ask(session, case_path, fake_openai, "A run whose engine dies")
    _wait_until(lambda: fake_openai.wait_for_requests(2, 0.01), 30)
    time.sleep(0.7)  # past the engine's half-second save: the steps so far are in the case
    os.kill(session.pid, signal.SIGKILL)
    assert handle.join(10)
    assert handle.record is None and "ended unexpectedly" in str(handle.error)
    assert session.closed and not session.alive
    with Case.open(case_path) as case:
        saved = load_run(case, handle.run_id)
        assert saved["status"] == "failed"  # the process that ran it is gone
        assert "ended unexpectedly (exit code -9)" in saved["error"]  # the reason is saved with it
        kinds = [n["kind"] for n in _walk(saved["tree"])]
        assert kinds.count("iteration") >= 1 and "code" in kinds  # its trajectory as far as it got


def test_the_key_reaches_the_engine_only_through_the_pipe(fake_openai, case_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    session = RemoteSession()  # started without the key anywhere in this process's environment
    try:
        fake_openai.handler = Script([repl("import time\ntime.sleep(30)")])
        handle, _ = ask(session, case_path, fake_openai, "Who?")
        _wait_until(lambda: fake_openai.wait_for_requests(1, 0.01), 30)
        time.sleep(0.5)  # its REPL cell is running
        # the engine used it: the server got it
        headers = {k.lower(): v for k, v in fake_openai.chat_requests[0].headers.items()}
        assert headers["authorization"] == f"Bearer {KEY}"
        for pid in (session.pid, *_children_tree(session.pid)):
            for part in ("cmdline", "environ"):
                with open(f"/proc/{pid}/{part}", "rb") as f:
                    assert KEY.encode() not in f.read(), (pid, part)
        handle.cancel()
        handle.join(10)
    finally:
        session.close()


def _wait_until(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        threading.Event().wait(0.02)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _walk(node):
    yield node
    for child in node.get("children", []):
        yield from _walk(child)


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().split(")")[-1].split()[1])
        out.append(pid)
    return out


def _children_tree(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if pid in _ancestors(int(entry)):
                    found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found


def test_a_stop_the_engine_does_not_honour_ends_its_process_and_the_run_is_saved_cancelled_with_its_cost(
    fake_openai, case_path
):
    """A child that cannot act on Stop (here: frozen with SIGSTOP while a sub-call is in flight) is killed
    after `stop_kill_s`. The run then ends as the user asked, `cancelled`, in the window's events and in the
    case, and what its call in flight had reserved is counted as held: the server may bill it."""
    script = Script([repl("print(llm_query_batched(['a quick one', 'a slow one']))")])

    def handler(request):
        reply = script(request)
        slow = request["model"] == SUB and "slow" in request["messages"][-1]["content"]
        return dataclasses.replace(reply, delay_s=30) if slow else reply

    session = RemoteSession(idle_close_s=1, stop_kill_s=0.5)
    try:
        fake_openai.handler = handler
        handle, events = ask(session, case_path, fake_openai, "A run whose engine freezes")
        # the quick sub-call settled: the cost the child sent counts the slow one's reservation
        _wait_until(lambda: handle.last_cost is not None and handle.last_cost.reserved_usd > 0, 30)
        reserved = handle.last_cost.reserved_usd
        time.sleep(0.7)  # past the engine's half-second save: the steps so far are in the case
        os.kill(session.pid, signal.SIGSTOP)
        started = time.monotonic()
        handle.cancel()
        record = handle.wait(10)
        assert 0.5 <= time.monotonic() - started < 5
        assert not session.alive
        assert record["status"] == "cancelled" and "did not stop within 0.5 s" in record["error"]
        finished = [e for e in events if isinstance(e, RunFinished)]
        assert len(finished) == 1 and finished[0].status == "cancelled"
        assert isinstance(events[-2], CostChanged) and events[-2].held_usd >= reserved
        with Case.open(case_path) as case:
            saved = load_run(case, handle.run_id)
            summary = next(r for r in list_runs(case) if r.run_id == handle.run_id)
        assert saved["status"] == summary.status == "cancelled"
        assert saved["cost_held_usd"] >= reserved > 0
        assert saved["cost_usd"] == pytest.approx(saved["cost_billed_usd"] + saved["cost_held_usd"])
        assert saved["cost_billed_usd"] > 0 and summary.cost_usd == pytest.approx(saved["cost_usd"])
        kinds = [n["kind"] for n in _walk(saved["tree"])]
        assert "code" in kinds  # its trajectory as far as it got
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(session.pid, signal.SIGCONT)
        session.close()
