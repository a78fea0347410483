"""The SDK's headers and chat URL, computed without the SDK, are the ones the SDK itself sends."""

from __future__ import annotations

import asyncio

import openai
import pytest
import yarl

from rlm_desktop.engine.sdk_headers import chat_url, sdk_headers

ENVIRONMENT = ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS", "OPENAI_BASE_URL")


def the_sdks(base_url: str | None, api_key: str) -> tuple[dict[str, str], str]:
    """(headers, chat URL) of the SDK's own AsyncOpenAI, made on a running loop as the engine's clients are."""

    async def build():
        client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0)
        try:
            headers = {k: v for k, v in client.default_headers.items() if isinstance(v, str)}
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {client.api_key}"
            return headers, str(client.base_url).rstrip("/") + "/chat/completions"
        finally:
            await client.close()

    return asyncio.run(build())


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"OPENAI_ORG_ID": "org-123", "OPENAI_PROJECT_ID": "proj_456"},
        {"OPENAI_CUSTOM_HEADERS": "X-Team: blue\nX-Trace:  on \nnot a header\nAuthorization: Bearer other"},
    ],
)
def test_headers_are_the_sdks_own(monkeypatch, environment):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for key in ("sk-test-123", ""):
        expected, _ = the_sdks("http://127.0.0.1:9/v1", key)
        assert sdk_headers(key) == expected
    assert sdk_headers("k")["Authorization"] == "Bearer k"  # ours, never one from the environment


@pytest.mark.parametrize(
    "base_url",
    [
        None,
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/",
        "https://Gateway.Example.COM/openai/v1",
        "https://gateway.example.com/v1?api-version=2024-10-01",
        "http://localhost:11434",
    ],
)
def test_chat_url_is_where_the_sdk_posts(monkeypatch, base_url):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert yarl.URL(chat_url(base_url)) == yarl.URL(the_sdks(base_url, "k")[1])
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:7/from-env/v1")
    assert yarl.URL(chat_url(base_url)) == yarl.URL(the_sdks(base_url, "k")[1])
