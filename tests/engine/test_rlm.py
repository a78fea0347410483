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
    values = dict(root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES,
                  max_retries=0)
    values.update(overrides)
    return RunConfig(**values)


def test_finds_a_fact_and_cites_it_verified(fake_openai, case_path):
    script = Script([
        repl("hits = search('Rotterdam')\nprint([(h.doc_id, h.snippet(40)) for h in hits])"),
        repl(
            "doc = context.by_id(hits[0].doc_id)\n"
            "answer = llm_query('When did the shipment leave? Text: ' + doc.text)\n"
            "m = quote(doc.id, 'left Rotterdam on 4 May 2023')\n"
            "FINAL(f'It left on 4 May 2023 {m}. Sub-model says: {answer}')"
        ),
    ], sub=lambda prompt: "4 May 2023")
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "When did the shipment leave Rotterdam?", config(fake_openai), "sk-test"))
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
    script = Script([
        repl("FINAL('a guess')"),
        repl("print(len(context))"),
        repl("FINAL('checked: ' + str(len(context)))"),
    ])
    fake_openai.handler = script
    record = asyncio.run(run_rlm(case_path, "How many documents?", config(fake_openai), "k"))
    assert record["status"] == "completed"
    assert record["answer"] == "checked: 31"
    second_prompt = script.root_requests[1]["messages"][-1]["content"]
    assert "FINAL refused" in second_prompt
