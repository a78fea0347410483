"""Frames and the worker's bounded output capture, without a subprocess."""

from __future__ import annotations

import asyncio
import os

import pytest

from rlm_desktop.sandbox import protocol
from rlm_desktop.sandbox.worker import BoundedCapture, cut_middle


def test_frames_round_trip_over_a_pipe_including_unicode_and_lone_surrogates():
    read_fd, write_fd = os.pipe()
    try:
        message = protocol.exec_message(3, "print('héllo \ud800')")
        protocol.write_frame_fd(write_fd, message)
        assert protocol.read_frame_fd(read_fd) == message
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_async_reader_decodes_what_the_blocking_writer_wrote():
    async def scenario() -> dict:
        reader = asyncio.StreamReader()
        reader.feed_data(protocol.encode_frame(protocol.request_message(1, "llm_query", {"prompt": "p"})))
        reader.feed_eof()
        return await protocol.read_frame_async(reader)

    assert asyncio.run(scenario()) == {
        "type": "request",
        "id": 1,
        "kind": "llm_query",
        "payload": {"prompt": "p"},
    }


def test_a_hostile_length_or_body_is_refused_not_allocated():
    async def read(data: bytes) -> dict:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await protocol.read_frame_async(reader)

    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        asyncio.run(read(protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1)))
    with pytest.raises(protocol.ProtocolError, match="type"):
        asyncio.run(read(protocol.HEADER.pack(2) + b"[]"))
    with pytest.raises(protocol.ProtocolError, match="undecodable"):
        asyncio.run(read(protocol.HEADER.pack(3) + b"\xff\xfe{"))
    with pytest.raises(EOFError):
        asyncio.run(read(protocol.HEADER.pack(10) + b"{}"))


def test_capture_keeps_head_and_tail_and_counts_what_it_dropped():
    capture = BoundedCapture(100)
    for _ in range(1000):
        capture.write("a" * 7)
    capture.write("END")
    text = capture.render()
    assert capture.total == 7003
    assert text.startswith("a" * 50 + "\n[... 6903 characters cut ...]\n")
    assert text.endswith("a" * 47 + "END")
    assert len(capture.tail) < 20  # the tail buffer stays bounded while collecting


def test_capture_of_a_single_huge_write_and_of_short_output():
    capture = BoundedCapture(10)
    capture.write("0123456789" * 1000)
    assert capture.render() == "01234\n[... 9990 characters cut ...]\n56789"
    short = BoundedCapture(10)
    short.write("abc")
    assert short.render() == "abc"
    assert cut_middle("x" * 5, 10) == "x" * 5
    assert cut_middle("ab" * 10, 4) == "ab\n[... 16 characters cut ...]\nab"
