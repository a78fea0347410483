"""Tests for model prices, overrides and --price parsing."""

from __future__ import annotations

import datetime

import pytest

from rlm_desktop.engine.pricing import (
    DEFAULT_PRICES,
    PRICES_TAKEN,
    Price,
    PriceTable,
    UnknownPrice,
    parse_price_arg,
)


def test_defaults_cover_common_models_and_date_is_valid():
    for model in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"):
        assert model in DEFAULT_PRICES
    assert {"o3", "o4-mini"} <= set(DEFAULT_PRICES)
    datetime.date.fromisoformat(PRICES_TAKEN)
    for price in DEFAULT_PRICES.values():
        assert price.output_per_m >= price.input_per_m >= price.cached_rate >= 0


def test_cost_counts_cached_tokens_at_their_rate():
    price = Price(2.0, 8.0, 0.5)
    # 1000 prompt tokens of which 400 cached, 500 output.
    expected = (600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6
    assert price.cost(1000, 500, 400) == pytest.approx(expected)
    # Without a known cached rate, cached input costs the full input price.
    assert Price(2.0, 8.0).cost(1000, 500, 400) == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)


def test_table_cost_uses_defaults():
    table = PriceTable()
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.15 + 0.60)


def test_unknown_model_is_an_error_never_zero():
    table = PriceTable()
    with pytest.raises(UnknownPrice, match="llama3.1:8b"):
        table.cost("llama3.1:8b", 10, 10)
    assert table.cost_or_none("llama3.1:8b", 10, 10) is None
    assert table.get("gpt-4o-2024-05-13") is None  # dated snapshots are not guessed
    with pytest.raises(UnknownPrice) as info:
        table.require("gpt-4o", "a", "b", "a")
    assert info.value.models == ["a", "b"]


def test_precedence_defaults_then_settings_then_price_args():
    table = PriceTable(
        overrides={"gpt-4o": {"input_per_m": 1.0, "output_per_m": 2.0}, "local": [0, 0], "x": "3:4:1"},
        price_args=["gpt-4o=5:6", "llama3.1:8b=0.1:0.2"],
    )
    assert table.get("gpt-4o") == Price(5.0, 6.0)
    assert table.get("local") == Price(0, 0)
    assert table.get("x") == Price(3.0, 4.0, 1.0)
    assert table.get("llama3.1:8b") == Price(0.1, 0.2)
    assert table.get("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.as_dict()["local"] == {"input_per_m": 0, "output_per_m": 0, "cached_input_per_m": None}


def test_parse_price_arg_accepts_valid_forms():
    assert parse_price_arg("gpt-4o-mini=0.15:0.60") == ("gpt-4o-mini", Price(0.15, 0.6))
    assert parse_price_arg("qwen2.5:14b=0:0") == ("qwen2.5:14b", Price(0.0, 0.0))
    assert parse_price_arg(" m = 1:2:0.5 ") == ("m", Price(1.0, 2.0, 0.5))


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("gpt-4o", "expected MODEL=IN:OUT"),
        ("=1:2", "expected MODEL=IN:OUT"),
        ("m=1", "expected IN:OUT"),
        ("m=1:2:3:4", "expected IN:OUT"),
        ("m=a:2", "input price 'a' is not a number"),
        ("m=1:", "output price '' is not a number"),
        ("m=-1:2", "finite number >= 0"),
        ("m=1:nan", "finite number >= 0"),
        ("m=1:inf", "finite number >= 0"),
    ],
)
def test_parse_price_arg_rejects_bad_input_clearly(arg, message):
    with pytest.raises(ValueError, match=message):
        parse_price_arg(arg)


def test_bad_settings_price_names_the_model():
    with pytest.raises(ValueError, match="'m' in settings"):
        PriceTable(overrides={"m": {"input": 1}})
    with pytest.raises(ValueError, match="'n' in settings"):
        PriceTable(overrides={"n": [1, -2]})
