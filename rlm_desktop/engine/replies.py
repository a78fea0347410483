"""Reading a model's reply: reasoning set apart (never run), code blocks in every common fence, a prose FINAL."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# Inline reasoning as R1, Qwen3, QwQ and others write it on servers without a reasoning parser.
_THINK_PAIR = re.compile(r"<(think|thinking|reasoning)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)

# A fence opens at the start of a line with ``` or ~~~ (three or more) and an optional language,
# and closes with the same fence string at the start of a line. Only code for Python runs.
_FENCE = re.compile(
    r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n(?P<body>.*?)^[ \t]{0,3}(?P=fence)[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
RUNNABLE_LANGUAGES = frozenset({"", "repl", "python", "py", "python3", "ipython"})
_PROSE_FINAL = re.compile(r"^[ \t]*(FINAL_VAR|FINAL)[ \t]*\(", re.MULTILINE)


@dataclass(frozen=True)
class ParsedReply:
    """A reply split into what is shown, what is run and what was only thought."""

    visible: str  # the reply without its reasoning
    thinking: str  # reasoning from tags or reasoning fields: kept for the tree, never executed
    blocks: tuple[str, ...]  # code to run, in order
    prose: str  # visible text outside the code blocks

    @property
    def empty(self) -> bool:
        return not self.visible.strip()


def split_reasoning(text: str, reasoning: str | None = None) -> tuple[str, str]:
    """(visible, thinking): `<think>…</think>` pairs, everything before a lone `</think>`, and an
    unclosed `<think>` (a reply cut off mid-thought) all go to thinking, with any reasoning field."""
    thoughts: list[str] = [reasoning.strip()] if reasoning and reasoning.strip() else []

    def take(match: re.Match[str]) -> str:
        if match.group(2).strip():
            thoughts.append(match.group(2).strip())
        return ""

    visible = _THINK_PAIR.sub(take, text)
    closes = list(_THINK_CLOSE.finditer(visible))
    close = closes[-1] if closes else None
    if close is not None:  # the opening tag was in the chat template's prompt, not in the reply
        before = _THINK_OPEN.sub("", visible[: close.start()]).strip()
        if before:
            thoughts.append(before)
        visible = visible[close.end() :]
    opened = _THINK_OPEN.search(visible)
    if opened is not None:  # thinking that never closed: the reply ran out while reasoning
        rest = visible[opened.end() :].strip()
        if rest:
            thoughts.append(rest)
        visible = visible[: opened.start()]
    return visible.strip(), "\n\n".join(thoughts)


def code_blocks(visible: str) -> tuple[list[str], str]:
    """(runnable code blocks in order, the prose around all blocks)."""
    blocks: list[str] = []
    prose_parts: list[str] = []
    last = 0
    for match in _FENCE.finditer(visible):
        prose_parts.append(visible[last : match.start()])
        last = match.end()
        if match.group("lang").lower() in RUNNABLE_LANGUAGES:
            body = match.group("body").strip("\n")
            if body.strip():
                blocks.append(body)
        else:
            prose_parts.append(match.group(0))  # a ```json or ```text block is shown, not run
    prose_parts.append(visible[last:])
    return blocks, "".join(prose_parts).strip()


def segments(visible: str) -> list[tuple[str, bool]]:
    """The reply as (text, is_code) pieces in order: how a window or report shows prose and code apart.
    Only blocks that run count as code; a ```json block stays in the prose, as the engine sees it."""
    out: list[tuple[str, bool]] = []
    last = 0
    for match in _FENCE.finditer(visible):
        if match.group("lang").lower() not in RUNNABLE_LANGUAGES:
            continue
        if visible[last : match.start()].strip("\n"):
            out.append((visible[last : match.start()].strip("\n"), False))
        out.append((match.group("body").rstrip("\n"), True))
        last = match.end()
    if visible[last:].strip("\n"):
        out.append((visible[last:].strip("\n"), False))
    return out


def prose_final(prose: str) -> str | None:
    """A `FINAL(...)` / `FINAL_VAR(...)` call at the start of a line outside any block, as code to run.

    The call may span lines (a triple-quoted answer): the shortest text from the line start
    that parses as exactly that one call is taken.
    """
    for match in _PROSE_FINAL.finditer(prose):
        start = match.start() + (len(match.group(0)) - len(match.group(0).lstrip()))
        tail = prose[start:]
        for close in (i for i, ch in enumerate(tail) if ch == ")"):
            candidate = tail[: close + 1]
            try:
                tree = ast.parse(candidate, mode="eval")
            except SyntaxError:
                continue
            call = tree.body
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id in ("FINAL", "FINAL_VAR")
                and len(call.args) == 1
                and not call.keywords
            ):
                return candidate
            break
    return None


def parse_reply(text: str, reasoning: str | None = None) -> ParsedReply:
    visible, thinking = split_reasoning(text or "", reasoning)
    blocks, prose = code_blocks(visible)
    return ParsedReply(visible=visible, thinking=thinking, blocks=tuple(blocks), prose=prose)


def strip_code(text: str) -> str:
    """A reply as a plain answer: reasoning and code blocks removed."""
    visible, _ = split_reasoning(text or "")
    return code_blocks(visible)[1]
