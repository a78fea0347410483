"""The REPL functions that call the host (and the variables it sets), declared once: the worker's stubs, the host's checks of what the
worker sends, the protocol's request kinds and the system prompt's table are all made from this list.

Adding one is a declaration here plus its handler in the engine (`engine/rlm.py`, `Level.HANDLERS`);
a test checks that every declared function has a handler. This module is imported by the untrusted
worker, so it imports nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Argument types: how the worker turns what cell code passes into JSON, and how the host checks it.
STR, STR_LIST, DOC_IDS = "str", "list[str]", "doc_ids"


@dataclass(frozen=True)
class Param:
    name: str  # as cell code sees it
    type: str  # STR, STR_LIST or DOC_IDS
    wire: str = ""  # the payload key, when it differs from the name

    @property
    def key(self) -> str:
        return self.wire or self.name


@dataclass(frozen=True)
class HostFunction:
    """A function cell code calls whose work happens on the host (model calls, sub-investigations)."""

    name: str
    params: tuple[Param, ...]
    returns: str  # STR or STR_LIST (one answer per item of the STR_LIST argument)
    prompt: str  # the system prompt's line for it

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(p.name for p in self.params)})"


REPL_FUNCTIONS: tuple[HostFunction, ...] = (
    HostFunction(
        "llm_query",
        (Param("prompt", STR),),
        STR,
        "asks a sub-model (cheaper, capable, with a context of roughly 100k characters) and returns its "
        "answer as a string. Give it the excerpt AND a precise task.",
    ),
    HostFunction(
        "llm_query_batched",
        (Param("prompts", STR_LIST),),
        STR_LIST,
        "many sub-model calls in parallel, answers in order; better than a loop of `llm_query` calls.",
    ),
    HostFunction(
        "rlm_query",
        (Param("question", STR), Param("docs", DOC_IDS, wire="doc_ids")),
        STR,
        "a recursive investigator with its own REPL over a subset of documents (a list of Documents or ids). "
        "Use it for a sub-question that needs its own search over many documents.",
    ),
)
BY_NAME = {f.name: f for f in REPL_FUNCTIONS}


@dataclass(frozen=True)
class ReplVariable:
    """A name the host sets in the REPL (plain JSON data), at start and again before each question."""

    name: str
    prompt: str  # the system prompt's line for it


REPL_VARIABLES: tuple[ReplVariable, ...] = (
    ReplVariable(
        "history",
        "in a follow-up question, the thread's earlier runs, oldest first: a list of dicts with `question`, "
        "`answer`, `run_id` and `citations` (each `doc_id`, `start`, `end`, `quote`, `marker`: verified spans); "
        "an empty list otherwise. Markers in earlier answers belong to those runs: to use a passage again, "
        "register it with `cite`.",
    ),
)
VARIABLE_NAMES = frozenset(v.name for v in REPL_VARIABLES)


def doc_id_of(doc: Any) -> int:
    """A document id from an id, a Document or a Hit."""
    if hasattr(doc, "doc_id") and not hasattr(doc, "id"):
        doc = doc.doc_id  # a Hit
    elif hasattr(doc, "id"):
        doc = doc.id
    if isinstance(doc, bool) or not isinstance(doc, int):
        raise TypeError(f"expected a document id (int) or a Document, got {type(doc).__name__}")
    return doc


def _to_payload(fn: HostFunction, args: tuple[Any, ...]) -> dict[str, Any]:
    """Cell arguments as the JSON payload, with a TypeError that names the function when they are wrong."""
    if len(args) != len(fn.params):
        raise TypeError(f"{fn.signature} takes {len(fn.params)} argument(s), got {len(args)}")
    payload: dict[str, Any] = {}
    for param, value in zip(fn.params, args, strict=True):
        if param.type == STR:
            if not isinstance(value, str):
                raise TypeError(f"{fn.signature}: {param.name} must be a str")
        elif param.type == STR_LIST:
            value = list(value) if not isinstance(value, str) else None
            if value is None or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{fn.signature}: {param.name} must be a list of str")
        elif param.type == DOC_IDS:
            items = [value] if isinstance(value, (int, str)) or hasattr(value, "id") else list(value)
            value = [doc_id_of(item) for item in items]
        payload[param.key] = value
    return payload


def make_stub(fn: HostFunction, call_host: Callable[[str, dict[str, Any]], Any]) -> Callable[..., Any]:
    """The function cell code sees: checks its arguments, asks the host, checks the answer's shape."""

    def stub(*args: Any) -> Any:
        payload = _to_payload(fn, args)
        batch = next((payload[p.key] for p in fn.params if p.type == STR_LIST), None)
        if fn.returns == STR_LIST and batch == []:
            return []
        value = call_host(fn.name, payload)
        if fn.returns == STR_LIST:
            if not isinstance(value, list) or (batch is not None and len(value) != len(batch)):
                raise RuntimeError(f"{fn.name}: the host returned the wrong number of answers")
            return [str(v) for v in value]
        return str(value)

    stub.__name__ = stub.__qualname__ = fn.name
    stub.__doc__ = f"{fn.signature}: {fn.prompt}"
    return stub


def check_request(kind: Any, payload: Any) -> str | None:
    """Why a request from the (untrusted) worker is malformed, or None: the host's check of every frame."""
    fn = BY_NAME.get(kind) if isinstance(kind, str) else None
    if fn is None or not isinstance(payload, dict):
        return f"unknown request {kind!r}"
    if set(payload) != {p.key for p in fn.params}:
        return f"{fn.name} got the wrong arguments"
    for param in fn.params:
        value = payload[param.key]
        if param.type == STR and not isinstance(value, str):
            return f"{fn.name} needs a str {param.name}"
        if param.type == STR_LIST and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"{fn.name} needs a list of str {param.name}"
        if param.type == DOC_IDS and not (
            isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
        ):
            return f"{fn.name} needs a list of int document ids"
    return None


def prompt_table(width: int = 110) -> str:
    """The system prompt's lines for these functions, wrapped like the rest of the prompt."""
    import textwrap

    lines = [f"- `{fn.signature}`: {fn.prompt}" for fn in REPL_FUNCTIONS]
    lines += [f"- `{var.name}`: {var.prompt}" for var in REPL_VARIABLES]
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)
