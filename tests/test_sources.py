"""Original bytes: attachments come from the case, files from disk only while their hash still matches."""

from __future__ import annotations

import hashlib

import pytest
from builders import make_email, make_pdf, pdf_bytes

from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.sources import SourceUnavailable, source_bytes
from rlm_desktop.store.case import Case


def test_attachment_bytes_come_from_the_case_and_files_from_disk(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "report.pdf", ["Quarterly figures for the harbour."])
    attached = pdf_bytes(["Invoice 778 for forty containers."])
    msg = make_email("Invoice", "See attached.", attachments=[("inv.pdf", attached, "application/pdf")])
    (docs / "mail.eml").write_bytes(msg.as_bytes())
    with Case.open(tmp_path / "c.sqlite") as case:
        ingest(case, [docs], jobs=1)
        by_title = {d.title: d for d in case.documents()}
        attachment = next(d for d in case.documents() if d.parent_id is not None and d.kind == "pdf")
        assert source_bytes(case, attachment.id) == attached
        assert hashlib.sha256(source_bytes(case, attachment.id)).hexdigest() == attachment.sha256
        report = next(d for d in by_title.values() if d.path and d.path.endswith("report.pdf"))
        assert source_bytes(case, report.id) == (docs / "report.pdf").read_bytes()

        (docs / "report.pdf").write_bytes(pdf_bytes(["Something else entirely."]))
        with pytest.raises(SourceUnavailable, match="changed since it was ingested"):
            source_bytes(case, report.id)
        (docs / "report.pdf").unlink()
        with pytest.raises(SourceUnavailable, match="report.pdf"):
            source_bytes(case, report.id)
