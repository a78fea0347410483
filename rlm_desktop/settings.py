"""User settings beside the cases (`<home>/settings.json`); the API key lives apart (rlm_desktop.secrets)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rlm_desktop.engine.pricing import Price, UnknownPrice
from rlm_desktop.paths import make_private_dirs, settings_path
from rlm_desktop.secrets import CREDENTIALS_FILE, KeyStore

if TYPE_CHECKING:
    from rlm_desktop.engine.rlm import RunConfig

__all__ = [
    "CREDENTIALS_FILE",
    "Settings",
    "cap_price_problem",
    "parse_context_window",
    "parse_context_windows",
    "price_text",
    "run_config",
    "validate",
]


@dataclass
class Settings:
    base_url: str | None = None
    sub_base_url: str | None = None  # sub-calls on their own endpoint (its key from $RLM_SUB_API_KEY)
    max_in_flight: int | None = None  # requests at once to the root's endpoint
    sub_max_in_flight: int | None = None  # and to the sub endpoint
    root_model: str = "gpt-5"
    sub_model: str = "gpt-5-mini"
    cap_usd: float | None = 2.0  # a hard cap by default: a runaway run must never surprise anyone
    max_depth: int = 1
    max_iterations: int = 20
    max_subcalls: int = 500
    concurrency: int = 8
    max_wall_s: float = 1800.0
    root_max_output_tokens: int = 8000
    sub_max_output_tokens: int = 4000
    output_chars: int = 20_000  # the REPL output cut shown to the root model
    request_timeout_s: float = 180.0  # a whole call, or the idle gap between chunks when streaming
    context_windows: dict[str, int] = field(default_factory=dict)  # model -> tokens (overrides the known table)
    stream: bool = True
    allow_weak_isolation: bool = False  # "Run model code with weak isolation on this machine"
    # model -> "IN:OUT" (or "IN:OUT:CACHED"), USD per million tokens; older files may hold
    # {"input_per_m", ...} objects or [in, out] lists, which load and are saved as strings.
    prices: dict[str, Any] = field(default_factory=dict)
    last_case: str | None = None
    # `rlm-desktop serve`: what all its requests may spend per UTC day together, and how many run at once
    serve_daily_cap_usd: float | None = 20.0
    serve_concurrency: int = 2

    @classmethod
    def load(cls, home: Path) -> Settings:
        path = settings_path(home)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read settings {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"cannot read settings {path}: not a JSON object")
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in data.items() if k in known})
        if isinstance(settings.prices, dict):
            settings.prices = _prices_as_text(settings.prices)
        return settings

    def save(self, home: Path) -> None:
        path = settings_path(home)
        make_private_dirs(path.parent)
        data = asdict(self)
        if isinstance(self.prices, dict):
            data["prices"] = _prices_as_text(self.prices)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o600)  # the endpoint URL may carry a credential of its own
        os.replace(tmp, path)


def _number(value: float) -> str:
    return f"{value:.10g}"


def price_text(price: Price) -> str:
    """The settings form of a price: "IN:OUT", or "IN:OUT:CACHED" when a cached rate is known."""
    parts = [price.input_per_m, price.output_per_m]
    if price.cached_input_per_m is not None:
        parts.append(price.cached_input_per_m)
    return ":".join(_number(p) for p in parts)


def _prices_as_text(prices: dict[str, Any]) -> dict[str, Any]:
    """Readable prices become "IN:OUT" strings; unreadable ones stay as they are for validate() to name."""
    out: dict[str, Any] = {}
    for model, value in prices.items():
        try:
            out[model] = price_text(Price.from_value(value))
        except (TypeError, ValueError):
            out[model] = value
    return out


def run_config(settings: Settings, *, home: Path | None = None, **overrides: Any) -> RunConfig:
    """The engine's RunConfig from settings; keyword overrides (e.g. from command-line flags) win.

    With `home`, the root and sub models' capabilities come from the endpoint probe's cache
    (`<home>/endpoints.json`, written by `doctor` and Settings' Test connection).
    """
    from rlm_desktop.engine.rlm import RunConfig

    values: dict[str, Any] = {
        "root_model": settings.root_model,
        "sub_model": settings.sub_model,
        "base_url": (settings.base_url or "").strip() or None,
        "sub_base_url": (settings.sub_base_url or "").strip() or None,
        "max_in_flight": settings.max_in_flight,
        "sub_max_in_flight": settings.sub_max_in_flight,
        "cap_usd": settings.cap_usd,
        "max_depth": settings.max_depth,
        "max_iterations": settings.max_iterations,
        "max_subcalls": settings.max_subcalls,
        "concurrency": settings.concurrency,
        "max_wall_s": settings.max_wall_s,
        "root_max_output_tokens": settings.root_max_output_tokens,
        "sub_max_output_tokens": settings.sub_max_output_tokens,
        "output_chars": settings.output_chars,
        "request_timeout_s": settings.request_timeout_s,
        "context_windows": dict(settings.context_windows),
        "stream": settings.stream,
        "allow_weak_isolation": settings.allow_weak_isolation,
        "price_overrides": dict(settings.prices),
    }
    values.update(overrides)
    if home is not None and "model_caps" not in overrides:
        from rlm_desktop.engine.endpoints import load_caps

        cached = load_caps(home, values["base_url"])
        sub_cached = load_caps(home, values["sub_base_url"]) if values.get("sub_base_url") else cached
        caps = {m: cached[m] for m in (values["root_model"],) if m in cached}
        caps.update({m: sub_cached[m] for m in (values["sub_model"],) if m in sub_cached})
        values["model_caps"] = caps
    return RunConfig(**values)


# Labels as the settings dialog shows them, so a problem names the field the user sees.
_INT_LIMITS = {
    "max_depth": "Max depth",
    "max_iterations": "Max iterations",
    "max_subcalls": "Max sub-calls",
    "concurrency": "Concurrency",
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def cap_price_problem(model: str) -> str:
    """The problem shown for a capped run whose model has no price."""
    return f"Set a price for {model} or remove the cap"


def _config_problems(**values: Any) -> list[str]:
    """RunConfig.check() on a config that differs from the defaults only in `values`.

    Checking one concern at a time lists every problem at once instead of the first one,
    while the rules themselves stay in RunConfig.check().
    """
    from rlm_desktop.engine.rlm import RunConfig

    # Placeholders with built-in prices, so a cap check only complains about models really chosen.
    values.setdefault("root_model", "gpt-5")
    values.setdefault("sub_model", "gpt-5-mini")
    try:
        RunConfig(**values).check()
    except UnknownPrice as exc:
        return [cap_price_problem(model) for model in exc.models]
    except ValueError as exc:
        message = str(exc)
        for name, label in _INT_LIMITS.items():
            if message.startswith(name + " "):
                message = label + message[len(name) :]
        return [_sentence(message)]
    return []


def _url_problem(base_url: object) -> str | None:
    if base_url is None:
        return None
    if not isinstance(base_url, str):
        return "Endpoint URL must be text, like https://api.openai.com/v1"
    url = base_url.strip()
    if not url:
        return None  # empty: OpenAI's own endpoint (or $OPENAI_BASE_URL)
    if any(ch.isspace() for ch in url):
        return "Endpoint URL must not contain spaces"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        shown = f" (it starts with {parts.scheme}:)" if parts.scheme else ""
        return f"Endpoint URL must start with http:// or https://{shown}"
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        return "Endpoint URL has a port that is not a number from 0 to 65535"
    if not host:
        return "Endpoint URL has no server name after http(s)://"
    return None


# Bounds a person could mean; outside them a value is a typo (a timeout of 0, an output cut of 5 characters).
MAX_OUTPUT_TOKENS = 1_000_000
OUTPUT_CHARS_RANGE = (1_000, 10_000_000)
TIMEOUT_RANGE_S = (1.0, 3600.0)
CONTEXT_WINDOW_RANGE = (1_024, 100_000_000)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_context_window(text: str) -> tuple[str, int]:
    """`MODEL=TOKENS` (from --context-window or a line of the settings dialog) as (model, tokens).

    The split is on the last `=`, so names with `:` or `/` (Ollama tags, gateway prefixes) work;
    the number may use `,` or `_` between digits (32,768).
    """
    model, sep, number = text.rpartition("=")
    model = model.strip()
    if not sep or not model:
        raise ValueError(f"{text.strip()!r}: expected MODEL=TOKENS, like qwen3:8b=32768")
    digits = number.strip().replace(",", "").replace("_", "")
    if not digits.isdigit():
        raise ValueError(f"{text.strip()!r}: {number.strip()!r} is not a whole number of tokens")
    return model, int(digits)


def parse_context_windows(lines: Iterable[str]) -> dict[str, int]:
    """Many `MODEL=TOKENS` entries (blank lines and # comments skipped); ValueError names the first bad one."""
    windows: dict[str, int] = {}
    for line in lines:
        if not line.strip() or line.strip().startswith("#"):
            continue
        model, tokens = parse_context_window(line)
        if model in windows and windows[model] != tokens:
            raise ValueError(f"{model} has two context windows ({windows[model]:,} and {tokens:,}): keep one")
        windows[model] = tokens
    return windows


def _output_problems(settings: Settings) -> list[str]:
    """Output limits, the REPL output cut, the request timeout, context windows and the switches."""
    from rlm_desktop.engine.model_info import context_window

    problems: list[str] = []
    windows = settings.context_windows
    if not isinstance(windows, dict):
        problems.append("Context windows must be a table of model: tokens")
        windows = {}
    else:
        for model, tokens in windows.items():
            low, high = CONTEXT_WINDOW_RANGE
            if not str(model).strip():
                problems.append("A context window has no model name")
            elif not _whole(tokens) or not low <= tokens <= high:
                problems.append(f"Context window of {model} must be a whole number of tokens from {low:,} to {high:,}")
    for name, label, model_field in (
        ("root_max_output_tokens", "Root max output tokens", "root_model"),
        ("sub_max_output_tokens", "Sub max output tokens", "sub_model"),
    ):
        value, model = getattr(settings, name), getattr(settings, model_field)
        if not _whole(value) or not 1 <= value <= MAX_OUTPUT_TOKENS:
            problems.append(f"{label} must be a whole number from 1 to {MAX_OUTPUT_TOKENS:,}")
            continue
        valid_windows = {m: t for m, t in windows.items() if _whole(t) and t > 0}
        window = context_window(model, valid_windows) if isinstance(model, str) and model.strip() else None
        if window is not None and value >= window:
            problems.append(
                f"{label} ({value:,}) must be less than the context window of {model} ({window:,} tokens), "
                "or the question itself has no room"
            )
    low, high = OUTPUT_CHARS_RANGE
    if not _whole(settings.output_chars) or not low <= settings.output_chars <= high:
        problems.append(f"REPL output cut must be a whole number of characters from {low:,} to {high:,}")
    low, high = TIMEOUT_RANGE_S
    if not _is_number(settings.request_timeout_s) or not low <= settings.request_timeout_s <= high:
        problems.append(f"Request timeout must be from {low:g} to {high:g} seconds")
    for name, label in (("stream", "Stream replies"), ("allow_weak_isolation", "Weak isolation")):
        if not isinstance(getattr(settings, name), bool):
            problems.append(f"{label} must be on or off (true or false)")
    return problems


def validate(settings: Settings) -> list[str]:
    """Human-readable problems that would stop a run (empty when the settings are usable)."""
    problems: list[str] = []
    if problem := _url_problem(settings.base_url):
        problems.append(problem)
    for name, label in (("root_model", "root model"), ("sub_model", "sub model")):
        value = getattr(settings, name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"Choose a {label}")

    for name, label in _INT_LIMITS.items():
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{label} must be a whole number")
        else:
            problems.extend(_config_problems(**{name: value}))
    if not _is_number(settings.max_wall_s) or settings.max_wall_s <= 0:
        problems.append("Wall-clock limit must be more than 0 seconds")
    problems.extend(_output_problems(settings))

    prices: dict[str, Any] = {}
    unreadable: set[str] = set()
    if not isinstance(settings.prices, dict):
        problems.append("Prices must be a table of model: IN:OUT (USD per million tokens)")
    else:
        for model, value in settings.prices.items():
            if not str(model).strip():
                problems.append("A price has no model name")
                continue
            try:
                Price.from_value(value)
            except (TypeError, ValueError) as exc:
                problems.append(f"Price for {model}: {exc}")
                unreadable.add(model)
            else:
                prices[model] = value

    cap = settings.cap_usd
    if cap is not None:
        if not _is_number(cap):
            problems.append("The spending cap must be an amount of dollars, like 2.00")
        else:
            models = {name: getattr(settings, name) for name in ("root_model", "sub_model")}
            named = all(isinstance(m, str) and m.strip() for m in models.values())
            # Without both model names there is nothing to price yet ("Choose a ..." says so).
            found = _config_problems(cap_usd=cap, price_overrides=prices, **(models if named else {}))
            # A model whose price is there but unreadable is already named above.
            problems.extend(p for p in found if p not in {cap_price_problem(m) for m in unreadable})
    problems.extend(serve_problems(settings))
    return list(dict.fromkeys(problems))  # root and sub model can be the same unpriced model


def serve_problems(settings: Settings) -> list[str]:
    """The server's per-day cap and concurrency (`rlm-desktop serve`)."""
    problems = []
    daily = settings.serve_daily_cap_usd
    if daily is not None and (not _is_number(daily) or daily <= 0):
        problems.append("The server's daily cap must be an amount of dollars above 0, like 20.00 (or none)")
    if not _whole(settings.serve_concurrency) or not 1 <= settings.serve_concurrency <= 64:
        problems.append("The server's concurrent runs must be a whole number from 1 to 64")
    return problems


def load_api_key(home: Path) -> str | None:
    """The stored key (keyring or file); kept for callers written before KeyStore."""
    return KeyStore(home).get()


def save_api_key(home: Path, key: str) -> None:
    """Store the key (keyring or a 0600 file); kept for callers written before KeyStore."""
    KeyStore(home).set(key)
