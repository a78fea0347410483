"""Bare-library baselines on the same files: what PyMuPDF and the stdlib alone manage."""

from __future__ import annotations

import mailbox
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pymupdf

PDF_BASELINE = "pymupdf.open(path); page.get_text() for every page (plain-text mode, default flags); close"
MBOX_BASELINE = (
    "mailbox.mbox(path) (includes its From_-line scan), get_bytes(key) per message, "
    "BytesParser(policy=policy.default).parsebytes(raw), get_body(('plain', 'html')).get_content(); "
    "attachments are not decoded"
)


def bare_pdf(paths: list[Path]) -> dict[str, Any]:
    pages = chars = 0
    started = time.perf_counter()
    for path in paths:
        doc = pymupdf.open(path)
        for page in doc:
            chars += len(page.get_text())
            pages += 1
        doc.close()
    seconds = time.perf_counter() - started
    return {"files": len(paths), "pages": pages, "chars": chars, "seconds": seconds, "what": PDF_BASELINE}


def bare_mbox(paths: list[Path]) -> dict[str, Any]:
    messages = chars = 0
    parser = BytesParser(policy=policy.default)
    started = time.perf_counter()
    for path in paths:
        box = mailbox.mbox(path, create=False)
        for key in box.iterkeys():
            msg = parser.parsebytes(box.get_bytes(key))
            body = msg.get_body(preferencelist=("plain", "html"))
            if body is not None:
                chars += len(body.get_content())
            messages += 1
        box.close()
    seconds = time.perf_counter() - started
    return {
        "files": len(paths),
        "messages": messages,
        "chars": chars,
        "seconds": seconds,
        "what": MBOX_BASELINE,
    }
