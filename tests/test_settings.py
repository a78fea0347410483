"""Settings: loading old files, saving prices as IN:OUT, the engine's RunConfig and validate()."""

from __future__ import annotations

import json

import pytest

from rlm_desktop.engine.pricing import Price
from rlm_desktop.settings import (
    Settings,
    parse_context_window,
    parse_context_windows,
    price_text,
    run_config,
    validate,
)


def test_defaults_are_valid_and_capped():
    settings = Settings()
    assert settings.cap_usd == 2.0
    assert validate(settings) == []


def test_old_price_formats_load_and_save_as_strings(tmp_path):
    (tmp_path / "settings.json").write_text(
        json.dumps(
            {
                "root_model": "llama3.1:8b",
                "prices": {
                    "llama3.1:8b": {"input_per_m": 0.5, "output_per_m": 1.5},
                    "old-list": [1, 2, 0.5],
                    "new": "0.15:0.6",
                    "broken": "a:b",
                },
                "unknown_future_key": 1,
            }
        )
    )
    settings = Settings.load(tmp_path)
    assert settings.root_model == "llama3.1:8b"
    assert settings.prices == {
        "llama3.1:8b": "0.5:1.5",
        "old-list": "1:2:0.5",
        "new": "0.15:0.6",
        "broken": "a:b",
    }
    assert validate(settings) == ["Price for broken: 'a:b': input price 'a' is not a number"]
    settings.save(tmp_path)
    assert json.loads((tmp_path / "settings.json").read_text())["prices"]["old-list"] == "1:2:0.5"


def test_unreadable_settings_say_which_file(tmp_path):
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read settings"):
        Settings.load(tmp_path)


def test_price_text_round_trips():
    assert price_text(Price(1.25, 10.0, 0.125)) == "1.25:10:0.125"
    assert price_text(Price(0.0000125, 1234567)) == "1.25e-05:1234567"
    assert Price.from_value(price_text(Price(0.0000125, 1234567))) == Price(0.0000125, 1234567)


def test_build_run_config_carries_every_setting():
    settings = Settings(
        base_url=" http://127.0.0.1:8000/v1 ",
        root_model="r",
        sub_model="s",
        cap_usd=0.5,
        max_depth=2,
        max_iterations=7,
        max_subcalls=9,
        concurrency=3,
        max_wall_s=60.0,
        prices={"r": "1:2", "s": "0.1:0.2"},
    )
    config = run_config(settings, isolation="process", max_depth=0)
    assert (config.root_model, config.sub_model, config.base_url) == ("r", "s", "http://127.0.0.1:8000/v1")
    assert (config.cap_usd, config.max_depth, config.max_iterations) == (0.5, 0, 7)
    assert (config.max_subcalls, config.concurrency, config.max_wall_s) == (9, 3, 60.0)
    assert config.isolation == "process"
    assert config.prices().get("r") == Price(1, 2)
    config.check()
    assert run_config(Settings(base_url="")).base_url is None


def test_cap_with_unpriced_models_is_a_problem_until_priced():
    settings = Settings(root_model="my-model", sub_model="my-model", cap_usd=1.0)
    assert validate(settings) == ["Set a price for my-model or remove the cap"]
    settings.prices["my-model"] = "0.5:1.5"
    assert validate(settings) == []
    settings.prices.clear()
    settings.cap_usd = None  # no cap: an unknown price is allowed (the cost is then unknown)
    assert validate(settings) == []


def test_every_problem_is_listed_at_once():
    settings = Settings(
        base_url="ftp://example.com",
        root_model=" ",
        sub_model="gpt-x",
        cap_usd=0.0,
        max_depth=-1,
        max_iterations=0,
        max_subcalls="10",  # type: ignore[arg-type]
        concurrency=0,
        max_wall_s=0,
        prices={"gpt-y": "1"},
    )
    assert validate(settings) == [
        "Endpoint URL must start with http:// or https:// (it starts with ftp:)",
        "Choose a root model",
        "Max depth must be 0 or more",
        "Max iterations must be at least 1",
        "Max sub-calls must be a whole number",
        "Concurrency must be at least 1",
        "Wall-clock limit must be more than 0 seconds",
        "Price for gpt-y: '1': expected IN:OUT or IN:OUT:CACHED (USD per million tokens)",
        "The spending cap must be a positive amount of USD",
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", None),
        ("https://api.openai.com/v1", None),
        ("http://127.0.0.1:11434/v1", None),
        ("localhost:8000/v1", "Endpoint URL must start with http:// or https:// (it starts with localhost:)"),
        ("127.0.0.1:8000", "Endpoint URL must start with http:// or https://"),
        ("http:///v1", "Endpoint URL has no server name after http(s)://"),
        ("http://host:99999/v1", "Endpoint URL has a port that is not a number from 0 to 65535"),
        ("http://my host/v1", "Endpoint URL must not contain spaces"),
    ],
)
def test_endpoint_url_problems(url, problem):
    assert validate(Settings(base_url=url)) == ([problem] if problem else [])


def test_cap_with_unknown_root_and_sub_names_both():
    problems = validate(Settings(root_model="a", sub_model="b", cap_usd=3.0))
    assert problems == ["Set a price for a or remove the cap", "Set a price for b or remove the cap"]


def test_an_unreadable_price_is_named_once():
    settings = Settings(root_model="x", sub_model="x", cap_usd=1.0, prices={"x": "a:b"})
    assert validate(settings) == ["Price for x: 'a:b': input price 'a' is not a number"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"root_max_output_tokens": 0}, "Root max output tokens must be a whole number from 1 to 1,000,000"),
        ({"sub_max_output_tokens": 2.5}, "Sub max output tokens must be a whole number from 1 to 1,000,000"),
        ({"output_chars": 10}, "REPL output cut must be a whole number of characters from 1,000 to 10,000,000"),
        ({"request_timeout_s": 0}, "Request timeout must be from 1 to 3600 seconds"),
        ({"context_windows": {"m": 12}}, "Context window of m must be a whole number of tokens from 1,024 to 100,000,000"),
        ({"context_windows": ["m=1"]}, "Context windows must be a table of model: tokens"),
        ({"stream": "yes"}, "Stream replies must be on or off (true or false)"),
        ({"allow_weak_isolation": 1}, "Weak isolation must be on or off (true or false)"),
        (
            {"cap_usd": None, "root_model": "qwen3:8b", "root_max_output_tokens": 40_000},
            "Root max output tokens (40,000) must be less than the context window of qwen3:8b (32,768 tokens), "
            "or the question itself has no room",
        ),
        (
            {"cap_usd": None, "sub_model": "local", "context_windows": {"local": 4000}},
            "Sub max output tokens (4,000) must be less than the context window of local (4,000 tokens), "
            "or the question itself has no room",
        ),
    ],
)
def test_output_limits_timeouts_and_windows_are_checked(changes, problem):
    assert validate(Settings(**changes)) == [problem]


def test_limits_and_windows_load_save_and_reach_the_run(tmp_path):
    settings = Settings(
        root_max_output_tokens=2000,
        sub_max_output_tokens=1000,
        output_chars=5000,
        request_timeout_s=30.0,
        context_windows={"qwen3:8b": 8192},
        stream=False,
        allow_weak_isolation=True,
    )
    settings.save(tmp_path)
    loaded = Settings.load(tmp_path)
    assert loaded == settings and validate(loaded) == []
    config = run_config(loaded)
    assert (config.root_max_output_tokens, config.sub_max_output_tokens, config.output_chars) == (2000, 1000, 5000)
    assert (config.request_timeout_s, config.stream, config.allow_weak_isolation) == (30.0, False, True)
    assert config.context_windows == {"qwen3:8b": 8192}


def test_context_window_entries_parse_with_clear_errors():
    assert parse_context_window("qwen3:8b = 32,768") == ("qwen3:8b", 32768)
    assert parse_context_window("a=b=1_024") == ("a=b", 1024)
    assert parse_context_windows(["# mine", "", "x=4096", "y/z=8192"]) == {"x": 4096, "y/z": 8192}
    with pytest.raises(ValueError, match=r"'qwen3': expected MODEL=TOKENS, like qwen3:8b=32768"):
        parse_context_window("qwen3")
    with pytest.raises(ValueError, match=r"'m=32k': '32k' is not a whole number of tokens"):
        parse_context_window("m=32k")
    with pytest.raises(ValueError, match=r"m has two context windows \(4,096 and 8,192\): keep one"):
        parse_context_windows(["m=4096", "m=8192"])
