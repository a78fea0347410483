"""Mail stores: streaming mbox splitting, Maildir folders, and sniffing of extension-less messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from rlm_desktop.ingest.limits import MBOX_MAX_LINE_BYTES, MBOX_MAX_MESSAGE_BYTES
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import bom_encoding

MBOX_SUFFIXES = frozenset((".mbox", ".mbx", ".mbs", ""))
# Longest line read at once; longer lines arrive in pieces, so memory stays bounded on garbage input.
_LINE_LIMIT = 1 << 20


class Skipped(NamedTuple):
    """Yielded instead of a message's bytes when the message breaks a size limit; it is not kept in memory."""

    reason: str
# A real From_ line carries a date ("From sender Thu Sep  4 10:00:00 2014"): a time or a year. Asking for
# one keeps an unquoted "From here on" paragraph in a body from splitting the message (mboxo ambiguity).
_FROM_LINE = re.compile(rb"^From \S*.*?(\d{1,2}:\d{2}|\b(19|20)\d{2}\b)")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_MAIL_HEADERS = re.compile(
    rb"^(received|return-path|from|to|cc|message-id|date|mime-version|subject|delivered-to|reply-to|"
    rb"x-mailer|content-type|sender|references|in-reply-to|user-agent|dkim-signature|"
    rb"authentication-results|x-[a-z0-9-]+):",
    re.I,
)
_BLANK_LINES = (b"\n", b"\r\n")
_OBSOLETE_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:")  # RFC 822 allowed "Subject  :"


def _is_from_line(line: bytes) -> bool:
    return line.startswith(b"From ") and _FROM_LINE.match(line) is not None


def iter_mbox(
    path: Path,
    start: int = 0,
    max_line: int = MBOX_MAX_LINE_BYTES,
    max_message: int = MBOX_MAX_MESSAGE_BYTES,
) -> Iterator[tuple[int, int, bytes | Skipped]]:
    """Yield (start offset, end offset, message bytes without the From_ line) for each message.

    Streams the file in pieces of at most 1 MB, so memory is bounded by `max_message`: a message with a line
    longer than `max_line`, or larger than `max_message`, is yielded as `Skipped(reason)` and its bytes are
    dropped as they are read. `end` is where the next message's From_ line starts (or the file ends); pass it
    as `start` to resume after a crash. Quoted ">From " lines are kept as they are.
    """
    with path.open("rb") as fh:
        fh.seek(start)
        position = start
        message_start: int | None = None
        lines: list[bytes] = []
        size = 0
        skipped: str | None = None
        line_length = 0  # of the line being read, over its pieces
        previous_blank = True  # the file start (or a resume point) counts as following a blank line
        at_line_start = True

        def message() -> bytes | Skipped:
            return Skipped(skipped) if skipped else _finish(lines)

        while True:
            line = fh.readline(_LINE_LIMIT)
            if not line:
                break
            line_start = position
            position += len(line)
            line_length = len(line) if at_line_start else line_length + len(line)
            if at_line_start and previous_blank and _is_from_line(line):
                if message_start is not None:
                    yield message_start, line_start, message()
                message_start = line_start
                lines, size, skipped = [], 0, None
            else:
                if message_start is None:
                    message_start = line_start  # text before the first From_ line: keep it as a message
                if skipped is None:
                    size += len(line)
                    if line_length > max_line:
                        skipped = (
                            f"a line longer than {max_line // 1024:,} KB (not an email: RFC 5322 lines are "
                            "under 1,000 characters); message not read"
                        )
                    elif size > max_message:
                        skipped = f"message larger than {max_message // 2**20:,} MB; not read"
                    if skipped is None:
                        lines.append(line)
                    else:
                        lines = []  # free what was kept: the rest of this message is only counted
            at_line_start = line.endswith(b"\n")
            previous_blank = line in _BLANK_LINES
        if message_start is not None and (lines or skipped or message_start < position):
            yield message_start, position, message()


def _finish(lines: list[bytes]) -> bytes:
    # The blank line before the next From_ line belongs to the mbox format, not to the message.
    if lines and lines[-1] in _BLANK_LINES:
        lines = lines[:-1]
    return b"".join(lines)


def is_mbox(source: Source) -> bool:
    """True for a file that starts with a From_ line and has an mbox-like (or no) extension."""
    if source.suffix not in MBOX_SUFFIXES:
        return False
    head = source.head(1024).lstrip(b"\r\n")
    first_line = head.split(b"\n", 1)[0]
    return _is_from_line(first_line) or (first_line.startswith(b"From ") and source.suffix != "")


def is_maildir(path: Path) -> bool:
    """A Maildir folder: has cur/, new/ and tmp/ subfolders."""
    return path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def iter_maildir(path: Path) -> Iterator[Path]:
    """The message files in a Maildir's cur/ and new/ (tmp/ holds deliveries in progress), sorted."""
    for sub in ("cur", "new"):
        folder = path / sub
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                yield entry


def looks_like_email(head: bytes) -> bool:
    """Sniff an extension-less file: do its first lines look like RFC 822 mail headers?"""
    found = bom_encoding(head[:4])
    if found is None and len(head) > 8 and head[1:8:2] == b"\0\0\0\0":
        found = ("utf-16-le", 0)  # UTF-16 without a byte order mark
    elif found is None and len(head) > 8 and head[0:8:2] == b"\0\0\0\0":
        found = ("utf-16-be", 0)
    if found and found[0] != "utf-8":
        head = head[found[1] :].decode(found[0], errors="ignore").encode("utf-8")
    head = re.sub(rb"^\s*\d+[ \t]*\r?\n", b"", head.lstrip(b"\xef\xbb\xbf"), count=1)  # Apple .emlx
    lines = head.lstrip(b"\r\n").splitlines()[:40]
    if len(lines) > 1 and not head.endswith(b"\n") and len(lines) < 40:
        lines = lines[:-1]  # the sniffed head may cut the last line short
    if not lines:
        return False
    if lines[0].startswith(b"From ") and not _OBSOLETE_NAME.match(lines[0]):
        lines = lines[1:]  # an mbox-style From_ line before the headers
    known = odd = 0
    for index, line in enumerate(lines):
        if not line.strip():
            break  # end of the header block
        if line[:1] in (b" ", b"\t") and index > 0:
            continue  # folded continuation
        line = _OBSOLETE_NAME.sub(rb"\1:", line)
        if not _HEADER_LINE.match(line):
            odd += 1
            if odd > 1 or index == 0:
                return False
            continue  # one stray line is tolerated in otherwise good headers
        if _MAIL_HEADERS.match(line):
            known += 1
    return known >= 2
