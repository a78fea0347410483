"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAIServer


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI-compatible server on 127.0.0.1; script it with .queue() or .handler."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens: bound but not listening, so connections are refused and no
    other process (a parallel test's server) can take the port while the test runs."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
