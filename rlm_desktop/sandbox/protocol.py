"""Length-prefixed JSON frames between the sandbox host and its untrusted REPL worker (never pickle)."""

from __future__ import annotations

import json
import os
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker must not import asyncio: it would load subprocess machinery
    import asyncio

from rlm_desktop.sandbox.functions import REPL_FUNCTIONS  # noqa: E402

HEADER = struct.Struct(">I")
# A cell result is already cut to output_chars, so anything bigger is a broken or hostile worker.
MAX_FRAME_BYTES = 64 * 1024 * 1024

# host -> worker
INIT = "init"
EXEC = "exec"
REPLY = "reply"
SET = "set"  # the host's REPL variables (functions.REPL_VARIABLES), between cells
SHUTDOWN = "shutdown"
# worker -> host
READY = "ready"
REQUEST = "request"
RESULT = "result"
SET_OK = "set_ok"
FATAL = "fatal"

REQUEST_KINDS = tuple(fn.name for fn in REPL_FUNCTIONS)  # declared in sandbox/functions.py


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class FrameTooLarge(ProtocolError):
    """The peer announced a frame over the reader's bound; its body was not read."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("frame is not an object with a 'type'")
    return message


def _parse_header(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"announced frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    return length


# --- blocking side (the worker) -------------------------------------------------------------


def write_frame_fd(fd: int, message: dict[str, Any]) -> None:
    data = memoryview(encode_frame(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact_fd(fd: int, count: int) -> bytes:
    chunks = []
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            raise EOFError("peer closed the pipe")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_frame_fd(fd: int) -> dict[str, Any]:
    length = _parse_header(_read_exact_fd(fd, HEADER.size))
    return decode_body(_read_exact_fd(fd, length))


# --- asyncio side (the host) ----------------------------------------------------------------


REQUEST_PREFIX = b'{"type":"request"'


async def read_frame_async(
    reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES, max_request_bytes: int | None = None
) -> dict[str, Any]:
    """Read one frame, never more than max_bytes of body (max_request_bytes for a sub-call request).

    The bound is checked against the announced length before the body is read, so a hostile worker cannot
    make the host hold more than the bound. A frame over it raises FrameTooLarge.
    """
    import asyncio

    request_bound = max_bytes if max_request_bytes is None else max(max_bytes, max_request_bytes)
    try:
        length = _parse_header(await reader.readexactly(HEADER.size))
        if length > request_bound:
            raise FrameTooLarge(f"a frame of {length:,} bytes, over the {max_bytes:,}-byte limit")
        head = await reader.readexactly(min(length, len(REQUEST_PREFIX)))
        if length > max_bytes and head != REQUEST_PREFIX:
            raise FrameTooLarge(f"a frame of {length:,} bytes, over the {max_bytes:,}-byte limit")
        return decode_body(head + await reader.readexactly(length - len(head)))
    except asyncio.IncompleteReadError:
        raise EOFError("worker closed the pipe") from None


# --- typed message helpers ------------------------------------------------------------------


def init_message(
    case_path: str | None,
    doc_ids: list[int] | None,
    scratch_dir: str,
    limits: dict[str, Any],
    walls: dict[str, Any] | None = None,
    marker_start: int = 1,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """walls: {"landlock": bool, "seccomp": bool, "read": [paths], "write": [paths]} to apply before any cell.
    variables: the host's REPL variables (declared in functions.REPL_VARIABLES), plain JSON."""
    return {
        "variables": variables or {},
        "type": INIT,
        "case_path": case_path,
        "doc_ids": doc_ids,
        "scratch_dir": scratch_dir,
        "limits": limits,
        "walls": walls or {},
        "marker_start": marker_start,
    }


def set_message(variables: dict[str, Any]) -> dict[str, Any]:
    return {"type": SET, "variables": variables}


def exec_message(cell_id: int, code: str) -> dict[str, Any]:
    return {"type": EXEC, "id": cell_id, "code": code}


def reply_message(request_id: int, value: Any = None, error: str | None = None) -> dict[str, Any]:
    if error is not None:
        return {"type": REPLY, "id": request_id, "ok": False, "error": error}
    return {"type": REPLY, "id": request_id, "ok": True, "value": value}


def request_message(request_id: int, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": REQUEST, "id": request_id, "kind": kind, "payload": payload}
