"""The evidence report as plain data: built once from a case and a run record, shared by every format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rlm_desktop import __version__
from rlm_desktop.engine.citations import MARKER
from rlm_desktop.engine.replies import segments
from rlm_desktop.ingest.reextract import Reextraction, Reextractor
from rlm_desktop.integrity import check_original, check_text, reextract
from rlm_desktop.redact import public_base_url, redact, redact_known
from rlm_desktop.reports.images import CitationImage, render_citation_images
from rlm_desktop.store.case import Case, DocumentRow

CONTEXT_CHARS = 100  # on each side of a quote: about 200 characters of surrounding text in all
CODE_LIMIT = 20_000  # a code cell is how the answer was reached: shown nearly always in full
TEXT_LIMIT = 4000  # a trajectory entry's output or response is cut to this many characters
PROMPT_LIMIT = 600  # sub-call prompts are mostly source text, listed separately as spans

STATUS_LABELS = {
    "completed": "Completed",
    "cancelled": "Cancelled by the user (partial)",
    "cap_reached": "Stopped at the spending cap (partial)",
    "limit_reached": "Stopped at a run limit (partial)",
    "failed": "Failed (partial)",
    "running": "Still running when exported (partial)",
}

KIND_LABELS = {
    "pdf": "PDF",
    "docx": "Word document",
    "email": "Email",
    "text": "Text",
    "markdown": "Markdown",
    "html": "HTML",
    "attachment": "Attachment",
    "mailbox": "Mailbox",
}

HOW_TO_CHECK = (
    "Every citation gives the document's SHA-256 as recorded when it was ingested. Compute the SHA-256 of "
    "your copy of the file (for example with: sha256sum FILE) and compare.",
    "Character offsets count Unicode characters in the text RLM Desktop extracted from the document (for "
    "PDFs, pages are separated by a form feed, shown here as a line break). The quote is that text from the "
    "first offset up to, not including, the second.",
    "Each cited document also gives the SHA-256 of its extracted text as recorded at ingest (the UTF-8 "
    "bytes of the stored text). When this report was generated the stored text was hashed again, and the "
    "original was extracted again and compared with it: a stored text edited after ingest shows in red.",
    "A citation marked Verified was checked when this report was generated: the quote equals the stored "
    "text at its offsets, and that text still has its ingest-time hash. NOT VERIFIED means the quote could "
    "not be matched or the stored text was changed; treat the claim it supports as unsupported.",
    "Page images are rendered from the original file (attachments from the copy stored in the case); the "
    "highlighted boxes mark the words of the cited span.",
)

FINDINGS_INTRO = (
    "Passages kept as evidence, from a run's citations or selected in a document. Each was verified when it "
    "was added, exactly as a run's citations are, and is checked again here: its quote against the stored text "
    "at its offsets, that text against its ingest-time hash, and the original extracted again."
)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def visible(text: str) -> str:
    """Text safe for every format (XML forbids most control characters): a page break becomes a newline."""
    return _CONTROL.sub(lambda m: "\n" if m.group(0) == "\f" else "\ufffd", text)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def human_time(iso: str | None) -> str:
    """'2026-11-21 20:38:48 UTC' from an ISO 8601 time (as stored), or '—'."""
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def money(usd: float | None) -> str:
    """Dollars with enough digits to see a cheap sub-call: $0.0042, $1.23."""
    if usd is None:
        return "—"
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"


def clip_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit:,} more characters not shown]"


@dataclass(frozen=True)
class HashCheck:
    """The export-time check of a document's original bytes against the SHA-256 recorded at ingest."""

    status: str  # "matches" | "changed" | "unavailable"
    checked_at: str
    detail: str  # which bytes were checked, or why none could be

    @property
    def summary(self) -> str:
        when = human_time(self.checked_at)
        if self.status == "matches":
            return f"hash checked {when}: matches"
        if self.status == "changed":
            return f"hash checked {when}: file changed since ingest"
        return f"hash checked {when}: original not available"


@dataclass(frozen=True)
class TextCheck:
    """The export-time check of the stored text: against its ingest-time SHA-256, and a re-extraction."""

    status: str  # "matches" | "changed" (the stored text no longer has its hash)
    detail: str
    reextraction: Reextraction | None = None  # only for cited documents

    @property
    def ok(self) -> bool:
        return self.status == "matches" and (
            self.reextraction is None or self.reextraction.status != "differs"
        )

    @property
    def summary(self) -> str:
        first = "text hash matches" if self.status == "matches" else "STORED TEXT CHANGED SINCE INGEST"
        if self.reextraction is None:
            return first
        return f"{first}; {self.reextraction.summary}"

    @property
    def details(self) -> str:
        parts = [self.detail]
        if self.reextraction is not None:
            parts.append(self.reextraction.detail)
        return "; ".join(parts)


@dataclass(frozen=True)
class EmailHeaders:
    sender: str
    to: str
    cc: str
    date: str
    subject: str

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) for each header the email has, in the order every format prints them."""
        pairs = (("From", self.sender), ("To", self.to), ("Cc", self.cc), ("Date", self.date))
        return [(label, value) for label, value in (*pairs, ("Subject", self.subject)) if value]


@dataclass
class DocumentInfo:
    """A document the run cited or read, as the case stores it, with its export-time hash check."""

    doc_id: int
    title: str
    kind: str
    paths: list[str]
    sha256: str
    size: int
    pages: int | None
    hash_check: HashCheck
    text_sha256: str | None = None  # of the stored text, recorded at ingest
    text_check: TextCheck = field(default_factory=lambda: TextCheck("matches", ""))
    parent: str | None = None  # for an attachment: its email's title and file
    email: EmailHeaders | None = None
    superseded: bool = False
    cited_as: list[str] = field(default_factory=list)  # markers
    read_by: list[str] = field(default_factory=list)  # trajectory node ids whose excerpts came from it
    parent_id: int | None = None
    contains: list[str] = field(default_factory=list)  # consulted documents inside this one (attachments)

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def used_as(self) -> str:
        """How the run used it: cited, read by sub-calls, or carrying a document that was."""
        used = []
        if self.cited_as:
            used.append("cited as " + ", ".join(self.cited_as))
        if self.read_by:
            used.append("read by " + ", ".join(f"node {n}" for n in self.read_by))
        if self.contains:
            used.append("contains " + ", ".join(self.contains))
        return "; ".join(used)

    @property
    def location(self) -> str:
        """Where the original is: its path(s), or (attachments) the email that carried it."""
        if self.paths:
            return "; ".join(self.paths)
        if self.parent:
            return f"attachment of {self.parent}"
        return "no file on disk"


@dataclass
class ReportCitation:
    number: int
    marker: str
    doc_id: int
    doc: DocumentInfo | None
    title: str
    path: str
    start: int
    end: int
    quote: str  # as the run registered it
    source_text: str | None  # the case's text at [start:end] now; None when out of range or no document
    context_before: str
    context_after: str
    verified: bool
    problem: str | None
    page: int | None
    images: list[CitationImage] = field(default_factory=list)
    image_note: str | None = None  # why a PDF citation has no image
    extra: list[tuple[str, str]] = field(default_factory=list)  # (label, text) facts a finding adds: note, source

    @property
    def note(self) -> str | None:
        """A finding's note (None for a run's citation, or a finding without one)."""
        note = dict(self.extra).get("Note")
        return None if note in (None, "—") else note

    @property
    def anchor(self) -> str:
        return "cite-" + re.sub(r"[^A-Za-z0-9]+", "-", self.marker).strip("-")

    @property
    def verification(self) -> str:
        if self.verified:
            return "Verified: the quote equals the source text at these offsets"
        return f"NOT VERIFIED: {self.problem or 'the quote does not match the source'}"

    @property
    def pages_label(self) -> str:
        pages = sorted({image.page for image in self.images} | ({self.page} if self.page else set()))
        if not pages:
            return "—"
        return ", ".join(str(p) for p in pages)


@dataclass(frozen=True)
class SpanRef:
    doc_id: int
    title: str
    start: int
    end: int


@dataclass
class TrajectoryEntry:
    """One node of the run's tree, flattened in reading order with its depth."""

    node_id: str
    kind: str
    depth: int
    label: str
    model: str | None
    status: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    text: str  # code, prompt (cut) or question
    output: str | None = None  # a code cell's printed output, or a sub-call's response
    error: str | None = None
    spans: list[SpanRef] = field(default_factory=list)


@dataclass(frozen=True)
class ModelUsage:
    model: str
    role: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass
class Report:
    """Everything a report says, in the order it says it."""

    case_name: str
    run_id: str
    question: str
    status: str
    answer: str
    started: str | None
    ended: str | None
    generated_at: str
    app_version: str
    run_app_version: str | None
    root_model: str | None
    sub_model: str | None
    endpoint: str | None
    cap_usd: float | None
    cost_usd: float
    usage: list[ModelUsage]
    citations: list[ReportCitation]
    unresolved_markers: list[str]
    error: str | None
    warnings: list[str]
    trajectory: list[TrajectoryEntry]
    documents: list[DocumentInfo]
    cost_held_usd: float = 0.0  # reservations of calls whose cost the server did not report
    cost_held_estimate_usd: float = 0.0
    follows: str | None = None  # the run this question followed up
    # (run id, question) of the runs it follows, oldest first
    thread: list[tuple[str, str]] = field(default_factory=list)

    @property
    def thread_summary(self) -> str | None:
        """How the question sits in its thread of follow-ups; None for a question asked on its own."""
        if self.follows is None:
            return None
        if not self.thread:
            return f"follow-up of run {self.follows} (no longer in the case)"
        earlier = "; ".join(f"{rid}: “{q[:120]}”" for rid, q in self.thread)
        return f"question {len(self.thread) + 1} of a thread, following {earlier}"

    kind: str = "run"  # "run", or "findings": the case's findings instead of one run (reports/findings.py)

    @property
    def is_findings(self) -> bool:
        return self.kind == "findings"

    @property
    def noun(self) -> str:
        """What the report's verified passages are called: a run's citations, or the case's findings."""
        return "finding" if self.is_findings else "citation"

    @property
    def documents_intro(self) -> str:
        what = "a finding comes from" if self.is_findings else "the answer cites or a sub-call read"
        return (
            f"Every document {what}, with its SHA-256 at ingest and the check made when this report was generated."
        )

    @property
    def footer_label(self) -> str:
        when = human_time(self.generated_at)
        if self.is_findings:
            return f"Findings report · case {self.case_name} · {when}"
        return f"Evidence report · case {self.case_name} · run {self.run_id} · {when}"

    @property
    def subject_label(self) -> str:
        return f"Findings of case {self.case_name}" if self.is_findings else f"Run {self.run_id} of case {self.case_name}"

    @property
    def origin_label(self) -> str:
        """Where the report came from, for its closing line."""
        return f"the findings of case “{self.case_name}”" if self.is_findings else (
            f"run {self.run_id} of case “{self.case_name}”"
        )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def prompt_tokens(self) -> int:
        return sum(u.prompt_tokens for u in self.usage)

    @property
    def completion_tokens(self) -> int:
        return sum(u.completion_tokens for u in self.usage)

    @property
    def calls(self) -> int:
        return sum(u.calls for u in self.usage)

    @property
    def cap_label(self) -> str:
        return money(self.cap_usd) if self.cap_usd is not None else "no cap"

    @property
    def citation_summary(self) -> str:
        total = len(self.citations) + len(self.unresolved_markers)
        bad = self.unverified_count
        if not total:
            return "none"
        noun = self.noun if total == 1 else f"{self.noun}s"
        if not bad:
            return f"{total} {noun}, all verified against the source text"
        return f"{total} {noun}, {bad} NOT VERIFIED"

    @property
    def cost_summary(self) -> str:
        amount = money(self.cost_usd)
        if self.cost_held_usd:
            amount = (
                f"{money(self.cost_usd - self.cost_held_usd)} billed + {money(self.cost_held_usd)} held for calls "
                f"whose cost the server did not report (probably about {money(self.cost_held_estimate_usd)})"
            )
        if self.cap_usd is None:
            return f"{amount} (no spending cap)"
        return f"{amount}, of a {money(self.cap_usd)} cap"

    @property
    def tokens_summary(self) -> str:
        return (
            f"{self.prompt_tokens:,} input, {self.completion_tokens:,} output in {self.calls:,} model calls"
        )

    @property
    def software(self) -> str:
        version = f"RLM Desktop {self.app_version}"
        if self.run_app_version and self.run_app_version != self.app_version:
            version += f" (the run was made with {self.run_app_version})"
        return version

    @property
    def unverified_count(self) -> int:
        return sum(1 for c in self.citations if not c.verified) + len(self.unresolved_markers)

    @property
    def integrity_alert(self) -> str | None:
        """A sentence naming the documents whose stored text fails its checks, or None when all hold."""
        bad = [d for d in self.documents if not d.text_check.ok]
        if not bad:
            return None
        names = "; ".join(f"“{d.title}” (id {d.doc_id}): {d.text_check.summary}" for d in bad)
        noun = "document's stored text does" if len(bad) == 1 else "documents' stored texts do"
        return (
            f"Evidence integrity: {len(bad)} {noun} not match what was recorded at ingest or a fresh "
            f"extraction of the original: {names}."
        )

    def citation_for(self, marker: str) -> ReportCitation | None:
        return next((c for c in self.citations if c.marker == marker), None)

    def answer_parts(self) -> list[tuple[str, ReportCitation | None, bool]]:
        """The answer split into (text, citation, is_marker) pieces, so renderers can link the markers."""
        parts: list[tuple[str, ReportCitation | None, bool]] = []
        position = 0
        for match in MARKER.finditer(self.answer):
            if match.start() > position:
                parts.append((self.answer[position : match.start()], None, False))
            parts.append((match.group(0), self.citation_for(match.group(0)), True))
            position = match.end()
        if position < len(self.answer):
            parts.append((self.answer[position:], None, False))
        return parts


def export_check(report: Report) -> dict[str, Any]:
    """What the JSON export adds to the run record: the same export-time checks the other formats show."""
    return {
        "checked_at": report.generated_at,
        "ok": not report.unverified_count and report.integrity_alert is None,
        "alert": report.integrity_alert,
        "citations": [
            {"marker": c.marker, "doc_id": c.doc_id, "verified": c.verified, "problem": c.problem}
            for c in report.citations
        ],
        "documents": [
            {
                "doc_id": d.doc_id,
                "title": d.title,
                "sha256": d.sha256,
                "text_sha256": d.text_sha256,
                "original": {"status": d.hash_check.status, "detail": d.hash_check.detail},
                "text": {"status": d.text_check.status, "detail": d.text_check.detail},
                "reextraction": None
                if d.text_check.reextraction is None
                else {"status": d.text_check.reextraction.status, "detail": d.text_check.reextraction.detail},
            }
            for d in report.documents
            if d.cited_as
        ],
    }


# ---- building ------------------------------------------------------------------------------------------


def check_hash(case: Case, doc: DocumentRow, checked_at: str) -> HashCheck:
    """Recompute the SHA-256 of the original bytes: the file(s) on disk first, else the case's stored copy."""
    check = check_original(case, doc)
    return HashCheck(check.status, checked_at, check.detail)


def _listed(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value or "")


def email_headers(doc: DocumentRow) -> EmailHeaders | None:
    if doc.kind != "email":
        return None
    meta = doc.meta
    date = meta.get("date_raw") or meta.get("date") or ""
    if meta.get("date") and meta.get("date_raw"):
        date = f"{meta['date_raw']} ({human_time(meta['date'])})"
    return EmailHeaders(
        sender=_listed(meta.get("from")),
        to=_listed(meta.get("to")),
        cc=_listed(meta.get("cc")),
        date=date,
        subject=str(meta.get("subject") or doc.title),
    )


class _Documents:
    """Document rows and their hash checks, each looked up once per report."""

    def __init__(self, case: Case, checked_at: str, reextractor: Reextractor):
        self.case = case
        self.checked_at = checked_at
        self.infos: dict[int, DocumentInfo | None] = {}
        self.rows: dict[int, DocumentRow] = {}
        self.reextractor = reextractor
        self.images = True  # page images for PDF citations (not needed for the JSON export's check)

    def reextract(self, info: DocumentInfo) -> Reextraction:
        """Extract a cited document's original again (once) and record the comparison on `info`."""
        if info.text_check.reextraction is None:
            again = reextract(self.case, self.rows[info.doc_id], self.reextractor)
            info.text_check = TextCheck(info.text_check.status, info.text_check.detail, again)
        assert info.text_check.reextraction is not None
        return info.text_check.reextraction

    def get(self, doc_id: int) -> DocumentInfo | None:
        if doc_id not in self.infos:
            self.infos[doc_id] = self._load(doc_id)
        return self.infos[doc_id]

    def _load(self, doc_id: int) -> DocumentInfo | None:
        try:
            doc = self.case.document(doc_id)
        except KeyError:
            return None
        self.rows[doc_id] = doc
        text = check_text(self.case, doc)
        parent = None
        if doc.parent_id is not None:
            try:
                row = self.case.document(doc.parent_id)
            except KeyError:
                parent = f"document {doc.parent_id}"
            else:
                parent = f"“{row.title}”"
                headers = email_headers(row)
                if headers is not None:
                    parent = f"the email {parent} from {headers.sender or 'an unknown sender'}, dated {headers.date}"
                parent += f" ({row.path})" if row.path else ""
        return DocumentInfo(
            doc_id=doc.id,
            title=doc.title,
            kind=doc.kind,
            paths=list(doc.paths),
            sha256=doc.sha256,
            size=doc.size,
            pages=doc.pages,
            hash_check=check_hash(self.case, doc, self.checked_at),
            text_sha256=doc.text_sha256,
            text_check=TextCheck(text.status, text.detail),
            parent=parent,
            parent_id=doc.parent_id,
            email=email_headers(doc),
            superseded=doc.superseded_by is not None,
        )

    def title(self, doc_id: int) -> str:
        info = self.get(doc_id)
        return info.title if info else f"(document {doc_id} is not in the case)"


def _context(text: str, start: int, end: int) -> tuple[str, str]:
    """About CONTEXT_CHARS on each side of text[start:end], cut at a word boundary, with ellipses."""
    lo = max(0, start - CONTEXT_CHARS)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    hi = min(len(text), end + CONTEXT_CHARS)
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    before = ("…" if lo > 0 else "") + text[lo:start]
    after = text[end:hi] + ("…" if hi < len(text) else "")
    return before, after


def _citation(case: Case, docs: _Documents, number: int, raw: dict[str, Any]) -> ReportCitation:
    doc_id, start, end = int(raw["doc_id"]), int(raw["start"]), int(raw["end"])
    quote = raw.get("quote") or ""
    info = docs.get(doc_id)
    source_text, before, after = None, "", ""
    problem = raw.get("problem")
    if info is None:
        problem = problem or "the document is not in the case"
    else:
        text = case.text(doc_id)
        if 0 <= start < end <= len(text):
            source_text = text[start:end]
            before, after = _context(text, start, end)
        else:
            problem = problem or "the offsets are outside the document's text"
    # Re-verify now instead of trusting the record: the case's text at the offsets must equal the quote, that
    # text must still have its ingest-time hash, and the original, extracted again, must hold the quote too.
    verified = bool(raw.get("verified")) and source_text is not None and source_text == quote
    again = docs.reextract(info) if info is not None else None  # every cited document's original, once
    if info is not None and info.text_check.status != "matches":
        verified, problem = False, info.text_check.detail
    elif verified and again is not None and again.status == "differs" and (again.fresh or "")[start:end] != quote:
        verified = False
        problem = "the original, extracted again, does not have this quote at these offsets"
    if not verified and problem is None:
        problem = (
            "the quote differs from the source text at these offsets"
            if source_text is not None
            else "the run could not verify this quote"
        )
    citation = ReportCitation(
        number=number,
        marker=str(raw.get("marker") or f"[{number}]"),
        doc_id=doc_id,
        doc=info,
        title=raw.get("title") or (info.title if info else f"document {doc_id}"),
        path=raw.get("path") or (info.location if info else ""),
        start=start,
        end=end,
        quote=quote,
        source_text=source_text,
        context_before=before,
        context_after=after,
        verified=verified,
        problem=None if verified else problem,
        page=raw.get("page"),
    )
    if info is not None:
        info.cited_as.append(citation.marker)
        if docs.images and (info.kind == "pdf" or raw.get("rects")):
            citation.images, citation.image_note = render_citation_images(case, doc_id, raw)
    return citation


_LABELS = {
    "root": "Question",
    "iteration": "Root model turn",
    "code": "Code cell",
    "llm_query": "Sub-call (llm_query)",
    "rlm_query": "Recursive sub-investigation (rlm_query)",
}


def _entry(node: dict[str, Any], depth: int, docs: _Documents) -> TrajectoryEntry:
    kind = node.get("kind", "")
    label = _LABELS.get(kind, kind)
    text = node.get("text") or ""
    output = error = None
    if kind == "iteration":
        number = node.get("number")
        label = f"{label} {number}" if number else label
        if node.get("final_request"):
            label += " (final answer requested: no iterations left)"
        # The code is listed in the cells below; keep the model's prose between the blocks (read with the
        # engine's own fence parser, so what is marked as code is what ran).
        pieces = [("[code cell below]" if is_code else piece) for piece, is_code in segments(text)]
        text = "\n\n".join(pieces).strip()
        if all(piece == "[code cell below]" for piece in pieces):
            text = ""
    elif kind == "code":
        output = node.get("output")
        if node.get("final"):
            output = (output or "") + ("\n" if output else "") + f"FINAL: {node['final']}"
        error = node.get("error")
    elif kind == "llm_query":
        text = clip_text(node.get("prompt") or text, PROMPT_LIMIT)
        output = node.get("response")
        error = node.get("error")
    elif kind == "rlm_query":
        output = node.get("answer")
        ids = node.get("doc_ids")
        if ids:
            text += "\nDocuments given: " + ", ".join(f"{docs.title(i)} (id {i})" for i in ids)
    spans = []
    for span in node.get("spans") or []:
        doc_id = int(span["doc_id"])
        spans.append(SpanRef(doc_id, docs.title(doc_id), int(span["start"]), int(span["end"])))
        info = docs.get(doc_id)
        if info is not None and node.get("id") not in info.read_by:
            info.read_by.append(str(node.get("id")))
    return TrajectoryEntry(
        node_id=str(node.get("id", "")),
        kind=kind,
        depth=depth,
        label=label,
        model=node.get("model"),
        status=str(node.get("status", "")),
        prompt_tokens=int(node.get("prompt_tokens") or 0),
        completion_tokens=int(node.get("completion_tokens") or 0),
        cost_usd=float(node.get("cost_usd") or 0.0),
        # runs saved before redaction existed may hold an echoed key: redact what the report shows
        text=clip_text(visible(redact_known(text)), CODE_LIMIT if kind == "code" else TEXT_LIMIT),
        output=clip_text(visible(redact(output)), TEXT_LIMIT) if output else None,
        error=visible(redact(error)) if error else None,
        spans=spans,
    )


def _trajectory(tree: dict[str, Any] | None, docs: _Documents) -> list[TrajectoryEntry]:
    entries: list[TrajectoryEntry] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        entries.append(_entry(node, depth, docs))
        for child in node.get("children") or []:
            walk(child, depth + 1)

    if tree:
        for child in tree.get("children") or []:  # the root node is the question, shown at the top
            walk(child, 0)
    return entries


def _usage(record: dict[str, Any], root_model: str | None, sub_model: str | None) -> list[ModelUsage]:
    rows = []
    for model, use in (record.get("usage") or {}).items():
        roles = [name for name, m in (("root", root_model), ("sub", sub_model)) if m == model]
        rows.append(
            ModelUsage(
                model=model,
                role=" and ".join(roles) or "—",
                calls=int(use.get("calls") or 0),
                prompt_tokens=int(use.get("prompt_tokens") or 0),
                completion_tokens=int(use.get("completion_tokens") or 0),
                cost_usd=float(use.get("cost_usd") or 0.0),
            )
        )
    return rows


def public_endpoint(url: str | None) -> str | None:
    """The endpoint without credentials (user:password, key-like query parameters)."""
    return public_base_url(url) if url else None


def build_report(
    case: Case, record: dict[str, Any], *, generated_at: str | None = None, images: bool = True
) -> Report:
    """The report for `record` (a CONTRACTS run record), re-checking quotes and hashes against `case` now."""
    generated_at = generated_at or utc_now()
    with Reextractor() as reextractor:
        docs = _Documents(case, generated_at, reextractor)
        docs.images = images
        return _build_report(case, record, generated_at, docs)


def _consulted(docs: _Documents) -> list[DocumentInfo]:
    """The documents cited or read, with the files that carried them, in id order."""
    documents = {i.doc_id: i for i in docs.infos.values() if i is not None and (i.cited_as or i.read_by)}
    # The file an attachment came in is part of its provenance: list it (and its own parents) too.
    for info in list(documents.values()):
        child = info
        while child.parent_id is not None and (parent := docs.get(child.parent_id)) is not None:
            label = f"{info.title} (id {info.doc_id})"
            if label not in parent.contains:
                parent.contains.append(label)
            documents.setdefault(parent.doc_id, parent)
            child = parent
    return sorted(documents.values(), key=lambda d: d.doc_id)


def _build_report(case: Case, record: dict[str, Any], generated_at: str, docs: _Documents) -> Report:
    config = record.get("config") or {}
    usage_models = list((record.get("usage") or {}).keys())
    root_model = config.get("root_model") or (usage_models[0] if usage_models else None)
    sub_model = config.get("sub_model") or (usage_models[1] if len(usage_models) > 1 else None)
    citations = [_citation(case, docs, n, raw) for n, raw in enumerate(record.get("citations") or [], 1)]
    trajectory = _trajectory(record.get("tree"), docs)
    return Report(
        case_name=Path(case.path).stem,
        run_id=str(record.get("run_id", "")),
        question=visible(record.get("question") or ""),
        status=str(record.get("status", "")),
        answer=visible(redact_known(record.get("answer") or "")),
        started=record.get("started"),
        ended=record.get("ended"),
        generated_at=generated_at,
        app_version=__version__,
        run_app_version=record.get("app_version"),
        root_model=root_model,
        sub_model=sub_model,
        endpoint=public_endpoint(config.get("base_url")),
        cap_usd=record.get("cap_usd"),
        cost_usd=float(record.get("cost_usd") or 0.0),
        usage=_usage(record, root_model, sub_model),
        citations=citations,
        unresolved_markers=list(record.get("unresolved_markers") or []),
        error=redact(record["error"]) if record.get("error") else None,
        warnings=[redact(str(w)) for w in record.get("warnings") or []],
        trajectory=trajectory,
        documents=_consulted(docs),
        cost_held_usd=float(record.get("cost_held_usd") or 0.0),
        cost_held_estimate_usd=float(record.get("cost_held_estimate_usd") or 0.0),
        follows=record.get("follows"),
        thread=_thread(case, record.get("follows")),
    )


def _thread(case: Case, follows: str | None) -> list[tuple[str, str]]:
    """(run id, question) of the runs a follow-up continues, oldest first (those still in the case)."""
    from rlm_desktop.store.runs import run_row, thread_ids

    if not follows:
        return []
    try:
        return [(rid, visible(run_row(case, rid).question)) for rid in thread_ids(case, follows)]
    except KeyError:
        return []
