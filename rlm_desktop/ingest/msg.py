"""Outlook .msg files (MS-OXMSG compound files) read with olefile; .pst stores are refused."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

import olefile

from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.html_text import html_to_text, tidy_lines
from rlm_desktop.ingest.mail import extract_email, normalise_subject, thread_key
from rlm_desktop.ingest.mbox import looks_like_email
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import normalise_newlines

PST_MESSAGE = (
    "Outlook .pst mail stores are not supported; export them to mbox (for example with readpst) "
    "and ingest the mbox files"
)
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# Property types (MS-OXCDATA 2.11.1)
PT_SHORT, PT_LONG, PT_BOOLEAN, PT_LONGLONG = 0x0002, 0x0003, 0x000B, 0x0014
PT_STRING8, PT_UNICODE, PT_SYSTIME, PT_BINARY, PT_OBJECT = 0x001E, 0x001F, 0x0040, 0x0102, 0x000D

# Property ids used below (MS-OXPROPS)
PR_MESSAGE_CLASS = 0x001A
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENT_REPRESENTING_NAME = 0x0042
PR_SENT_REPRESENTING_EMAIL = 0x0065
PR_TRANSPORT_HEADERS = 0x007D
PR_SENDER_NAME = 0x0C1A
PR_SENDER_EMAIL = 0x0C1F
PR_DISPLAY_BCC, PR_DISPLAY_CC, PR_DISPLAY_TO = 0x0E02, 0x0E03, 0x0E04
PR_DELIVERY_TIME = 0x0E06
PR_BODY, PR_RTF_COMPRESSED, PR_HTML = 0x1000, 0x1009, 0x1013
PR_INTERNET_MESSAGE_ID, PR_INTERNET_REFERENCES, PR_IN_REPLY_TO = 0x1035, 0x1039, 0x1042
PR_CREATION_TIME = 0x3007
PR_INTERNET_CPID, PR_MESSAGE_CODEPAGE = 0x3FDE, 0x3FFD
PR_SENDER_SMTP, PR_SENT_REPRESENTING_SMTP = 0x5D01, 0x5D02
PR_RECIPIENT_TYPE = 0x0C15
PR_DISPLAY_NAME, PR_EMAIL_ADDRESS, PR_SMTP_ADDRESS = 0x3001, 0x3003, 0x39FE
PR_ATTACH_DATA, PR_ATTACH_FILENAME, PR_ATTACH_METHOD = 0x3701, 0x3704, 0x3705
PR_ATTACH_LONG_FILENAME, PR_ATTACH_MIME_TAG = 0x3707, 0x370E

# Properties worth showing for items that are not mail (contacts, appointments, tasks, notes).
_ITEM_FIELDS: dict[int, str] = {
    0x0037: "Subject",
    0x0E1D: "Normalized subject",
    0x3001: "Name",
    0x3A06: "Given name",
    0x3A11: "Surname",
    0x3A16: "Company",
    0x3A17: "Job title",
    0x3A18: "Department",
    0x3A08: "Business phone",
    0x3A09: "Home phone",
    0x3A1C: "Mobile phone",
    0x3A24: "Business fax",
    0x3A29: "Street",
    0x3A27: "City",
    0x3A28: "State",
    0x3A2A: "Postal code",
    0x3A26: "Country",
    0x3A4E: "Manager",
    0x3A4F: "Nickname",
    0x3A51: "Business home page",
    0x0E04: "To",
    0x0E03: "Cc",
    0x0C1A: "Organizer / sender",
}
# Named properties (MS-OXPROPS "PidLid...") resolved through __nameid_version1.0.
_NAMED_FIELDS: dict[int, str] = {
    0x8005: "File as",
    0x801A: "Home address",
    0x801B: "Business address",
    0x801C: "Other address",
    0x8080: "Email 1 name",
    0x8083: "Email 1",
    0x8090: "Email 2 name",
    0x8093: "Email 2",
    0x80A0: "Email 3 name",
    0x80A3: "Email 3",
    0x8208: "Location",
    0x820D: "Start",
    0x820E: "End",
    0x8232: "Recurrence",
    0x8234: "Time zone",
    0x8238: "Attendees",
    0x823B: "Required attendees",
    0x823C: "Optional attendees",
}
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def reject_pst(source: Source) -> None:
    """Refuse Outlook .pst/.ost stores with the way out."""
    raise UnsupportedFormat(PST_MESSAGE)


def is_pst(source: Source) -> bool:
    return source.head(4) == b"!BDN" or source.suffix in (".pst", ".ost")


def _filetime(raw: bytes) -> datetime | None:
    (value,) = struct.unpack("<Q", raw[:8])
    if value == 0 or value >= 0x7FFFFFFFFFFFFFFF:
        return None
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=value // 10)
    except OverflowError:
        return None


class _Props:
    """The properties of one storage (message, recipient, attachment, or embedded message)."""

    def __init__(self, ole: olefile.OleFileIO, prefix: list[str], header_size: int, names: dict[int, int]):
        self.ole = ole
        self.prefix = prefix
        self.names = names  # named property id (0x8000+) -> LID
        self.fixed: dict[int, tuple[int, bytes]] = {}  # prop id -> (type, 8-byte value)
        stream = prefix + ["__properties_version1.0"]
        if ole.exists("/".join(stream)):
            data = ole.openstream(stream).read()
            for offset in range(header_size, len(data) - 15, 16):
                tag, _flags = struct.unpack_from("<II", data, offset)
                self.fixed[tag >> 16] = (tag & 0xFFFF, data[offset + 8 : offset + 16])
        self.streams: dict[int, tuple[int, list[str]]] = {}
        depth = len(prefix) + 1
        for entry in ole.listdir(streams=True, storages=True):
            if len(entry) != depth or entry[: len(prefix)] != prefix:
                continue
            name = entry[-1]
            if name.startswith("__substg1.0_") and len(name) == 20:
                try:
                    prop_id, prop_type = int(name[12:16], 16), int(name[16:20], 16)
                except ValueError:
                    continue
                self.streams[prop_id] = (prop_type, entry)

    def string(self, prop_id: int, codepage: str = "cp1252") -> str | None:
        found = self.streams.get(prop_id)
        if found is None:
            return None
        prop_type, path = found
        try:
            data = self.ole.openstream(path).read()
        except OSError:
            return None
        if prop_type == PT_UNICODE:
            text = data.decode("utf-16-le", errors="replace")
        elif prop_type == PT_STRING8:
            text = data.decode(codepage, errors="replace")
        else:
            return None
        return text.split("\x00", 1)[0] if "\x00" in text.rstrip("\x00") else text.rstrip("\x00")

    def binary(self, prop_id: int) -> bytes | None:
        found = self.streams.get(prop_id)
        if found is None or found[0] != PT_BINARY:
            return None
        try:
            return self.ole.openstream(found[1]).read()
        except OSError:
            return None

    def long(self, prop_id: int) -> int | None:
        found = self.fixed.get(prop_id)
        if found is None or found[0] not in (PT_LONG, PT_SHORT, PT_BOOLEAN):
            return None
        return struct.unpack("<i", found[1][:4])[0]

    def time(self, prop_id: int) -> datetime | None:
        found = self.fixed.get(prop_id)
        if found is None or found[0] != PT_SYSTIME:
            return None
        return _filetime(found[1])

    def has_storage(self, name: str) -> bool:
        return self.ole.exists("/".join(self.prefix + [name]))

    def children(self, stem: str) -> list[list[str]]:
        depth = len(self.prefix) + 1
        found = {
            tuple(entry[:depth])
            for entry in self.ole.listdir(streams=True, storages=True)
            if len(entry) >= depth
            and entry[: len(self.prefix)] == self.prefix
            and entry[depth - 1].startswith(stem)
        }
        return [list(item) for item in sorted(found)]


# Internet (MIME) code pages name how the message travelled; 8-bit property strings are stored in the
# matching Windows ANSI code page, so map them there.
_CPID_TO_ANSI = {
    50220: "cp932",
    50221: "cp932",
    50222: "cp932",
    51932: "cp932",
    932: "cp932",
    936: "gb18030",
    54936: "gb18030",
    52936: "gb18030",
    20936: "gb18030",
    949: "cp949",
    51949: "cp949",
    50225: "cp949",
    950: "cp950",
    20866: "koi8_r",
    21866: "koi8_u",
    28591: "cp1252",
    28592: "cp1250",
    28595: "cp1251",
    28597: "cp1253",
    28599: "cp1254",
    20127: "cp1252",
}
_LOCALE_TO_ANSI = {
    0x0411: "cp932",
    0x0804: "gb18030",
    0x0404: "cp950",
    0x0C04: "cp950",
    0x0412: "cp949",
    0x0419: "cp1251",
    0x0422: "cp1251",
    0x0402: "cp1251",
    0x0408: "cp1253",
    0x041F: "cp1254",
    0x040D: "cp1255",
    0x0401: "cp1256",
    0x041E: "cp874",
    0x042A: "cp1258",
    0x0405: "cp1250",
    0x0415: "cp1250",
    0x040E: "cp1250",
    0x041B: "cp1250",
    0x0424: "cp1250",
    0x041A: "cp1250",
}
PR_MESSAGE_LOCALE_ID = 0x3FF1


def _usable(name: str) -> bool:
    try:
        "".encode(name)
        return True
    except LookupError:
        return False


def _codepage(props: _Props) -> str:
    """The code page of the item's 8-bit (PT_STRING8) properties."""
    value = props.long(PR_MESSAGE_CODEPAGE)
    if value and value != 65001:
        name = _CPID_TO_ANSI.get(value, f"cp{value}")
        if _usable(name):
            return name
    value = props.long(PR_INTERNET_CPID)
    if value in _CPID_TO_ANSI:
        return _CPID_TO_ANSI[value]
    locale = props.long(PR_MESSAGE_LOCALE_ID)
    if locale and locale & 0xFFFF in _LOCALE_TO_ANSI:
        return _LOCALE_TO_ANSI[locale & 0xFFFF]
    if value and value != 65001 and _usable(f"cp{value}"):
        return f"cp{value}"
    return "cp1252"


def _named_map(ole: olefile.OleFileIO) -> dict[int, int]:
    """Map named property ids (0x8000 + index) to their numeric LIDs from the name-id entry stream."""
    path = "__nameid_version1.0/__substg1.0_00030102"
    if not ole.exists(path):
        return {}
    data = ole.openstream(path).read()
    names: dict[int, int] = {}
    for offset in range(0, len(data) - 7, 8):
        name_or_lid, index_kind = struct.unpack_from("<II", data, offset)
        if index_kind & 1 == 0:  # numeric name (LID); string names are not needed here
            names[0x8000 + (index_kind >> 16)] = name_or_lid
    return names


class _MessageReader:
    def __init__(self, ole: olefile.OleFileIO, prefix: list[str], names: dict[int, int]):
        self.ole = ole
        header_size = 32 if not prefix else 24
        self.props = _Props(ole, prefix, header_size, names)
        self.codepage = _codepage(self.props)
        self.warnings: list[str] = []

    def s(self, prop_id: int) -> str:
        return (self.props.string(prop_id, self.codepage) or "").strip()

    def recipients(self) -> dict[int, list[str]]:
        by_type: dict[int, list[str]] = {1: [], 2: [], 3: []}
        for path in self.props.children("__recip_version1.0_"):
            recip = _Props(self.ole, path, 8, {})
            name = (recip.string(PR_DISPLAY_NAME, self.codepage) or "").strip()
            address = (
                recip.string(PR_SMTP_ADDRESS, self.codepage)
                or recip.string(PR_EMAIL_ADDRESS, self.codepage)
                or ""
            ).strip()
            if address.upper().startswith("/O="):
                address = ""  # an Exchange X.500 path says nothing to a reader
            kind = recip.long(PR_RECIPIENT_TYPE) or 1
            entry = _format_address(name, address)
            if entry:
                by_type.setdefault(kind & 0xF, []).append(entry)
        return by_type

    def sender(self) -> list[str]:
        name = self.s(PR_SENT_REPRESENTING_NAME) or self.s(PR_SENDER_NAME)
        address = (
            self.s(PR_SENT_REPRESENTING_SMTP)
            or self.s(PR_SENDER_SMTP)
            or self.s(PR_SENT_REPRESENTING_EMAIL)
            or self.s(PR_SENDER_EMAIL)
        )
        if address.upper().startswith("/O="):
            address = ""
        entry = _format_address(name, address)
        return [entry] if entry else []

    def body(self) -> str:
        text = self.props.string(PR_BODY, self.codepage)
        if text and text.strip():
            return text
        html = self.props.binary(PR_HTML)
        html_text = None
        if html is not None:
            html_text = html.decode(self._html_charset(html), errors="replace")
        else:
            html_text = self.props.string(PR_HTML, self.codepage)
        if html_text and html_text.strip():
            return html_to_text(html_text)
        rtf = self.props.binary(PR_RTF_COMPRESSED)
        if rtf:
            try:
                return rtf_to_text(decompress_rtf(rtf))
            except (ValueError, IndexError, struct.error) as exc:
                self.warnings.append(
                    f"the body is stored only as compressed RTF, which could not be read ({exc})"
                )
        return ""

    def _html_charset(self, html: bytes) -> str:
        match = re.search(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", html[:4096], re.I)
        if match:
            name = match.group(1).decode("ascii", "replace")
            try:
                "".encode(name)
                return name
            except LookupError:
                pass
        return self.codepage if self.codepage != "cp1252" or not _is_utf8(html) else "utf-8"

    def date(self) -> datetime | None:
        for prop_id in (PR_CLIENT_SUBMIT_TIME, PR_DELIVERY_TIME, PR_CREATION_TIME):
            value = self.props.time(prop_id)
            if value is not None:
                return value
        return None

    def attachments(self) -> list[Blob]:
        blobs: list[Blob] = []
        for number, path in enumerate(self.props.children("__attach_version1.0_"), start=1):
            attach = _Props(self.ole, path, 8, {})
            filename = (
                attach.string(PR_ATTACH_LONG_FILENAME, self.codepage)
                or attach.string(PR_ATTACH_FILENAME, self.codepage)
                or attach.string(PR_DISPLAY_NAME, self.codepage)
                or ""
            ).strip()
            mime = (
                attach.string(PR_ATTACH_MIME_TAG, self.codepage) or ""
            ).strip() or "application/octet-stream"
            data = attach.binary(PR_ATTACH_DATA)
            if data is not None:
                blobs.append(Blob(filename or f"attachment-{number}.bin", data, mime, f"attachment {number}"))
                continue
            if attach.has_storage("__substg1.0_3701000D"):
                try:
                    inner = _MessageReader(self.ole, path + ["__substg1.0_3701000D"], self.props.names)
                    eml = inner.to_eml()
                except Exception as exc:  # a damaged embedded item must not lose the outer message
                    self.warnings.append(f"embedded message {filename or number} could not be read: {exc}")
                    continue
                self.warnings.extend(inner.warnings)
                stem = inner.s(PR_SUBJECT)[:100].replace("/", "_").strip() or f"message-{number}"
                blobs.append(Blob(f"{stem}.eml", eml, "message/rfc822", f"attachment {number}"))
                continue
            self.warnings.append(
                f"attachment {number} ({filename or 'unnamed'}) has no readable data (OLE object?)"
            )
        return blobs

    def to_eml(self) -> bytes:
        """Re-express an embedded message as RFC 822 bytes, so it is ingested as an email in turn."""
        message = EmailMessage()
        recipients = self.recipients()
        for header, values in (("From", self.sender()), ("To", recipients[1]), ("Cc", recipients[2])):
            if values:
                message[header] = ", ".join(values)
        when = self.date()
        if when:
            message["Date"] = format_datetime(when)
        if self.s(PR_SUBJECT):
            message["Subject"] = self.s(PR_SUBJECT)
        if self.s(PR_INTERNET_MESSAGE_ID):
            message["Message-ID"] = self.s(PR_INTERNET_MESSAGE_ID)
        if self.s(PR_IN_REPLY_TO):
            message["In-Reply-To"] = self.s(PR_IN_REPLY_TO)
        message.set_content(normalise_newlines(self.body()) or "")
        for blob in self.attachments():
            if blob.content_type == "message/rfc822":
                message.add_attachment(BytesParser(policy=policy.default).parsebytes(blob.data))
            else:
                maintype, _, subtype = blob.content_type.partition("/")
                message.add_attachment(
                    blob.data,
                    maintype=maintype or "application",
                    subtype=subtype or "octet-stream",
                    filename=blob.filename,
                )
        return message.as_bytes()

    def item_fields(self) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        for prop_id, label in _ITEM_FIELDS.items():
            value = self.s(prop_id)
            if value:
                fields.append((label, value))
        for prop_id, lid in sorted(self.props.names.items()):
            label = _NAMED_FIELDS.get(lid)
            if not label:
                continue
            value = self.s(prop_id)
            if not value:
                when = self.props.time(prop_id)
                value = when.isoformat() if when else ""
            if value:
                fields.append((label, value))
        return fields


_RTF_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript "
    b"\\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par "
    b"\\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)


def decompress_rtf(data: bytes) -> bytes:
    """PR_RTF_COMPRESSED (MS-OXRTFCP): LZFu-compressed or stored ("MELA") RTF."""
    if len(data) < 16:
        raise ValueError("compressed RTF header is truncated")
    comp_size, raw_size, comp_type = struct.unpack_from("<III", data, 0)
    body = data[16 : 4 + comp_size]
    if comp_type == 0x414C454D:  # "MELA": stored uncompressed
        return body[:raw_size]
    if comp_type != 0x75465A4C:  # "LZFu"
        raise ValueError(f"unknown compressed RTF type {comp_type:#x}")
    window = bytearray(4096)
    window[: len(_RTF_PREBUF)] = _RTF_PREBUF
    write = len(_RTF_PREBUF)
    out = bytearray()
    pos = 0
    while pos < len(body):
        control = body[pos]
        pos += 1
        for bit in range(8):
            if pos >= len(body):
                break
            if control & (1 << bit):
                if pos + 1 >= len(body):
                    return bytes(out)
                word = (body[pos] << 8) | body[pos + 1]
                pos += 2
                offset, length = word >> 4, (word & 0xF) + 2
                if offset == write:
                    return bytes(out)
                for step in range(length):
                    byte = window[(offset + step) % 4096]
                    out.append(byte)
                    window[write] = byte
                    write = (write + 1) % 4096
            else:
                byte = body[pos]
                pos += 1
                out.append(byte)
                window[write] = byte
                write = (write + 1) % 4096
    return bytes(out)


_RTF_TOKEN = re.compile(
    rb"\\([a-zA-Z]+)(-?\d+)? ?|\\'([0-9a-fA-F]{2})|\\([^a-zA-Z])|([{}])|([^\\{}\r\n]+)|[\r\n]+"
)
# Groups whose text is not part of the visible document.
_RTF_SKIP = frozenset(
    b"fonttbl colortbl stylesheet info pict object themedata colorschememapping latentstyles datastore "
    b"xmlnstbl listtable listoverridetable rsidtbl generator mmathPr fldinst header footer headerl headerr "
    b"footerl footerr filetbl revtbl pgdsctbl nonshppict bkmkstart bkmkend".split()
)


def rtf_to_text(rtf: bytes) -> str:
    """Visible text of an RTF document (enough for mail bodies, including HTML-encapsulating RTF)."""
    codepage = "cp1252"
    match = re.search(rb"\\ansicpg(\d+)", rtf[:2000])
    if match and _usable(f"cp{match.group(1).decode()}"):
        codepage = f"cp{match.group(1).decode()}"
    out: list[str] = []
    pending = bytearray()  # \'hh bytes, decoded together so multi-byte code pages work
    stack: list[tuple[bool, int]] = []
    skipping, uc, to_skip = False, 1, 0
    group_start = False

    def flush() -> None:
        if pending:
            out.append(pending.decode(codepage, errors="replace"))
            pending.clear()

    for token in _RTF_TOKEN.finditer(rtf):
        word, arg, hexbyte, symbol, brace, text = token.groups()
        if brace == b"{":
            flush()
            stack.append((skipping, uc))
            group_start = True
            continue
        if brace == b"}":
            flush()
            skipping, uc = stack.pop() if stack else (False, 1)
            group_start = False
            continue
        first_in_group, group_start = group_start, False
        if symbol == b"*" and first_in_group:
            skipping = True
            continue
        if word is not None and first_in_group and word in _RTF_SKIP:
            skipping = True
            continue
        if skipping:
            continue
        if hexbyte is not None:
            if to_skip:
                to_skip -= 1
                continue
            pending.append(int(hexbyte, 16))
            continue
        flush()
        if word is not None:
            if word == b"u" and arg is not None:
                out.append(chr(int(arg) % 65536))
                to_skip = uc
            elif word == b"uc" and arg is not None:
                uc = int(arg)
            elif word in (b"par", b"line", b"row", b"sect", b"page"):
                out.append("\n")
            elif word == b"tab":
                out.append("\t")
            elif word == b"cell":
                out.append(" | ")
            elif word in (b"emdash", b"endash"):
                out.append("\u2014" if word == b"emdash" else "\u2013")
            elif word in (b"lquote", b"rquote"):
                out.append("'")
            elif word in (b"ldblquote", b"rdblquote"):
                out.append('"')
            elif word == b"bullet":
                out.append("\u2022")
            continue
        if symbol is not None:
            if symbol == b"~":
                out.append("\u00a0")
            elif symbol in (b"\\", b"{", b"}"):
                out.append(symbol.decode())
            elif symbol in (b"\n", b"\r"):
                out.append("\n")
            continue
        if text is not None:
            chunk = text
            if to_skip:
                skipped = min(to_skip, len(chunk))
                chunk, to_skip = chunk[skipped:], to_skip - skipped
            out.append(chunk.decode(codepage, errors="replace"))
    flush()
    return tidy_lines("".join(out).replace("\r", ""))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _format_address(name: str, address: str) -> str:
    name = name.strip().strip("'\"")
    if address and f"<{address.lower()}>" in name.lower():
        return name  # the display name already carries the address
    if name and address and name.lower() != address.lower():
        return f"{name} <{address}>"
    return address or name


def _split_display(value: str) -> list[str]:
    return [item.strip() for item in value.split(";") if item.strip()]


def extract_msg(source: Source) -> Extracted:
    """An Outlook .msg item: mail as an email document, other items (contacts, meetings) as their fields."""
    data = source.read_bytes()
    if not data.startswith(OLE_MAGIC) and looks_like_email(data[:4096]):
        extracted = extract_email(Source(name=source.name, data=data))
        extracted.warnings.insert(
            0, f"{source.name} is an RFC 822 message, not an Outlook .msg; read as such"
        )
        return extracted
    if not data.startswith(OLE_MAGIC):
        raise ExtractionError(f"{source.name} is not an Outlook .msg file (no OLE compound-file header)")
    try:
        ole = olefile.OleFileIO(data)
    except Exception as exc:
        raise ExtractionError(f"{source.name}: damaged Outlook .msg file ({exc})") from exc
    try:
        if not ole.exists("__properties_version1.0"):
            raise ExtractionError(f"{source.name}: not an Outlook message (no MAPI property stream)")
        return _extract(ole, source)
    except ExtractionError:
        raise
    except Exception as exc:
        raise ExtractionError(f"{source.name}: damaged Outlook .msg file ({exc})") from exc
    finally:
        ole.close()


def _extract(ole: olefile.OleFileIO, source: Source) -> Extracted:
    reader = _MessageReader(ole, [], _named_map(ole))
    reader.props.names = _named_map(ole)
    message_class = reader.s(PR_MESSAGE_CLASS) or "IPM.Note"
    subject = reader.s(PR_SUBJECT)
    recipients = reader.recipients()
    to = recipients[1] or _split_display(reader.s(PR_DISPLAY_TO))
    cc = recipients[2] or _split_display(reader.s(PR_DISPLAY_CC))
    bcc = recipients[3] or _split_display(reader.s(PR_DISPLAY_BCC))
    sender = reader.sender()
    when = reader.date()
    message_id = reader.s(PR_INTERNET_MESSAGE_ID) or None
    in_reply_to = reader.s(PR_IN_REPLY_TO) or None
    references = reader.s(PR_INTERNET_REFERENCES).split()
    body = normalise_newlines(reader.body()).strip("\n")
    children = reader.attachments()
    is_mail = message_class.upper().startswith(("IPM.NOTE", "REPORT.", "IPM.SCHEDULE", "IPM.POST"))

    header = [
        ("From", ", ".join(sender)),
        ("To", ", ".join(to)),
        ("Cc", ", ".join(cc)),
        ("Date", format_datetime(when) if when else ""),
        ("Subject", subject),
    ]
    if not is_mail:
        shown = {"Subject", "To", "Cc", "Organizer / sender"}
        header = (
            [("Item", message_class)]
            + header[3:]
            + [(label, value) for label, value in reader.item_fields() if label not in shown]
        )
    block = "".join(f"{key}: {value}\n" for key, value in header if value)
    text = ((block + "\n" + body) if block else body).replace("\x00", "").rstrip() + "\n"

    meta: dict[str, Any] = {
        "from": sender,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "date": when.isoformat() if when else None,
        "date_raw": None,
        "subject": subject,
        "message_id": message_id,
        "in_reply_to": in_reply_to,
        "references": references,
        "subject_norm": normalise_subject(subject),
        "thread_key": thread_key(references, in_reply_to, message_id),
        "attachments": [
            {"filename": b.filename, "content_type": b.content_type, "size": len(b.data)} for b in children
        ],
        "charsets": [reader.codepage],
        "charset_problems": [],
        "message_class": message_class,
    }
    warnings = reader.warnings
    if when is None and is_mail:
        warnings.append("the message has no readable date")
    return Extracted(
        kind="email",
        title=subject or "(no subject)",
        text=text,
        meta=meta,
        children=children,
        warnings=list(dict.fromkeys(warnings)),
    )
