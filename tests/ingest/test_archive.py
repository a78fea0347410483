"""Archives: members become child documents, recursively, within limits that fail with a reason."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest
from builders import make_email, pdf_bytes
from ingest.test_bombs import MIB, ingest_within_memory_limit, write_zip_bomb

from rlm_desktop.ingest import archive as archive_module
from rlm_desktop.ingest.detect import detect_kind
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.sources import source_bytes
from rlm_desktop.store.case import Case


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def encrypt_flags(data: bytes) -> bytes:
    """Mark every member of a ZIP as encrypted (bit 0 of the flags), as a password-protected ZIP has it."""
    raw = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at >= 0:
            raw[at + flag_at] |= 1
            at = raw.find(signature, at + 4)
    return bytes(raw)


def tree(case: Case) -> dict[str, tuple[str, str | None]]:
    """title -> (kind, parent's title)."""
    docs = {d.id: d for d in case.documents()}
    return {d.title: (d.kind, docs[d.parent_id].title if d.parent_id else None) for d in docs.values()}


def test_members_are_children_recursively_with_their_bytes_kept(tmp_path):
    pdf = pdf_bytes(["The wire transfer to Zurich was approved by Ann Lee."])
    mail = make_email("Zipped mail", "The invoice is attached.").as_bytes()
    inner = zip_bytes({"deep/note.txt": b"inner note about the Geneva account"})
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "bundle.zip").write_bytes(
        zip_bytes({"docs/report.pdf": pdf, "mail/m.eml": mail, "inner.zip": inner, "empty/": b""})
    )
    with tarfile.open(drop / "logs.tgz", "w:gz") as tar:
        for name, data in (("a/first.txt", b"first member"), ("a/second.md", b"# Second\nmember")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (drop / "server.log.gz").write_bytes(gzip.compress(b"login from 10.0.0.7 at 02:14\n"))
    with py7zr.SevenZipFile(drop / "seven.7z", "w") as seven:
        seven.writestr(b"seven zip memo about Lugano", "memo.txt")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [drop], jobs=1)
        assert report.failed == [] and report.added == 4
        found = tree(case)
        assert found["bundle.zip"] == ("archive", None)
        assert found["docs/report.pdf"] == ("pdf", "bundle.zip")
        assert found["Zipped mail"] == ("email", "bundle.zip")
        assert found["inner.zip"] == ("archive", "bundle.zip")
        assert found["note.txt"] == ("text", "inner.zip")
        assert found["first.txt"] == ("text", "logs.tgz") and found["Second"] == ("markdown", "logs.tgz")
        assert found["server.log"] == ("text", "server.log.gz")
        assert found["memo.txt"] == ("text", "seven.7z")
        docs = {d.title: d for d in case.documents()}
        listing = docs["bundle.zip"]
        assert "docs/report.pdf" in case.text(listing.id) and listing.meta["members"] == 3
        assert "Zurich" in case.text(docs["docs/report.pdf"].id)
        assert source_bytes(case, docs["docs/report.pdf"].id) == pdf  # the original is kept, like an attachment
        assert source_bytes(case, docs["note.txt"].id) == b"inner note about the Geneva account"
        hits = case.search("Lugano")
        assert [case.document(h.doc_id).title for h in hits] == ["memo.txt"]
        again = ingest(case, [drop], jobs=1)
        assert again.unchanged == 4 and again.added == 0


def test_content_decides_not_the_name(tmp_path):
    pdf = pdf_bytes(["Signed on 4 March."])
    (tmp_path / "scan.dat").write_bytes(pdf)
    (tmp_path / "photos.bin").write_bytes(zip_bytes({"a.txt": b"alpha"}))
    (tmp_path / "noext").write_bytes(zip_bytes({"b.txt": b"beta"}))
    with tarfile.open(tmp_path / "plain.data", "w") as tar:
        info = tarfile.TarInfo("c.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"gamma"))
    kinds = {p.name: detect_kind(Source(p.name, path=p)) for p in tmp_path.iterdir()}
    assert kinds == {"scan.dat": "pdf", "photos.bin": "archive", "noext": "archive", "plain.data": "archive"}
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / n for n in kinds], jobs=1)
        assert report.failed == []
        assert {d.title: d.kind for d in case.documents()}["a.txt"] == "text"


def test_an_archive_holding_an_uncompressed_pdf_first_is_an_archive(tmp_path):
    """A stored (uncompressed) ZIP or a tar puts the PDF's "%PDF-" header in the file's first KB, where a PDF
    reader accepts it: the container's own signature at byte 0 decides. A PDF with junk before its header is
    still a PDF."""
    pdf = pdf_bytes(["Statement: balance 42 CHF"])
    (tmp_path / "stored.zip").write_bytes(zip_bytes({"1.pdf": pdf, "note.txt": b"two members"}, zipfile.ZIP_STORED))
    with tarfile.open(tmp_path / "bundle.tar", "w") as tar:
        info = tarfile.TarInfo("1.pdf")
        info.size = len(pdf)
        tar.addfile(info, io.BytesIO(pdf))
    (tmp_path / "junk first.pdf").write_bytes(b"\r\n\x00 mail gateway banner\r\n" + pdf)
    kinds = {p.name: detect_kind(Source(p.name, path=p)) for p in tmp_path.iterdir()}
    assert kinds == {"stored.zip": "archive", "bundle.tar": "archive", "junk first.pdf": "pdf"}
    with Case.open(tmp_path / "case.sqlite") as case:
        assert ingest(case, [tmp_path / "stored.zip"], jobs=1).failed == []
        assert tree(case)["1.pdf"] == ("pdf", "stored.zip") and tree(case)["note.txt"] == ("text", "stored.zip")


def test_an_office_file_renamed_is_still_what_it_is(tmp_path):
    from builders import make_docx

    make_docx(tmp_path / "memo.docx", ["Renamed memo text"])
    renamed = tmp_path / "memo.zip"
    renamed.write_bytes((tmp_path / "memo.docx").read_bytes())
    assert detect_kind(Source(renamed.name, path=renamed)) == "docx"


def test_encrypted_archives_say_so(tmp_path):
    locked = tmp_path / "locked.zip"
    locked.write_bytes(encrypt_flags(zip_bytes({"secret.txt": b"x" * 100}, zipfile.ZIP_STORED)))
    half = tmp_path / "half.zip"
    plain = zip_bytes({"open.txt": b"readable"}, zipfile.ZIP_STORED)
    closed = encrypt_flags(zip_bytes({"closed.txt": b"hidden"}, zipfile.ZIP_STORED))
    half.write_bytes(zip_bytes({"open.zip": plain, "closed.zip": closed}, zipfile.ZIP_STORED))
    with py7zr.SevenZipFile(tmp_path / "locked.7z", "w", password="pw") as seven:
        seven.writestr(b"secret", "secret.txt")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "locked.zip", tmp_path / "locked.7z", half], jobs=1)
        failed = {Path(f["path"]).name: f["error"] for f in report.failed}
        assert set(failed) == {"locked.zip", "locked.7z"}
        assert all("password-protected" in reason for reason in failed.values())
        assert [c["path"].rsplit("› ", 1)[1] for c in report.child_failures] == ["closed.zip"]
        assert "password-protected ZIP" in report.child_failures[0]["error"]
        assert tree(case)["open.txt"] == ("text", "open.zip")


def test_nesting_deeper_than_the_limit_fails_that_member_only(tmp_path):
    data = zip_bytes({"bottom.txt": b"the bottom"})
    for level in range(archive_module.ARCHIVE_MAX_DEPTH + 1, 1, -1):
        data = zip_bytes({f"level{level}.zip": data, f"side{level}.txt": f"side {level}".encode()})
    (tmp_path / "deep.zip").write_bytes(data)
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "deep.zip"], jobs=1)
        assert report.failed == []
        (failure,) = report.child_failures
        assert f"level{archive_module.ARCHIVE_MAX_DEPTH + 1}.zip" in failure["path"]
        assert f"limit {archive_module.ARCHIVE_MAX_DEPTH}" in failure["error"]
        titles = tree(case)
        assert "side5.txt" in titles and "bottom.txt" not in titles


def test_the_expansion_budget_counts_nested_archives_together(tmp_path, monkeypatch):
    monkeypatch.setattr(archive_module, "ARCHIVE_MAX_TOTAL_BYTES", 3 * MIB)
    noise = os.urandom(MIB)  # incompressible, so no ratio limit is involved
    inner = [zip_bytes({f"part{i}.bin": noise}, zipfile.ZIP_STORED) for i in range(3)]
    (tmp_path / "outer.zip").write_bytes(
        zip_bytes({f"inner{i}.zip": data for i, data in enumerate(inner)}, zipfile.ZIP_STORED)
    )
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "outer.zip"], jobs=1)
        (failure,) = report.failed
        assert "expands past 3 MB" in failure["error"] and "archives inside it too" in failure["error"]


def test_a_gzip_bomb_stops_at_the_ratio_limit(tmp_path):
    (tmp_path / "zeros.gz").write_bytes(gzip.compress(bytes(8 * MIB), 9))
    with Case.open(tmp_path / "case.sqlite") as case:
        (failure,) = ingest(case, [tmp_path / "zeros.gz"], jobs=1).failed
        assert "decompression bomb" in failure["error"] and "limit 200x" in failure["error"]


def write_plain_zip_bomb(path: Path) -> None:
    """The DOCX bomb of test_bombs without its content types part (renamed, same length): a plain ZIP."""
    write_zip_bomb(path)
    path.write_bytes(path.read_bytes().replace(b"[Content_Types].xml", b"[Content_Typez].xml"))


def test_archive_bombs_fail_with_a_reason_in_bounded_memory(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    write_plain_zip_bomb(folder / "bomb.zip")
    write_plain_zip_bomb(tmp_path / "inner.zip")
    (folder / "carrier.zip").write_bytes(
        zip_bytes({"inner.zip": (tmp_path / "inner.zip").read_bytes(), "ok.txt": b"fine"}, zipfile.ZIP_STORED)
    )
    (folder / "note.txt").write_text("Call the bank on Monday.\n", encoding="utf-8")
    home = tmp_path / "home"
    report = ingest_within_memory_limit(folder, home)
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert list(failed) == ["bomb.zip"] and "decompression bomb" in failed["bomb.zip"]
    (inner,) = report["attachment_failures"]
    assert inner["path"].endswith("› inner.zip") and "decompression bomb" in inner["error"]
    assert report["added"] == 2


@pytest.mark.parametrize("name", ["broken.zip", "broken.7z", "broken.tgz"])
def test_damaged_archives_get_a_reason(tmp_path, name):
    good = {
        "broken.zip": zip_bytes({"a.txt": b"a" * 1000}),
        "broken.7z": b"7z\xbc\xaf\x27\x1c" + b"\x00" * 40,
        "broken.tgz": gzip.compress(os.urandom(600))[:300],
    }[name]
    (tmp_path / name).write_bytes(good[: len(good) // 2] if name == "broken.zip" else good)
    with Case.open(tmp_path / "case.sqlite") as case:
        (failure,) = ingest(case, [tmp_path / name], jobs=1).failed
        assert "archive" in failure["error"] or "ZIP" in failure["error"], failure["error"]
