"""`ask` end to end against each quirk of real model servers: the right answer or a clear error, honest money.

Every test runs the real CLI in a subprocess against the fake server switched to one quirk and
audits the run record: billed cost equals what the fake billed (usage the client received),
held cost is at most the reservations of the calls without usage, billed + held never passes
the cap, and no traceback reaches the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.budget import upper_bound_cost
from rlm_desktop.engine.models import read_usage
from rlm_desktop.engine.pricing import PriceTable
from rlm_desktop.store.case import Case
from tests.fake_openai import Reply

CAP = 0.5
ANSWER = "The meeting is on 12 June in Geneva [c1]."
LOOK = repl("hits = search('meeting')\nprint([(h.doc_id, h.snippet(30)) for h in hits])")
CONCLUDE = repl(
    "m = quote(hits[0].doc_id, 'on 12 June in Geneva')\nFINAL(f'The meeting is on 12 June in Geneva {m}.')"
)
FINDING = [LOOK, CONCLUDE]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting with the auditors is on 12 June in Geneva.\n")
    return home


def settings(home, **values):
    (home / "settings.json").write_text(json.dumps(values), encoding="utf-8")


def ask(home, base_url, *extra, cap=CAP, root=ROOT, sub=SUB, prices=PRICES):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    env.pop("OPENAI_BASE_URL", None)
    args = [
        sys.executable,
        "-m",
        "rlm_desktop",
        "ask",
        "When is the meeting?",
        "--json",
        "--base-url",
        base_url,
    ]
    args += ["--root-model", root, "--sub-model", sub, *(a for p in prices for a in ("--price", p))]
    args += ["--cap", str(cap)] if cap is not None else ["--no-cap"]
    proc = subprocess.run([*args, *extra], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.stdout.strip():
        assert "Traceback" not in (json.loads(proc.stdout).get("error") or "")
    return proc


def audited(proc, fake, *, prices=PRICES, cap=CAP, skip=0) -> dict:
    """The run record, after checking its money against what the fake server really billed
    (for the requests after the first `skip`, which belong to something else)."""
    record = json.loads(proc.stdout)
    table = PriceTable(price_args=prices)
    billed = held_bound = 0.0
    for request in fake.chat_requests[skip:]:
        body = request.json or {}
        price = table.get(body.get("model", ""))
        if price is None:
            continue
        usage = read_usage(request.usage_sent)
        if usage is not None:
            billed += price.cost(*usage)
        elif request.status is None or request.status >= 500 or request.status in (200, 408):
            limit = body.get("max_completion_tokens") or body.get("max_tokens") or 0
            held_bound += upper_bound_cost(price, body.get("messages", []), int(limit))
    assert record["cost_billed_usd"] == pytest.approx(billed, rel=1e-6, abs=1e-9)
    assert record["cost_held_usd"] <= held_bound + 1e-9
    assert record["cost_usd"] == pytest.approx(record["cost_billed_usd"] + record["cost_held_usd"])
    if cap is not None:
        assert record["cost_usd"] <= cap
    assert "n1:" not in (record.get("error") or "")
    return record


def walk(node):
    yield node
    for child in node.get("children", []):
        yield from walk(child)


def nodes(record, kind):
    return [n for n in walk(record["tree"]) if n["kind"] == kind]


def completed(proc, fake, **kw) -> dict:
    record = audited(proc, fake, **kw)
    assert proc.returncode == 0, (record["status"], record["error"])
    assert record["status"] == "completed" and record["answer"] == ANSWER
    assert record["citations"][0]["verified"]
    return record


# ---- reading replies ------------------------------------------------------------------------------


def test_a_draft_final_inside_think_tags_never_runs(fake_openai, home):
    draft = "<think>Easy.\n```repl\nFINAL('draft guess')\n```\n</think>\n"
    fake_openai.handler = Script([LOOK, draft + CONCLUDE])
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    second = nodes(record, "iteration")[1]
    assert "draft guess" in second["thinking"] and "draft guess" not in second["text"]


def test_a_lone_closing_think_tag_hides_the_draft_before_it(fake_openai, home):
    fake_openai.handler = Script([LOOK, "```repl\nFINAL('draft guess')\n```\n</think>\n\n" + CONCLUDE])
    completed(ask(home, fake_openai.base_url), fake_openai)


def test_reasoning_fields_are_thinking_never_code(fake_openai, home):
    fake_openai.reasoning_field = "reasoning"
    script = Script(FINDING)

    def handler(request):
        reply = script(request)
        reply.reasoning = "```repl\nFINAL('draft from the reasoning field')\n```"
        return reply

    fake_openai.handler = handler
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert "draft from the reasoning field" in nodes(record, "iteration")[0]["thinking"]


def test_a_reasoning_only_reply_is_named_and_the_run_goes_on(fake_openai, home):
    fake_openai.queue(Reply(text="", reasoning="I am thinking about the meeting."))
    fake_openai.handler = Script(["(answered by the queue)", *FINDING])
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    first = nodes(record, "iteration")[0]
    assert first["problem"] == "the model only reasoned and wrote no reply"
    sent_back = fake_openai.chat_requests[1].json["messages"]
    assert all(m["content"] for m in sent_back)  # never an empty assistant message
    assert "only reasoned" in sent_back[-1]["content"]


@pytest.mark.parametrize("fence", ["```python", "```py", "```", "~~~"])
def test_every_common_fence_runs(fake_openai, home, fence):
    close = "~~~" if fence == "~~~" else "```"
    fake_openai.handler = Script(
        [t.replace("```repl", fence).replace("\n```", "\n" + close) for t in FINDING]
    )
    completed(ask(home, fake_openai.base_url), fake_openai)


def test_a_prose_final_after_turn_one_runs_as_code(fake_openai, home):
    fake_openai.handler = Script(
        [
            LOOK,
            repl("m = quote(hits[0].doc_id, 'on 12 June in Geneva')\nprint(m)"),
            "I have what I need.\nFINAL(f'The meeting is on 12 June in Geneva {m}.')",
        ]
    )
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert nodes(record, "iteration")[2]["prose_final"].startswith("FINAL(")


def test_a_final_in_the_last_allowed_reply_counts(fake_openai, home):
    fake_openai.handler = Script([LOOK, repl("print('still looking')"), CONCLUDE])
    proc = ask(home, fake_openai.base_url, "--max-iterations", "2")
    completed(proc, fake_openai)


def test_a_run_out_of_iterations_says_which_limit(fake_openai, home):
    fake_openai.handler = Script([LOOK, repl("print('still looking')"), "I could not finish."])
    proc = ask(home, fake_openai.base_url, "--max-iterations", "2")
    record = audited(proc, fake_openai)
    assert proc.returncode == 3 and record["status"] == "limit_reached"
    assert record["error"].startswith("the limit of 2 iterations was reached")
    assert record["answer"] == "I could not finish."


# ---- empty, truncated and odd replies --------------------------------------------------------------


def test_length_with_empty_content_is_asked_once_more_with_a_larger_limit(fake_openai, home):
    fake_openai.queue(Reply(text="", reasoning="thinking " * 50, finish_reason="length"))
    fake_openai.handler = Script(FINDING)
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    first, retry = fake_openai.chat_requests[0].json, fake_openai.chat_requests[1].json
    assert retry["max_completion_tokens"] == 2 * first["max_completion_tokens"]
    assert "ran out of output tokens" in retry["messages"][-1]["content"]
    assert any("ran out of its" in note for note in nodes(record, "iteration")[0]["notes"])


def test_tool_calls_with_null_content_are_named(fake_openai, home):
    call = {"id": "t1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}
    fake_openai.queue(Reply(content_null=True, tool_calls=[call], finish_reason="tool_calls"))
    fake_openai.handler = Script(["(answered by the queue)", *FINDING])
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert "web_search" in nodes(record, "iteration")[0]["problem"]


def test_content_filter_replies_are_named(fake_openai, home):
    fake_openai.queue(Reply(text="", finish_reason="content_filter"))
    fake_openai.handler = Script(["(answered by the queue)", *FINDING])
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert "content filter" in nodes(record, "iteration")[0]["problem"]


def test_html_200_fails_clearly_and_costs_nothing(fake_openai, home):
    fake_openai.handler = lambda request: Reply(
        raw_body="<html><head><title>Welcome to nginx!</title></head></html>"
    )
    proc = ask(home, fake_openai.base_url)
    record = audited(proc, fake_openai)
    assert proc.returncode == 1 and record["status"] == "failed"
    assert "HTML page titled 'Welcome to nginx!'" in record["error"] and "/v1" in record["error"]
    assert record["cost_usd"] == 0.0


def test_error_shaped_200_keeps_the_servers_message(fake_openai, home):
    fake_openai.handler = lambda request: Reply(
        raw_body='{"error": {"message": "No endpoints found for this model", "code": 404}}',
        raw_content_type="application/json",
    )
    proc = ask(home, fake_openai.base_url)
    record = audited(proc, fake_openai)
    assert proc.returncode == 1 and "No endpoints found for this model" in record["error"]


def test_a_retryable_error_shaped_200_is_held_then_retried(fake_openai, home):
    fake_openai.queue(
        Reply(raw_body='{"error": {"message": "upstream timed out"}}', raw_content_type="application/json")
    )
    fake_openai.handler = Script(FINDING)
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert record["cost_held_usd"] > 0


def test_empty_filtered_and_refused_sub_replies_are_flagged_to_the_root(fake_openai, home):
    replies = {
        "A": Reply(text="June 12"),
        "B": Reply(text="", finish_reason="content_filter"),
        "C": Reply(content_null=True, refusal="I can't help with that."),
    }
    script = Script(
        [repl("r = llm_query_batched(['A: when?', 'B: when?', 'C: when?'])\nprint(r)"), LOOK, CONCLUDE]
    )

    def handler(request):
        if request["model"] == SUB:
            return replies[request["messages"][-1]["content"][0]]
        return script(request)

    fake_openai.handler = handler
    completed(ask(home, fake_openai.base_url), fake_openai)
    told = script.root_requests[1]["messages"][-1]["content"]
    assert "2 of the 3 sub-calls in this block came back empty or incomplete" in told
    assert "#2 the provider's content filter blocked the reply" in told
    assert "#3 the model refused: I can't help with that." in told


# ---- honest money ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "null", "zero", "total_only"])
def test_unknown_usage_is_held_estimated_and_said(fake_openai, home, mode):
    script = Script(FINDING)

    def handler(request):
        reply = script(request)
        reply.usage_mode = mode
        return reply

    fake_openai.handler = handler
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert record["cost_billed_usd"] == 0.0 and record["cost_held_usd"] > 0
    assert 0 < record["cost_held_estimate_usd"] < record["cost_held_usd"]
    assert any("reported no usage" in w and "estimated" in w for w in record["warnings"])


def test_a_server_that_is_down_costs_nothing_and_says_connection_refused(home, closed_port):
    port = closed_port
    settings(home, cap_usd=0.5)
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    args = [
        sys.executable,
        "-m",
        "rlm_desktop",
        "ask",
        "Q",
        "--json",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
    ]
    proc = subprocess.run(
        [*args, "--root-model", ROOT, "--sub-model", SUB, *(a for p in PRICES for a in ("--price", p))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    record = json.loads(proc.stdout)
    assert proc.returncode == 1 and record["status"] == "failed"
    assert "connection refused" in record["error"] and record["cost_usd"] == 0.0


def test_a_cap_that_cannot_cover_one_call_says_so_before_starting(fake_openai, home):
    proc = ask(home, fake_openai.base_url, cap=0.03)
    assert proc.returncode == 2 and fake_openai.chat_requests == []
    assert "a cap of $0.03 cannot cover one root call of up to 8,000 output tokens" in proc.stderr


def test_429_with_retry_after_then_success(fake_openai, home):
    fake_openai.queue(Reply(status=429, error="Rate limit reached", retry_after=0.2))
    fake_openai.handler = Script(FINDING)
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert record["cost_held_usd"] == 0.0  # a 429 is not billed


def test_5xx_is_held_not_billed(fake_openai, home):
    fake_openai.queue(Reply(status=502, error="Bad gateway"))
    fake_openai.handler = Script(FINDING)
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert record["cost_held_usd"] > 0


@pytest.mark.parametrize("stream", [True, False])
def test_a_reset_mid_body_is_held_and_retried(fake_openai, home, stream):
    settings(home, stream=stream)
    fake_openai.queue(Reply(text=LOOK + "\n" + "# padding\n" * 40, reset_mid_body=True))
    fake_openai.handler = Script(FINDING)
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    assert record["cost_held_usd"] > 0


# ---- parameters, windows and streaming ----------------------------------------------------------------


@pytest.mark.parametrize("style", ["openai", "fastapi"])
def test_root_and_sub_refuse_different_token_parameters(fake_openai, home, style):
    root, sub = "qwen3-coder", "llama3.1-8b"
    prices = (f"{root}=0.5:1.5", f"{sub}=0.1:0.2")
    fake_openai.refuse_params = {root: {"max_tokens"}, sub: {"max_completion_tokens"}}
    fake_openai.refusal_style = style
    script = Script(
        [repl("hits = search('meeting')\nprint(llm_query('When? ' + hits[0].snippet(40)))"), CONCLUDE]
    )

    def handler(request):
        return Reply("12 June") if request["model"] == sub else script(request)

    fake_openai.handler = handler
    proc = ask(home, fake_openai.base_url, root=root, sub=sub, prices=prices)
    completed(proc, fake_openai, prices=prices)
    accepted = {
        (r.json["model"], "max_tokens" in r.json) for r in fake_openai.chat_requests if r.status == 200
    }
    assert accepted == {(root, False), (sub, True)}


def test_a_small_context_window_sizes_the_reply_limit(fake_openai, home):
    fake_openai.context_window = 6000  # smaller than the 8,000 output tokens asked for by default
    fake_openai.handler = Script(FINDING)
    completed(ask(home, fake_openai.base_url), fake_openai)
    first, *rest = fake_openai.chat_requests
    assert first.status == 400 and all(r.status == 200 for r in rest)
    assert all(r.json["max_completion_tokens"] < 6000 for r in rest)


def test_a_conversation_that_outgrows_the_window_is_compacted(fake_openai, home):
    settings(home, context_windows={ROOT: 9000}, root_max_output_tokens=1000, output_chars=12000)
    fake_openai.context_window = 9000
    turns = [
        repl(
            "hits = search('meeting')\nm = quote(hits[0].doc_id, 'on 12 June in Geneva')\nprint('x' * 11000)"
        ),
        repl("print('y' * 11000)"),
        repl("print('z' * 11000)"),
        repl("FINAL(f'The meeting is on 12 June in Geneva {m}.')"),
    ]
    seen = []

    def handler(request):
        last = request["messages"][-1]["content"]
        if "about to be compacted" in last:
            return Reply("I found the meeting in document 1 and registered [c1]; m holds the marker.")
        seen.append(request)
        return Reply(turns[min(len(seen) - 1, len(turns) - 1)])

    fake_openai.handler = handler
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    (compaction, *_) = nodes(record, "compaction")
    assert compaction["tokens_after"] < compaction["tokens_before"]
    assert "registered [c1]" in compaction["text"]
    assert all(r.status == 200 for r in fake_openai.chat_requests)


def test_a_streaming_only_server_works_when_streaming_is_off(fake_openai, home):
    settings(home, stream=False)
    fake_openai.streaming = "only"
    fake_openai.handler = Script(FINDING)
    completed(ask(home, fake_openai.base_url), fake_openai)
    first = fake_openai.chat_requests[0]
    assert "stream" not in first.json and first.status == 200  # asked for JSON, read the SSE it sent


def test_a_server_that_refuses_streaming_is_asked_for_whole_replies(fake_openai, home):
    fake_openai.streaming = "no"
    fake_openai.handler = Script(FINDING)
    completed(ask(home, fake_openai.base_url), fake_openai)
    assert [r.status for r in fake_openai.chat_requests][:2] == [400, 200]


def test_root_text_streams_to_a_terminal_on_stderr_and_never_to_stdout(fake_openai, home):
    import pty
    import select

    fake_openai.handler = Script(["Looking at the case first.\n" + LOOK, CONCLUDE])
    master, slave = pty.openpty()
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    env.pop("OPENAI_BASE_URL", None)
    args = [sys.executable, "-m", "rlm_desktop", "ask", "When is the meeting?", "--json"]
    args += ["--base-url", fake_openai.base_url, "--root-model", ROOT, "--sub-model", SUB]
    args += [a for p in PRICES for a in ("--price", p)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, env=env, text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    terminal = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    shown = terminal.decode("utf-8", "replace")
    assert "Looking at the case first." in shown and "root, iteration 1" in shown
    record = json.loads(out)  # stdout is the JSON record alone
    assert record["answer"] == ANSWER


def test_a_run_that_fails_keeps_its_best_partial_answer_and_citations(fake_openai, home):
    script = Script(
        [
            LOOK,
            "So far: the meeting is on 12 June in Geneva [c1].\n"
            + repl("m = quote(hits[0].doc_id, 'on 12 June in Geneva')\nprint(m)"),
        ]
    )

    def handler(request):
        if len(script.root_requests) >= 2:
            return Reply(raw_body="<html><title>502 Bad Gateway</title></html>")
        return script(request)

    fake_openai.handler = handler
    proc = ask(home, fake_openai.base_url)
    record = audited(proc, fake_openai)
    assert proc.returncode == 1 and record["status"] == "failed" and "HTML page" in record["error"]
    assert record["answer"] == "So far: the meeting is on 12 June in Geneva [c1]."
    assert record["citations"][0]["verified"] and record["citations"][0]["quote"] == "on 12 June in Geneva"


def test_what_doctor_learned_is_used_by_the_next_run(fake_openai, home):
    root, sub = "qwen3-coder", "llama3.1-8b"
    prices = (f"{root}=0.5:1.5", f"{sub}=0.1:0.2")
    fake_openai.models = [root, sub]
    fake_openai.refuse_params = {root: {"max_completion_tokens"}, sub: {"max_completion_tokens"}}
    fake_openai.handler = Script(FINDING, sub=lambda prompt: "OK")
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "sk-test"}
    doctor = subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "doctor", "--json", "--base-url", fake_openai.base_url,
         "--root-model", root, "--sub-model", sub],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    probed = len(fake_openai.chat_requests)
    completed(
        ask(home, fake_openai.base_url, root=root, sub=sub, prices=prices),
        fake_openai,
        prices=prices,
        skip=probed,
    )
    run_requests = fake_openai.chat_requests[probed:]
    assert run_requests and all("max_tokens" in r.json and r.status == 200 for r in run_requests)


def test_a_reply_cut_off_mid_block_is_told_to_be_shorter(fake_openai, home):
    fake_openai.queue(Reply(text="Let me search.\n```repl\nhits = search('meet", finish_reason="length"))
    fake_openai.handler = Script(["(answered by the queue)", *FINDING])
    record = completed(ask(home, fake_openai.base_url), fake_openai)
    told = fake_openai.chat_requests[1].json["messages"][-1]["content"]
    assert "cut off at its limit of 8,000 output tokens before its code block closed" in told
    assert any("cut off" in n for n in nodes(record, "iteration")[0]["notes"])
