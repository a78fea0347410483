"""The host's declared REPL variables (`history`): set at start, between cells, kept across a restart."""

from __future__ import annotations

import asyncio

import pytest

from rlm_desktop.sandbox.functions import prompt_table
from rlm_desktop.sandbox.host import Sandbox

HISTORY = [{"question": "When?", "answer": "On 4 May [c1].", "run_id": "abc", "citations": []}]


def test_history_is_set_at_start_between_cells_and_after_a_restart(tmp_path):
    async def scenario():
        sandbox = await Sandbox.start(
            None, None, {"cell_timeout_s": 5}, None, allow_weak=True, variables={"history": []}
        )
        try:
            first = await sandbox.execute("print(history)\nmine = 7\nSHOW_VARS()")
            await sandbox.set_variables({"history": HISTORY})
            second = await sandbox.execute("print(history[0]['answer'], mine)")
            await sandbox.execute("import os\nos._exit(3)")  # the worker dies: the next cell gets a fresh one
            third = await sandbox.execute("print(len(history))\nprint('mine' in dir())")
            return first, second, third
        finally:
            await sandbox.close()

    first, second, third = asyncio.run(scenario())
    assert first.output.splitlines() == ["[]", "mine: int"]  # history is the host's, not listed as the model's
    assert second.output.strip() == "On 4 May [c1]. 7"
    assert third.state_lost and third.output.splitlines()[-2:] == ["1", "False"]


def test_only_declared_variables_are_set():
    with pytest.raises(ValueError, match="not a declared REPL variable"):
        asyncio.run(Sandbox.start(None, None, {}, None, allow_weak=True, variables={"api_key": "sk-x"}))


def test_the_prompt_names_history():
    assert "- `history`: in a follow-up question, the thread's earlier runs" in prompt_table()
