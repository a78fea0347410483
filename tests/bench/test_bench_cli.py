"""`rlm-desktop bench` end to end: a generated suite ingested for real, every task run by the engine against the fake
server, whose root model writes real REPL code per family (right on some, deliberately wrong on others)."""

from __future__ import annotations

import json
import re

import pytest
from rlm_script import PRICES, ROOT, SUB, repl

from rlm_desktop import cli
from rlm_desktop.bench.runner import BASELINE_INTRO
from rlm_desktop.bench.suites import MIN_TOKENS
from tests.fake_openai import Reply

TOKENS = MIN_TOKENS  # the small suite at its smallest: the same families and tasks, less filler


def family_code(question: str) -> str:
    """The fake root model's second turn: REPL code that answers the question from the corpus."""
    if m := re.search(r"access code for the (.+) storage unit", question):  # right, with a citation
        return f"""
h = grep(r"access code for the {m.group(1)} storage unit is [A-Z]{{2}}-\\d{{4}}-[A-Z]")[0]
code = h.text.split()[-1]
FINAL(f"The code is {{code}} " + cite(h.doc_id, h.end - len(code), h.end))
"""
    if m := re.search(r"invoices from (.+) have a total due above \$([\d,]+)", question):  # off by one: 0.75
        return f"""
import re
n = 0
for h in grep(r"Vendor: {m.group(1)}"):
    total = re.search(r"Total due: \\$([\\d,]+\\.\\d\\d)", context.by_id(h.doc_id).text)
    if total and float(total.group(1).replace(",", "")) > {m.group(2).replace(",", "")}:
        n += 1
FINAL(f"{{n + 1}} invoices")
"""
    if m := re.search(r"about Project (\w+)\?", question):  # one pair of three: F1 0.5
        return f"""
mails = [d for d in context if d.kind == "email" and d.meta["subject"].startswith("Project {m.group(1)} ")]
pairs = sorted({{" & ".join(sorted([d.meta["from"][0].split(" <")[0], d.meta["to"][0].split(" <")[0]])) for d in mails}})
llm_query("Who wrote about it? " + mails[0].text[:300])
FINAL(pairs[0])
"""
    if m := re.search(r"attached to (.+)'s email about the (\w+) shipment", question):  # right, two hops
        return f"""
mail = [d for d in context if d.kind == "email" and d.meta["from"][0].startswith("{m.group(1)} <")
        and "{m.group(2)} shipment" in d.text][0]
attachment = [d for d in context if d.parent_id == mail.id][0]
h = grep(r"CN-\\d{{5}}", docs=[attachment.id])[0]
FINAL(h.text + " " + cite(h.doc_id, h.start, h.end))
"""
    if "meeting" in question:  # the question-file run
        return 'FINAL("The meeting is on 12 June in Geneva.")'
    return 'FINAL("I do not know")'


def fake_model(request: dict) -> Reply:
    messages = request["messages"]
    if request["model"] == SUB:
        return Reply("They did.")
    if messages[0]["content"].startswith(BASELINE_INTRO):
        return Reply("I cannot tell from these documents.")
    question = re.search(r"Question: (.*)", messages[1]["content"]).group(1)
    turn = sum(1 for m in messages if m["role"] == "assistant")
    return Reply(repl("print(len(context))") if turn == 0 else repl(family_code(question)))


@pytest.fixture(scope="module")
def suite_home(tmp_path_factory):
    """One home for the tests that run the suite: it is generated and ingested once, then taken from the cache."""
    return tmp_path_factory.mktemp("bench") / "home"


@pytest.fixture
def home(suite_home, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return suite_home


def bench(home, fake_openai, *flags):
    fake_openai.handler = fake_model
    prices = [a for p in PRICES for a in ("--price", p)]
    return cli.main(
        ["bench", "--home", str(home), "--base-url", fake_openai.base_url, "--root-model", ROOT,
         "--sub-model", SUB, *prices, "--cap", "1", "--allow-weak-isolation", *flags]
    )  # fmt: skip


def test_small_suite_table_json_html_and_baseline(home, fake_openai, capsys, tmp_path):
    html_path = tmp_path / "bench.html"
    code = bench(home, fake_openai, "--suite", "small", "--tokens", str(TOKENS), "--tasks", "1", "--baseline",
                 "--html", str(html_path), "--context-window", f"{ROOT}=8192")  # fmt: skip
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK, out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("small ")}
    # family: accuracy, cost p50/p90/max, sub-calls p50/max, wall, stops, citations verified, baseline accuracy
    assert {f: rows[f][3] for f in rows} == {
        "niah": "1.00", "aggregation": "0.75", "pairs": "0.50", "multihop": "1.00", "all": "0.81",
    }  # fmt: skip
    assert [rows["pairs"][8], rows["niah"][8]] == ["1", "0"]  # sub-calls max: pairs asked the sub model once
    assert rows["niah"][12] == "100%" and rows["multihop"][12] == "100%" and rows["aggregation"][12] == "-"
    assert {rows[f][13] for f in rows} == {"0.00"}  # the baseline's "I cannot tell" scores nothing
    assert all(r[11] == "0" for r in rows.values())  # no cap or limit stops

    # The runs are real runs in the generated case, which is reused (cached) by the next bench.
    case = home / "cases" / f"bench-small-seed1-{TOKENS}t.sqlite"
    assert case.exists() and (home / "bench" / case.stem / "manifest.json").exists()
    assert cli.main(["runs", "--home", str(home), "--case", case.stem, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    mine = [r for r in runs if r["status"] == "completed"]  # (the rejected-key test's runs may be there too)
    assert len(mine) == 4

    # The baseline prompt was stuffed up to the 8,192-token window and no further (about 4 bytes a token).
    baseline_requests = [r.json for r in fake_openai.chat_requests
                         if r.json["messages"][0]["content"].startswith(BASELINE_INTRO)]  # fmt: skip
    assert len(baseline_requests) == 4
    sizes = {len(r["messages"][0]["content"]) for r in baseline_requests}
    assert all(16_000 < size < 8192 * 4 for size in sizes), sizes

    page = html_path.read_text(encoding="utf-8")
    assert page.count("<svg") == 4 and "Accuracy per family and size" in page and "CN-" in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "").replace(fake_openai.base_url, "")

    # --json: the same run from the cache (no generation), one object on stdout.
    capsys.readouterr()
    code = bench(home, fake_openai, "--suite", "small", "--tokens", str(TOKENS), "--tasks", "1", "--family", "niah",
                 "--family", "pairs", "--json")  # fmt: skip
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK and "generating" not in captured.err
    report = json.loads(captured.out)
    assert set(report) == {"suites", "config", "stopped", "aborted", "summary", "tasks"}
    assert report["suites"][0]["case"] == case.stem and report["suites"][0]["documents"] > 50
    assert [(t["family"], t["score"]) for t in report["tasks"]] == [("niah", 1.0), ("pairs", 0.5)]
    task = report["tasks"][0]
    assert task["citations"] == task["citations_verified"] == 1 and task["status"] == "completed"
    assert set(task) >= {"question", "expected", "answer", "cost_usd", "subcalls", "wall_s", "run_id", "baseline"}
    summary = {row["family"]: row for row in report["summary"]}
    assert summary["pairs"]["subcalls"] == {"median": 1, "max": 1}
    assert summary["all"]["cost_usd"]["max"] >= summary["all"]["cost_usd"]["median"] > 0
    assert report["config"]["root_model"] == ROOT and report["stopped"] is False


def test_question_file_over_a_case(home, fake_openai, capsys, tmp_path):
    from rlm_desktop.store.case import Case

    with Case.open(tmp_path / "cases" / "leak.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting with the auditors is on 12 June in Geneva.\n")
    questions = tmp_path / "q.csv"
    questions.write_text(
        "question,answer,match\n"
        "When is the meeting?,12 June,exact\n"
        "Where is the meeting?,geneva|zurich,regex\n"
        "Who chairs the meeting?,Anna Berg,exact\n"
    )
    page = tmp_path / "q.html"
    code = bench(tmp_path, fake_openai, "--questions", str(questions), "--case", "leak", "--json", "--html", str(page))
    assert code == cli.EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert f"leak (questions from {questions})" in page.read_text()
    assert [t["score"] for t in report["tasks"]] == [1.0, 1.0, 0.0]
    assert report["summary"] == [{**report["summary"][0], "suite": "leak", "family": "questions", "accuracy": 0.6667}]

    yaml_file = tmp_path / "q.yaml"
    yaml_file.write_text("- question: When is the meeting?\n  answer: [12 June]\n  match: sets\n")
    assert bench(tmp_path, fake_openai, "--questions", str(yaml_file), "--case", "leak") == cli.EXIT_USAGE
    assert "question 1: match 'sets' is not one of exact, regex, number, set" in capsys.readouterr().err


def test_usage_errors(tmp_path, fake_openai, capsys):
    home = tmp_path / "home"
    assert bench(home, fake_openai, "--suite", "huge") == cli.EXIT_USAGE
    assert "unknown suite 'huge': choose from small, medium, large" in capsys.readouterr().err
    assert bench(home, fake_openai, "--tasks", "9") == cli.EXIT_USAGE
    assert "--tasks must be from 1 to 5" in capsys.readouterr().err
    assert bench(home, fake_openai, "--case", "leak") == cli.EXIT_USAGE
    assert "--case picks the case for --questions" in capsys.readouterr().err
    assert not (home / "cases").exists()  # nothing generated for a refused command


def test_a_rejected_key_fails_three_tasks_then_stops(home, capsys, monkeypatch):
    from tests.fake_openai import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-1234")
    with FakeOpenAIServer(fake_model, api_key="sk-right") as server:
        code = cli.main(["bench", "--home", str(home), "--base-url", server.base_url, "--root-model", ROOT,
                         "--sub-model", SUB, "--no-cap", "--allow-weak-isolation", "--tokens", str(TOKENS)])  # fmt: skip
        asked = len(server.chat_requests)
    captured = capsys.readouterr()
    assert code == cli.EXIT_FAILED
    assert "benchmark stopped: 3 tasks in a row failed" in captured.err
    assert captured.out.count("failed: small niah-") == 3 and asked == 3  # not the other nine tasks
    assert "sk-wrong-key-1234" not in captured.out + captured.err


@pytest.mark.parametrize("hang", ["run", "baseline"])
def test_sigterm_cancels_the_call_in_flight_and_prints_what_ran(home, hang):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.fake_openai import FakeOpenAIServer

    def slow(request: dict) -> Reply:
        """The first task's first root call (or its baseline) hangs: SIGTERM comes meanwhile."""
        is_baseline = request["messages"][0]["content"].startswith(BASELINE_INTRO)
        if is_baseline == (hang == "baseline"):
            return Reply(repl("print(1)"), delay_s=30)
        return fake_model(request)

    flags = ["--baseline"] if hang == "baseline" else []
    with FakeOpenAIServer(slow) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlm_desktop", "bench", "--home", str(home), "--base-url", server.base_url,
             "--root-model", ROOT, "--sub-model", SUB, "--no-cap", "--allow-weak-isolation", "--tokens", str(TOKENS),
             "--json", *flags],
            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "OPENAI_API_KEY": "sk-test"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.wait_for_requests(1 if hang == "run" else 3, timeout_s=60)  # a run is 2 calls, then its baseline
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
        asked = len(server.chat_requests)
    assert proc.returncode == cli.EXIT_STOPPED, err
    report = json.loads(out)
    assert report["stopped"] is True
    if hang == "run":
        assert asked == 1  # no other task started
        assert [(t["id"], t["status"]) for t in report["tasks"]] == [("niah-1", "cancelled")]
    else:
        assert asked == 3
        [task] = report["tasks"]
        assert task["status"] == "completed" and task["baseline"]["error"] == "cancelled"
        assert task["baseline"]["cost_usd"] > 0  # the call was sent: its reservation stays counted


def test_baseline_refits_to_the_window_the_server_names(home, fake_openai, capsys):
    fake_openai.context_window = 8_192  # refused past this with vLLM's words, which name the window
    code = bench(home, fake_openai, "--tokens", str(TOKENS), "--tasks", "1", "--family", "niah", "--baseline",
                 "--root-max-tokens", "1000", "--json")  # fmt: skip
    assert code == cli.EXIT_OK
    baseline = json.loads(capsys.readouterr().out)["tasks"][0]["baseline"]
    sent = [r for r in fake_openai.chat_requests if r.json["messages"][0]["content"].startswith(BASELINE_INTRO)]
    assert [r.status for r in sent] == [400, 200]  # the whole corpus first (gpt-5's published window), then refit
    assert len(sent[1].json["messages"][0]["content"]) < 8_192 * 4
    assert baseline["window"] == 8_192 and baseline["error"] is None and 0 < baseline["corpus_fraction"] < 1


def test_a_limit_stop_is_a_result_counted_in_stops(home, fake_openai, capsys):
    code = bench(home, fake_openai, "--tokens", str(TOKENS), "--tasks", "1", "--family", "niah", "--max-iterations", "1")
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK  # the benchmark ran to its end; the task's stop is its result
    row = next(line.split() for line in out.splitlines() if line.startswith("small  niah"))
    assert row[11] == "1"  # (its answer is what the engine made of the run at the limit, and is scored too)


def test_a_suite_that_cannot_be_built_is_a_clear_failure(tmp_path, fake_openai, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "bench").write_text("a file where the suites' folder goes")
    assert bench(home, fake_openai, "--tokens", str(TOKENS)) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "rlm-desktop: error: could not build suite 'small': " in err and "Traceback" not in err
    assert fake_openai.chat_requests == []
