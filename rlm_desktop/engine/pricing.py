"""Model prices in USD per million tokens, with user overrides, and the cost of one call."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# List prices as published by OpenAI on the date below (standard tier, USD per 1M tokens).
# They change: check them against https://openai.com/api/pricing before relying on them,
# and update PRICES_TAKEN with the date. Users can override any of them in settings or
# with `--price MODEL=IN:OUT`.
PRICES_TAKEN = "2025-08-07"


class UnknownPrice(LookupError):
    """No price is known for a model, so its cost cannot be computed or bounded."""

    def __init__(self, models: str | Iterable[str]):
        self.models = [models] if isinstance(models, str) else list(models)
        names = ", ".join(self.models)
        super().__init__(
            f"no price known for model {names}; give one with --price {self.models[0]}=IN:OUT "
            "(USD per million input:output tokens) or in settings"
        )


@dataclass(frozen=True)
class Price:
    """USD per million tokens; cached input defaults to the full input price when unknown."""

    input_per_m: float
    output_per_m: float
    cached_input_per_m: float | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_m", "output_per_m", "cached_input_per_m"):
            value = getattr(self, name)
            if value is None and name == "cached_input_per_m":
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def cached_rate(self) -> float:
        """The per-million rate for cached input (the full input rate if no discount is known)."""
        return self.input_per_m if self.cached_input_per_m is None else self.cached_input_per_m

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD for one call; cached tokens are a subset of prompt tokens, as OpenAI reports them."""
        if min(prompt_tokens, completion_tokens, cached_tokens) < 0:
            raise ValueError("token counts must be >= 0")
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.input_per_m
            + cached * self.cached_rate
            + completion_tokens * self.output_per_m
        ) / 1_000_000

    @classmethod
    def from_value(cls, value: object) -> Price:
        """A Price from a settings value: Price, {"input_per_m":..}, [in, out(, cached)] or "IN:OUT"."""
        if isinstance(value, Price):
            return value
        if isinstance(value, str):
            return _parse_rates(value, context=repr(value))
        if isinstance(value, Mapping):
            unknown = set(value) - {"input_per_m", "output_per_m", "cached_input_per_m"}
            if unknown or "input_per_m" not in value or "output_per_m" not in value:
                raise ValueError(
                    f"price {dict(value)!r} needs keys input_per_m, output_per_m (and optional "
                    "cached_input_per_m)"
                )
            return cls(**value)
        if isinstance(value, list | tuple) and len(value) in (2, 3):
            return cls(*value)
        raise ValueError(f"cannot read a price from {value!r}")


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o3": Price(2.00, 8.00, 0.50),
    "o4-mini": Price(1.10, 4.40, 0.275),
}


def _parse_rates(text: str, context: str) -> Price:
    parts = text.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"{context}: expected IN:OUT or IN:OUT:CACHED (USD per million tokens)")
    rates = []
    for part, name in zip(parts, ("input", "output", "cached input"), strict=False):
        try:
            rate = float(part)
        except ValueError:
            raise ValueError(f"{context}: {name} price {part!r} is not a number") from None
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"{context}: {name} price must be a finite number >= 0, got {part!r}")
        rates.append(rate)
    return Price(*rates)


def parse_price_arg(text: str) -> tuple[str, Price]:
    """Parse `MODEL=IN:OUT` or `MODEL=IN:OUT:CACHED` (USD per million tokens) into (model, Price).

    The split is on the last `=`, so model names containing `:` (Ollama tags) work.
    """
    model, sep, rates = text.rpartition("=")
    model = model.strip()
    if not sep or not model:
        raise ValueError(f"--price {text!r}: expected MODEL=IN:OUT, e.g. gpt-4o-mini=0.15:0.60")
    return model, _parse_rates(rates, context=f"--price {text!r}")


class PriceTable:
    """Prices by exact model name: defaults, then settings overrides, then --price arguments.

    Names are matched exactly: a dated snapshot (gpt-4o-2024-05-13) can cost more than its
    alias, so guessing from a similar name could break a spending cap.
    """

    def __init__(
        self,
        defaults: Mapping[str, Price] | None = None,
        overrides: Mapping[str, object] | None = None,
        price_args: Iterable[str] = (),
    ):
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES if defaults is None else defaults)
        for model, value in (overrides or {}).items():
            try:
                self._prices[model] = Price.from_value(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"price for {model!r} in settings: {exc}") from None
        for arg in price_args:
            model, price = parse_price_arg(arg)
            self._prices[model] = price

    def get(self, model: str) -> Price | None:
        return self._prices.get(model)

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def models(self) -> list[str]:
        return sorted(self._prices)

    def require(self, *models: str) -> None:
        """Raise UnknownPrice naming every model without a price (use before a capped run)."""
        missing = [m for m in dict.fromkeys(models) if m not in self._prices]
        if missing:
            raise UnknownPrice(missing)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD for one call; raises UnknownPrice rather than returning a silent 0."""
        price = self._prices.get(model)
        if price is None:
            raise UnknownPrice(model)
        return price.cost(prompt_tokens, completion_tokens, cached_tokens)

    def cost_or_none(
        self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float | None:
        price = self._prices.get(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens, cached_tokens)

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        """Plain data for settings files and run records."""
        return {
            model: {
                "input_per_m": p.input_per_m,
                "output_per_m": p.output_per_m,
                "cached_input_per_m": p.cached_input_per_m,
            }
            for model, p in sorted(self._prices.items())
        }
