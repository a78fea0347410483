"""`ask`'s limit flags: they override settings in the run's config, and a bad value is a usage error naming the flag."""

from __future__ import annotations

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop import cli
from rlm_desktop.settings import Settings
from rlm_desktop.store.case import Case


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with Case.open(tmp_path / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting with the auditors is on 12 June in Geneva.\n")
    return tmp_path


def config_for(home, *flags):
    args = cli.build_parser().parse_args(["ask", "q", "--home", str(home), *flags])
    return cli._run_config(args, home)


def test_flags_override_settings(home):
    Settings(
        cap_usd=None,
        root_max_output_tokens=5000,
        context_windows={"qwen3:8b": 8192, "other": 4096},
        stream=True,
        allow_weak_isolation=False,
    ).save(home)
    before = config_for(home)
    assert (before.root_max_output_tokens, before.stream, before.allow_weak_isolation) == (5000, True, False)
    config = config_for(
        home,
        "--root-max-tokens", "1500",
        "--sub-max-tokens", "700",
        "--output-chars", "4000",
        "--request-timeout", "45",
        "--context-window", "qwen3:8b=16384",
        "--context-window", "llama3.1:8b=131,072",
        "--no-stream",
        "--allow-weak-isolation",
    )  # fmt: skip
    assert (config.root_max_output_tokens, config.sub_max_output_tokens) == (1500, 700)
    assert (config.output_chars, config.request_timeout_s) == (4000, 45.0)
    # a flag replaces one model's window and keeps the others from settings
    assert config.context_windows == {"qwen3:8b": 16384, "other": 4096, "llama3.1:8b": 131072}
    assert config.stream is False and config.allow_weak_isolation is True


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--context-window", "qwen3"],
            "--context-window 'qwen3': expected MODEL=TOKENS, like qwen3:8b=32768",
        ),
        (["--context-window", "m=32k"], "--context-window 'm=32k': '32k' is not a whole number of tokens"),
        (
            ["--context-window", "m=12"],
            "--context-window 'm=12': the window must be from 1,024 to 100,000,000 tokens",
        ),
        (["--root-max-tokens", "0"], "--root-max-tokens must be from 1 to 1,000,000 tokens"),
        (["--output-chars", "5"], "--output-chars must be from 1,000 to 10,000,000 characters"),
        (["--request-timeout", "0"], "--request-timeout must be more than 0 seconds"),
    ],
)
def test_bad_values_are_usage_errors_that_name_the_flag(home, capsys, flags, message):
    code = cli.main(["ask", "q", "--home", str(home), "--no-cap", *flags])
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"rlm-desktop: error: {message}"


def test_the_root_output_limit_reaches_the_server(home, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    script = Script([repl("print(1)"), repl("FINAL('done')")])
    fake_openai.handler = script
    prices = [a for p in PRICES for a in ("--price", p)]
    code = cli.main(
        ["ask", "q", "--home", str(home), "--json", "--base-url", fake_openai.base_url, "--root-model", ROOT,
         "--sub-model", SUB, *prices, "--root-max-tokens", "321"]
    )  # fmt: skip
    assert code == cli.EXIT_OK
    limits = {r.get("max_completion_tokens", r.get("max_tokens")) for r in script.root_requests}
    assert limits == {321}
