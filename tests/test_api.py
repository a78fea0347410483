"""The Python API: open_case(...).ask(...) end to end against the scripted fake model, and follow_up."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rlm_script import PRICES, ROOT, SUB, Script, repl
from test_cli_ask import FINDING, home  # noqa: F401 - the fixture is used by name

import rlm_desktop
from rlm_desktop.api import Answer, Citation

FOLLOW_UP = [
    repl("print('history', len(history), history[0]['answer'])"),
    repl("m = quote(history[0]['citations'][0]['doc_id'], 'Geneva')\nFINAL(f'In Geneva {m}.')"),
]


def test_ask_returns_a_typed_answer_and_follow_up_continues_its_thread(fake_openai, home):  # noqa: F811
    fake_openai.handler = Script(FINDING)
    case = rlm_desktop.open_case(
        "default", home=home, api_key="sk-test", base_url=fake_openai.base_url, root_model=ROOT, sub_model=SUB,
        price_args=PRICES,
    )
    answer = case.ask("When is the meeting?", cap_usd=0.5, max_iterations=5)
    assert isinstance(answer, Answer) and answer.completed and str(answer) == answer.answer
    assert answer.answer == "The meeting is on 12 June in Geneva [c1]."
    (c,) = answer.citations
    assert isinstance(c, Citation) and c.verified and c.quote == "on 12 June in Geneva" and c.title == "memo.txt"
    assert 0 < answer.cost_usd <= 0.5 and answer.record["cap_usd"] == 0.5
    assert answer.record["run_id"] == answer.run_id and answer.record["status"] == "completed"
    assert fake_openai.chat_requests[0].headers["authorization"] == "Bearer sk-test"

    script = Script(FOLLOW_UP)
    fake_openai.handler = script
    second = answer.follow_up("Where exactly?")
    assert second.answer == "In Geneva [c1]." and second.record["follows"] == answer.run_id
    assert "history 1 The meeting is on 12 June in Geneva [c1]." in script.root_requests[1]["messages"][-1]["content"]
    # a saved run reads back as the same typed answer
    assert case.run(second.run_id[:8]).citations == second.citations


def test_bad_input_gets_a_specific_error(home, tmp_path):  # noqa: F811 - the fixture
    with pytest.raises(FileNotFoundError, match="no case 'missing'"):
        rlm_desktop.open_case("missing", home=home)
    with pytest.raises(FileNotFoundError):
        rlm_desktop.open_case(tmp_path / "nowhere.sqlite")
    case = rlm_desktop.open_case(home / "cases" / "default.sqlite", home=home, api_key="k")
    assert case.name == "default"
    with pytest.raises(TypeError, match="unknown setting.*max_dpeth"):
        case.ask("q", max_dpeth=2)
    with pytest.raises(ValueError, match="Set a price|price"):
        case.ask("q", root_model="no-such-model", cap_usd=1.0)
    with pytest.raises(ValueError, match="the question is empty"):
        case.ask("  ")


def test_import_rlm_desktop_stays_cheap():
    code = "import sys, rlm_desktop; print(sorted(m for m in sys.modules if m.startswith(('rlm_desktop.', 'openai'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
