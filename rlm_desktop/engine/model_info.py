"""What we know about a model on an endpoint: context window, token parameter, streaming and usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Context windows (input + output tokens) of well-known models, as their makers publish them.
# Matched by exact name first, then by the longest known prefix (a dated snapshot or an
# Ollama tag shares its family's window). Users override any of them in settings.
KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000,
    "gpt-5-mini": 400_000,
    "gpt-5-nano": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "o1": 200_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
    "claude": 200_000,
    "anthropic/claude": 200_000,
    "deepseek-r1": 128_000,
    "deepseek/deepseek-r1": 128_000,
    "qwen3": 32_768,
    "qwen/qwen3": 32_768,
    "qwq": 32_768,
    "llama3.1": 128_000,
    "llama3.2": 128_000,
    "llama3.3": 128_000,
}

# Models that only take max_completion_tokens (OpenAI reasoning models); everyone else is
# tried with max_completion_tokens first and falls back to max_tokens when refused.
_NEW_PARAM_PREFIXES = ("gpt-5", "o1", "o3", "o4")


def known_context_window(model: str) -> int | None:
    """The published context window of `model`, or None when it is not a model we know."""
    if model in KNOWN_CONTEXT_WINDOWS:
        return KNOWN_CONTEXT_WINDOWS[model]
    best: str | None = None
    for name in KNOWN_CONTEXT_WINDOWS:
        if model.startswith(name) and model[len(name) : len(name) + 1] in ("-", ":", "@", ".", "") and (
            best is None or len(name) > len(best)
        ):
            best = name
    return None if best is None else KNOWN_CONTEXT_WINDOWS[best]


@dataclass(frozen=True)
class ModelCaps:
    """What a probe of (endpoint, model) found; None means "not known"."""

    token_param: str | None = None  # "max_completion_tokens" or "max_tokens"
    streaming: bool | None = None  # the server streams chat completions
    stream_usage: bool | None = None  # it accepts stream_options.include_usage and reports usage when streaming
    usage_reported: bool | None = None  # non-streaming replies carry real token usage
    reasoning_field: str | None = None  # "reasoning_content", "reasoning" or "think-tags"
    context_window: int | None = None  # as reported by the server (e.g. vLLM's max_model_len)
    listed: bool | None = None  # the model is in the endpoint's /models list
    probed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ModelCaps:
        if not data:
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def context_window(model: str, overrides: Mapping[str, int] | None = None, caps: ModelCaps | None = None) -> int | None:
    """The window to size requests for: the user's setting, then the server's report, then the known table."""
    if overrides and overrides.get(model):
        return int(overrides[model])
    if caps is not None and caps.context_window:
        return int(caps.context_window)
    return known_context_window(model)


def default_token_param(model: str, caps: ModelCaps | None = None) -> str:
    """The output-limit parameter to send first for `model` (the probe's finding wins)."""
    if caps is not None and caps.token_param:
        return caps.token_param
    return "max_completion_tokens"


def requires_new_token_param(model: str) -> bool:
    """OpenAI reasoning models refuse max_tokens; never fall back to it for them."""
    bare = model.rsplit("/", 1)[-1]
    return bare.startswith(_NEW_PARAM_PREFIXES)
