"""Script a root model and a sub model on the fake OpenAI server: replies chosen by what the request holds."""

from __future__ import annotations

from collections.abc import Callable

from tests.fake_openai import Reply

ROOT, SUB = "gpt-5", "gpt-5-mini"
PRICES = ("gpt-5=1.25:10", "gpt-5-mini=0.25:2")


def repl(code: str) -> str:
    return f"```repl\n{code.strip()}\n```"


class Script:
    """`root_turns[i]` answers the root's (i+1)-th turn of a conversation; `sub(prompt)` answers sub-calls.

    The turn is the number of assistant messages already in the request, so several conversations (nested
    rlm_query levels) can share one script when their first user message differs: `levels` maps a phrase in
    that message to its own list of turns.
    """

    def __init__(
        self,
        root_turns: list[str | Callable[[dict], str]],
        sub: Callable[[str], str] | None = None,
        levels: dict[str, list[str]] | None = None,
        sub_delay_s: float = 0.0,
    ):
        self.root_turns = root_turns
        self.sub = sub or (lambda prompt: "sub answer")
        self.levels = levels or {}
        self.sub_delay_s = sub_delay_s
        self.root_requests: list[dict] = []
        self.sub_prompts: list[str] = []

    def __call__(self, request: dict) -> Reply:
        messages = request["messages"]
        if request["model"] == SUB:
            prompt = messages[-1]["content"]
            self.sub_prompts.append(prompt)
            return Reply(self.sub(prompt), delay_s=self.sub_delay_s)
        self.root_requests.append(request)
        turn = sum(1 for m in messages if m["role"] == "assistant")
        turns = self.root_turns
        opening = messages[1]["content"] if len(messages) > 1 else ""
        for phrase, level_turns in self.levels.items():
            if phrase in opening:
                turns = level_turns
        reply = turns[min(turn, len(turns) - 1)]
        return Reply(reply(request) if callable(reply) else reply)
