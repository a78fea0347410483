"""Outlook .msg reading, on compound files written by a small CFB writer in this test."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import olefile
import pytest

from rlm_desktop.ingest.extracted import ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.mail import extract_email
from rlm_desktop.ingest.msg import PST_MESSAGE, decompress_rtf, extract_msg, reject_pst, rtf_to_text
from rlm_desktop.ingest.source import Source

# -- a minimal Compound File Binary (version 3) writer --------------------------------------------------

SECTOR, MINI_SECTOR, CUTOFF = 512, 64, 4096
FREE, END, FAT_SECT, NO_STREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF

Tree = dict[str, "Tree | bytes"]


def _cfb_key(name: str) -> tuple[int, str]:
    return (len(name), name.upper())  # CFB sibling order: shorter names first, then case-insensitive


def write_cfb(tree: Tree) -> bytes:
    """Serialise nested dicts (storages) of bytes (streams) as a CFB file olefile can read."""
    entries: list[dict] = [{"name": "Root Entry", "type": 5, "children": tree}]
    queue = [0]
    while queue:  # breadth-first: give every entry an id
        index = queue.pop(0)
        children = entries[index].get("children")
        if children is None:
            continue
        ids = []
        for name in sorted(children, key=_cfb_key):
            value = children[name]
            entry = {"name": name, "type": 1 if isinstance(value, dict) else 2}
            if isinstance(value, dict):
                entry["children"] = value
            else:
                entry["data"] = value
            entries.append(entry)
            ids.append(len(entries) - 1)
            queue.append(len(entries) - 1)
        entries[index]["child_ids"] = ids
    for entry in entries:
        entry.update(left=NO_STREAM, right=NO_STREAM, child=NO_STREAM)

    def balance(ids: list[int]) -> int:
        if not ids:
            return NO_STREAM
        middle = len(ids) // 2
        node = entries[ids[middle]]
        node["left"], node["right"] = balance(ids[:middle]), balance(ids[middle + 1 :])
        return ids[middle]

    for entry in entries:
        if "child_ids" in entry:
            entry["child"] = balance(entry["child_ids"])

    mini_stream = bytearray()
    mini_fat: list[int] = []
    big_streams: list[dict] = []
    for entry in entries:
        data = entry.get("data")
        if data is None:
            continue
        entry["size"] = len(data)
        if not data:
            entry["start"] = END
        elif len(data) < CUTOFF:
            first = len(mini_stream) // MINI_SECTOR
            count = -(-len(data) // MINI_SECTOR)
            mini_fat.extend(list(range(first + 1, first + count)) + [END])
            mini_stream += data + b"\0" * (count * MINI_SECTOR - len(data))
            entry["start"] = first
        else:
            big_streams.append(entry)

    sectors: list[bytes] = []
    fat: list[int] = []

    def add_chain(data: bytes) -> int:
        count = max(1, -(-len(data) // SECTOR))
        first = len(sectors)
        padded = data + b"\0" * (count * SECTOR - len(data))
        for number in range(count):
            sectors.append(padded[number * SECTOR : (number + 1) * SECTOR])
            fat.append(first + number + 1 if number < count - 1 else END)
        return first

    for entry in big_streams:
        entry["start"] = add_chain(entry["data"])
    root = entries[0]
    root["size"] = len(mini_stream)
    root["start"] = add_chain(bytes(mini_stream)) if mini_stream else END
    mini_fat_start = add_chain(b"".join(struct.pack("<I", v) for v in mini_fat)) if mini_fat else END
    mini_fat_count = -(-len(mini_fat) * 4 // SECTOR) if mini_fat else 0

    directory = bytearray()
    for entry in entries:
        encoded = entry["name"].encode("utf-16-le") + b"\0\0"
        directory += encoded.ljust(64, b"\0")
        directory += struct.pack("<HBB", len(encoded), entry["type"], 1)
        directory += struct.pack("<III", entry["left"], entry["right"], entry["child"])
        directory += b"\0" * 16 + struct.pack("<I", 0) + b"\0" * 16
        directory += struct.pack(
            "<IQ", entry.get("start", 0 if entry["type"] != 1 else 0), entry.get("size", 0)
        )
    while len(directory) % SECTOR:
        directory += (
            b"\0" * 64 + struct.pack("<HBB", 0, 0, 0) + struct.pack("<III", NO_STREAM, NO_STREAM, NO_STREAM)
        )
        directory += b"\0" * 36 + struct.pack("<IQ", 0, 0)
    dir_start = add_chain(bytes(directory))

    fat_count = 1
    while fat_count * (SECTOR // 4) < len(sectors) + fat_count:
        fat_count += 1
    assert fat_count <= 109
    fat_start = len(sectors)
    fat.extend([FAT_SECT] * fat_count)
    fat.extend([FREE] * (fat_count * (SECTOR // 4) - len(fat)))
    fat_bytes = b"".join(struct.pack("<I", v) for v in fat)
    for number in range(fat_count):
        sectors.append(fat_bytes[number * SECTOR : (number + 1) * SECTOR])

    header = bytearray(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16)
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
    header += struct.pack(
        "<IIIIIIIII", 0, fat_count, dir_start, 0, CUTOFF, mini_fat_start, mini_fat_count, END, 0
    )
    difat = [fat_start + n for n in range(fat_count)] + [FREE] * (109 - fat_count)
    header += b"".join(struct.pack("<I", v) for v in difat)
    assert len(header) == SECTOR
    return bytes(header) + b"".join(sectors)


# -- .msg building helpers -------------------------------------------------------------------------------


def _unicode(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def _filetime(moment: datetime) -> bytes:
    delta = moment - datetime(1601, 1, 1, tzinfo=UTC)
    return struct.pack("<Q", (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10)


def _properties(header_size: int, fixed: dict[int, tuple[int, bytes]]) -> bytes:
    """A __properties_version1.0 stream with fixed-size values (type, 8-byte value) per property id."""
    body = b"".join(
        struct.pack("<II", (prop_id << 16) | prop_type, 6) + value.ljust(8, b"\0")
        for prop_id, (prop_type, value) in fixed.items()
    )
    return b"\0" * header_size + body


def _stream(prop_id: int, prop_type: int) -> str:
    return f"__substg1.0_{prop_id:04X}{prop_type:04X}"


SUBMIT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
BIG_PDF = b"%PDF-1.4\n" + bytes(range(256)) * 30 + b"\n%%EOF\n"  # > 4096 bytes: regular sectors


def _recipient(kind: int, name: str, smtp: str) -> Tree:
    return {
        "__properties_version1.0": _properties(8, {0x0C15: (0x0003, struct.pack("<I", kind))}),
        _stream(0x3001, 0x001F): _unicode(name),
        _stream(0x39FE, 0x001F): _unicode(smtp),
    }


def _attachment(filename: str, mime: str, data: bytes) -> Tree:
    return {
        "__properties_version1.0": _properties(8, {0x3705: (0x0003, struct.pack("<I", 1))}),
        _stream(0x3701, 0x0102): data,
        _stream(0x3707, 0x001F): _unicode(filename),
        _stream(0x370E, 0x001F): _unicode(mime),
    }


def _mail_tree() -> Tree:
    embedded = {
        "__properties_version1.0": _properties(24, {0x0039: (0x0040, _filetime(SUBMIT))}),
        _stream(0x001A, 0x001F): _unicode("IPM.Note"),
        _stream(0x0037, 0x001F): _unicode("Inner: the forwarded note"),
        _stream(0x1000, 0x001F): _unicode("Inner body text."),
        _stream(0x0C1A, 0x001F): _unicode("Inner Sender"),
        _stream(0x5D01, 0x001F): _unicode("inner@example.org"),
        "__attach_version1.0_#00000000": _attachment("inner.txt", "text/plain", b"inner attachment"),
    }
    return {
        "__properties_version1.0": _properties(
            32, {0x0039: (0x0040, _filetime(SUBMIT)), 0x3FDE: (0x0003, struct.pack("<I", 65001))}
        ),
        _stream(0x001A, 0x001F): _unicode("IPM.Note"),
        _stream(0x0037, 0x001F): _unicode("Übersicht Q2 – 会議"),
        _stream(0x0042, 0x001F): _unicode("Ann Example"),
        _stream(0x5D02, 0x001F): _unicode("ann@example.org"),
        _stream(0x0E04, 0x001F): _unicode("Bob; Carol"),
        _stream(0x1035, 0x001F): _unicode("<msg-1@example.org>"),
        _stream(0x1042, 0x001F): _unicode("<parent@example.org>"),
        _stream(0x1000, 0x001F): _unicode("Hello Bob,\r\nsee the report.\r\n"),
        "__recip_version1.0_#00000000": _recipient(1, "Bob", "bob@example.org"),
        "__recip_version1.0_#00000001": _recipient(2, "Carol", "carol@example.org"),
        "__attach_version1.0_#00000000": _attachment("report.pdf", "application/pdf", BIG_PDF),
        "__attach_version1.0_#00000001": {
            "__properties_version1.0": _properties(8, {0x3705: (0x0003, struct.pack("<I", 5))}),
            _stream(0x3707, 0x001F): _unicode("forwarded.msg"),
            "__substg1.0_3701000D": embedded,
        },
    }


def _msg(tree: Tree, name: str = "mail.msg") -> Source:
    return Source(name=name, data=write_cfb(tree))


# -- tests -----------------------------------------------------------------------------------------------


def test_cfb_writer_output_is_readable_by_olefile() -> None:
    ole = olefile.OleFileIO(write_cfb(_mail_tree()))
    assert ole.exists("__attach_version1.0_#00000000/__substg1.0_37010102")
    assert ole.openstream("__attach_version1.0_#00000000/__substg1.0_37010102").read() == BIG_PDF


def test_unicode_mail_fields_body_and_attachments() -> None:
    result = extract_msg(_msg(_mail_tree()))
    assert result.kind == "email"
    assert result.title == "Übersicht Q2 – 会議"
    meta = result.meta
    assert meta["from"] == ["Ann Example <ann@example.org>"]
    assert meta["to"] == ["Bob <bob@example.org>"]
    assert meta["cc"] == ["Carol <carol@example.org>"]
    assert meta["date"] == "2024-05-06T07:08:09+00:00"
    assert meta["message_id"] == "<msg-1@example.org>"
    assert meta["in_reply_to"] == "<parent@example.org>"
    assert meta["thread_key"] == "<parent@example.org>"
    assert result.text.startswith("From: Ann Example <ann@example.org>\nTo: Bob <bob@example.org>\n")
    assert result.text.endswith("\n\nHello Bob,\nsee the report.\n")
    assert "\r" not in result.text
    pdf, forwarded = result.children
    assert (pdf.filename, pdf.content_type, pdf.origin) == ("report.pdf", "application/pdf", "attachment 1")
    assert pdf.data == BIG_PDF
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == "Inner: the forwarded note.eml"
    inner = extract_email(Source(name=forwarded.filename, data=forwarded.data))
    assert inner.title == "Inner: the forwarded note"
    assert "Inner body text." in inner.text
    assert inner.meta["from"] == ["Inner Sender <inner@example.org>"]
    assert [c.filename for c in inner.children] == ["inner.txt"]
    assert inner.children[0].data == b"inner attachment"


def test_ansi_mail_uses_the_code_page() -> None:
    tree = {
        "__properties_version1.0": _properties(32, {0x3FFD: (0x0003, struct.pack("<I", 932))}),
        _stream(0x0037, 0x001E): "日本語の件名".encode("cp932") + b"\0",
        _stream(0x1000, 0x001E): "本文です。".encode("cp932") + b"\0",
        _stream(0x0E04, 0x001E): b"Taro; Hanako\0",
    }
    result = extract_msg(_msg(tree))
    assert result.title == "日本語の件名"
    assert "本文です。" in result.text
    assert result.meta["to"] == ["Taro", "Hanako"]
    assert any("no readable date" in w for w in result.warnings)


def test_html_only_body() -> None:
    html = b'<html><head><meta charset="utf-8"></head><body><p>Caf\xc3\xa9 <a href="https://x.example/">menu</a></p></body></html>'
    tree = {"__properties_version1.0": _properties(32, {}), _stream(0x1013, 0x0102): html}
    result = extract_msg(_msg(tree))
    assert "Café menu (https://x.example/)" in result.text


def _lzfu(rtf_tail: bytes) -> bytes:
    """Compress: one back-reference into the preset dictionary ("{\\rtf1"), then literals, then the end."""
    prebuf_length = 207
    out = bytearray()
    tokens: list[tuple[bool, bytes]] = [(True, struct.pack(">H", (0 << 4) | (6 - 2)))]
    tokens += [(False, bytes([b])) for b in rtf_tail]
    write = (prebuf_length + 6 + len(rtf_tail)) % 4096
    tokens.append((True, struct.pack(">H", write << 4)))
    for start in range(0, len(tokens), 8):
        group = tokens[start : start + 8]
        out.append(sum(1 << bit for bit, (is_ref, _) in enumerate(group) if is_ref))
        for _, payload in group:
            out += payload
    header = struct.pack("<III", len(out) + 12, 6 + len(rtf_tail), 0x75465A4C) + b"\0\0\0\0"
    return header + bytes(out)


def test_rtf_only_body_is_decompressed_and_read() -> None:
    tail = (
        b"\\ansi\\ansicpg1252{\\fonttbl{\\f0 Arial;}}{\\*\\generator Test;}"
        b"Dear team,\\par Caf\\'e9 at 10\\tab sharp \\u8364?5\\par}"
    )
    compressed = _lzfu(tail)
    assert decompress_rtf(compressed) == b"{\\rtf1" + tail
    tree = {"__properties_version1.0": _properties(32, {}), _stream(0x1009, 0x0102): compressed}
    result = extract_msg(_msg(tree))
    assert result.text == "Dear team,\nCafé at 10\tsharp €5\n"


def test_rtf_to_text_skips_destinations_and_html_tags() -> None:
    rtf = (
        b"{\\rtf1\\ansi\\fromhtml1{\\*\\htmltag19 <html>}{\\colortbl;\\red0;}"
        b"{\\*\\htmltag64 <p>}Hello {\\b world}\\par{\\*\\htmltag72 </p>}}"
    )
    assert rtf_to_text(rtf) == "Hello world"
    assert decompress_rtf(struct.pack("<III", 12 + 5, 5, 0x414C454D) + b"\0" * 4 + b"{\\rtf}") == b"{\\rtf"


def test_contact_item_lists_its_fields() -> None:
    tree = {
        "__properties_version1.0": _properties(32, {}),
        _stream(0x001A, 0x001F): _unicode("IPM.Contact"),
        _stream(0x3001, 0x001F): _unicode("Ada Lovelace"),
        _stream(0x3A16, 0x001F): _unicode("Analytical Engines Ltd"),
        _stream(0x3A08, 0x001F): _unicode("+44 20 0000 0000"),
        _stream(0x8000, 0x001F): _unicode("ada@example.org"),
        "__nameid_version1.0": {
            # one numeric named property (LID 0x8083, PidLidEmail1EmailAddress) mapped to id 0x8000
            "__substg1.0_00030102": struct.pack("<II", 0x8083, (0 << 16) | (3 << 1)),
            "__substg1.0_00020102": b"\0" * 16,
            "__substg1.0_00040102": b"",
        },
    }
    result = extract_msg(_msg(tree, "contact.msg"))
    assert result.meta["message_class"] == "IPM.Contact"
    assert "Item: IPM.Contact" in result.text
    assert "Name: Ada Lovelace" in result.text
    assert "Company: Analytical Engines Ltd" in result.text
    assert "Email 1: ada@example.org" in result.text


def test_damaged_files_raise_extraction_error() -> None:
    good = write_cfb(_mail_tree())
    with pytest.raises(ExtractionError, match="damaged|not an Outlook"):
        extract_msg(Source(name="cut.msg", data=good[:700]))
    with pytest.raises(ExtractionError, match="not an Outlook"):
        extract_msg(Source(name="empty.msg", data=write_cfb({"Other": b"x"})))
    with pytest.raises(ExtractionError, match="not an Outlook"):
        extract_msg(Source(name="junk.msg", data=b"\x00\x01junk"))


def test_rfc822_file_named_msg_is_read_as_email() -> None:
    data = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: plain mail\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n\r\nbody\r\n"
    result = extract_msg(Source(name="mislabelled.msg", data=data))
    assert result.title == "plain mail"
    assert "not an Outlook .msg" in result.warnings[0]


def test_pst_is_rejected_with_the_way_out() -> None:
    with pytest.raises(UnsupportedFormat, match="readpst") as info:
        reject_pst(Source(name="archive.pst", data=b"!BDN"))
    assert str(info.value) == PST_MESSAGE
