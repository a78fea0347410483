"""RFC 822 messages (.eml, Maildir files, Apple .emlx, mbox members) to text, metadata and attachments."""

from __future__ import annotations

import codecs
import io
import mimetypes
import re
from datetime import UTC, datetime
from email import policy
from email.generator import BytesGenerator
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from rlm_desktop.ingest.extracted import Blob, Extracted
from rlm_desktop.ingest.html_text import html_to_text
from rlm_desktop.ingest.limits import MBOX_MAX_LINE_BYTES, MBOX_MAX_MESSAGE_BYTES, LimitExceeded
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import bom_encoding, normalise_newlines

# Charset names seen in real mail that Python does not know, or knows as a too-narrow subset: the
# value is the list of codecs to try in order.
_CHARSET_ALIASES: dict[str, list[str]] = {
    "gb2312": ["gb18030"],
    "gb_2312-80": ["gb18030"],
    "gbk": ["gb18030"],
    "x-gbk": ["gb18030"],
    "cn-gb": ["gb18030"],
    "euc-cn": ["gb18030"],
    "ks_c_5601-1987": ["cp949"],
    "ks_c_5601": ["cp949"],
    "euc-kr": ["cp949"],
    "iso-2022-jp": ["iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_3"],
    "iso-2022-jp-2": ["iso2022_jp_2", "iso2022_jp_ext"],
    "csiso2022jp": ["iso2022_jp", "iso2022_jp_ext"],
    "shift_jis": ["cp932", "shift_jis_2004"],
    "shift-jis": ["cp932", "shift_jis_2004"],
    "sjis": ["cp932"],
    "x-sjis": ["cp932"],
    "ms_kanji": ["cp932"],
    "windows-31j": ["cp932"],
    "euc-jp": ["euc_jp", "euc_jis_2004"],
    "big5": ["big5hkscs", "cp950"],
    # Windows mail clients label cp1252 text as Latin-1 or ASCII; WHATWG decodes them as cp1252 too.
    "iso-8859-1": ["cp1252", "latin-1"],
    "latin1": ["cp1252", "latin-1"],
    "latin-1": ["cp1252", "latin-1"],
    "us-ascii": ["ascii"],
    "ansi_x3.4-1968": ["ascii"],
    "iso-8859-8-i": ["iso-8859-8"],
    "unicode-1-1-utf-7": ["utf-7"],
    "utf8": ["utf-8"],
    "macintosh": ["mac_roman"],
    "x-mac-roman": ["mac_roman"],
    "windows-874": ["cp874"],
}
_UNKNOWN_CHARSETS = frozenset(
    ("x-unknown", "unknown", "unknown-8bit", "x-user-defined", "default", "charset")
)
_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|tr|vs|vb|antw|antwort|rif|ri|r|enc|res|odp|pd|fs|doorst|ynt|atb|ΑΠ|ΣΧΕΤ|回复|转发|答复)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]|\[[^\]]*\])\s*",
    re.I,
)
_MSG_ID = re.compile(r"<[^<>\s]+>")
_TEXT_BODY_TYPES = frozenset(("text/plain", "text/html"))


# -- charsets ----------------------------------------------------------------------------------------


def _codecs_for(charset: str) -> list[str]:
    name = charset.strip().strip("\"'").lower()
    if name in _UNKNOWN_CHARSETS or not name:
        return []
    candidates = _CHARSET_ALIASES.get(name, [name])
    usable = []
    for candidate in candidates:
        try:
            usable.append(codecs.lookup(candidate).name)
        except LookupError:
            continue
    return usable


_SINGLE_BYTE_WESTERN = re.compile(r"^(iso-?8859-\d+|latin-?\d|(windows|cp)-?125\d|us-ascii|ascii)$", re.I)
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")


def decode_with_charset(data: bytes, charset: str | None, label: str) -> tuple[str, str | None]:
    """Decode `data` with its declared charset, falling back to UTF-8 then cp1252.

    Returns the text and a problem description (None when the declared charset worked).
    """
    seven_bit_codec = b"\x1b" in data or (charset or "").lower().replace("-", "") in ("utf7", "hzgb2312")
    if data.isascii() and not seven_bit_codec:
        return data.decode("ascii"), None  # whatever the label says, ASCII reads the same
    described = f"declared charset '{charset}'" if charset else "no declared charset"
    codecs_to_try = _codecs_for(charset) if charset else []
    if charset and _SINGLE_BYTE_WESTERN.match(charset.strip()) and _UTF8_MULTIBYTE.search(data):
        # UTF-8 text labelled Latin-1 is common; valid multi-byte UTF-8 is almost never real Latin-1.
        try:
            return data.decode("utf-8"), f"{label} {described} but the bytes are UTF-8; decoded as utf-8"
        except UnicodeDecodeError:
            pass
    for codec in codecs_to_try:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            continue
    try:
        return data.decode("utf-8"), f"{label} {described} could not be decoded; decoded as utf-8"
    except UnicodeDecodeError:
        pass
    # A few bad bytes in otherwise good text (a broken quoted-printable soft break, a cut multi-byte
    # character) should not turn the whole part into cp1252 mojibake.
    candidates = codecs_to_try[:1] + (["utf-8"] if _UTF8_MULTIBYTE.search(data) else [])
    for codec in candidates:
        text = data.decode(codec, errors="replace")
        bad = text.count("\ufffd")
        if bad <= max(2, len(text) // 200):
            return (
                text,
                f"{label} {described} had {bad} undecodable byte(s); decoded as {codec} with replacements",
            )
    try:
        return data.decode("cp1252"), f"{label} {described} could not be decoded; decoded as cp1252"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), (
            f"{label} {described} could not be decoded; decoded as cp1252 with replacements"
        )


# -- headers -----------------------------------------------------------------------------------------


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SPACES = re.compile(r"\s+")


def _unfold(value: object) -> str | None:
    if value is None:
        return None
    text = str(value) if not isinstance(value, str) else value
    return _FOLD.sub("", text).replace("\r", "").replace("\n", " ")


def _raw_header(msg: Message, name: str) -> str | None:
    """The header's raw (undecoded, unfolded) value, without going through the header registry."""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return _unfold(value)
    return None


def _first_headers(msg: Message) -> dict[str, object]:
    """Each header's first raw value by lower-case name: one pass for the ten headers a document needs."""
    found: dict[str, object] = {}
    for key, value in msg.raw_items():
        found.setdefault(key.lower(), value)
    return found


def _repair_8bit(raw: str) -> str:
    """Headers with raw 8-bit bytes arrive surrogate-escaped: decode them as UTF-8, else cp1252."""
    if raw.isascii() or not any("\udc80" <= ch <= "\udcff" for ch in raw):
        return raw
    data = raw.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decode_header_value(raw: str | None, problems: list[str] | None = None) -> str:
    """Decode RFC 2047 encoded words (tolerating bad charsets and raw 8-bit text) and unfold."""
    if raw is None:
        return ""
    raw = _repair_8bit(_FOLD.sub("", raw))
    try:
        chunks = decode_header(raw)
    except Exception:
        return raw.strip()
    pieces: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            pieces.append(chunk)
        elif charset is None:
            pieces.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            text, problem = decode_with_charset(chunk, charset, "header")
            if problem and problems is not None:
                problems.append(problem)
            pieces.append(text)
    return _SPACES.sub(" ", "".join(pieces)).strip()


def _addresses(msg: Message, name: str, problems: list[str]) -> list[str]:
    return _address_list(_raw_header(msg, name), problems)


def _address_list(raw: str | None, problems: list[str]) -> list[str]:
    if raw is None:
        return []
    raw = _repair_8bit(raw)
    result: list[str] = []
    try:
        pairs = getaddresses([raw])
    except Exception:
        pairs = []
    for display, address in pairs:
        display = decode_header_value(display, problems).strip().strip('"').strip()
        address = address.strip()
        if not address and not display:
            continue
        if display and address and display.lower() != address.lower():
            result.append(f"{display} <{address}>")
        else:
            result.append(address or display)
    if not result and raw.strip():
        result.append(decode_header_value(raw, problems))
    return result


def _parse_date(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # "-0000": zone unknown; UTC is the convention
    return parsed


def thread_key(references: list[str], in_reply_to: str | None, message_id: str | None) -> str | None:
    """The id a message's thread is known by: the first of References, else In-Reply-To, else its own id."""
    return (references[0] if references else None) or in_reply_to or message_id


def normalise_subject(subject: str) -> str:
    """Subject without reply/forward prefixes and [list] tags, lower-cased, for threading."""
    previous = None
    current = subject
    while previous != current:
        previous = current
        current = _SUBJECT_PREFIX.sub("", current, count=1)
    return re.sub(r"\s+", " ", current).strip().lower()


def _message_ids(raw: str | None) -> list[str]:
    if not raw:
        return []
    found = _MSG_ID.findall(raw)
    return found or raw.split()


# -- structure ---------------------------------------------------------------------------------------


def _safe_filename(name: str) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:200]


def _part_filename(part: Message, problems: list[str]) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        try:
            name = part.get_param("name")
        except Exception:
            name = None
        if isinstance(name, tuple):  # an RFC 2231 value get_param leaves encoded
            from email.utils import collapse_rfc2231_value

            name = collapse_rfc2231_value(name)
    if not name:
        return None
    return _safe_filename(decode_header_value(str(name), problems)) or None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        return ""


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("ascii", "surrogateescape")
    return b""


def message_bytes(msg: Message) -> bytes:
    """Serialise a parsed (nested) message as close to its source bytes as the stdlib allows."""
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=policy.compat32.clone(max_line_length=0)).flatten(
            msg
        )
    except Exception:
        buffer = io.BytesIO()
        BytesGenerator(buffer, mangle_from_=False, policy=policy.default.clone(max_line_length=0)).flatten(
            msg
        )
    return buffer.getvalue()


class _Walker:
    """Collects body text, attachment blobs and charset facts from a parsed message tree."""

    def __init__(self, subject: str, unicode_file: bool) -> None:
        self.subject = subject
        self.unicode_file = unicode_file
        self.bodies: list[str] = []
        self.children: list[Blob] = []
        self.attachments: list[dict[str, object]] = []
        self.charsets: list[str] = []
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.part_number = 0

    # one entry point for every part
    def walk(self, part: Message) -> None:
        ctype = _content_type(part)
        if ctype in ("message/rfc822", "message/global", "message/news"):
            self._nested_message(part)  # before is_multipart(), which is true for a parsed nested message
        elif part.is_multipart():
            self._multipart(part, ctype)
        else:
            self._leaf(part, ctype)

    def _multipart(self, part: Message, ctype: str) -> None:
        subparts = [p for p in part.get_payload() if isinstance(p, Message)]
        if ctype == "multipart/alternative":
            chosen = _choose_alternative(subparts)
            for sub in subparts:
                if sub is chosen:
                    self.walk(sub)
                elif not _is_text_bearing(sub):
                    self.walk(sub)  # e.g. a calendar invite's attachment: keep what is not a rendering
            return
        if ctype == "multipart/encrypted":
            self.warnings.append("the message is encrypted; its content cannot be read")
        for sub in subparts:
            self.walk(sub)

    def _nested_message(self, part: Message) -> None:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            data = message_bytes(payload[0])
            inner_subject = decode_header_value(_raw_header(payload[0], "subject"))
        else:  # e.g. a base64-encoded message/rfc822 that the parser left opaque
            data = _payload_bytes(part)
            inner_subject = ""
        name = _part_filename(part, self.problems)
        if not name:
            subject_stem = re.sub(r"[/\\:*?\"<>|]", "_", inner_subject)
            stem = _safe_filename(subject_stem)[:100].strip(". ") or f"message-{len(self.children) + 1}"
            name = f"{stem}.eml"
        self._add_child(name, data, "message/rfc822")

    def _leaf(self, part: Message, ctype: str) -> None:
        self.part_number += 1
        label = f"part {self.part_number}"
        disposition = _disposition(part)
        filename = _part_filename(part, self.problems)
        is_body = (
            ctype in _TEXT_BODY_TYPES
            and disposition != "attachment"
            and (filename is None or not self.bodies)
        ) or ctype == "message/delivery-status"
        data = _payload_bytes(part)
        if not is_body:
            if not filename:
                filename = self._default_name(ctype, part)
            self._add_child(filename, data, ctype)
            return
        charset = self._charset(part)
        if self.unicode_file and charset and charset.lower().startswith("utf-16"):
            charset = "utf-8"  # the whole file was UTF-16 and has been re-encoded to UTF-8 already
        if ctype == "text/html" and not charset:
            meta = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.I)
            charset = meta.group(1).decode("ascii") if meta else None
        text, problem = decode_with_charset(data, charset, label)
        if problem:
            self.problems.append(problem)
            self.warnings.append(problem)
        if ctype == "text/html":
            text = html_to_text(text)
        elif _param(part, "format").lower() == "flowed":
            text = _unflow(normalise_newlines(text), _param(part, "delsp").lower() == "yes")
        # trailing blanks are layout noise from fixed-width mailers; they only pad citations
        text = "\n".join(line.rstrip() for line in normalise_newlines(text).split("\n")).strip("\n")
        if text.strip():
            self.bodies.append(text)

    def _charset(self, part: Message) -> str | None:
        try:
            charset = part.get_param("charset")
        except Exception:
            charset = None
        if isinstance(charset, tuple):
            charset = charset[2]
        if charset:
            charset = str(charset).strip().strip("\"'")
            if charset and charset.lower() not in (c.lower() for c in self.charsets):
                self.charsets.append(charset)
        return charset or None

    def _default_name(self, ctype: str, part: Message) -> str:
        number = len(self.children) + 1
        if ctype in (
            "application/pgp-signature",
            "application/pkcs7-signature",
            "application/x-pkcs7-signature",
        ):
            return "signature.asc" if "pgp" in ctype else "smime.p7s"
        extension = (
            {
                "text/plain": ".txt",
                "text/html": ".html",
                "message/delivery-status": ".txt",
                "text/rfc822-headers": ".txt",
                "application/octet-stream": ".bin",
            }.get(ctype)
            or mimetypes.guess_extension(ctype)
            or ".bin"
        )
        stem = "image" if ctype.startswith("image/") else "attachment"
        return f"{stem}-{number}{extension}"

    def _add_child(self, filename: str, data: bytes, ctype: str) -> None:
        number = len(self.children) + 1
        self.children.append(
            Blob(filename=filename, data=data, content_type=ctype, origin=f"attachment {number}")
        )
        self.attachments.append({"filename": filename, "content_type": ctype, "size": len(data)})


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:
        return ""
    return value if isinstance(value, str) else ""


def _unflow(text: str, delsp: bool) -> str:
    """Join RFC 3676 format=flowed soft line breaks (a line ending in a space continues)."""
    lines: list[str] = []
    pending = ""
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if line.endswith(" ") and line.rstrip() != "--":
            pending += line[:-1] if delsp else line
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return "\n".join(lines)


def _is_text_bearing(part: Message) -> bool:
    ctype = _content_type(part)
    return ctype.startswith("text/") or part.is_multipart()


def _choose_alternative(parts: list[Message]) -> Message | None:
    """Pick the rendering to read: non-empty plain text, else HTML, else the richest multipart."""
    plain = html = multi = None
    for part in parts:
        ctype = _content_type(part)
        if ctype == "text/plain" and plain is None and _payload_bytes(part).strip():
            plain = part
        elif ctype == "text/html" and html is None:
            html = part
        elif part.is_multipart():
            multi = part  # the last one is the richest by RFC 2046 ordering
    if multi is not None and _contains_type(multi, "text/plain") and plain is None:
        return multi
    return plain or html or multi or (parts[0] if parts else None)


def _contains_type(part: Message, ctype: str) -> bool:
    return any(_content_type(p) == ctype for p in part.walk())


# -- entry point -------------------------------------------------------------------------------------


def _unwrap_emlx(data: bytes) -> bytes:
    """Apple Mail .emlx: a byte-count line, the message, then an XML plist."""
    match = re.match(rb"\s*(\d+)[ \t]*\r?\n", data)
    if not match:
        return data
    length = int(match.group(1))
    return data[match.end() : match.end() + length]


def _prepare(data: bytes, source: Source) -> tuple[bytes, bool, list[str]]:
    warnings: list[str] = []
    unicode_file = False
    if source.suffix in (".emlx", ".partial") or re.match(rb"\d+[ \t]*\r?\n", data[:20]):
        data = _unwrap_emlx(data)
    found = bom_encoding(data[:4])
    if found is None and len(data) > 8 and data[1:8:2] == b"\x00\x00\x00\x00" and data[0]:
        found = ("utf-16-le", 0)
    elif found is None and len(data) > 8 and data[0:8:2] == b"\x00\x00\x00\x00" and data[1]:
        found = ("utf-16-be", 0)
    if found and found[0] != "utf-8":
        encoding, skip = found
        data = data[skip:].decode(encoding, errors="replace").encode("utf-8")
        unicode_file = True
        warnings.append(f"the file is {encoding.upper()} text; read as such")
    elif found:
        data = data[found[1] :]
    data = _fix_obsolete_header_names(data)  # first, so that "From  : x" is not taken for a From_ line
    if data.startswith(b"From "):
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""  # an mbox From_ line
    return data, unicode_file, warnings


_OBSOLETE_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.M)


def _fix_obsolete_header_names(data: bytes) -> bytes:
    """RFC 822 allowed "Subject  :"; the stdlib parser does not, and would read the headers as body."""
    end = min((i for i in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if i >= 0), default=len(data))
    head = data[:end]
    if not _OBSOLETE_FIELD.search(head):
        return data
    return _OBSOLETE_FIELD.sub(rb"\1:", head) + data[end:]


def _check_size(raw: bytes) -> None:
    """Refuse what would take the parser many times its size in memory: a huge message, an endless line."""
    if len(raw) > MBOX_MAX_MESSAGE_BYTES:
        raise LimitExceeded(f"message larger than {MBOX_MAX_MESSAGE_BYTES // 2**20:,} MB; not read")
    if has_long_line(raw, MBOX_MAX_LINE_BYTES):
        raise LimitExceeded(
            f"a line longer than {MBOX_MAX_LINE_BYTES // 1024:,} KB (not an email: RFC 5322 lines are under "
            "1,000 characters); not read"
        )


def has_long_line(data: bytes, limit: int) -> bool:
    """Whether some line of `data` is longer than `limit` bytes, in about len(data) / limit steps."""
    pos = 0
    while len(data) - pos > limit:
        newline = data.rfind(b"\n", pos, pos + limit + 1)  # the last one in reach: lines before it are short
        if newline == -1:
            return True
        pos = newline + 1
    return False


def extract_email(source: Source) -> Extracted:
    """Parse one RFC 822 message: header block plus body as text, attachments as child blobs."""
    raw = source.read_bytes()
    if raw.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        from rlm_desktop.ingest.msg import extract_msg  # late: msg.py imports this module

        extracted = extract_msg(source)
        extracted.warnings.insert(0, f"{source.name} is an Outlook .msg file, not RFC 822; read as such")
        return extracted
    _check_size(raw)
    data, unicode_file, warnings = _prepare(raw, source)
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    walker = _Walker(decode_header_value(_raw_header(msg, "subject")), unicode_file)
    walker.walk(msg)
    return email_document(msg, walker, warnings)


def email_document(msg: Message, walker: _Walker, warnings: list[str]) -> Extracted:
    """The email document from a message's headers (`msg`, a compat32 message: only its headers are read here)
    and what was found in its parts (`walker`): the header block and bodies as text, addresses, dates, ids
    and threading in meta, attachments as children. pst.py builds one from a store's fields the same way."""
    problems: list[str] = []
    warnings = list(warnings)
    first = _first_headers(msg)

    def header(name: str) -> str | None:
        return _unfold(first.get(name))

    subject = decode_header_value(header("subject"), problems)
    from_ = _address_list(header("from"), problems)
    to = _address_list(header("to"), problems)
    cc = _address_list(header("cc"), problems)
    bcc = _address_list(header("bcc"), problems)
    date_raw = decode_header_value(header("date")) or None
    date = _parse_date(date_raw)
    if date_raw and date is None:
        warnings.append(f"the Date header could not be understood: {date_raw!r}")
    elif not date_raw:
        warnings.append("the message has no Date header")
    message_id = (_message_ids(header("message-id")) or [None])[0]
    in_reply_to = (_message_ids(header("in-reply-to")) or [None])[0]
    references = _message_ids(header("references"))
    problems.extend(walker.problems)
    warnings.extend(walker.warnings)
    if not msg.keys():
        warnings.append("no mail headers found; the file may not be an email")

    header_lines = [
        ("From", ", ".join(from_)),
        ("To", ", ".join(to)),
        ("Cc", ", ".join(cc)),
        ("Date", date_raw or ""),
        ("Subject", subject),
    ]
    header_block = "".join(f"{key}: {value}\n" for key, value in header_lines if value)
    body = "\n\n".join(walker.bodies)
    joined = header_block + "\n" + body if header_block else body
    text = normalise_newlines(joined).replace("\x00", "").rstrip() + "\n"

    meta = {
        "from": from_,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "date": date.isoformat() if date else None,
        "date_raw": date_raw,
        "subject": subject,
        "message_id": message_id,
        "in_reply_to": in_reply_to,
        "references": references,
        "subject_norm": normalise_subject(subject),
        "thread_key": thread_key(references, in_reply_to, message_id),
        "attachments": walker.attachments,
        "charsets": walker.charsets,
        "charset_problems": list(dict.fromkeys(problems)),
    }
    if msg.defects:
        meta["defects"] = sorted({type(d).__name__ for d in msg.defects})
    return Extracted(
        kind="email",
        title=subject or "(no subject)",
        text=text,
        meta=meta,
        children=walker.children,
        warnings=list(dict.fromkeys(warnings)),
    )
