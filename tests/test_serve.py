"""`rlm-desktop serve`: the real openai client against the server on 127.0.0.1, whose model endpoint is the
scripted fake server; every request is a saved run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
import uvicorn
from rlm_script import PRICES, ROOT, SUB, Script, repl
from test_cli_ask import FINDING

from rlm_desktop.engine.runs import load_run
from rlm_desktop.serve import DailyLedger, ServeState, bind, create_app
from rlm_desktop.store.case import Case

TOKEN = "test-serve-token-0123456789"
QUESTION = "When is the meeting?"
ANSWER = "The meeting is on 12 June in Geneva [c1]."
SLOW = [repl("print(len(context))"), repl("r = llm_query_batched(['first slow question', 'second slow question'])")]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Case.open(home / "cases" / "default.sqlite") as case:
        case.add_text_document("memo.txt", "The meeting with the auditors is on 12 June in Geneva.\n")
    with Case.open(home / "cases" / "other.sqlite") as case:
        case.add_text_document("note.txt", "Nothing here.\n")
    return home


def write_settings(home, **values):
    settings = {"root_model": ROOT, "sub_model": SUB, "cap_usd": 0.5, **values}
    (home / "settings.json").write_text(json.dumps(settings), encoding="utf-8")


@contextlib.contextmanager
def serving(home, fake, **settings):
    """The app on uvicorn in a thread, on a port of 127.0.0.1 this test opened; its runs use the fake model."""
    write_settings(home, **settings)
    state = ServeState(home, TOKEN, {"base_url": fake.base_url, "price_args": PRICES}, api_key="sk-test")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", state
    finally:
        server.should_exit = True
        thread.join(10)
        state.cancel_all()
        sock.close()


def client(url, token=TOKEN, **kw):
    return openai.OpenAI(base_url=url, api_key=token, max_retries=0, timeout=kw.pop("timeout", 60), **kw)


def saved(home, run_id, case="default"):
    with Case.open(home / "cases" / f"{case}.sqlite") as db:
        return load_run(db, run_id)


def raw(url, body=None, headers=None):
    """(status, headers, JSON body) of a request with no client library in between (no bearer unless given)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def billed_tokens(fake):
    sent = [r.usage_sent for r in fake.chat_requests if r.usage_sent]
    return sum(u["prompt_tokens"] for u in sent), sum(u["completion_tokens"] for u in sent)


def test_answer_with_verified_citations_usage_and_a_saved_run(fake_openai, home):
    fake_openai.handler = Script(FINDING)
    with serving(home, fake_openai) as (url, _):
        reply = client(url).chat.completions.create(
            model="rlm:default", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
        )
    assert reply.choices[0].message.content == ANSWER and reply.choices[0].finish_reason == "stop"
    extra = reply.model_extra
    run_id = extra["rlm_run_id"]
    assert reply.id == f"chatcmpl-rlm-{run_id}" and reply.model == "rlm:default" and extra["rlm_status"] == "completed"
    (c,) = extra["rlm_citations"]
    text = "The meeting with the auditors is on 12 June in Geneva.\n"
    assert c["marker"] == "[c1]" and c["title"] == "memo.txt" and c["verified"] is True and c["page"] is None
    assert c["quote"] == "on 12 June in Geneva" == text[c["start"] : c["end"]]
    # usage: the run's real tokens, as the model server billed them, and its cost
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == billed_tokens(fake_openai)
    record = saved(home, run_id)
    assert record["status"] == "completed" and record["question"] == QUESTION and record["answer"] == ANSWER
    assert reply.usage.model_extra["cost"] == pytest.approx(record["cost_usd"]) and record["cost_usd"] > 0
    # the client's system prompt is not the RLM's: the root model got the app's own
    assert "Be brief." not in json.dumps(fake_openai.chat_requests[0].json["messages"])


def test_streamed_answer_shows_the_tree_then_the_answer_citations_and_usage(fake_openai, home):
    fake_openai.handler = Script(FINDING)
    with serving(home, fake_openai) as (url, _):
        chunks = list(
            client(url).chat.completions.create(
                model="rlm:default", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
    steps = "".join(getattr(ch.choices[0].delta, "reasoning", None) or "" for ch in chunks if ch.choices)
    assert "Root model, turn 1" in steps and "Ran code (done): hits = search('meeting')" in steps
    assert "Root model, turn 2" in steps
    answer = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert answer == ANSWER
    (final,) = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert final.choices[0].finish_reason == "stop"
    (c,) = final.model_extra["rlm_citations"]
    assert c["quote"] == "on 12 June in Geneva" and c["verified"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and (usage.prompt_tokens, usage.completion_tokens) == billed_tokens(fake_openai)
    assert saved(home, final.model_extra["rlm_run_id"])["status"] == "completed"


FOLLOW_UP = [
    repl("print('history', len(history), history[0]['run_id'], history[0]['answer'])"),
    repl("m = quote(history[0]['citations'][0]['doc_id'], 'Geneva')\nFINAL(f'In Geneva {m}.')"),
]


def test_earlier_turns_make_a_follow_up_of_the_run_that_answered(fake_openai, home):
    fake_openai.handler = Script(FINDING)
    with serving(home, fake_openai) as (url, _):
        api = client(url)
        first = api.chat.completions.create(model="rlm:default", messages=[{"role": "user", "content": QUESTION}])
        script = Script(FOLLOW_UP)
        fake_openai.handler = script
        conversation = [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "Where exactly?"},
        ]
        second = api.chat.completions.create(model="rlm:default", messages=conversation)
        # an answer the server never gave (edited, or from another tool): a fresh run with the turns as history
        script = Script([FOLLOW_UP[0], repl("FINAL('In June.')")])
        fake_openai.handler = script
        conversation[1]["content"] = "Some time in June, I think."
        third = api.chat.completions.create(model="rlm:default", messages=conversation)
    first_id = first.model_extra["rlm_run_id"]
    assert second.model_extra["rlm_follows"] == first_id and second.choices[0].message.content == "In Geneva [c1]."
    assert saved(home, second.model_extra["rlm_run_id"])["follows"] == first_id
    assert third.model_extra["rlm_follows"] is None
    opening = script.root_requests[0]["messages"][1]["content"]
    assert "earlier in the client's conversation) question: When is the meeting?" in opening
    assert "Some time in June, I think." in opening
    output = script.root_requests[1]["messages"][-1]["content"]
    assert "history 1 None Some time in June, I think." in output  # `history` in the REPL holds the turns
    assert third.choices[0].message.content == "In June."


def test_a_missing_or_wrong_bearer_gets_401_and_reaches_no_model(fake_openai, home):
    with serving(home, fake_openai) as (url, _):
        with pytest.raises(openai.AuthenticationError) as wrong:
            client(url, token="not-the-token").chat.completions.create(
                model="rlm:default", messages=[{"role": "user", "content": QUESTION}]
            )
        bare = raw(f"{url}/chat/completions", {"model": "rlm:default", "messages": []})
        models = raw(f"{url}/models", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
    assert wrong.value.status_code == 401 and "wrong bearer token" in wrong.value.message
    assert bare[0] == 401 and bare[1]["www-authenticate"] == "Bearer"
    assert "a bearer token is required" in bare[2]["error"]["message"]
    assert models[0] == 401
    assert fake_openai.chat_requests == []
    with Case.open(home / "cases" / "default.sqlite") as db:
        assert db.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_models_list_each_case_and_unknown_models_are_404(fake_openai, home):
    with serving(home, fake_openai) as (url, _):
        api = client(url)
        ids = [m.id for m in api.models.list()]
        one = api.models.retrieve("rlm:other")
        with pytest.raises(openai.NotFoundError):
            api.models.retrieve("rlm:nowhere")
        with pytest.raises(openai.NotFoundError) as missing:
            api.chat.completions.create(model="rlm:nowhere", messages=[{"role": "user", "content": QUESTION}])
        with pytest.raises(openai.NotFoundError):
            api.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": QUESTION}])
        with pytest.raises(openai.BadRequestError) as no_question:
            api.chat.completions.create(model="rlm:default", messages=[{"role": "assistant", "content": "hi"}])
    assert ids == ["rlm:default", "rlm:other"] and one.id == "rlm:other" and one.owned_by == "rlm-desktop"
    assert "no case 'nowhere'" in missing.value.message
    assert "the last message must be the user's question" in no_question.value.message
    assert fake_openai.chat_requests == []


def test_the_settings_cap_holds_per_request_and_the_day_counts_it(fake_openai, home):
    looping = repl(
        "i = 0\nwhile True:\n    i += 1\n    try:\n        llm_query(f'q{i} ' + 'z' * 4000)\n"
        "    except Exception:\n        pass"
    )
    fake_openai.handler = Script([repl("print(len(context))"), looping])
    with serving(home, fake_openai, cap_usd=0.02, root_max_output_tokens=600, serve_daily_cap_usd=5.0) as (url, _):
        reply = client(url).chat.completions.create(model="rlm:default", messages=[{"role": "user", "content": QUESTION}])
    extra = reply.model_extra
    assert extra["rlm_status"] == "cap_reached" and reply.choices[0].finish_reason == "length"
    cost = reply.usage.model_extra["cost"]
    assert 0 < cost <= 0.02
    record = saved(home, extra["rlm_run_id"])
    assert record["cap_usd"] == 0.02 and record["cost_usd"] == pytest.approx(cost)
    assert DailyLedger(home).spent() == pytest.approx(cost)  # the server's day counted it


def test_once_the_daily_cap_is_spent_requests_get_402_and_cost_nothing(fake_openai, home):
    (home / "serve-spend.json").write_text(json.dumps({"day": DailyLedger.today(), "spent_usd": 1.0}))
    fake_openai.handler = Script(FINDING)
    with serving(home, fake_openai, serve_daily_cap_usd=1.0) as (url, _), pytest.raises(openai.APIStatusError) as refused:
        client(url).chat.completions.create(model="rlm:default", messages=[{"role": "user", "content": QUESTION}])
    assert refused.value.status_code == 402
    assert "daily cap of $1.00 is reached" in refused.value.message
    assert refused.value.body["code"] == "daily_cap_reached"
    assert fake_openai.chat_requests == []


def _in_flight_subcalls(fake):
    return [r for r in fake.chat_requests if r.json and r.json["model"] == SUB and r.ended is None]


def _calls_stopped(fake, home, run_id):
    """The run is saved as cancelled and the model server saw its calls stop (none open, none new)."""
    assert wait_for(lambda: saved(home, run_id)["status"] == "cancelled", 5)
    assert wait_for(lambda: fake.in_flight == 0, 5)
    count = len(fake.chat_requests)
    time.sleep(0.3)
    assert len(fake.chat_requests) == count
    subs = [r for r in fake.chat_requests if r.json and r.json["model"] == SUB]
    assert subs and all(r.client_disconnected for r in subs)  # the engine hung up on the slow sub-calls


def test_past_the_concurrency_limit_429_and_a_disconnected_stream_cancels_its_run(fake_openai, home):
    fake_openai.handler = Script(SLOW, sub_delay_s=30)
    with serving(home, fake_openai, serve_concurrency=1) as (url, state):
        api = client(url)
        stream = api.chat.completions.create(
            model="rlm:default", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        first = next(iter(stream))
        run_id = first.model_extra["rlm_run_id"]
        assert wait_for(lambda: len(_in_flight_subcalls(fake_openai)) == 2)
        with pytest.raises(openai.RateLimitError) as busy:
            api.chat.completions.create(model="rlm:default", messages=[{"role": "user", "content": "Another?"}])
        stream.close()  # the client goes away
        _calls_stopped(fake_openai, home, run_id)
        assert wait_for(lambda: not state.active)  # its slot is free again
    assert busy.value.status_code == 429 and busy.value.response.headers["retry-after"] == "10"
    assert "1 run(s) in progress" in busy.value.message


def test_a_client_that_disconnects_from_a_plain_request_cancels_its_run(fake_openai, home):
    fake_openai.handler = Script(SLOW, sub_delay_s=30)
    with serving(home, fake_openai) as (url, _):
        port = int(url.split(":")[2].split("/")[0])
        body = json.dumps({"model": "rlm:default", "messages": [{"role": "user", "content": QUESTION}]}).encode()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert wait_for(lambda: len(_in_flight_subcalls(fake_openai)) == 2)
        with Case.open(home / "cases" / "default.sqlite") as db:
            (run_id,) = [r[0] for r in db.conn.execute("SELECT run_id FROM runs")]
        _calls_stopped(fake_openai, home, run_id)


def _env(home):
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    env.pop("OPENAI_BASE_URL", None)
    return env


def test_the_command_makes_and_keeps_a_token(fake_openai, home):
    """Also: Ctrl-C stops the server at once, the run in flight saved as cancelled and its stream ended."""
    fake_openai.handler = Script(SLOW, sub_delay_s=30)
    write_settings(home, base_url=fake_openai.base_url)
    env = _env(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_desktop", "serve", "--port", "0", "--price", PRICES[0], "--price", PRICES[1]],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stderr.readline()
        made = proc.stderr.readline()
        assert first.startswith("rlm-desktop serve: http://127.0.0.1:") and "rlm:default, rlm:other" in first, first
        url = first.split()[2]
        token = made.strip().rsplit(" ", 1)[1]
        assert "A bearer token was made and stored" in made and len(token) >= 40
        stored = home / "serve-token.json"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and json.loads(stored.read_text()) == {"serve_token": token}
        shown = subprocess.run([sys.executable, "-m", "rlm_desktop", "serve", "--show-token"],
                               capture_output=True, text=True, env=env, timeout=30)
        assert shown.stdout.strip() == token
        assert [m.id for m in client(url, token=token).models.list()] == ["rlm:default", "rlm:other"]
        assert raw(f"{url}/models")[0] == 401
        stream = client(url, token=token).chat.completions.create(
            model="rlm:default", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        chunks = iter(stream)
        run_id = next(chunks).model_extra["rlm_run_id"]
        assert wait_for(lambda: len(_in_flight_subcalls(fake_openai)) == 2)
        stopping = time.monotonic()
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the run is cancelled and saved, the stream ends
        rest = list(chunks)
        proc.wait(10)
        stopped_s = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    (final,) = [ch for ch in rest if ch.choices and ch.choices[0].finish_reason]
    assert final.model_extra["rlm_status"] == "cancelled" and saved(home, run_id)["status"] == "cancelled"
    assert stopped_s < 3, stopped_s
    assert wait_for(lambda: fake_openai.in_flight == 0, 5)


def test_a_remote_host_needs_the_flag_and_a_token_env_must_be_set(home, capsys, monkeypatch):
    from rlm_desktop import cli

    monkeypatch.setenv("RLM_TEST_TOKEN", "a-token-of-my-own")
    for host in ("0.0.0.0", "192.168.1.20", "example.org"):
        assert cli.main(["serve", "--home", str(home), "--host", host, "--token-env", "RLM_TEST_TOKEN"]) == 2
        assert f"--host {host} is reachable from other machines: add --allow-remote" in capsys.readouterr().err
    monkeypatch.delenv("RLM_TEST_TOKEN")
    assert cli.main(["serve", "--home", str(home), "--token-env", "RLM_TEST_TOKEN"]) == 2
    assert "$RLM_TEST_TOKEN is not set" in capsys.readouterr().err
    assert not (home / "serve-token.json").exists()  # nothing was made or stored


def test_unusable_server_settings_are_named(fake_openai, home):
    from rlm_desktop.settings import Settings, validate

    bad = Settings(serve_daily_cap_usd=-1, serve_concurrency=0)
    assert "The server's daily cap must be an amount of dollars above 0, like 20.00 (or none)" in validate(bad)
    assert "The server's concurrent runs must be a whole number from 1 to 64" in validate(bad)
    with serving(home, fake_openai, serve_concurrency=0) as (url, _), pytest.raises(openai.InternalServerError) as err:
        client(url).chat.completions.create(model="rlm:default", messages=[{"role": "user", "content": QUESTION}])
    assert "concurrent runs must be a whole number" in err.value.message and fake_openai.chat_requests == []
