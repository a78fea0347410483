"""Hostile inputs fail their file with a reason, within bounded memory, and the rest of the folder is ingested."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from builders import make_docx, make_email
from hungry_extractor import hungry_prepare

from rlm_desktop.ingest.limits import ZIP_MAX_TOTAL_BYTES
from rlm_desktop.ingest.mail import has_long_line
from rlm_desktop.ingest.mbox import Skipped, iter_mbox
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

MIB = 1024 * 1024
PEAK_RSS_LIMIT = 1024 * MIB


def write_zip_bomb(path: Path, members: int = 3, member_mib: int = 512) -> None:
    """A DOCX-named ZIP whose parts expand to members x member_mib of zeros (a valid archive, CRCs included).

    Built from one deflated MiB repeated: a full flush resets the compressor, so each copy decodes alone.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = block * member_mib + compressor.flush(zlib.Z_FINISH)
    crc = 0
    zeros = bytes(MIB)
    for _ in range(member_mib):
        crc = zlib.crc32(zeros, crc)
    size = member_mib * MIB
    content_types = (
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'wordprocessingml.document.main+xml"/></Types>'
    )
    entries = [("[Content_Types].xml", zlib.crc32(content_types), content_types, len(content_types), 0)]
    names = ["word/document.xml", *(f"word/media/image{i}.png" for i in range(1, members))]
    entries += [(name, crc, data, size, 8) for name in names]
    local, central = bytearray(), bytearray()
    for name, entry_crc, payload, usize, method in entries:
        encoded = name.encode()
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, entry_crc, len(payload), usize,
                             len(encoded), 0) + encoded + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, entry_crc, len(payload),
                               usize, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))


def write_long_line_mbox(path: Path, line_mib: int = 200) -> None:
    """An mbox: a good message, one whose body is a single line of line_mib MiB, another good message."""
    good = make_email("Before", "The first message is fine.", message_id="<a@x>").as_bytes()
    after = make_email("After", "The last message is fine too.", message_id="<c@x>").as_bytes()
    with path.open("wb") as out:
        out.write(b"From a@example.org Thu Sep  4 10:00:00 2014\n" + good + b"\n\n")
        out.write(b"From b@example.org Thu Sep  4 11:00:00 2014\nSubject: long\nMessage-ID: <b@x>\n\n")
        piece = b"A" * MIB
        for _ in range(line_mib):
            out.write(piece)
        out.write(b"\n\nFrom c@example.org Thu Sep  4 12:00:00 2014\n" + after + b"\n")


def test_the_zip_bomb_is_what_it_claims(tmp_path):
    import zipfile

    small = tmp_path / "small.docx"
    write_zip_bomb(small, members=2, member_mib=3)
    with zipfile.ZipFile(small) as archive:
        assert archive.read("word/document.xml") == bytes(3 * MIB)  # CRC checked by zipfile
    big = tmp_path / "bomb.docx"
    write_zip_bomb(big)
    assert big.stat().st_size < 2 * MIB
    with zipfile.ZipFile(big) as archive:
        assert sum(i.file_size for i in archive.infolist()) > ZIP_MAX_TOTAL_BYTES


def ingest_within_memory_limit(folder: Path, home: Path) -> dict:
    """`rlm-desktop ingest --json` of `folder` in its own process, so its peak memory (and its workers') is its
    own: asserts it exited 0 under PEAK_RSS_LIMIT and returns its report."""
    probe = (
        "import json, resource, sys\n"
        "from rlm_desktop.cli import main\n"
        f"code = main(['ingest', {str(folder)!r}, '--json', '--home', {str(home)!r}])\n"
        "peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(json.dumps({'code': code, 'peak_kib': peak}), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    measured = json.loads(proc.stderr.strip().splitlines()[-1])
    assert measured["code"] == 0, proc.stderr[-2000:]
    peak = measured["peak_kib"] * 1024
    print(f"peak RSS of the ingest: {peak / MIB:.0f} MiB")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / MIB:.0f} MiB"
    return json.loads(proc.stdout)


def test_bombs_fail_with_a_reason_in_bounded_memory_and_the_rest_is_ingested(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    started = time.monotonic()
    write_zip_bomb(folder / "bomb.docx")
    write_long_line_mbox(folder / "mail.mbox")
    make_docx(folder / "minutes.docx", ["Board minutes", "The transfer was approved by Alice."])
    (folder / "note.txt").write_text("Call the bank on Monday.\n", encoding="utf-8")
    assert time.monotonic() - started < 30  # fixtures are cheap to make
    home = tmp_path / "home"
    report = ingest_within_memory_limit(folder, home)
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert list(failed) == ["bomb.docx"] and "zip bomb" in failed["bomb.docx"]
    (message,) = report["attachment_failures"]
    assert "message at byte" in message["path"] and "a line longer than 1,024 KB" in message["error"]
    with Case.open(home / "cases" / "default.sqlite") as case:
        titles = sorted(d.title for d in case.documents())
        assert any("bomb" in f["path"] for f in case.failures())
    assert titles == ["After", "Before", "mail.mbox", "minutes.docx", "note.txt"]


def test_long_lines_and_huge_messages_are_skipped_without_being_held(tmp_path):
    path = tmp_path / "m.mbox"
    write_long_line_mbox(path, line_mib=3)
    found = list(iter_mbox(path))
    assert [type(raw) for _, _, raw in found] == [bytes, Skipped, bytes]
    assert found[1][1] == found[2][0]  # offsets stay exact, so a resumed ingest starts at the next message
    found = list(iter_mbox(path, max_line=10 * MIB, max_message=2 * MIB))
    assert "message larger than 2 MB" in found[1][2].reason
    assert has_long_line(b"x" * (MIB + 1), MIB) and not has_long_line((b"x" * 999 + b"\n") * 3000, MIB)


@pytest.mark.parametrize(("files", "jobs"), [(10, 2), (1, None)], ids=["worker pool", "one file dropped"])
def test_an_extractor_process_has_a_memory_limit(tmp_path, files, jobs):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(files):
        (src / f"doc{i:02}.txt").write_text(f"document {i}")
    (src / "hog.pdf").write_text("this file makes the extractor ask for 3 GB")  # not plain text: never inline
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [src], jobs=jobs, extractor=hungry_prepare)
        assert report.added == files
        (failure,) = report.failed
        assert failure["path"].endswith("hog.pdf") and "ran out of memory" in failure["error"]
