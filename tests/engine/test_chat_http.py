"""The aiohttp side of model requests: the environment's proxy, and SSE lines cut anywhere by the network."""

from __future__ import annotations

import asyncio
import types

import aiohttp
from aiohttp.client_proto import ResponseHandler

from rlm_desktop.engine.chat_http import ChatResponse, _proxy_for


def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _proxy_for("http://127.0.0.1:8000/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert _proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.example:3128"
    assert _proxy_for("http://127.0.0.1:8000/v1/chat/completions") is None  # no proxy named for http
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert _proxy_for("https://api.example.com/v1/chat/completions") is None


def test_lines_come_whole_however_the_body_is_cut():
    """A piece may end inside a line, between \\r and \\n, or inside a UTF-8 character: lines still come whole."""
    body = 'data: {"a": "é€😀"}\r\n\r\ndata: two\n: keep-alive\rdata: [DONE]'.encode()

    async def lines_of(cuts: list[int]) -> list[str]:
        loop = asyncio.get_running_loop()
        reader = aiohttp.StreamReader(ResponseHandler(loop), 2**16, loop=loop)  # aiohttp's own, fed by hand
        start = 0
        for cut in [*cuts, len(body)]:
            reader.feed_data(body[start:cut])
            start = cut
        reader.feed_eof()
        response = ChatResponse(types.SimpleNamespace(content=reader, headers={}))
        return [line.rstrip("\r\n") async for batch in response.line_batches() for line in batch]

    whole = asyncio.run(lines_of([]))
    assert [line for line in whole if line] == ['data: {"a": "é€😀"}', "data: two", ": keep-alive", "data: [DONE]"]
    for cut in range(1, len(body)):
        assert [line for line in asyncio.run(lines_of([cut])) if line] == [line for line in whole if line]
