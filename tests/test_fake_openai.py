"""Tests for the fake OpenAI-compatible server that other tests rely on."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.fake_openai import FakeOpenAIServer, Reply, approx_tokens


def post(base_url: str, body: dict, key: str | None = None) -> tuple[int, dict, dict]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{base_url}/chat/completions", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def chat(text: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def test_default_reply_has_openai_shape_and_realistic_usage(fake_openai):
    assert fake_openai.base_url.startswith("http://127.0.0.1:") and fake_openai.base_url.endswith("/v1")
    prompt = "How many invoices mention Acme? " * 10
    status, _, body = post(fake_openai.base_url, chat(prompt))
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    usage = body["usage"]
    assert usage["prompt_tokens"] == approx_tokens(prompt)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_scripted_replies_then_handler(fake_openai):
    fake_openai.handler = lambda req: Reply(text="from handler: " + req["messages"][-1]["content"])
    fake_openai.queue(
        Reply(status=429, retry_after=2, error={"error": {"message": "slow down"}}),
        Reply(text="cached", prompt_tokens=50, completion_tokens=5, cached_tokens=20),
        Reply(text="bare", omit_usage=True),
        Reply(text="x" * 4000),
    )
    status, headers, body = post(fake_openai.base_url, chat("a"))
    assert status == 429 and headers["Retry-After"] == "2" and body["error"]["message"] == "slow down"
    _, _, body = post(fake_openai.base_url, chat("b"))
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 20}
    _, _, body = post(fake_openai.base_url, chat("c"))
    assert "usage" not in body
    _, _, body = post(fake_openai.base_url, chat("d", max_tokens=7))
    assert body["usage"]["completion_tokens"] == 7  # honours the request's limit
    _, _, body = post(fake_openai.base_url, chat("e"))
    assert body["choices"][0]["message"]["content"] == "from handler: e"
    assert [r.status for r in fake_openai.chat_requests] == [429, 200, 200, 200, 200]
    assert [r.json["messages"][0]["content"] for r in fake_openai.chat_requests] == list("abcde")


def test_models_list_and_api_key_check():
    with FakeOpenAIServer(models=["m1", "m2"], api_key="sk-good") as server:
        request = urllib.request.Request(
            f"{server.base_url}/models", headers={"Authorization": "Bearer sk-good"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == ["m1", "m2"]
        status, _, body = post(server.base_url, chat("hi"), key="sk-bad")
        assert status == 401 and "API key" in body["error"]["message"]


def test_handler_bug_becomes_a_500_and_is_kept(fake_openai):
    def broken(request):
        raise KeyError("oops")

    fake_openai.handler = broken
    status, _, body = post(fake_openai.base_url, chat("hi"))
    assert status == 500 and "oops" in body["error"]["message"]
    assert isinstance(fake_openai.errors[0], KeyError)


def test_records_times_and_maximum_concurrency(fake_openai):
    fake_openai.handler = lambda req: Reply(delay_s=0.2)
    threads = [threading.Thread(target=post, args=(fake_openai.base_url, chat(str(i)))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # the server counts a request done just after its last byte is sent, which the client may see first
    deadline = time.monotonic() + 2
    while fake_openai.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fake_openai.max_in_flight == 4 and fake_openai.in_flight == 0
    for record in fake_openai.chat_requests:
        assert record.arrived <= record.started < record.ended
        assert record.ended - record.started >= 0.2


def test_client_hanging_up_mid_request_does_not_hurt_the_server(fake_openai):
    fake_openai.queue(Reply(delay_s=5))
    host, port = fake_openai.base_url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(
        "POST", "/v1/chat/completions", json.dumps(chat("slow")), {"Content-Type": "application/json"}
    )
    assert fake_openai.wait_for_requests(1)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    record = fake_openai.chat_requests[0]
    deadline = time.monotonic() + 2
    while record.ended is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert record.client_disconnected and record.ended - record.started < 2
    assert post(fake_openai.base_url, chat("next"))[0] == 200
    assert fake_openai.errors == []


def test_stop_is_prompt_with_a_request_in_flight():
    server = FakeOpenAIServer().start()
    server.queue(Reply(delay_s=30))
    results = []
    client = threading.Thread(target=lambda: results.append(_post_or_error(server.base_url)))
    client.start()
    assert server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    client.join(timeout=5)
    assert time.monotonic() - started < 3 and not client.is_alive()
    assert results and results[0] == "connection closed"
    with pytest.raises(RuntimeError):
        server.base_url  # noqa: B018 - the property raises once stopped


def _post_or_error(base_url: str) -> object:
    try:
        return post(base_url, chat("hi"))
    except (ConnectionError, http.client.HTTPException, urllib.error.URLError, OSError):
        return "connection closed"


@pytest.mark.parametrize("chunked", [True, False])
def test_streams_chunked_on_a_kept_connection_or_until_close(fake_openai, chunked):
    fake_openai.chunked_streams = chunked
    fake_openai.handler = lambda req: Reply(text="streamed words " * 5)
    port = int(fake_openai.base_url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    bodies = []
    for _ in range(2):
        conn.request(
            "POST", "/v1/chat/completions", json.dumps(chat("a", stream=True)), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        bodies.append(response.read().decode())
        assert response.will_close is not chunked  # chunked: the same connection serves the next request
    conn.close()
    for body in bodies:
        assert body.rstrip().endswith("data: [DONE]")
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content", "")
            for line in body.splitlines()
            if line.startswith("data: {") and json.loads(line[6:])["choices"]
        )
        assert text == "streamed words " * 5
