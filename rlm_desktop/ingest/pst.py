"""Outlook .pst / .ost stores through libpff-python (pypff): each message rebuilt as an RFC 5322 message and read
by the email extractor, so it gets the same metadata, threading and attachments as mail from an mbox.

The store is streamed like an mbox (pipeline.py): messages are numbered in folder order, which libpff gives the
same every time, and the number of the next message is the resume point after a kill. libpff reads the store in
an extractor process, a batch at a time (`read_batch`); the writer parses the rebuilt messages as it does an
mbox's. The folder path
(`Inbox/Legal`) goes into each message's `meta.folder`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from rlm_desktop.ingest.extracted import ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.source import Source

INSTALL_HINT = (
    "reading Outlook .pst/.ost files needs libpff-python (pip install libpff-python); "
    "or export the store to mbox (for example with readpst) and ingest the mbox files"
)
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024  # like the largest mbox message
# headers that describe the original MIME body, which is rebuilt here from the store's properties
_BODY_HEADERS = {"content-type", "content-transfer-encoding", "mime-version", "content-disposition"}


def _pypff() -> Any:
    try:
        import pypff
    except ImportError as exc:
        raise UnsupportedFormat(INSTALL_HINT) from exc
    return pypff


def open_store(path: Path) -> Any:
    """The opened store; ExtractionError naming the problem when it cannot be read."""
    pypff = _pypff()
    store = pypff.file()
    try:
        store.open(str(path))
    except OSError as exc:
        text = str(exc)
        if "encrypt" in text.lower() or "password" in text.lower():
            raise ExtractionError("the Outlook store is encrypted; not read") from exc
        raise ExtractionError(f"damaged or not an Outlook PST/OST file: {text.splitlines()[0] if text else exc}") from exc
    return store


def count_messages(path: Path) -> int:
    """How many messages the store holds (checks that it opens, too)."""
    store = open_store(path)
    try:
        return sum(folder.number_of_sub_messages for folder, _ in _folders(store.get_root_folder(), ""))
    finally:
        store.close()


def _folders(folder: Any, path: str) -> Iterator[tuple[Any, str]]:
    yield folder, path
    for index in range(folder.number_of_sub_folders):
        sub = folder.get_sub_folder(index)
        name = (sub.name or f"folder {index + 1}").replace("/", "∕")
        yield from _folders(sub, f"{path}/{name}" if path else name)


def iter_pst(path: Path, start: int = 0) -> Iterator[tuple[int, int, bytes | str, str]]:
    """(number, next number, message as RFC 5322 bytes or why it could not be read, folder), from `start`."""
    store = open_store(path)
    try:
        yield from _iter_store(store, start)
    finally:
        store.close()


def _iter_store(store: Any, start: int) -> Iterator[tuple[int, int, bytes | str, str]]:
    number = 0
    for folder, folder_path in _folders(store.get_root_folder(), ""):
        count = folder.number_of_sub_messages
        if number + count <= start:
            number += count
            continue
        for index in range(count):
            if number >= start:
                try:
                    raw: bytes | str = message_bytes(folder.get_sub_message(index))
                except Exception as exc:  # noqa: BLE001 - one damaged item fails alone, the store goes on
                    raw = f"damaged message in the store: {type(exc).__name__}: {exc}"
                yield number, number + 1, raw, folder_path
            number += 1


def read_batch(
    path: str, start: int, max_messages: int, max_bytes: int
) -> tuple[list[tuple[int, int, bytes | str, str]], int]:
    """Messages from number `start` on, at most `max_messages` of them or about `max_bytes`, and how many the
    store holds. Runs in an extractor process: libpff parses the hostile part there, never in the writer.
    The store is opened once for both."""
    items: list[tuple[int, int, bytes | str, str]] = []
    size = 0
    store = open_store(Path(path))
    try:
        total = sum(folder.number_of_sub_messages for folder, _ in _folders(store.get_root_folder(), ""))
        for item in _iter_store(store, start):
            items.append(item)
            size += len(item[2])
            if len(items) >= max_messages or size >= max_bytes:
                break
    finally:
        store.close()
    return items, total


def _text(value: bytes | str | None, prefer: str = "utf-8") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    value = value.rstrip(b"\x00")
    try:
        return value.decode(prefer)
    except UnicodeDecodeError:
        return value.decode("cp1252", errors="replace")


def _when(message: Any) -> datetime | None:
    for name in ("delivery_time", "client_submit_time", "creation_time"):
        try:
            value = getattr(message, name)
        except Exception:  # noqa: BLE001 - libpff raises on unset times in some stores
            value = None
        if isinstance(value, datetime) and value.year > 1601:
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


_FIELD_START = re.compile(r"\r?\n(?![ \t])")
_FIELD_NAME = re.compile(r"[!-9;-~]+:")


def _header_fields(headers: str) -> list[tuple[str, str]]:
    """The fields of a header block as (name, raw text with its folding), in order; stray lines dropped."""
    fields = []
    for field in _FIELD_START.split(headers.strip("\r\n")):
        if _FIELD_NAME.match(field):
            fields.append((field[: field.index(":")], field.replace("\r\n", "\n").replace("\n", "\r\n")))
    return fields


def _encoded_field(name: str, value: str) -> str:
    """`Name: value`, with the value as RFC 2047 encoded words when it is not ASCII."""
    value = value.replace("\r", " ").replace("\n", " ")
    if not value.isascii():
        from email.header import Header

        value = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {value}"


def message_bytes(message: Any) -> bytes:
    """One store item as an RFC 5322 message: its transport headers when it came from the internet (so
    Message-ID, References and the addresses are the real ones), else headers from its properties.

    The transport headers are kept as they arrived (only those describing the original MIME body are left
    out), and only the body is built, with the compat32 generator: refolding every header through the modern
    email API made rebuilding a message 25 times slower than libpff reading it."""
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.policy import compat32

    lines: list[str] = []
    names: set[str] = set()
    for name, raw in _header_fields(_text(message.transport_headers)):
        if name.lower() in _BODY_HEADERS:
            continue
        names.add(name.lower())
        lines.append(raw if raw.isascii() else _encoded_field(name, raw.partition(":")[2].strip()))
    if "subject" not in names:
        lines.append(_encoded_field("Subject", _text(message.subject)))
    if "from" not in names and message.sender_name:
        lines.append(_encoded_field("From", _text(message.sender_name)))
    if "date" not in names and (when := _when(message)):
        lines.append(f"Date: {format_datetime(when)}")
    plain = _text(message.plain_text_body)
    html = _text(message.html_body)
    body: Any
    if plain and html:
        body = MIMEMultipart("alternative", _subparts=[MIMEText(plain, "plain", "utf-8"), MIMEText(html, "html", "utf-8")])
    else:
        body = MIMEText(html, "html", "utf-8") if html and not plain else MIMEText(plain, "plain", "utf-8")
    attachments = []
    for index in range(message.number_of_attachments):
        attachment = message.get_attachment(index)
        name = _text(getattr(attachment, "long_filename", None)) or f"attachment-{index + 1}"
        size = attachment.size or 0
        if size > MAX_ATTACHMENT_BYTES:
            part: Any = MIMEText(
                f"attachment {name!r} of {size:,} bytes not read (limit {MAX_ATTACHMENT_BYTES // 2**20} MB)",
                "plain",
                "utf-8",
            )
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", f"{name}.not-read.txt"))
            attachments.append(part)
            continue
        try:
            data = attachment.read_buffer(size) if size else b""
        except Exception:  # noqa: BLE001 - embedded messages and OLE objects have no plain data stream
            data = None
        if data is None:
            continue
        part = MIMEApplication(data, "octet-stream")
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name) if not name.isascii() else name)
        attachments.append(part)
    if attachments:
        body = MIMEMultipart("mixed", _subparts=[body, *attachments])
    if "MIME-Version" not in body:
        body["MIME-Version"] = "1.0"
    rendered = body.as_bytes(policy=compat32.clone(linesep="\r\n", max_line_length=0))
    return ("\r\n".join(lines) + "\r\n").encode("ascii") + rendered


def reject_nested(source: Source) -> None:
    """A store inside an archive or attached to a message: stored, not read (it needs its own streaming)."""
    raise UnsupportedFormat("an Outlook .pst/.ost inside another file is not read; save it and ingest it")
