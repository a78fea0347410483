"""Outlook .pst / .ost stores through libpff-python (pypff): each message rebuilt as an RFC 5322 message and read
by the email extractor, so it gets the same metadata, threading and attachments as mail from an mbox.

The store is streamed like an mbox (pipeline.py): messages are numbered in folder order, which libpff gives the
same every time, and the number of the next message is the resume point after a kill. libpff reads the store in
an extractor process, a batch at a time (`read_batch`); the writer parses the rebuilt messages as it does an
mbox's. The folder path
(`Inbox/Legal`) goes into each message's `meta.folder`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_desktop.ingest.extracted import Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.source import Source

if TYPE_CHECKING:
    from rlm_desktop.ingest.prepare import Node

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


# An item of a store as read in the extractor: its number, the next number, then either why it could not be
# read or the message as a document node (its attachments extracted) with the attachments that failed, and
# its folder path.
StoreItem = tuple[int, int, "str | tuple[Node, list[tuple[str, str, str]]]", str]


def _counted_folders(store: Any) -> list[tuple[Any, str, int]]:
    """(folder, its path, how many messages it holds), in order: libpff walks the folder tree once."""
    return [(folder, path, folder.number_of_sub_messages) for folder, path in _folders(store.get_root_folder(), "")]


def iter_pst(path: Path, start: int = 0) -> Iterator[StoreItem]:
    """The store's messages from number `start` on, read into nodes (see StoreItem)."""
    store = open_store(path)
    try:
        yield from _iter_store(store, start, str(path))
    finally:
        store.close()


def _iter_store(
    store: Any, start: int, label: str, folders: list[tuple[Any, str, int]] | None = None
) -> Iterator[StoreItem]:
    from rlm_desktop.ingest.prepare import message_node, reason_for  # prepare imports this module late

    number = 0
    for folder, folder_path, count in folders if folders is not None else _counted_folders(store):
        if number + count <= start:
            number += count
            continue
        for index in range(count):
            if number >= start:
                item: str | tuple[Node, list[tuple[str, str, str]]]
                try:
                    message = folder.get_sub_message(index)
                except Exception as exc:  # noqa: BLE001 - one damaged item fails alone, the store goes on
                    item = f"damaged message in the store: {type(exc).__name__}: {exc}"
                else:
                    try:
                        extracted, raw = store_message(message)
                    except Exception as exc:  # noqa: BLE001 - too large, or damaged: a reason, the rest goes on
                        item = reason_for(exc) if isinstance(exc, ExtractionError) else (
                            f"damaged message in the store: {type(exc).__name__}: {exc}"
                        )
                    else:
                        where = f"{label} › {folder_path or '(top)'} › message {number + 1}"
                        node, failures = message_node(extracted, raw, where)
                        node.data = raw  # the message rebuilt from the store is its original: kept like an attachment
                        item = (node, failures)
                yield number, number + 1, item, folder_path
            number += 1


def read_batch(path: str, start: int, max_messages: int, max_bytes: int) -> tuple[list[StoreItem], int]:
    """Messages from number `start` on, at most `max_messages` of them or about `max_bytes`, and how many the
    store holds. Runs in an extractor process: libpff and the attachments' readers parse the hostile part
    there, never in the writer. The store is opened once for both."""
    items: list[StoreItem] = []
    size = 0
    store = open_store(Path(path))
    try:
        folders = _counted_folders(store)
        total = sum(count for _, _, count in folders)
        for item in _iter_store(store, start, path, folders):
            items.append(item)
            size += len(item[2]) if isinstance(item[2], str) else item[2][0].size
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


@dataclass
class _Parts:
    """What one store item holds, read once from libpff: header lines (as written in the message), the
    chosen body, and the attachments (name, bytes, content type)."""

    header_lines: list[str]
    plain: str
    html: str
    attachments: list[tuple[str, bytes, str]]


def _parts(message: Any) -> _Parts:
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
    attachments = []
    for index in range(message.number_of_attachments):
        attachment = message.get_attachment(index)
        name = _text(getattr(attachment, "long_filename", None)) or f"attachment-{index + 1}"
        size = attachment.size or 0
        if size > MAX_ATTACHMENT_BYTES:
            note = f"attachment {name!r} of {size:,} bytes not read (limit {MAX_ATTACHMENT_BYTES // 2**20} MB)"
            attachments.append((f"{name}.not-read.txt", note.encode("utf-8"), "text/plain"))
            continue
        try:
            data = attachment.read_buffer(size) if size else b""
        except Exception:  # noqa: BLE001 - embedded messages and OLE objects have no plain data stream
            data = None
        if data is not None:
            attachments.append((name, data, "application/octet-stream"))
    return _Parts(lines, _text(message.plain_text_body), _text(message.html_body), attachments)


def _base64_part(headers: str, data: bytes) -> bytes:
    return (headers + "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode(
        "ascii"
    ) + base64.encodebytes(data).replace(b"\n", b"\r\n")


def _disposition(filename: str) -> str:
    from email.utils import encode_rfc2231, quote

    if filename.isascii():
        return f'Content-Disposition: attachment; filename="{quote(filename)}"\r\n'
    return f"Content-Disposition: attachment; filename*={encode_rfc2231(filename, 'utf-8')}\r\n"


def _rfc5322(parts: _Parts) -> bytes:
    """The item as an RFC 5322 message: its header lines, then a MIME body written here with every part in
    base64, so the boundary (it has a "-", which base64 never does) cannot occur inside a part, and the same
    item always gives the same bytes."""
    text = [("plain", parts.plain)] if parts.plain or not parts.html else []
    if parts.html:
        text.append(("html", parts.html))
    bodies = [_base64_part(f'Content-Type: text/{kind}; charset="utf-8"\r\n', value.encode("utf-8", "replace"))
              for kind, value in text]  # fmt: skip
    attached = [
        _base64_part(
            (f'Content-Type: {ctype}; charset="utf-8"\r\n' if ctype == "text/plain" else f"Content-Type: {ctype}\r\n")
            + _disposition(name),
            data,
        )
        for name, data, ctype in parts.attachments
    ]
    digest = hashlib.sha256()
    for piece in (*bodies, *attached):
        digest.update(piece)
    boundary = f"rlm-{digest.hexdigest()[:32]}"

    def multipart(subtype: str, pieces: list[bytes]) -> bytes:
        head = f'Content-Type: multipart/{subtype}; boundary="{boundary}-{subtype}"\r\nMIME-Version: 1.0\r\n\r\n'
        out = [head.encode("ascii")]
        for piece in pieces:
            out.append(f"--{boundary}-{subtype}\r\n".encode("ascii") + piece)
        out.append(f"--{boundary}-{subtype}--\r\n".encode("ascii"))
        return b"".join(out)

    body = bodies[0] if len(bodies) == 1 else multipart("alternative", bodies)
    if attached:
        body = multipart("mixed", [body, *attached])
    return ("\r\n".join(parts.header_lines) + "\r\n").encode("ascii") + body


def message_bytes(message: Any) -> bytes:
    """One store item as an RFC 5322 message: its transport headers when it came from the internet (so
    Message-ID, References and the addresses are the real ones), else headers from its properties. The
    transport headers are kept as they arrived, less those describing the original MIME body."""
    return _rfc5322(_parts(message))


def store_message(message: Any) -> tuple[Extracted, bytes]:
    """One store item as an email document, and its RFC 5322 bytes (kept as its original).

    The document is built from libpff's fields as `mail.extract_email` would read those bytes (its header and
    meta logic is shared: `mail.email_document`), without writing a MIME body and parsing it back: that round
    trip was most of a store's ingest. tests/ingest/test_pst.py holds the two equal."""
    from email.message import Message

    from rlm_desktop.ingest import mail

    parts = _parts(message)
    raw = _rfc5322(parts)
    mail._check_size(raw)  # the limits an mbox message has
    msg = Message()
    for line in parts.header_lines:
        name, _, value = line.partition(":")
        msg.set_raw(name, value.lstrip(" \t"))
    walker = mail._Walker(mail.decode_header_value(mail._raw_header(msg, "subject")), False)
    walker.charsets.append("utf-8")
    if parts.plain and (parts.plain.encode("utf-8", "replace").strip() or not parts.html):
        kind, body = "plain", parts.plain
    elif parts.html:
        kind, body = "html", parts.html
    else:
        kind, body = "plain", ""
    text, problem = mail.decode_with_charset(body.encode("utf-8", "replace"), "utf-8", "part 1")
    if problem:
        walker.problems.append(problem)
        walker.warnings.append(problem)
    if kind == "html":
        text = mail.html_to_text(text)
    text = "\n".join(line.rstrip() for line in mail.normalise_newlines(text).split("\n")).strip("\n")
    if text.strip():
        walker.bodies.append(text)
    for name, data, ctype in parts.attachments:
        filename = mail._safe_filename(mail.decode_header_value(name, walker.problems)) or None
        walker._add_child(filename or walker._default_name(ctype, msg), data, ctype)
    return mail.email_document(msg, walker, []), raw


def reject_nested(source: Source) -> None:
    """A store inside an archive or attached to a message: stored, not read (it needs its own streaming)."""
    raise UnsupportedFormat("an Outlook .pst/.ost inside another file is not read; save it and ingest it")
