"""Tamper-evident evidence: a stored text rewritten behind the app's back is caught by citations, reports and
`verify`, through the text hash recorded at ingest and a fresh extraction of the original."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3

import docx
import pymupdf
import pytest
from builders import make_docx
from rlm_script import Script, repl
from sample_case import run_config

from rlm_desktop.cli import main
from rlm_desktop.engine.rlm import run_rlm
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.reports import export_run
from rlm_desktop.store import migrations
from rlm_desktop.store.case import TEXT_CHANGED, Case

APPROVAL = "The transfer to Zurich was approved by Alice on 3 March."


@pytest.fixture
def case_home(tmp_path):
    """A home with one case: a DOCX holding the approval and a text note, ingested from disk."""
    folder = tmp_path / "docs"
    folder.mkdir()
    make_docx(folder / "approval.docx", ["Board minutes", APPROVAL])
    (folder / "note.txt").write_text("Call the bank on Monday.\n", encoding="utf-8")
    home = tmp_path / "home"
    path = home / "cases" / "default.sqlite"
    with Case.open(path) as case:
        assert not ingest(case, [folder], jobs=1).failed
        doc_id = next(d.id for d in case.documents() if d.title.startswith("approval"))
    return home, path, doc_id


def tamper(path, doc_id, *, forge_hash=False):
    """What model code that reached the case file did: plain SQL, no app code."""
    conn = sqlite3.connect(path)
    conn.execute("UPDATE documents SET text = replace(text, 'by Alice', 'by Mallory') WHERE id = ?", (doc_id,))
    if forge_hash:  # a careful attacker also rewrites the hash next to the text
        (text,) = conn.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        conn.execute(
            "UPDATE documents SET text_sha256 = ? WHERE id = ?",
            (hashlib.sha256(text.encode()).hexdigest(), doc_id),
        )
    conn.commit()
    conn.close()


def run_quoting(path, fake, phrase):
    """A run whose root model quotes `phrase` from the approval document (as the tampered text now says)."""
    fake.handler = Script(
        [
            repl("d = [d for d in context if d.title.startswith('approval')][0]\nprint(d.id, d.text)"),
            repl(f"m = quote(d.id, {phrase!r})\nFINAL(f'It was approved by the board member {{m}}.')"),
        ]
    )
    record = asyncio.run(run_rlm(path, "Who approved the transfer?", run_config(fake), "sk-test"))
    assert record["status"] == "completed", record.get("error")
    return record


def _reddish(color: int) -> bool:
    red, green, blue = color >> 16 & 255, color >> 8 & 255, color & 255
    return red > 120 and red > 2 * green and red > 2 * blue


def verify(home, *args, capsys):
    code = main(["verify", *args, "--json", "--home", str(home)])
    return code, json.loads(capsys.readouterr().out)


def test_an_untouched_case_verifies_and_its_report_states_the_text_hash(case_home, fake_openai, capsys, tmp_path):
    home, path, doc_id = case_home
    record = run_quoting(path, fake_openai, "approved by Alice")
    (citation,) = record["citations"]
    with Case.open(path) as case:
        text = case.text(doc_id)
        expected = hashlib.sha256(text.encode()).hexdigest()
    assert citation["verified"] and citation["text_sha256"] == expected
    code, result = verify(home, record["run_id"], capsys=capsys)
    assert code == 0 and result["ok"], result
    # the cited DOCX was extracted again with the ingest's extractor and gave the same text
    assert result["checked"]["reextracted"] == 1 and result["checked"]["citations"] == 1
    html = export_run(path, record["run_id"], "html", tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"data-text-sha256='{expected}'" in html
    assert "text hash matches; matches re-extraction" in html and "Evidence integrity" not in html


def test_rewritten_text_makes_the_citation_unverified_flags_reports_and_fails_verify(
    case_home, fake_openai, capsys, tmp_path
):
    home, path, doc_id = case_home
    tamper(path, doc_id)
    record = run_quoting(path, fake_openai, "approved by Mallory")
    (citation,) = record["citations"]
    assert citation["quote"] == "approved by Mallory"
    assert not citation["verified"] and citation["problem"] == TEXT_CHANGED

    out = tmp_path / "out"
    out.mkdir()
    html = export_run(path, record["run_id"], "html", out / "r.html").read_text(encoding="utf-8")
    assert "NOT VERIFIED: stored text changed since ingest" in html
    assert "<span class='bad'>STORED TEXT CHANGED SINCE INGEST" in html  # red
    assert "<div class='alert'>Evidence integrity: 1 document" in html
    md = export_run(path, record["run_id"], "md", out / "r.md").read_text(encoding="utf-8")
    assert '<span style="color:#b00020">**MISMATCH: STORED TEXT CHANGED SINCE INGEST' in md
    exported = json.loads(export_run(path, record["run_id"], "json", out / "r.json").read_text(encoding="utf-8"))
    check = exported["export_check"]
    assert not check["ok"] and check["citations"][0]["problem"] == TEXT_CHANGED
    assert check["documents"][0]["text"]["status"] == "changed"
    report = docx.Document(export_run(path, record["run_id"], "docx", out / "r.docx"))
    cells = [cell.text for table in report.tables for row in table.rows for cell in row.cells]
    red = [
        run.font.color.rgb
        for table in report.tables
        for row in table.rows
        for cell in row.cells
        for para in cell.paragraphs
        for run in para.runs
        if "STORED TEXT CHANGED" in run.text
    ]
    assert any("STORED TEXT CHANGED SINCE INGEST" in c for c in cells) and red
    assert all(_reddish(int(str(c), 16)) for c in red)

    with pymupdf.open(export_run(path, record["run_id"], "pdf", out / "r.pdf")) as pdf:
        spans = [
            span
            for page in pdf
            for block in page.get_text("dict")["blocks"]
            for line in block.get("lines", [])
            for span in line["spans"]
        ]
    flagged = [s for s in spans if "STORED TEXT CHANGED SINCE INGEST" in s["text"]]
    assert flagged and all(_reddish(s["color"]) for s in flagged)
    assert any(s["text"].strip() == "Text SHA-256" for s in spans)

    code, result = verify(home, record["run_id"], capsys=capsys)
    assert code == 1 and not result["ok"]
    named = {(m["check"], m["doc_id"], m["marker"]) for m in result["mismatches"]}
    assert ("text", doc_id, None) in named and ("citation", doc_id, "[c1]") in named
    # plain output names each mismatch too
    assert main(["verify", "--home", str(home)]) == 1
    plain = capsys.readouterr().out
    assert f"MISMATCH text: document {doc_id} “approval.docx”: {TEXT_CHANGED}" in plain


def test_a_forged_text_hash_is_caught_by_extracting_the_original_again(case_home, fake_openai, capsys, tmp_path):
    home, path, doc_id = case_home
    tamper(path, doc_id, forge_hash=True)
    record = run_quoting(path, fake_openai, "approved by Mallory")
    assert record["citations"][0]["verified"]  # the text and its hash agree: only the original can tell
    html = export_run(path, record["run_id"], "html", tmp_path / "r.html").read_text(encoding="utf-8")
    assert "NOT VERIFIED: the original, extracted again, does not have this quote at these offsets" in html
    assert "DIFFERS FROM RE-EXTRACTION" in html and "Alice on 3 March" in html  # what the original says
    code, result = verify(home, record["run_id"], capsys=capsys)
    assert code == 1
    kinds = {m["check"] for m in result["mismatches"] if m["doc_id"] == doc_id}
    assert kinds == {"re-extraction"}
    # without a run, only hashes are checked by default; --reextract finds it across the whole case
    assert verify(home, capsys=capsys)[0] == 0
    code, result = verify(home, "--reextract", capsys=capsys)
    assert code == 1 and {m["check"] for m in result["mismatches"]} == {"re-extraction"}


def test_a_changed_original_and_an_unknown_run_are_reported(case_home, capsys):
    home, path, doc_id = case_home
    with Case.open(path) as case:
        original = case.document(doc_id).path
    make_docx(original, ["Board minutes", APPROVAL.replace("Alice", "Bob")])
    code, result = verify(home, capsys=capsys)
    assert code == 1 and [(m["check"], m["doc_id"]) for m in result["mismatches"]] == [("original", doc_id)]
    assert main(["verify", "nosuchrun", "--home", str(home)]) == 2


def test_migration_backfills_text_hashes_of_an_existing_case(tmp_path):
    path = tmp_path / "old.sqlite"
    with Case.open(path) as case:
        doc_id = case.add_text_document("memo.txt", "Approved by Alice.\n")
    conn = sqlite3.connect(path)  # make it a case from before the migration
    conn.execute("ALTER TABLE documents DROP COLUMN text_sha256")
    conn.execute("DELETE FROM _migrations WHERE name = 'm004_text_hashes'")
    conn.commit()
    conn.close()
    with Case.open(path) as case:
        assert case.document(doc_id).text_sha256 == hashlib.sha256(b"Approved by Alice.\n").hexdigest()
    assert "m004_text_hashes" in [name for name, _ in migrations.MIGRATIONS]
