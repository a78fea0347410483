"""`ask --follow`, `runs` with threads, delete and rename, and `show --json`'s `follows`, as scripts use them."""

from __future__ import annotations

import json

from rlm_script import Script, repl
from test_cli_ask import FINDING, ask, cli, home  # noqa: F401 - the fixture is used by name

FOLLOW_UP = [
    repl(
        "print('history', len(history), history[0]['question'], history[0]['answer'])\n"
        "print('cited', history[0]['citations'][0]['quote'])\n"
        "try:\n    hits\nexcept NameError:\n    print('fresh REPL')"
    ),
    repl("m = quote(history[0]['citations'][0]['doc_id'], 'Geneva')\nFINAL(f'In Geneva {m}.')"),
]


def test_ask_follow_runs_and_show(fake_openai, home, tmp_path):  # noqa: F811 - the fixture
    fake_openai.handler = Script(FINDING)
    first = json.loads(ask(home, fake_openai.base_url, "--json", check_code=0).stdout)
    script = Script(FOLLOW_UP)
    fake_openai.handler = script
    proc = ask(home, fake_openai.base_url, "--json", "--follow", first["run_id"][:8], check_code=0)
    second = json.loads(proc.stdout)
    assert second["follows"] == first["run_id"] and first["follows"] is None
    assert second["citations"][0]["verified"] and second["answer"] == "In Geneva [c1]."
    # the root's opening holds the first answer; the REPL has `history` and is a fresh one
    opening = script.root_requests[0]["messages"][1]["content"]
    assert "The meeting is on 12 June in Geneva [c1]." in opening and "on 12 June in Geneva" in opening
    output = script.root_requests[1]["messages"][-1]["content"]
    assert "history 1 When is the meeting? The meeting is on 12 June in Geneva [c1]." in output
    assert "cited on 12 June in Geneva" in output and "fresh REPL" in output

    shown = json.loads(cli(home, "show", second["run_id"], "--json").stdout)
    assert shown["follows"] == first["run_id"]
    listed = json.loads(cli(home, "runs", "--json").stdout)
    assert {r["run_id"]: r["follows"] for r in listed} == {first["run_id"]: None, second["run_id"]: first["run_id"]}
    text = cli(home, "runs").stdout.splitlines()
    assert text[0].startswith(first["run_id"]) and "↳" in text[1] and text[1].startswith(second["run_id"])
    assert f"Follows run {first['run_id']}" in cli(home, "show", second["run_id"]).stdout

    report = tmp_path / "second.md"
    exported = cli(home, "export", second["run_id"], "--format", "md", "-o", str(report))
    assert exported.returncode == 0, exported.stderr
    assert f"question 2 of a thread, following {first['run_id']}: “When is the meeting?”" in report.read_text()

    renamed = cli(home, "runs", "--rename", first["run_id"], "Meeting place")
    assert renamed.returncode == 0, renamed.stderr
    assert "Meeting place — When is the meeting?" in cli(home, "runs").stdout
    deleted = cli(home, "runs", "--delete", first["run_id"], "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout)["relinked_follow_ups"] == 1
    (left,) = json.loads(cli(home, "runs", "--json").stdout)
    assert left["run_id"] == second["run_id"] and left["follows"] is None
    assert cli(home, "runs", "--delete", first["run_id"]).returncode == 2


def test_follow_of_an_unknown_run_is_a_usage_error(fake_openai, home):  # noqa: F811 - the fixture
    fake_openai.handler = Script(FINDING)
    proc = ask(home, fake_openai.base_url, "--follow", "0123456789ab", check_code=2)
    assert "no run '0123456789ab'" in proc.stderr
    assert fake_openai.chat_requests == []  # nothing was sent


def test_help_says_the_cli_follow_up_starts_a_fresh_repl():
    from rlm_desktop.cli import build_parser

    ask_parser = build_parser()._subparsers._group_actions[0].choices["ask"]
    assert "REPL itself starts fresh" in " ".join(ask_parser.format_help().split())
