"""One redaction for everything the app stores, prints or exports: the API key and anything key-shaped."""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
_MIN_SECRET = 6  # shorter "secrets" would blank out ordinary words

# Query parameters and fields that carry credentials (Azure's `api-key`, Google's `key`, OAuth's tokens).
_SECRET_NAMES = (
    r"api[-_]?key|x-api-key|key|token|access[-_]?token|refresh[-_]?token|id[-_]?token|auth|authorization"
    r"|password|passwd|pwd|secret|client[-_]?secret|sig|signature|session[-_]?token"
)
_SECRET_NAME = re.compile(rf"^(?:{_SECRET_NAMES})$", re.I)
_PATTERNS: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [  # (pattern, replacement, cheap triggers)
    # provider keys: OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-), and masked echoes (sk-****abcd)
    (re.compile(r"\bsk-[A-Za-z0-9_*\-]{4,}"), REDACTED, ("sk-",)),
    (
        re.compile(r"\b(?:gsk|hf|xai|pplx|ghp|gho|github_pat|glpat)[_-][A-Za-z0-9_\-]{16,}"),
        REDACTED,
        ("gsk", "hf", "xai", "pplx", "gh", "glpat"),
    ),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), REDACTED, ("aiza",)),
    # "Authorization: Bearer <token>", "Basic <b64>"
    # (a credential has digits or is long: "Basic authentication" and "token received" are words)
    (
        re.compile(
            r"(?i)\b(bearer|basic|token)(\s+)(?:(?=[A-Za-z._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{8,}|[A-Za-z0-9._~+/=\-]{24,})"
        ),
        rf"\1\2{REDACTED}",
        ("bearer", "basic", "token"),
    ),
    # what OpenAI-compatible servers echo back: "Incorrect API key provided: <key>"
    (re.compile(r"(?i)(api[ _-]?key provided:?\s*)[^\s.,;'\"}]+"), rf"\1{REDACTED}", ("provided",)),
    # URL userinfo: scheme://user:secret@host or scheme://token@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@"), rf"\1{REDACTED}@", ("://",)),
    # query parameters: ?api-key=..., &key=..., &access_token=...
    (re.compile(rf"(?i)([?&;](?:{_SECRET_NAMES})=)[^&#\s\"'<>]+"), rf"\1{REDACTED}", ("=",)),
    # key: value / key=value in error bodies and config dumps ("api_key": "...", password=...)
    (
        re.compile(
            r"(?i)([\"']?\b(?:api[-_]?key|x-api-key|access[-_]?token|refresh[-_]?token|client[-_]?secret"
            r"|password|secret)[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"',}&]{4,}"
        ),
        rf"\1{REDACTED}",
        ("key", "token", "secret", "password"),
    ),
]

_TRIGGERS = tuple(t for _, _, triggers in _PATTERNS for t in triggers)

_known: set[str] = set()
_known_lock = threading.Lock()


def remember_secret(secret: str | None) -> None:
    """Register a secret (the API key once loaded) so every later redaction in this process removes it."""
    if secret and len(secret) >= _MIN_SECRET:
        with _known_lock:
            _known.add(secret)


def redact(text: str, known_secrets: Iterable[str | None] = ()) -> str:
    """`text` without the given secrets, the remembered ones, and anything key-shaped."""
    if not text:
        return text
    text = _remove_known(text, known_secrets)
    lower = text.lower()
    for trigger in _TRIGGERS:
        if trigger in lower:
            break
    else:
        return text  # most strings of a run record have no trigger at all: one pass over them, not eight
    for pattern, replacement, triggers in _PATTERNS:
        if any(t in lower for t in triggers):  # most text has none of them: skip the regex scan
            text = pattern.sub(replacement, text)
            lower = text.lower()
    return text


def redact_known(text: str, known_secrets: Iterable[str | None] = ()) -> str:
    """`text` without the exact secrets only: for document text (excerpts, quotes) that must stay verbatim."""
    if not text:
        return text
    return _remove_known(text, known_secrets)


_PIECE = 8  # a word holding this many characters of a secret in a row carries part of it (a cut-off echo)
# ... unless the run is only lowercase letters and dashes: as likely a piece of prose or a flag ("t-window" of a
# key "sk-test-window" is in "--context-window"), so such a run must be longer to count. A generated key's
# 8-character runs nearly all carry a digit or a capital.
_WORDLIKE_PIECE = re.compile(r"[a-z._-]+")
_WORDLIKE_RUN = 12


def _pieces(secret: str) -> set[str]:
    short = {secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1)}
    long = {secret[i : i + _WORDLIKE_RUN] for i in range(len(secret) - _WORDLIKE_RUN + 1)}
    return {p for p in short if not _WORDLIKE_PIECE.fullmatch(p)} | {p for p in long if _WORDLIKE_PIECE.fullmatch(p)}


@functools.lru_cache(maxsize=64)
def _secret_table(secrets: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The secrets longest first (a key containing another goes first), and every piece of them: a run saves
    thousands of strings, each once checked against the same few secrets."""
    ordered = tuple(sorted(secrets, key=len, reverse=True))
    pieces = {p for s in secrets if len(s) > _PIECE for p in _pieces(s)}
    return ordered, tuple(pieces)


def _remove_known(text: str, known_secrets: Iterable[str | None]) -> str:
    extra = [s for s in known_secrets if s and len(s) >= _MIN_SECRET]
    if not _known and not extra:
        return text
    with _known_lock:
        secrets = frozenset((*_known, *extra))
    ordered, pieces = _secret_table(secrets)
    for secret in ordered:
        text = text.replace(secret, REDACTED)
    found = [p for p in pieces if p in text]  # C-speed scans; words are only split when a piece is there
    if found:
        words = re.split(r"(\s+)", text)
        text = "".join(REDACTED if any(p in w for p in found) else w for w in words)
    return text


# Fields of a run record kept verbatim but for exact known secrets: citations' quotes are checked character
# for character against the stored text, a sub-call's prompt is mapped back to its source spans, and the
# question and answer are the user's and the model's prose ("the secret: Zurich" is not a credential).
_VERBATIM = frozenset({"quote", "prompt", "question", "answer"})


def redact_record(value: Any, known_secrets: Iterable[str | None] = (), *, _field: str = "") -> Any:
    """A copy of a run record (or any JSON value) with every string redacted; `base_url`s made public."""
    return _redact_value(value, tuple(known_secrets), _field)


_PLAIN = (int, float, bool, type(None))  # nothing to redact: kept as they are without a call each


def _redact_value(value: Any, known: tuple[str | None, ...], field: str) -> Any:
    if isinstance(value, str):
        if field == "base_url":
            return public_base_url(value)
        return redact_known(value, known) if field in _VERBATIM else redact(value, known)
    if isinstance(value, dict):
        verbatim_text = value.get("kind") == "llm_query"  # its `text` is the prompt
        return {
            key: item
            if item.__class__ in _PLAIN
            else _redact_value(item, known, "prompt" if verbatim_text and key == "text" else key)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [item if item.__class__ in _PLAIN else _redact_value(item, known, field) for item in value]
    return value


def public_base_url(url: str) -> str:
    """`url` without user:password and without credential query parameters (api-key, key, token, ...)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return redact(url)
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port:
        host += f":{port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SECRET_NAME.match(k)])
    return redact(urlunsplit((parts.scheme, host, parts.path, query, "")))


class RedactingFilter(logging.Filter):
    """A log filter that redacts the message and the traceback text before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction() -> None:
    """Redact everything logged through the root logger's handlers and Python's last-resort handler."""
    handlers = [*logging.getLogger().handlers, logging.lastResort]
    for handler in handlers:
        if handler is not None and not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
