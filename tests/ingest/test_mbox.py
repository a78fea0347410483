"""mbox splitting (streamed, resumable), Maildir listing and RFC 822 sniffing."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from rlm_desktop.ingest.mail import extract_email
from rlm_desktop.ingest.mbox import is_maildir, is_mbox, iter_maildir, iter_mbox, looks_like_email
from rlm_desktop.ingest.source import Source

MESSAGE_1 = (
    b"From: a@example.org\nSubject: one\n\nFirst body.\nFrom here on, no split: previous line is not blank.\n"
)
MESSAGE_2 = b"From: b@example.org\nSubject: two\n\nQuoted below:\n\n>From the archives, a quoted line.\n"
MESSAGE_3 = (
    b"From: c@example.org\nSubject: three\n\nFrom time to time a body line after a blank line.\nEnd.\n"
)


def _mbox_bytes() -> bytes:
    return (
        b"From a@example.org Mon Mar  3 10:00:00 2025\n"
        + MESSAGE_1
        + b"\nFrom b@example.org Tue Mar  4 11:00:00 2025\n"
        + MESSAGE_2
        + b"\nFrom MAILER-DAEMON Wed Mar  5 12:00:00 2025 extra info\n"
        + MESSAGE_3
    )


def test_three_messages_with_from_lines_in_bodies(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    data = _mbox_bytes()
    path.write_bytes(data)
    found = list(iter_mbox(path))
    assert [raw for _, _, raw in found] == [MESSAGE_1, MESSAGE_2, MESSAGE_3]
    assert found[0][0] == 0
    assert found[-1][1] == len(data)
    for (_, end, _), (start, _, _) in zip(found, found[1:], strict=False):
        assert end == start  # offsets tile the file
        assert data[start:].startswith(b"From ")
    titles = [extract_email(Source(name="m.eml", data=raw)).title for _, _, raw in found]
    assert titles == ["one", "two", "three"]
    assert ">From the archives" in extract_email(Source(name="m.eml", data=found[1][2])).text


def test_resume_from_end_offset(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    path.write_bytes(_mbox_bytes())
    first = next(iter_mbox(path))
    rest = list(iter_mbox(path, start=first[1]))
    assert [raw for _, _, raw in rest] == [MESSAGE_2, MESSAGE_3]
    assert rest[0][0] == first[1]


def test_crlf_mbox(tmp_path: Path) -> None:
    path = tmp_path / "crlf.mbox"
    path.write_bytes(_mbox_bytes().replace(b"\n", b"\r\n"))
    assert len(list(iter_mbox(path))) == 3


def test_is_mbox_sniffs_from_line_and_extension() -> None:
    head = b"From someone@example.org Thu Sep  4 10:00:00 2014\nSubject: x\n\nbody\n"
    assert is_mbox(Source(name="archive.mbox", data=head))
    assert is_mbox(Source(name="Inbox", data=head))
    assert not is_mbox(Source(name="notes.txt", data=head))
    assert not is_mbox(Source(name="letter.mbox", data=b"From: x@example.org\n\nbody"))


def test_maildir(tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "new" / "200.host").write_bytes(MESSAGE_2)
    (root / "cur" / "100.host:2,S").write_bytes(MESSAGE_1)
    (root / "cur" / "050.host:2,RS").write_bytes(MESSAGE_3)
    (root / "tmp" / "999.host").write_bytes(b"in delivery")
    assert is_maildir(root)
    assert not is_maildir(root / "cur")
    assert [p.name for p in iter_maildir(root)] == ["050.host:2,RS", "100.host:2,S", "200.host"]


def test_looks_like_email() -> None:
    assert looks_like_email(
        b"Return-Path: <a@example.org>\nReceived: from mx by host;\n\tMon, 3 Mar 2025\n"
        b"From: a@example.org\nSubject: hi\n\nbody"
    )
    assert looks_like_email(b"From a@example.org Mon Mar  3 10:00:00 2025\nFrom: a@x\nDate: today\n\n")
    assert not looks_like_email(b"Dear Sir,\nFrom: the text of a letter\n")
    assert not looks_like_email(b"title: yaml front matter\nauthor: me\n")
    assert not looks_like_email(b"")
    utf16 = b"From: a@example.org\r\nSubject: x\r\nDate: Mon, 3 Mar 2025\r\n\r\nbody".decode().encode(
        "utf-16"
    )
    assert looks_like_email(utf16)
    assert looks_like_email(b"1234\nFrom: a@example.org\nSubject: emlx\n\nbody")
    assert looks_like_email(b"From  : a@example.org\nSubject   : obsolete spacing\n\nbody")


def test_big_mbox_streams_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.mbox"
    body = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20 + b"\n") * 40  # ~46 KB
    count = 1100  # ~50 MB in all
    with path.open("wb") as fh:
        for number in range(count):
            fh.write(b"From x@example.org Mon Mar  3 10:00:00 2025\n")
            fh.write(b"Subject: message %d\n\n" % number + body + b"\n")
    size = path.stat().st_size
    assert size > 48_000_000
    tracemalloc.start()
    try:
        seen = 0
        last_end = 0
        for _start, end, raw in iter_mbox(path):
            seen += 1
            last_end = end
            assert raw.startswith(b"Subject: message")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert last_end == size
    print(f"streamed {size} bytes, tracemalloc peak {peak} bytes")
    assert peak < 2_000_000, f"peak {peak} bytes while streaming {size} bytes"
