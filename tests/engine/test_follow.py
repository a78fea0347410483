"""Follow-up questions: the thread's history in the opening and the REPL, a REPL kept between questions."""

from __future__ import annotations

import asyncio

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.handle import RunHandle
from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.engine.runs import delete_run, list_runs, load_run, rename_run, thread_history
from rlm_desktop.engine.session import HISTORY_ANSWER_CHARS, ReplKeeper, ThreadSession
from rlm_desktop.store.case import Case

FACT = "The shipment of 40 containers left Rotterdam on 4 May 2023 under the name Blue Heron."

FIRST = [
    repl("hits = search('Rotterdam')\nshipment_doc = hits[0].doc_id\nprint(shipment_doc)"),
    repl("m = quote(shipment_doc, 'left Rotterdam on 4 May 2023')\nFINAL(f'It left on 4 May 2023 {m}.')"),
]
# The follow-up reads a variable of the first question's REPL, and what `history` holds.
SECOND = [
    repl(
        "try:\n    print('kept:', shipment_doc)\nexcept NameError:\n    print('kept: gone')\n"
        "print('history:', len(history), history[-1]['answer'], history[-1]['citations'][0]['quote'])"
    ),
    repl(
        "m = quote(history[-1]['citations'][0]['doc_id'], 'Blue Heron')\nFINAL(f'Its name was Blue Heron {m}.')"
    ),
]


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        for i in range(5):
            case.add_text_document(f"filler {i}.txt", f"Routine memo {i}. Nothing about ships here.\n" * 20)
        case.add_text_document("manifest.txt", "Manifest\n\n" + FACT + "\n")
    return path


def config(fake):
    return RunConfig(
        root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES, max_retries=0
    )


def two_questions(fake, case_path, keeper):
    first_script, second_script = Script(FIRST), Script(SECOND)

    async def both():
        fake.handler = first_script
        first = await run_rlm(case_path, "When did it leave?", config(fake), "sk-test", keeper=keeper)
        fake.handler = second_script
        second = await run_rlm(
            case_path,
            "Under which name?",
            config(fake),
            "sk-test",
            follows=first["run_id"][:6],
            keeper=keeper,
        )
        if keeper is not None:
            await keeper.close()
        return first, second

    first, second = asyncio.run(both())
    return first, second, second_script


def feedback_of(script, turn):
    return script.root_requests[turn]["messages"][-1]["content"]


def test_a_follow_up_sees_the_thread_and_keeps_the_repl(fake_openai, case_path):
    first, second, script = two_questions(fake_openai, case_path, ReplKeeper())
    assert first["status"] == second["status"] == "completed", second.get("error")
    assert first["follows"] is None and second["follows"] == first["run_id"]  # the full id from a prefix
    opening = script.root_requests[0]["messages"][1]["content"]
    assert "Question: Under which name?" in opening
    assert "It left on 4 May 2023 [c1]." in opening and "left Rotterdam on 4 May 2023" in opening
    assert "variables are all still there" in opening
    output = feedback_of(script, 1)
    assert f"kept: {first['citations'][0]['doc_id']}" in output  # a variable of run 1, read in run 2
    assert "history: 1 It left on 4 May 2023 [c1]. left Rotterdam on 4 May 2023" in output
    (c,) = second["citations"]
    assert c["verified"] and c["quote"] == "Blue Heron" and c["marker"] != "[c1]"
    with Case.open(case_path) as case:
        assert load_run(case, second["run_id"])["follows"] == first["run_id"]
        assert [h["run_id"] for h in thread_history(case, second["run_id"])] == [
            first["run_id"],
            second["run_id"],
        ]


def test_without_a_kept_repl_the_follow_up_has_history_only(fake_openai, case_path):
    first, second, script = two_questions(fake_openai, case_path, None)
    assert second["status"] == "completed" and second["follows"] == first["run_id"]
    assert "This is a fresh REPL" in script.root_requests[0]["messages"][1]["content"]
    output = feedback_of(script, 1)
    assert "kept: gone" in output and "history: 1 It left on 4 May 2023 [c1]." in output


def test_a_long_answer_is_cut_in_the_opening_but_whole_in_history(fake_openai, case_path):
    long_answer = "A" * (HISTORY_ANSWER_CHARS * 3)
    fake_openai.handler = Script([repl("x = 1\nprint(x)"), repl(f"FINAL('{long_answer}')")])
    first = asyncio.run(run_rlm(case_path, "Long?", config(fake_openai), "sk-test"))
    script = Script([repl("print(len(history[0]['answer']))"), repl("FINAL('ok')")])
    fake_openai.handler = script
    asyncio.run(run_rlm(case_path, "Then?", config(fake_openai), "sk-test", follows=first["run_id"]))
    opening = script.root_requests[0]["messages"][1]["content"]
    assert "A" * HISTORY_ANSWER_CHARS in opening and "A" * (HISTORY_ANSWER_CHARS + 1) not in opening
    assert "answer cut here" in opening and len(opening) < 8000
    assert str(len(long_answer)) in feedback_of(script, 1)


def test_an_unknown_run_to_follow_is_refused(fake_openai, case_path):
    with pytest.raises(KeyError, match="no run 'nope'"):
        asyncio.run(run_rlm(case_path, "Q?", config(fake_openai), "sk-test", follows="nope"))
    handle = RunHandle(case_path, "Q?", config(fake_openai), "sk-test", follows="nope")
    with pytest.raises(ValueError, match="no run 'nope'"):
        handle.start()
    assert fake_openai.chat_requests == []


def test_a_session_keeps_the_repl_between_handles_and_closes_it_when_idle(fake_openai, case_path):
    session = ThreadSession(idle_close_s=60)
    try:
        fake_openai.handler = Script(FIRST)
        first = (
            RunHandle(case_path, "When?", config(fake_openai), "sk-test", session=session).start().wait(60)
        )
        assert session.repl_alive
        pid = session.keeper.sandbox.pid
        script = Script(SECOND)
        fake_openai.handler = script
        second = (
            RunHandle(
                case_path, "Name?", config(fake_openai), "sk-test", follows=first["run_id"], session=session
            )
            .start()
            .wait(60)
        )
        assert second["status"] == "completed" and session.keeper.sandbox.pid == pid
        assert f"kept: {first['citations'][0]['doc_id']}" in feedback_of(script, 1)
        session.idle_close_s = 0.01  # the next idle period is short: the REPL is closed
        fake_openai.handler = Script([repl("print(1)"), repl("FINAL('done')")])
        RunHandle(case_path, "More?", config(fake_openai), "sk-test", session=session).start().wait(60)
        for _ in range(200):
            if not session.repl_alive:
                break
            asyncio.run(asyncio.sleep(0.01))
        assert not session.repl_alive
    finally:
        session.close()


def test_cancel_kills_a_kept_repl(fake_openai, case_path):
    session = ThreadSession()
    try:
        fake_openai.handler = Script(FIRST)
        RunHandle(case_path, "When?", config(fake_openai), "sk-test", session=session).start().wait(60)
        assert session.repl_alive
        fake_openai.handler = Script([repl("import time\ntime.sleep(30)")])
        handle = RunHandle(case_path, "Slow?", config(fake_openai), "sk-test", session=session).start()
        assert fake_openai.wait_for_requests(3, 10)
        handle.cancel()
        assert handle.wait(10)["status"] == "cancelled"
        assert not session.repl_alive and session.keeper.sandbox is None
    finally:
        session.close()


def test_delete_keeps_the_thread_and_rename_labels(fake_openai, case_path):
    first, second, _ = two_questions(fake_openai, case_path, None)
    fake_openai.handler = Script(SECOND)
    third = asyncio.run(run_rlm(case_path, "And?", config(fake_openai), "sk-test", follows=second["run_id"]))
    with Case.open(case_path) as case:
        rename_run(case, first["run_id"], "  The   shipment  ")
        assert {r.run_id: r.label for r in list_runs(case)}[first["run_id"]] == "The shipment"
        assert delete_run(case, second["run_id"]) == 1
        assert [r.run_id for r in list_runs(case)] == [third["run_id"], first["run_id"]]
        assert load_run(case, third["run_id"])["follows"] == first["run_id"]
        assert [h["run_id"] for h in thread_history(case, third["run_id"])] == [
            first["run_id"],
            third["run_id"],
        ]
        assert (
            case.conn.execute(
                "SELECT count(*) FROM run_nodes WHERE run_id = ?", (second["run_id"],)
            ).fetchone()[0]
            == 0
        )
        with pytest.raises(KeyError):
            delete_run(case, second["run_id"])
        rename_run(case, first["run_id"], " ")
        assert load_run(case, first["run_id"]).get("label") is None


def test_a_long_thread_gives_its_newest_runs(fake_openai, case_path):
    from rlm_desktop.engine.runs import RunStore

    store = RunStore(case_path)
    previous = None
    for i in range(8):
        store.save(
            {
                "run_id": f"run{i:09d}",
                "question": f"q{i}",
                "status": "completed",
                "started": f"2026-01-0{i + 1}",
                "cost_usd": 0.0,
                "cap_usd": None,
                "answer": f"a{i}",
                "follows": previous,
            },
            [],
        )
        previous = f"run{i:09d}"
    store.close()
    with Case.open(case_path) as case:
        assert [h["question"] for h in thread_history(case, previous, limit=3)] == ["q5", "q6", "q7"]
        assert len(thread_history(case, previous)) == 8


def test_the_opening_stays_bounded_for_a_long_thread():
    from rlm_desktop.engine.session import HISTORY_OPENING_CHARS, history_opening

    history = [
        {
            "run_id": f"r{i}",
            "question": "Q" * 5000,
            "answer": "A" * 9000,
            "citations": [
                {"marker": f"[c{j}]", "doc_id": 1, "start": j, "end": j + 500, "quote": "x" * 500}
                for j in range(30)
            ],
        }
        for i in range(10)
    ]
    text = "\n".join(history_opening(history, repl_kept=False))
    assert len(text) < HISTORY_OPENING_CHARS + 2000
    assert "history[9] (run r9)" in text and "(and 18 more in history[9]['citations'])" in text
    assert "history[0] to history[" in text and "fresh REPL" in text
