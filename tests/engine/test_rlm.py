"""The RLM loop end to end: real sandbox, real openai client, a scripted fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.engine.runs import list_runs, load_run
from rlm_desktop.store.case import Case

FACT = "The shipment of 40 containers left Rotterdam on 4 May 2023 under the name Blue Heron."


@pytest.fixture
def case_path(tmp_path):
    path = tmp_path / "case.sqlite"
    with Case.open(path) as case:
        for i in range(30):
            case.add_text_document(f"filler {i}.txt", f"Routine memo {i}. Nothing about ships here.\n" * 40)
        case.add_text_document("manifest.txt", "Manifest\n\n" + FACT + "\nSigned, the harbour master.\n")
    return path


def config(fake, **overrides):
    values = dict(
        root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES, max_retries=0
    )
    values.update(overrides)
    return RunConfig(**values)


def test_finds_a_fact_and_cites_it_verified(fake_openai, case_path):
    script = Script(
        [
            repl("hits = search('Rotterdam')\nprint([(h.doc_id, h.snippet(40)) for h in hits])"),
            repl(
                "doc = context.by_id(hits[0].doc_id)\n"
                "answer = llm_query('When did the shipment leave? Text: ' + doc.text)\n"
                "m = quote(doc.id, 'left Rotterdam on 4 May 2023')\n"
                "FINAL(f'It left on 4 May 2023 {m}. Sub-model says: {answer}')"
            ),
        ],
        sub=lambda prompt: "4 May 2023",
    )
    fake_openai.handler = script
    record = asyncio.run(
        run_rlm(case_path, "When did the shipment leave Rotterdam?", config(fake_openai), "sk-test")
    )
    assert record["status"] == "completed", record.get("error")
    assert record["answer"].startswith("It left on 4 May 2023 [c1].")
    (citation,) = record["citations"]
    assert citation["verified"] and citation["quote"] == "left Rotterdam on 4 May 2023"
    with Case.open(case_path) as case:
        assert case.text(citation["doc_id"])[citation["start"] : citation["end"]] == citation["quote"]
        assert [r.run_id for r in list_runs(case)] == [record["run_id"]]
        saved = load_run(case, record["run_id"])
    assert saved["status"] == "completed" and saved["citations"] == record["citations"]
    # the tree: root > iteration > code > llm_query, with the sub-call's source spans found from its text
    iterations = saved["tree"]["children"]
    assert [n["kind"] for n in iterations] == ["iteration", "iteration"]
    (sub,) = [n for n in iterations[1]["children"][0]["children"] if n["kind"] == "llm_query"]
    assert sub["model"] == SUB and sub["response"] == "4 May 2023"
    assert sub["spans"] and sub["spans"][0]["doc_id"] == citation["doc_id"]
    assert record["cost_usd"] > 0 and set(record["usage"]) == {ROOT, SUB}
    assert "sk-test" not in str(saved)


def test_final_on_the_first_turn_is_refused(fake_openai, case_path):
    script = Script(
        [
            repl("FINAL('a guess')"),
            repl("print(len(context))"),
            repl("FINAL('checked: ' + str(len(context)))"),
        ]
    )
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "How many documents?", config(fake_openai), "k"))
    assert record["status"] == "completed"
    assert record["answer"] == "checked: 31"
    second_prompt = script.root_requests[1]["messages"][-1]["content"]
    assert "FINAL refused" in second_prompt


def test_a_fact_in_a_case_of_over_a_million_tokens(fake_openai, tmp_path):
    path = tmp_path / "big.sqlite"
    words = [
        "ledger",
        "invoice",
        "payment",
        "account",
        "transfer",
        "memo",
        "board",
        "minutes",
        "quarterly",
        "audit",
    ]
    with Case.open(path) as case, case.transaction():
        import hashlib

        for i in range(450):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(1600))  # ~11k characters
            if i == 317:
                text = (
                    text[:5000] + " The offshore account number is KY-99-7731 at Cayman Trust. " + text[5000:]
                )
            case.insert_document(
                kind="text",
                title=f"doc {i}",
                text=text,
                size=len(text),
                sha256=hashlib.sha256(text.encode()).hexdigest(),
            )
    with Case.open(path) as case:
        total = sum(d.chars for d in case.documents())
    assert total // 4 > 1_000_000
    script = Script(
        [
            repl(
                "print(len(context), sum(d.chars for d in context))\nhits = grep(r'account number is [A-Z0-9-]+')\n"
                "print([(h.doc_id, h.text) for h in hits])"
            ),
            repl("h = hits[0]\nm = cite(h.doc_id, h.start, h.end)\nFINAL(f'The account is KY-99-7731 {m}')"),
        ]
    )
    fake_openai.handler = script
    record = asyncio.run(run_rlm(path, "Which offshore account?", config(fake_openai), "k"))
    assert record["status"] == "completed"
    (citation,) = record["citations"]
    assert citation["verified"] and citation["quote"] == "account number is KY-99-7731"
    assert citation["title"] == "doc 317"
    # the root saw metadata only: no document text in what it was sent
    opening = script.root_requests[0]["messages"][1]["content"]
    assert "450 documents" in opening and "KY-99" not in opening and len(opening) < 2000


def test_batched_sub_calls_run_concurrently_under_the_limit(fake_openai, case_path):
    script = Script(
        [
            repl(
                "docs = list(context)[:12]\nanswers = llm_query_batched([f'Summarise: {d.text[:300]}' for d in docs])\n"
                "print(len(answers), answers[0])"
            ),
            repl("FINAL('done')"),
        ],
        sub=lambda p: "summary",
        sub_delay_s=0.3,
    )
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Summarise", config(fake_openai, concurrency=4), "k"))
    assert record["status"] == "completed"
    assert fake_openai.max_in_flight == 4  # really concurrent, and never above the limit
    subs = [r for r in fake_openai.chat_requests if r.json["model"] == SUB]
    assert len(subs) == 12
    span = max(r.ended for r in subs) - min(r.started for r in subs)
    assert span < 12 * 0.3 / 2  # far below the serial time of 3.6 s (ideal 0.9 s)


def test_depth_two_recursion_then_fallback_to_llm_query(fake_openai, case_path):
    outer = [
        repl("ids = [d.id for d in context][:5]\nr = rlm_query('LEVEL1 question', ids)\nprint(r)"),
        repl("FINAL('root got: ' + r)"),
    ]
    level1 = [
        repl("r1 = rlm_query('LEVEL2 question', [d.id for d in context][:2])\nprint(r1)"),
        repl("FINAL('level1 got: ' + r1)"),
    ]
    level2 = [
        repl("r2 = rlm_query('LEVEL3 question', [context[0].id])\nprint(r2)"),
        repl("FINAL('level2 got: ' + r2)"),
    ]
    script = Script(
        outer,
        levels={"Question: LEVEL1": level1, "Question: LEVEL2": level2},
        sub=lambda p: "leaf answer" if p.startswith("LEVEL3") else "?",
    )
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Top question", config(fake_openai, max_depth=2), "k"))
    assert record["status"] == "completed", record.get("error")
    assert record["answer"] == "root got: level1 got: level2 got: leaf answer"

    def find(node, kind):
        return [n for n in _walk(node) if n["kind"] == kind]

    rlm_nodes = find(record["tree"], "rlm_query")
    assert [n["depth"] for n in rlm_nodes] == [1, 2]
    (leaf,) = [n for n in find(record["tree"], "llm_query") if n["text"].startswith("LEVEL3")]
    assert leaf["spans"]  # the fallback prompt carried the document's text, attributed to it


def _walk(node):
    yield node
    for child in node["children"]:
        yield from _walk(child)


def test_iterations_run_out_then_best_final_answer(fake_openai, case_path):
    script = Script([repl("print(1 + 1)"), repl("print(2 + 2)"), "My best answer: unclear."])
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai, max_iterations=2), "k"))
    assert record["status"] == "limit_reached"
    assert record["answer"] == "My best answer: unclear."
    assert "no iterations left" in script.root_requests[-1]["messages"][-1]["content"]


def test_repeated_code_is_refused_then_stops_the_run(fake_openai, case_path):
    script = Script([repl("print('same')")])
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai), "k"))
    assert record["status"] == "limit_reached" and "same code" in record["error"]
    assert len(script.root_requests) == 4
    assert "already ran this exact code twice" in script.root_requests[3]["messages"][-1]["content"]


def test_repeated_sub_prompt_is_refused_then_stops_the_run(fake_openai, case_path):
    script = Script([repl(f"r = llm_query('same question')  # turn {i}\nprint(r)") for i in range(6)])
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai), "k"))
    assert record["status"] == "limit_reached" and "sub-prompt" in record["error"]
    assert len(script.sub_prompts) == 2  # the third was refused in the REPL, the fourth stopped the run
    assert "already sent twice" in script.root_requests[3]["messages"][-1]["content"]


def test_consecutive_errors_stop_the_run(fake_openai, case_path):
    script = Script([repl(f"raise ValueError('broken {i}')") for i in range(10)])
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai, max_consecutive_errors=3), "k"))
    assert record["status"] == "limit_reached" and "3 consecutive" in record["error"]


def test_sub_call_limit(fake_openai, case_path):
    script = Script(
        [
            repl("r = llm_query_batched([f'q{i}' for i in range(5)])\nprint(r)"),
            repl("r = llm_query_batched([f'p{i}' for i in range(3)])\nprint(r)"),
            repl("FINAL('x')"),
        ]
    )
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai, max_subcalls=6), "k"))
    assert len(script.sub_prompts) == 5
    assert "exceed the 1 sub-calls left" in script.root_requests[2]["messages"][-1]["content"]
    assert record["status"] == "completed"


def test_retries_are_visible_in_the_trajectory(fake_openai, case_path):
    from tests.fake_openai import Reply

    script = Script([repl("print(len(context))"), repl("FINAL('ok')")])
    fake_openai.queue(Reply(status=429, error="slow down", retry_after=0))
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai, max_retries=2), "k"))
    assert record["status"] == "completed"
    first = record["tree"]["children"][0]
    assert first["retries"][0]["attempt"] == 1 and "429" in first["retries"][0]["reason"]


def test_one_cost_event_per_settled_call_with_its_tokens(fake_openai, case_path):
    from rlm_desktop.engine.events import CostChanged

    fake_openai.handler = Script(
        [
            repl("hits = search('Rotterdam')\nprint(len(hits))"),
            repl(
                "r = llm_query_batched(['a ' + hits[0].text, 'b ' + hits[0].text, 'c ' + hits[0].text])\nprint(r)"
            ),
            repl("m = quote(hits[0].doc_id, 'left Rotterdam')\nFINAL(f'It left Rotterdam {m}.')"),
        ]
    )
    events = []
    record = asyncio.run(run_rlm(case_path, "Q", config(fake_openai), "sk", emit=events.append))
    assert record["status"] == "completed"
    costs = [e for e in events if isinstance(e, CostChanged)]
    calls = sum(u["calls"] for u in record["usage"].values())
    assert calls == 6 and 1 <= len(costs) <= calls  # never one per reservation, never stale
    assert [c.calls for c in costs] == sorted({c.calls for c in costs})  # each one says something new
    last = costs[-1]
    assert (last.calls, last.billed_usd) == (calls, pytest.approx(record["cost_billed_usd"]))
    assert last.prompt_tokens == sum(u["prompt_tokens"] for u in record["usage"].values())
