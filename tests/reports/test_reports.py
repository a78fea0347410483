"""Evidence reports: every format opened with a real reader and checked against the case's own text and files."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import io
import json
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import docx
import pymupdf
import pytest
from rlm_script import Script, repl
from sample_case import EMAIL_PHRASE, PDF_PHRASE, QUESTION, build_sample_case, run_config

from rlm_desktop import __version__
from rlm_desktop.cli import main
from rlm_desktop.engine.citations import build_citation
from rlm_desktop.engine.rlm import run_rlm
from rlm_desktop.engine.runs import load_run
from rlm_desktop.reports import FORMATS, build_report, export_run, render
from rlm_desktop.reports.docx_report import render_docx
from rlm_desktop.reports.html import render_html
from rlm_desktop.reports.markdown import render_markdown, unescape
from rlm_desktop.reports.pdf_report import render_pdf
from rlm_desktop.store.case import Case
from tests.fake_openai import FakeOpenAIServer

SECRET_KEY = "sk-report-test-SECRET-0123456789abcdef"
ATTACHMENT_PHRASE = "Blue Heron Ltd, EUR 120,000"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


def attachment_script() -> Script:
    """A root model that finds the invoice attached to the first email and quotes it."""
    return Script(
        [
            repl("inv = [d for d in context if d.title == 'invoice 778.pdf'][0]\nprint(inv.id, inv.text)"),
            repl(
                f"a = quote(inv.id, {ATTACHMENT_PHRASE!r})\n"
                "FINAL(f'The attached invoice bills Blue Heron Ltd EUR 120,000 {a}.')"
            ),
        ]
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample case with its finished run, plus a second run citing the email's PDF attachment."""
    root = tmp_path_factory.mktemp("reports")
    with FakeOpenAIServer() as fake:
        built = build_sample_case(root, fake)
        fake.handler = attachment_script()
        record = asyncio.run(
            run_rlm(built.case_path, "What does the invoice bill?", run_config(fake), SECRET_KEY)
        )
    assert record["status"] == "completed", record.get("error")
    assert record["citations"][0]["verified"], record["citations"]
    built.attachment_run_id = record["run_id"]
    built.root = root
    return built


@pytest.fixture(scope="module")
def exported(sample):
    """The sample run exported once in every format (the tests below read them)."""
    out = sample.root / "out"
    out.mkdir()
    return {fmt: export_run(sample.case_path, sample.run_id, fmt, out / f"report.{fmt}") for fmt in FORMATS}


def real_hashes(case: Case) -> dict[str, int]:
    """SHA-256 of every document's actual bytes (file on disk, else the stored attachment copy) and of its
    actual stored text (UTF-8) -> doc id."""
    hashes = {}
    for doc in case.documents():
        data = Path(doc.path).read_bytes() if doc.path else case.blob(doc.sha256)
        assert data is not None, doc
        hashes[hashlib.sha256(data).hexdigest()] = doc.id
        hashes[hashlib.sha256(case.text(doc.id).encode("utf-8")).hexdigest()] = doc.id
    return hashes


class ReportHTML(HTMLParser):
    """Collects what the checks need: marked quotes with their offsets, hashes, images and links."""

    def __init__(self):
        super().__init__()
        self.marks: list[dict] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self._mark: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "mark":
            self._mark = {**attrs, "text": ""}
        elif tag == "img":
            self.images.append(attrs["src"])
        for name in ("href", "src"):
            if name in attrs:
                self.links.append(attrs[name])

    def handle_endtag(self, tag):
        if tag == "mark" and self._mark is not None:
            self.marks.append(self._mark)
            self._mark = None

    def handle_data(self, data):
        self.text.append(data)
        if self._mark is not None:
            self._mark["text"] += data


def parse_html(text: str) -> ReportHTML:
    parser = ReportHTML()
    parser.feed(text)
    parser.close()
    return parser


def squash(text: str) -> str:
    return " ".join(text.split())


def test_html_is_self_contained_and_every_quote_hash_and_image_checks_out(sample, exported):
    page = exported["html"].read_text(encoding="utf-8")
    parsed = parse_html(page)
    text = "".join(parsed.text)
    with Case.open(sample.case_path) as case:
        assert len(parsed.marks) == 2
        for mark in parsed.marks:
            doc_id, start, end = int(mark["data-doc-id"]), int(mark["data-start"]), int(mark["data-end"])
            assert mark["text"] == case.text(doc_id)[start:end]
        assert {m["text"] for m in parsed.marks} == {PDF_PHRASE, EMAIL_PHRASE}
        hashes = real_hashes(case)
    printed = set(SHA256.findall(" ".join(parsed.text)))
    assert printed and printed <= set(hashes), "a printed SHA-256 matches no document's real bytes"
    assert "hash checked" in text and ": matches" in text and "file changed" not in text
    # one self-contained file: images inline, links only within the page
    assert len(parsed.images) == 1
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(PNG_SIGNATURE)
        assert pymupdf.Pixmap(png).width > 300
    assert all(link.startswith(("#", "data:")) for link in parsed.links), parsed.links
    assert "http://" not in page.replace(sample.record["config"]["base_url"], "") and "https://" not in page
    assert "<link" not in page and "<script" not in page
    for expected in (
        "sample",
        QUESTION,
        f"RLM Desktop {__version__}",
        "gpt-5",
        "gpt-5-mini",
        "Completed",
        "of $1.00",
        "harbour report.pdf",
        "Bob Example <bob@example.org>",
        "Alice Example <alice@example.org>",
        "Sat, 06 May 2023 16:45:00 +0000",
        "Re: Blue Heron shipment",
        "Appendix A. Trajectory",
        "Sub-call (llm_query)",
        "search('Rotterdam')",
        "Source text read:",
        "Appendix B. Documents consulted",
    ):
        assert expected in text, expected
    assert "NOT VERIFIED:" not in text and "Warning:" not in text  # (the how-to-check notes explain the term)


def test_pdf_has_selectable_text_images_and_right_hashes(sample, exported):
    doc = pymupdf.open(exported["pdf"])
    text = "\n".join(page.get_text() for page in doc)
    flat = squash(text)
    assert PDF_PHRASE in flat and EMAIL_PHRASE in flat
    assert QUESTION in flat and f"RLM Desktop {__version__}" in flat
    assert "From Bob Example <bob@example.org>" in flat and "Subject Re: Blue Heron shipment" in flat
    with Case.open(sample.case_path) as case:
        hashes = real_hashes(case)
        cited = {c["doc_id"] for c in sample.record["citations"]}
        assert {case.document(i).sha256 for i in cited} <= set(SHA256.findall(text))
    assert set(SHA256.findall(text)) <= set(hashes)
    assert sum(len(page.get_images()) for page in doc) == 1
    titles = [title for _, title, _ in doc.get_toc()]
    assert "Citations" in titles and "Appendix A. Trajectory" in titles
    assert all(f"of {len(doc)}" in page.get_text() for page in doc)  # the page footer
    Path("/tmp/shots").mkdir(parents=True, exist_ok=True)
    doc[0].get_pixmap(dpi=110).save("/tmp/shots/report_p1.png")
    image_page = next(page for page in doc if page.get_images())
    image_page.get_pixmap(dpi=110).save("/tmp/shots/report_citation_page.png")


def test_docx_has_headings_citation_table_images_and_exact_quotes(sample, exported):
    document = docx.Document(str(exported["docx"]))
    headings = [p.text for p in document.paragraphs if p.style.name.startswith("Heading")]
    assert headings[:3] == ["Answer", "Models, tokens and cost", "Citations"]
    assert "Appendix A. Trajectory" in headings and "Appendix B. Documents consulted" in headings
    header_rows = [[c.text for c in t.rows[0].cells] for t in document.tables]
    assert ["Marker", "Document", "Page", "Characters", "Verified"] in header_rows
    assert len(document.inline_shapes) == 1
    highlighted = [
        run.text for p in document.paragraphs for run in p.runs if run.font.highlight_color is not None
    ]
    assert highlighted == [PDF_PHRASE, EMAIL_PHRASE]
    cells = "\n".join(c.text for t in document.tables for row in t.rows for c in row.cells)
    with Case.open(sample.case_path) as case:
        hashes = real_hashes(case)
        for citation in sample.record["citations"]:
            text = case.text(citation["doc_id"])
            assert text[citation["start"] : citation["end"]] in highlighted
    assert SHA256.findall(cells) and set(SHA256.findall(cells)) <= set(hashes)
    assert "bob@example.org" in cells and f"RLM Desktop {__version__}" in cells


def test_markdown_images_are_files_beside_it_and_quotes_are_exact(sample, exported):
    md_path = exported["md"]
    text = md_path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["report_files/citation-1-page-2.png"]
    image = md_path.parent / links[0]
    assert image.read_bytes().startswith(PNG_SIGNATURE)
    quotes = [unescape(q) for q in re.findall(r"\*\*((?:[^*\\]|\\.)+)\*\*", text)]
    assert PDF_PHRASE in quotes and EMAIL_PHRASE in quotes
    with Case.open(sample.case_path) as case:
        assert set(SHA256.findall(text)) <= set(real_hashes(case))


def test_json_is_exactly_the_run_record(sample, exported):
    with Case.open(sample.case_path) as case:
        exported_record = json.loads(exported["json"].read_text(encoding="utf-8"))
        check = exported_record.pop("export_check")
        assert exported_record == load_run(case, sample.run_id)
    assert check["ok"] and check["citations"] and all(c["verified"] for c in check["citations"])
    assert all(d["text"]["status"] == "matches" and d["text_sha256"] for d in check["documents"])


def test_attachment_citation_is_imaged_from_the_stored_copy_and_no_key_leaks(sample):
    out = sample.root / "attachment"
    out.mkdir()
    paths = {
        fmt: export_run(sample.case_path, sample.attachment_run_id, fmt, out / f"r.{fmt}") for fmt in FORMATS
    }
    page = paths["html"].read_text(encoding="utf-8")
    parsed = parse_html(page)
    assert [m["text"] for m in parsed.marks] == [ATTACHMENT_PHRASE]
    assert len(parsed.images) == 1 and base64.b64decode(parsed.images[0][22:]).startswith(PNG_SIGNATURE)
    text = "".join(parsed.text)
    assert "the copy stored in the case (the email's attachment)" in text
    assert "1 shipment.eml › invoice 778.pdf" in text  # the path: the email's file, then the attachment
    assert (
        "the email “Blue Heron shipment” from Alice Example <alice@example.org>, dated Fri, 28 Apr 2023"
        in text
    )
    assert "contains invoice 778.pdf (id 5)" in text  # the email that carried it is listed with its hash
    # the highlight is drawn where the span is: the image's yellow pixels exist
    with Case.open(sample.case_path) as case:
        report = build_report(case, load_run(case, sample.attachment_run_id))
    image = report.citations[0].images[0]
    assert image.highlighted and image.page == 1
    pix = pymupdf.Pixmap(image.png)
    assert any(
        pix.pixel(x, y)[2] < 150 < pix.pixel(x, y)[0]
        for x in range(0, pix.width, 4)
        for y in range(0, pix.height, 4)
    ), "no highlight colour in the page image"
    # the API key the run used is in no exported byte (DOCX: its XML parts, PDF: its text and raw bytes)
    for fmt, path in paths.items():
        data = path.read_bytes()
        assert SECRET_KEY.encode() not in data, fmt
        if fmt == "docx":
            with zipfile.ZipFile(path) as archive:
                assert all(SECRET_KEY.encode() not in archive.read(n) for n in archive.namelist())
        if fmt == "pdf":
            assert SECRET_KEY not in "".join(p.get_text() for p in pymupdf.open(path))
    assert pymupdf.open(paths["pdf"])[0].get_text()  # real text, not an image of text


def unverified_record(record: dict) -> dict:
    """The sample record with its email citation's quote tampered and a marker that was never registered."""
    record = copy.deepcopy(record)
    bad = record["citations"][1]
    bad["quote"] = "the containers were never in Antwerp"
    bad["verified"] = False
    bad["problem"] = "quote differs from the source"
    record["answer"] += " The cargo was insured [c9]."
    record["unresolved_markers"] = ["[c9]"]
    return record


def test_an_unverified_citation_is_marked_loudly_in_every_format(sample, tmp_path):
    with Case.open(sample.case_path) as case:
        report = build_report(case, unverified_record(sample.record))
        email_text = case.text(report.citations[1].doc_id)
    c = report.citations[1]
    assert not c.verified and report.citations[0].verified and report.unverified_count == 2
    assert c.source_text == email_text[c.start : c.end] == EMAIL_PHRASE

    html_text = "".join(parse_html(render_html(report)).text)
    assert "Warning: 2 citations in this report are NOT VERIFIED" in html_text
    assert "NOT VERIFIED: quote differs from the source" in html_text
    assert "the containers were never in Antwerp" in html_text and "[c9]" in html_text

    pdf_text = squash("".join(p.get_text() for p in pymupdf.open("pdf", render_pdf(report))))
    assert "NOT VERIFIED" in pdf_text and "the containers were never in Antwerp" in pdf_text

    document = docx.Document(io.BytesIO(render_docx(report)))
    red = [
        r.text
        for p in document.paragraphs
        for r in p.runs
        if r.font.color.rgb == docx.shared.RGBColor(0xB3, 0x26, 0x1E)
    ]
    assert "NOT VERIFIED" in red
    cells = " ".join(c.text for t in document.tables for row in t.rows for c in row.cells)
    assert "NOT VERIFIED" in cells and "never registered" in cells

    markdown = render_markdown(report, None)
    assert "**NOT VERIFIED**" in markdown and "**Warning: 2 citations" in markdown


def test_hash_check_reports_a_changed_file_and_a_missing_original(tmp_path):
    built = build_sample_case(tmp_path)
    pdf_path = built.folder / "harbour report.pdf"
    with Case.open(built.case_path) as case:
        pdf = next(d for d in case.documents() if d.title == "harbour report.pdf")
        memo = next(d for d in case.documents() if d.title == "memo.docx")
        start = case.text(pdf.id).index(PDF_PHRASE)
        citations = [
            build_citation(case, "[c1]", pdf.id, start, start + len(PDF_PHRASE), PDF_PHRASE),
            build_citation(case, "[c2]", memo.id, 0, 13, case.text(memo.id)[:13]),
        ]
        record = {
            "run_id": "handmade",
            "question": "Check the originals",
            "status": "completed",
            "answer": "Left on 4 May [c1], per the memo [c2].",
            "citations": citations,
            "cost_usd": 0.0,
            "cap_usd": None,
            "usage": {},
            "tree": None,
        }
        pdf_path.write_bytes(pdf_path.read_bytes() + b"\n% edited after ingest\n")
        (built.folder / "memo.docx").unlink()
        report = build_report(case, record)
    first, second = report.citations
    assert first.verified and second.verified  # the stored text still backs both quotes
    assert first.doc.hash_check.status == "changed"
    assert first.doc.hash_check.summary.endswith("file changed since ingest")
    assert not first.images and "changed since it was ingested" in first.image_note
    assert second.doc.hash_check.status == "unavailable"
    assert second.doc.hash_check.summary.endswith("original not available")
    text = "".join(parse_html(render_html(report)).text)
    assert "file changed since ingest" in text and "original not available" in text
    assert "No page image: original file not available" in text
    assert "no spending cap" in text


def test_cli_export_writes_prints_and_reports_errors(sample, tmp_path, capsys):
    home = ["--home", str(sample.root), "--case", "sample"]
    out = tmp_path / "cli report.html"
    assert main(["export", sample.run_id, "--format", "html", "-o", str(out), *home]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    plain = tmp_path / "plain"
    plain.write_text("")
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # an ordinary file, not mkstemp's 0600

    out_md = tmp_path / "cli.md"
    assert main(["export", sample.run_id[:6], "--format", "md", "-o", str(out_md), "--json", *home]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {
        "path": str(out_md.resolve()),
        "format": "md",
        "citations": 2,
        "bytes": out_md.stat().st_size,
    }

    before = out.read_bytes()
    assert main(["export", "nosuchrun", "--format", "html", "-o", str(out), *home]) == 2
    err = capsys.readouterr().err
    assert "no run 'nosuchrun'" in err
    assert out.read_bytes() == before  # the earlier report is untouched

    code = main(
        [
            "export",
            sample.run_id,
            "--format",
            "pdf",
            "-o",
            str(out),
            "--home",
            str(sample.root),
            "--case",
            "nosuchcase",
        ]
    )
    assert code == 2 and "no case 'nosuchcase'" in capsys.readouterr().err

    folder_target = tmp_path / "a folder"
    folder_target.mkdir()
    assert main(["export", sample.run_id, "--format", "json", "-o", str(folder_target), *home]) == 1
    assert "export failed" in capsys.readouterr().err
    assert (
        main(["export", sample.run_id, "--format", "json", "-o", str(tmp_path / "no" / "x.json"), *home]) == 1
    )
    assert "does not exist" in capsys.readouterr().err
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    assert leftovers == [] and folder_target.is_dir() and not any(folder_target.iterdir())


def test_render_matches_across_formats(sample):
    """All formats come from one Report: the same citations, hashes and verdicts in each."""
    with Case.open(sample.case_path) as case:
        record = load_run(case, sample.run_id)
        report = build_report(case, record)
        md = render(case, record, "md", sample.root / "unused.md").decode("utf-8")
    hashes = {c.doc.sha256 for c in report.citations}
    assert hashes <= set(SHA256.findall(md))
    assert [c.marker for c in report.citations] == ["[c1]", "[c2]"]
    assert report.root_model == "gpt-5" and report.sub_model == "gpt-5-mini"
    assert {u.model: u.role for u in report.usage} == {"gpt-5": "root", "gpt-5-mini": "sub"}
    assert {d.title for d in report.documents} == {"harbour report.pdf", "Re: Blue Heron shipment"}
    assert all(d.read_by for d in report.documents)  # both were read by a sub-call, and cited


def test_held_cost_and_estimated_usage_are_stated_in_reports(tmp_path):
    with FakeOpenAIServer() as fake:
        built = build_sample_case(tmp_path)
        from sample_case import answer_script

        script = answer_script()

        def handler(request):
            reply = script(request)
            reply.usage_mode = "total_only"
            return reply

        fake.handler = handler
        record = asyncio.run(run_rlm(built.case_path, QUESTION, run_config(fake), "sk-test"))
    assert record["status"] == "completed" and record["cost_held_usd"] > 0 and record["cost_billed_usd"] == 0
    for fmt in ("html", "md"):
        out = tmp_path / f"report.{fmt}"
        export_run(built.case_path, record["run_id"], fmt, out)
        text = out.read_text(encoding="utf-8")
        assert "held for calls whose cost the server did not report" in text
        assert "reported no usage for gpt-5" in text
