"""Encrypted PDF and DOCX files: a clear reason without the password, read with it, and the password kept
nowhere (not in the case file, its WAL, the failures list or a log)."""

from __future__ import annotations

import logging

import pytest
from builders import make_docx, make_encrypted_docx, make_encrypted_pdf

from rlm_desktop.ingest.docx import extract_docx
from rlm_desktop.ingest.extracted import ExtractionError, needs_password
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.case import Case

PASSWORD = "Quokka-7731-unguessable"


@pytest.fixture
def locked(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    make_encrypted_pdf(folder / "report.pdf", ["The wire went to Zurich on 3 March."], PASSWORD)
    make_encrypted_docx(folder / "memo.docx", ["The board approved the Zurich transfer."], PASSWORD)
    make_docx(folder / "open.docx", ["An ordinary memo."])
    return folder


def test_encrypted_docx_reads_with_its_password_and_says_why_without(locked):
    source = Source("memo.docx", path=locked / "memo.docx")
    with pytest.raises(ExtractionError, match="DOCX is encrypted and needs a password$") as info:
        extract_docx(source)
    assert needs_password(str(info.value))
    with pytest.raises(ExtractionError, match=r"\(the given password is wrong\)") as info:
        extract_docx(Source("memo.docx", path=locked / "memo.docx", password="wrong"))
    assert needs_password(str(info.value))  # a wrong password can be typed again
    text = extract_docx(Source("memo.docx", path=locked / "memo.docx", password=PASSWORD)).text
    assert text == "The board approved the Zurich transfer."
    assert PASSWORD not in repr(Source("memo.docx", password=PASSWORD))


def test_ingest_with_a_password_reads_the_files_and_stores_no_password(locked, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    case_file = tmp_path / "case.sqlite"
    with Case.open(case_file) as case:
        report = ingest(case, [locked], jobs=1)
        assert report.added == 1
        reasons = {f["path"].rsplit("/", 1)[-1]: f["error"] for f in report.failed}
        assert reasons == {
            "report.pdf": "PDF is encrypted and needs a password",
            "memo.docx": "DOCX is encrypted and needs a password",
        }
        assert len(case.failures()) == 2

        report = ingest(case, [locked / "memo.docx"], passwords={str(locked / "memo.docx"): "wrong"}, jobs=1)
        assert report.failed[0]["error"].endswith("(the given password is wrong)")

        paths = [str(locked / "report.pdf"), str(locked / "memo.docx")]
        # extractor processes, as a real ingest of a folder: the password crosses to them in memory
        report = ingest(case, [locked], passwords=dict.fromkeys(paths, PASSWORD), jobs=2)
        assert report.added == 2 and not report.failed
        assert case.failures() == []  # read now: no longer listed as unreadable
        texts = {d.title: case.text(d.id) for d in case.documents()}
        assert any("wire went to Zurich" in t for t in texts.values())
        assert "The board approved the Zurich transfer." in texts.values()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("case.sqlite*"))
    assert b"Zurich transfer" in stored  # the text is there, in the clear ...
    for encoding in ("utf-8", "utf-16-le"):
        assert PASSWORD.encode(encoding) not in stored  # ... the password is not
    assert PASSWORD not in caplog.text


def test_cli_ingest_takes_the_password_from_an_environment_variable(locked, tmp_path):
    import json
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    env = {**os.environ, "RLM_DESKTOP_HOME": str(home), "CASE_PASSWORD": PASSWORD}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "rlm_desktop", *args], capture_output=True, text=True, env=env, timeout=120
        )

    missing = cli("ingest", str(locked), "--password-env", "NO_SUCH_VAR_HERE")
    assert missing.returncode == 2 and "$NO_SUCH_VAR_HERE is not set" in missing.stderr
    done = cli("ingest", str(locked), "--password-env", "CASE_PASSWORD", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == 3 and report["failed"] == []
    assert PASSWORD not in done.stdout + done.stderr
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert PASSWORD.encode() not in stored
