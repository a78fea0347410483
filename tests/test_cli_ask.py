"""`ask`, `runs` and `show` as scripts use them: JSON run records and exit codes from CONTRACTS.md."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.store.case import Case


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting with the auditors is on 12 June in Geneva.\n")
    return home


def ask(home, base_url, *extra, check_code=None, env_extra=None):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "sk-test", **(env_extra or {})}
    env.pop("OPENAI_BASE_URL", None)
    args = [
        sys.executable,
        "-m",
        "rlm_desktop",
        "ask",
        "When is the meeting?",
        "--base-url",
        base_url,
        "--root-model",
        ROOT,
        "--sub-model",
        SUB,
        *(a for p in PRICES for a in ("--price", p)),
        *extra,
    ]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stderr
    return proc


def cli(home, *args):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "rlm_desktop", *args], capture_output=True, text=True, env=env, timeout=60
    )


FINDING = [
    repl("hits = search('meeting')\nprint([(h.doc_id, h.snippet(30)) for h in hits])"),
    repl(
        "m = quote(hits[0].doc_id, 'on 12 June in Geneva')\nFINAL(f'The meeting is on 12 June in Geneva {m}.')"
    ),
]


def test_ask_json_runs_and_show(fake_openai, home):
    fake_openai.handler = Script(FINDING)
    proc = ask(home, fake_openai.base_url, "--json", "--cap", "0.5", check_code=0)
    record = json.loads(proc.stdout)
    assert record["status"] == "completed" and record["cap_usd"] == 0.5
    assert record["answer"] == "The meeting is on 12 June in Geneva [c1]."
    (c,) = record["citations"]
    assert {
        "marker",
        "doc_id",
        "path",
        "title",
        "start",
        "end",
        "quote",
        "verified",
        "page",
        "rects",
    } <= c.keys()
    assert c["verified"] and c["quote"] == "on 12 June in Geneva"
    assert {
        "run_id",
        "question",
        "status",
        "answer",
        "citations",
        "cost_usd",
        "cap_usd",
        "usage",
        "tree",
    } <= (record.keys())
    runs = json.loads(cli(home, "runs", "--json").stdout)
    assert runs == [
        {
            "run_id": record["run_id"],
            "question": "When is the meeting?",
            "status": "completed",
            "started": record["started"],
            "cost_usd": record["cost_usd"],
            "follows": None,  # not a follow-up
            "label": None,  # not named by the user
        }
    ]
    shown = json.loads(cli(home, "show", record["run_id"], "--json").stdout)
    assert shown["citations"] == record["citations"] and shown["tree"]["kind"] == "root"
    human = cli(home, "show", record["run_id"][:6]).stdout  # a unique prefix is enough
    assert "12 June in Geneva" in human and "verified" in human and "llm_query" not in human


def test_ask_human_output(fake_openai, home):
    fake_openai.handler = Script(FINDING)
    proc = ask(home, fake_openai.base_url, check_code=0)
    assert "The meeting is on 12 June in Geneva [c1]." in proc.stdout
    assert "[c1] memo.txt, characters" in proc.stdout and "verified" in proc.stdout
    assert "[completed]" in proc.stdout


def test_cap_with_an_unpriced_model_is_a_usage_error(fake_openai, home):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "k"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlm_desktop",
            "ask",
            "Q",
            "--base-url",
            fake_openai.base_url,
            "--root-model",
            "my-local-llama",
            "--sub-model",
            "my-local-llama",
            "--cap",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "my-local-llama" in proc.stderr and "--price" in proc.stderr
    assert fake_openai.chat_requests == []


def test_cap_reached_exits_3_with_the_partial_run(fake_openai, home):
    fake_openai.handler = Script(
        [repl("print(len(context))"), repl("r = llm_query_batched(['x' * 3000] * 1)")]
        + [repl(f"r = llm_query('question {i} ' + 'y' * 3000)") for i in range(50)]
    )
    proc = ask(home, fake_openai.base_url, "--json", "--cap", "0.1", check_code=3)
    record = json.loads(proc.stdout)
    assert record["status"] == "cap_reached" and record["cost_usd"] <= 0.1


def test_sigint_cancels_saves_and_exits_3(fake_openai, home):
    fake_openai.handler = Script([repl("print(1)"), repl("r = llm_query('slow')")], sub_delay_s=60)
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "k"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlm_desktop",
            "ask",
            "Q",
            "--json",
            "--base-url",
            fake_openai.base_url,
            "--root-model",
            ROOT,
            "--sub-model",
            SUB,
            *(a for p in PRICES for a in ("--price", p)),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fake_openai.wait_for_requests(3, timeout_s=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    record = json.loads(out)
    assert record["status"] == "cancelled"
    assert json.loads(cli(home, "runs", "--json").stdout)[0]["status"] == "cancelled"
    # the sub-call the Stop cut short reads as stopped, not as a crash
    subcalls = [n for n in _walk(record["tree"]) if n["kind"] == "llm_query"]
    assert subcalls and all(n["status"] == "cancelled" for n in subcalls)
    assert [n["error"] for n in subcalls] == ["cancelled (stopped by you)"] * len(subcalls)
    assert "CancelledError" not in out


def _walk(node):
    yield node
    for child in node.get("children", []):
        yield from _walk(child)


def test_sigint_in_text_mode_says_stopped_by_you(fake_openai, home):
    fake_openai.handler = Script([repl("print(1)"), repl("r = llm_query('slow')")], sub_delay_s=60)
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "OPENAI_API_KEY": "k"}
    args = ["ask", "Q", "--base-url", fake_openai.base_url, "--root-model", ROOT, "--sub-model", SUB]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_desktop", *args, *(a for p in PRICES for a in ("--price", p))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fake_openai.wait_for_requests(3, timeout_s=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    assert out.startswith("Stopped by you. No answer was written yet.")
    assert "(no answer)" not in out and "Error" not in out + err
    assert "[cancelled]" in out


def test_no_key_and_no_endpoint_is_a_usage_error(home):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home)}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_desktop", "ask", "Q", "--no-cap"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2 and "no API key" in proc.stderr
