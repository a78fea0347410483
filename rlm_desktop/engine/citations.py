"""Turn citation markers in an answer into verified citations: exact quote, page and page rectangles."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rlm_desktop.store.case import Case, text_problem
from rlm_desktop.store.pages import page_for_offset, span_rects

MARKER = re.compile(r"\[c\d+(?:\.\d+)*\]")


@dataclass(frozen=True)
class Registered:
    """A span registered by `cite`/`quote` in some REPL of the run."""

    marker: str
    doc_id: int
    start: int
    end: int
    quote: str


def markers_in(answer: str) -> list[str]:
    """Markers in order of first appearance."""
    seen: dict[str, None] = {}
    for match in MARKER.finditer(answer):
        seen.setdefault(match.group(0), None)
    return list(seen)


def resolve(
    answer: str, registry: dict[str, Registered], case: Case
) -> tuple[list[dict[str, Any]], list[str]]:
    """Citations for the markers used in `answer`, checked against the case's stored text.

    The quote the REPL reported is not trusted: `verified` is true only when the case's own text at those
    offsets equals it and that text still has the SHA-256 recorded at ingest. Returns (citations, markers
    that were never registered).
    """
    citations: list[dict[str, Any]] = []
    unknown: list[str] = []
    for marker in markers_in(answer):
        reg = registry.get(marker)
        if reg is None:
            unknown.append(marker)
            continue
        citations.append(build_citation(case, marker, reg.doc_id, reg.start, reg.end, reg.quote))
    return citations, unknown


def build_citation(case: Case, marker: str, doc_id: int, start: int, end: int, quote: str) -> dict[str, Any]:
    try:
        doc = case.document(doc_id)
        text = case.text(doc_id)
    except KeyError:
        return {
            "marker": marker,
            "doc_id": doc_id,
            "path": None,
            "title": None,
            "start": start,
            "end": end,
            "quote": quote,
            "verified": False,
            "page": None,
            "rects": [],
            "problem": "no such document",
        }
    in_range = 0 <= start < end <= len(text)
    # The stored text is only evidence while it is the text extracted at ingest: a case file rewritten
    # since (by hand, or by code that reached it) must not turn a forged quote into a verified one.
    tampered = text_problem(doc, text)
    verified = in_range and text[start:end] == quote and tampered is None
    page, rects, rect_pages = None, [], []
    pages = case.pages(doc_id) if doc.pages else []
    if pages and in_range:
        page = page_for_offset(pages, start)
        for number, rect in span_rects(pages, start, end):
            rects.append([round(v, 2) for v in rect])
            rect_pages.append(number)
    path = doc.path
    if path is None and doc.parent_id is not None:  # an attachment: cite back to its email's file
        parent = case.document(doc.parent_id)
        path = f"{parent.path or parent.title} › {doc.title}"
    citation = {
        "marker": marker,
        "doc_id": doc_id,
        "path": path,
        "title": doc.title,
        "start": start,
        "end": end,
        "quote": quote,
        "verified": verified,
        "page": page,
        "rects": rects,
        "rect_pages": rect_pages,
        "kind": doc.kind,
        "sha256": doc.sha256,
        "text_sha256": doc.text_sha256,
        "parent_id": doc.parent_id,
    }
    if not verified:
        citation["problem"] = tampered or (
            "offsets outside the document" if not in_range else "quote differs from the source"
        )
    return citation
