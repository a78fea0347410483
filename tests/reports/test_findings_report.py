"""`export --findings`: one evidence report of the case's findings in every format, checked like run reports."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import unicodedata
from pathlib import Path

import docx
import pymupdf
import pytest
from sample_case import EMAIL_PHRASE, PDF_PHRASE, build_sample_case

from rlm_desktop.cli import main
from rlm_desktop.findings import add_citation, add_finding
from rlm_desktop.reports import FORMATS
from rlm_desktop.reports.markdown import unescape
from rlm_desktop.store.case import TEXT_CHANGED, Case

PDF_NOTE = "Departure date: matches the manifest"
EMAIL_NOTE = "Bob confirms the relabelling"


def span_of(case: Case, phrase: str) -> tuple[int, int, int]:
    for doc in case.documents():
        at = case.text(doc.id).find(phrase)
        if at >= 0:
            return doc.id, at, at + len(phrase)
    raise AssertionError(phrase)


@pytest.fixture(scope="module")
def findings_case(tmp_path_factory):
    """The sample documents with two findings: a PDF passage selected in the viewer and an email citation."""
    root = tmp_path_factory.mktemp("findings")
    built = build_sample_case(root)
    with Case.open(built.case_path) as case:
        pdf_id, start, end = span_of(case, PDF_PHRASE)
        add_finding(case, pdf_id, start, end, note=PDF_NOTE)
        email_id, start, end = span_of(case, EMAIL_PHRASE)
        citation = {"marker": "[c2]", "doc_id": email_id, "start": start, "end": end, "quote": EMAIL_PHRASE}
        add_citation(case, citation, "0123456789abcdef", note=EMAIL_NOTE)
        docs = [case.document(pdf_id), case.document(email_id)]
        built.hashes = {doc.id: (doc.sha256, doc.text_sha256) for doc in docs}
        built.real = {hashlib.sha256(Path(doc.path).read_bytes()).hexdigest() for doc in docs}
    built.root = root
    return built


def export(built, fmt: str, name: str = "findings", case: str = "sample") -> Path:
    out = built.root / f"{name}.{fmt}"
    code = main(["export", "--findings", "--format", fmt, "-o", str(out), "--home", str(built.root), "--case", case])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def exported(findings_case):
    return {fmt: export(findings_case, fmt) for fmt in FORMATS}


def flat(text: str) -> str:
    """Whitespace runs as one space; the PDF's typographic ligatures (ﬁ) as letters."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def check_text(text: str, built) -> None:
    """What every format must say: both quotes, both notes, their sources, the real hashes, verified."""
    text = flat(text)
    for expected in (
        "Findings of case “sample”",
        PDF_PHRASE,
        EMAIL_PHRASE,
        PDF_NOTE,
        EMAIL_NOTE,
        "selected in the viewer",
        "citation [c2] of run 01234567",
        "2 findings, all verified against the source text",
        "harbour report.pdf",
        "Re: Blue Heron shipment",
    ):
        assert expected in text, expected
    for sha256, text_sha256 in built.hashes.values():
        assert sha256 in text and text_sha256 in text
    assert built.real and all(h in text for h in built.real)  # the printed file hashes are the files' real ones
    assert "NOT VERIFIED:" not in text and "Appendix A. Trajectory" not in text


def test_html_and_markdown(findings_case, exported):
    check_text(exported["html"].read_text(encoding="utf-8").replace("&amp;", "&"), findings_case)
    html = exported["html"].read_text(encoding="utf-8")
    assert f">{PDF_PHRASE}</mark>" in html and html.count("<mark ") == 2
    assert f"<br/><span class='muted'>{PDF_NOTE}</span></td>" in html  # the summary table shows each note
    markdown = unescape(exported["md"].read_text(encoding="utf-8"))
    check_text(markdown, findings_case)
    images = findings_case.root / "findings_files"
    assert sorted(p.name for p in images.iterdir()) == ["citation-1-page-2.png"]  # the PDF finding's page


def test_pdf_and_docx(findings_case, exported):
    pdf = pymupdf.open(exported["pdf"])
    check_text("\n".join(page.get_text() for page in pdf), findings_case)
    assert "Findings" in [title for _, title, _ in pdf.get_toc()]
    assert "Findings report · case sample" in pdf[0].get_text()
    assert sum(len(page.get_images()) for page in pdf) == 1
    Path("/tmp/shots").mkdir(parents=True, exist_ok=True)
    pdf[0].get_pixmap(dpi=80).save("/tmp/shots/findings_report_p1.png")
    document = docx.Document(io.BytesIO(exported["docx"].read_bytes()))
    parts = [p.text for p in document.paragraphs]
    parts += [cell.text for table in document.tables for row in table.rows for cell in row.cells]
    check_text("\n".join(parts), findings_case)


def test_json(findings_case, exported):
    data = json.loads(exported["json"].read_text(encoding="utf-8"))
    assert data["kind"] == "findings" and data["case"] == "sample"
    first, second = data["findings"]
    assert (first["quote"], first["note"], first["origin"], first["run_id"]) == (PDF_PHRASE, PDF_NOTE, "selection", None)
    assert (second["origin"], second["run_id"], second["note"]) == ("[c2]", "0123456789abcdef", EMAIL_NOTE)
    assert first["verified"] and second["verified"]
    assert first["text_sha256"] == first["text_sha256_when_added"] == findings_case.hashes[first["doc_id"]][1]
    assert data["export_check"]["ok"] is True
    checked = {d["doc_id"]: d for d in data["export_check"]["documents"]}
    assert checked[first["doc_id"]]["original"]["status"] == "matches"
    assert checked[first["doc_id"]]["reextraction"]["status"] == "matches"


def test_a_tampered_text_makes_the_finding_not_verified_in_every_format(findings_case, tmp_path):
    # a copy of the case whose email text was rewritten after the finding was added
    home = tmp_path / "home"
    (home / "cases").mkdir(parents=True)
    with Case.open(findings_case.case_path) as case:
        case.checkpoint()
        email_id, _, _ = span_of(case, EMAIL_PHRASE)
    copy = home / "cases" / "copy.sqlite"
    copy.write_bytes(findings_case.case_path.read_bytes())
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE documents SET text = replace(text, 'Antwerp', 'Hamburg') WHERE id = ?", (email_id,))
    conn.commit()
    conn.close()
    findings_case_copy = type("Built", (), {"root": home})()
    data = json.loads(export(findings_case_copy, "json", "tampered", case="copy").read_text(encoding="utf-8"))
    first, second = data["findings"]
    assert first["verified"] and not second["verified"] and second["problem"] == TEXT_CHANGED
    assert data["export_check"]["ok"] is False and "Evidence integrity" in data["export_check"]["alert"]
    html = flat(export(findings_case_copy, "html", "tampered", case="copy").read_text(encoding="utf-8"))
    assert "Warning: 1 finding in this report is NOT VERIFIED" in html
    assert f"NOT VERIFIED: {TEXT_CHANGED}" in html and "2 findings, 1 NOT VERIFIED" in html


def test_a_case_without_findings_says_so_and_usage_errors_are_clear(tmp_path, capsys):
    home = tmp_path / "home"
    (home / "cases").mkdir(parents=True)
    Case.open(home / "cases" / "empty.sqlite").close()
    out = tmp_path / "none.md"
    assert main(["export", "--findings", "--format", "md", "-o", str(out), "--home", str(home), "--case", "empty"]) == 0
    assert "This case has no findings yet." in out.read_text(encoding="utf-8")
    assert main(["export", "--format", "md", "-o", str(out), "--home", str(home), "--case", "empty"]) == 2
    assert "needs a RUN_ID" in capsys.readouterr().err
    assert main(["export", "abc", "--findings", "--format", "md", "-o", str(out), "--home", str(home)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["export", "--findings", "--format", "md", "-o", str(out), "--home", str(home), "--case", "nope"]) == 2
    assert "no case 'nope'" in capsys.readouterr().err
