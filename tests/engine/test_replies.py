"""Reading replies: reasoning is set apart and never run; every common fence is code; a prose FINAL."""

from __future__ import annotations

import pytest

from rlm_desktop.engine.replies import code_blocks, parse_reply, prose_final, split_reasoning, strip_code


def test_think_pair_is_thinking_and_its_draft_code_is_not_a_block():
    text = '<think>Maybe:\n```repl\nFINAL("draft guess")\n```\n</think>\n```repl\nprint(len(context))\n```'
    reply = parse_reply(text)
    assert reply.blocks == ("print(len(context))",)
    assert 'FINAL("draft guess")' in reply.thinking and "draft" not in reply.visible


def test_lone_closing_tag_makes_everything_before_it_thinking():
    text = 'I will answer.\n```repl\nFINAL("draft")\n```\n</think>\n\nLet me look first.\n```python\nx = 1\n```'
    reply = parse_reply(text)
    assert reply.blocks == ("x = 1",) and "draft" in reply.thinking
    assert reply.prose == "Let me look first."


def test_unclosed_think_is_all_thinking():
    visible, thinking = split_reasoning("<think>still going ```repl\nFINAL('x')\n```")
    assert visible == "" and "FINAL('x')" in thinking


def test_reasoning_field_joins_thinking():
    reply = parse_reply("```repl\nprint(1)\n```", reasoning="first I look")
    assert reply.thinking == "first I look" and reply.blocks == ("print(1)",)


@pytest.mark.parametrize(
    "fence",
    ["```repl\n{}\n```", "```python\n{}\n```", "```py\n{}\n```", "```\n{}\n```", "~~~\n{}\n~~~", "~~~python\n{}\n~~~",
     "````repl\n{}\n````"],
)
def test_every_common_fence_is_code(fence):
    blocks, prose = code_blocks("Look:\n" + fence.format("print(2)") + "\nthen more")
    assert blocks == ["print(2)"] and prose == "Look:\n\nthen more"


def test_other_languages_are_shown_not_run():
    blocks, prose = code_blocks('```json\n{"a": 1}\n```\n```repl\nprint(1)\n```')
    assert blocks == ["print(1)"] and '{"a": 1}' in prose


def test_prose_final_is_taken_only_at_a_line_start_and_as_one_call():
    assert prose_final("Done.\nFINAL('Geneva [c1]')\nthanks") == "FINAL('Geneva [c1]')"
    assert prose_final("FINAL_VAR(answer)") == "FINAL_VAR(answer)"
    assert prose_final('FINAL("""two\nlines (with parens)""")') == 'FINAL("""two\nlines (with parens)""")'
    assert prose_final("I will call FINAL('x') later") is None
    assert prose_final("FINAL(answer) and then some words") == "FINAL(answer)"
    assert prose_final("FINAL(") is None


def test_strip_code_gives_the_plain_answer():
    assert strip_code("<think>hmm</think>Answer [c1].\n```repl\nprint(1)\n```") == "Answer [c1]."


def test_segments_split_prose_and_code_as_the_engine_reads_them():
    from rlm_desktop.engine.replies import segments

    text = 'Look:\n~~~python\nx = 1\n~~~\n```json\n{"a": 1}\n```\nDone.'
    assert segments(text) == [("Look:", False), ("x = 1", True), ('```json\n{"a": 1}\n```\nDone.', False)]
