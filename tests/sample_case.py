"""A small but complete case for GUI and report tests: a PDF, a DOCX, an email thread with a PDF
attachment, a text note, and one finished run whose answer cites the PDF (page 2) and an email."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from builders import make_docx, make_email, make_pdf, pdf_bytes
from rlm_script import PRICES, ROOT, SUB, Script, repl

from rlm_desktop.engine.rlm import RunConfig, run_rlm
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

PDF_PHRASE = "left Rotterdam on 4 May 2023"
EMAIL_PHRASE = "the containers were relabelled in Antwerp"
QUESTION = "When did the shipment leave Rotterdam, and what happened in Antwerp?"


@dataclass
class SampleCase:
    folder: Path  # the documents as dropped
    case_path: Path
    run_id: str | None
    record: dict | None


def write_documents(folder: Path) -> Path:
    """The sample documents on disk (no case yet): what a user would drop on the window."""
    folder.mkdir(parents=True, exist_ok=True)
    make_pdf(
        folder / "harbour report.pdf",
        [
            "Harbour report, spring 2023.\nTraffic was normal through April.",
            f"The shipment of 40 containers {PDF_PHRASE} under the name Blue Heron.\nSigned, the harbour master.",
        ],
    )
    make_docx(
        folder / "memo.docx", ["Internal memo", "Payments to Blue Heron Ltd were approved on 2 May 2023."]
    )
    (folder / "notes.txt").write_text(
        "Call notes: ask the harbour master about the manifest.\n", encoding="utf-8"
    )
    mail = folder / "mail"
    mail.mkdir(exist_ok=True)
    invoice = pdf_bytes(["Invoice 778\nForty containers, Blue Heron Ltd, EUR 120,000."])
    first = make_email(
        "Blue Heron shipment",
        "Invoice attached. The ship sails next week.",
        message_id="<first@example.org>",
        date=datetime(2023, 4, 28, 10, 0, tzinfo=UTC),
        attachments=[("invoice 778.pdf", invoice, "application/pdf")],
    )
    reply = make_email(
        "Re: Blue Heron shipment",
        f"Confirmed: {EMAIL_PHRASE} before they went on.",
        sender="Bob Example <bob@example.org>",
        to="Alice Example <alice@example.org>",
        message_id="<reply@example.org>",
        in_reply_to="<first@example.org>",
        date=datetime(2023, 5, 6, 16, 45, tzinfo=UTC),
    )
    (mail / "1 shipment.eml").write_bytes(first.as_bytes())
    (mail / "2 reply.eml").write_bytes(reply.as_bytes())
    return folder


def run_config(fake, **overrides) -> RunConfig:
    values = dict(
        root_model=ROOT, sub_model=SUB, base_url=fake.base_url, cap_usd=1.0, price_args=PRICES, max_retries=0
    )
    values.update(overrides)
    return RunConfig(**values)


def answer_script() -> Script:
    """A root model that searches, asks the sub model about the PDF, and cites the PDF and the reply email."""
    return Script(
        [
            repl("hits = search('Rotterdam')\nprint([(h.doc_id, h.snippet(40)) for h in hits])"),
            repl(
                "pdf = context.by_id(hits[0].doc_id)\n"
                "when = llm_query('When did the shipment leave? Text: ' + pdf.text)\n"
                "mail = context.by_id(grep('relabelled')[0].doc_id)\n"
                "what = llm_query('What happened in Antwerp? Text: ' + mail.text)\n"
                f"a = quote(pdf.id, {PDF_PHRASE!r})\n"
                f"b = quote(mail.id, {EMAIL_PHRASE!r})\n"
                "FINAL(f'The shipment left Rotterdam on 4 May 2023 {a}. In Antwerp {what} {b}.')"
            ),
        ],
        sub=lambda prompt: "4 May 2023" if "leave" in prompt else "the containers were relabelled",
    )


def build_sample_case(root: Path, fake=None, name: str = "sample") -> SampleCase:
    """Ingest the sample documents into `root/cases/NAME.sqlite`; with a fake server, also run the RLM once."""
    folder = write_documents(root / "documents")
    case_path = root / "cases" / f"{name}.sqlite"
    case_path.parent.mkdir(parents=True, exist_ok=True)
    with Case.open(case_path) as case:
        report = ingest(case, [folder], jobs=1)
        assert not report.failed, report.failed
    if fake is None:
        return SampleCase(folder, case_path, None, None)
    fake.handler = answer_script()
    record = asyncio.run(run_rlm(case_path, QUESTION, run_config(fake), "sk-test"))
    assert record["status"] == "completed", record.get("error")
    assert len(record["citations"]) == 2 and all(c["verified"] for c in record["citations"])
    return SampleCase(folder, case_path, record["run_id"], record)
