"""The report as HTML: one self-contained file (inline CSS, images as data: URIs), also the PDF's source."""

from __future__ import annotations

import base64
from collections.abc import Callable
from html import escape

from rlm_desktop.reports.images import CitationImage
from rlm_desktop.reports.model import (
    FINDINGS_INTRO,
    HOW_TO_CHECK,
    DocumentInfo,
    Report,
    ReportCitation,
    TrajectoryEntry,
    human_time,
    money,
    visible,
)

ImageSource = Callable[[ReportCitation, CitationImage], str]

CSS = """
body { font-family: "Helvetica Neue", Helvetica, Arial, sans-serif; font-size: 10.5pt; line-height: 1.45;
       color: #1d232b; background: #fff; margin: 0; }
.page { max-width: 820px; margin: 0 auto; padding: 36px 40px 48px 40px; }
.kicker { font-size: 8.5pt; letter-spacing: 0.08em; text-transform: uppercase; color: #5b6573; margin: 0 0 4px 0; }
h1 { font-size: 19pt; line-height: 1.25; color: #14304f; margin: 0 0 14px 0; font-weight: bold; }
h2 { font-size: 13.5pt; color: #14304f; margin: 26px 0 8px 0; padding-bottom: 3px;
     border-bottom: 1.5px solid #14304f; }
h3 { font-size: 11.5pt; color: #14304f; margin: 0 0 6px 0; }
p { margin: 0 0 8px 0; }
table { border-collapse: collapse; width: 100%; margin: 0 0 10px 0; }
th, td { text-align: left; vertical-align: top; padding: 3px 6px; font-size: 9.5pt; }
table.meta th { width: 150px; color: #5b6573; font-weight: normal; white-space: nowrap; }
table.meta td, table.meta th { border-bottom: 1px solid #e3e6ea; }
table.grid th { background-color: #eef1f5; color: #14304f; border: 1px solid #cfd5dd; }
table.grid td { border: 1px solid #cfd5dd; }
table.facts th { width: 110px; color: #5b6573; font-weight: normal; border-bottom: 1px solid #eceef1; }
table.facts td { border-bottom: 1px solid #eceef1; }
td.num, th.num { text-align: right; white-space: nowrap; }
.mono, .hash { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 8.5pt; }
.hash { word-break: break-all; }
.answer { background-color: #f4f7fb; border: 1px solid #d6dee8; padding: 10px 14px; font-size: 11pt;
          white-space: pre-wrap; }
a.marker { color: #1b5fa8; text-decoration: none; font-weight: bold; font-size: 9pt; }
a.marker-bad, span.marker-bad { color: #b3261e; text-decoration: none; font-weight: bold; font-size: 9pt; }
.badge-ok { font-size: 8.5pt; font-weight: bold; color: #1e7a3c; }
.ok { color: #1e7a3c; }
.bad { color: #b3261e; }
.badge-bad { font-size: 8.5pt; font-weight: bold; color: #ffffff; background-color: #b3261e; padding: 1px 6px; }
.alert { border: 2px solid #b3261e; background-color: #fdecea; color: #7a1610; padding: 8px 12px;
         margin: 10px 0; font-weight: bold; }
.citation { border: 1px solid #d6dee8; padding: 10px 14px; margin: 14px 0; page-break-inside: avoid; }
.citation-bad { border: 2px solid #b3261e; background-color: #fff7f6; padding: 10px 14px; margin: 14px 0;
                page-break-inside: avoid; }
.quote { border-left: 3px solid #e0a100; background-color: #fbf8ef; padding: 6px 10px; margin: 8px 0;
         white-space: pre-wrap; font-family: Georgia, "Times New Roman", serif; font-size: 10.5pt; }
.quote-claimed { border-left: 3px solid #b3261e; background-color: #fdecea; padding: 6px 10px; margin: 8px 0;
                 white-space: pre-wrap; font-family: Georgia, "Times New Roman", serif; font-size: 10.5pt; }
mark { background-color: #ffd84d; color: #000; font-weight: bold; }
.label { font-size: 8.5pt; color: #5b6573; margin: 8px 0 2px 0; }
.figure { margin: 8px 0 4px 0; }
.figure img { border: 1px solid #9aa5b1; max-width: 100%; }
.caption { font-size: 8.5pt; color: #5b6573; margin: 2px 0 0 0; }
.note { font-size: 9pt; color: #7a4b00; background-color: #fff4dc; padding: 4px 8px; }
.step { border-left: 2px solid #cfd5dd; padding: 2px 0 2px 10px; margin: 6px 0; }
.step-head { font-size: 9.5pt; margin: 0 0 2px 0; }
.step-kind { font-weight: bold; color: #14304f; }
.muted { color: #5b6573; }
pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 8pt; line-height: 1.35;
      background-color: #f5f6f8; border: 1px solid #e3e6ea; padding: 5px 7px; margin: 2px 0 4px 0;
      white-space: pre-wrap; word-wrap: break-word; }
pre.error { background-color: #fdecea; border-color: #f3b5ae; }
.spans { font-size: 8.5pt; color: #3b4450; margin: 2px 0; }
.doc { margin: 8px 0 10px 0; page-break-inside: avoid; }
.doc-title { margin: 0 0 2px 0; }
.footer { margin-top: 28px; padding-top: 6px; border-top: 1px solid #cfd5dd; font-size: 8.5pt; color: #5b6573; }
ol.checks { margin: 0 0 0 18px; padding: 0; font-size: 9.5pt; }
@media print { .page { max-width: none; padding: 0; } h2 { page-break-after: avoid; } }
@page { size: A4; margin: 18mm 16mm 18mm 16mm; }
"""

CONTENT_WIDTH_PX = 740  # the HTML page's text column


def data_uri(citation: ReportCitation, image: CitationImage) -> str:
    return "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")


def image_name(citation: ReportCitation, image: CitationImage) -> str:
    """A stable file name for a citation's page image (Markdown folder, PDF archive)."""
    return f"citation-{citation.number}-page-{image.page}.png"


def _e(text: object) -> str:
    return escape(visible(str(text)), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _findings_meta_rows(report: Report) -> list[tuple[str, str]]:
    summary = _e(report.citation_summary)
    return [
        ("Case", _e(report.case_name)),
        ("Report generated", _e(human_time(report.generated_at))),
        ("Software", _e(report.software)),
        ("Findings", f"<b class='bad'>{summary}</b>" if report.unverified_count else summary),
    ]


def _meta_rows(report: Report) -> list[tuple[str, str]]:
    if report.is_findings:
        return _findings_meta_rows(report)
    rows = [
        ("Case", _e(report.case_name)),
        ("Run", f'<span class="mono">{_e(report.run_id)}</span>'),
        *([("Thread", _e(report.thread_summary))] if report.thread_summary else []),
        ("Status", _e(report.status_label)),
        ("Run started", _e(human_time(report.started))),
        ("Run ended", _e(human_time(report.ended))),
        ("Report generated", _e(human_time(report.generated_at))),
        ("Software", _e(report.software)),
        ("Root model", _e(report.root_model or "—")),
        ("Sub model", _e(report.sub_model or "—")),
    ]
    if report.endpoint:
        rows.append(("Model endpoint", f'<span class="mono">{_e(report.endpoint)}</span>'))
    rows += [
        ("Cost", _e(report.cost_summary)),
        ("Tokens", _e(report.tokens_summary)),
        (
            "Citations",
            f"<b class='bad'>{_e(report.citation_summary)}</b>"
            if report.unverified_count
            else _e(report.citation_summary),
        ),
    ]
    if report.error:
        rows.append(("Error", f'<span class="bad">{_e(report.error)}</span>'))
    for warning in report.warnings:
        rows.append(("Warning", _e(warning)))
    return rows


def _answer(report: Report) -> str:
    pieces = []
    for text, citation, is_marker in report.answer_parts():
        if not is_marker:
            pieces.append(_e(text))
        elif citation is None:
            pieces.append(f'<span class="marker-bad" title="never registered: unverified">{_e(text)}</span>')
        else:
            cls = "marker" if citation.verified else "marker-bad"
            pieces.append(f'<a class="{cls}" href="#{citation.anchor}">{_e(text)}</a>')
    return "".join(pieces) or '<span class="muted">(no answer)</span>'


def _usage(report: Report) -> str:
    rows = [
        "<tr class='head'><th>Model</th><th>Role</th><th class='num'>Calls</th><th class='num'>Input tokens</th>"
        "<th class='num'>Output tokens</th><th class='num'>Cost</th></tr>"
    ]
    for use in report.usage:
        rows.append(
            f"<tr><td>{_e(use.model)}</td><td>{_e(use.role)}</td><td class='num'>{_n(use.calls)}</td>"
            f"<td class='num'>{_n(use.prompt_tokens)}</td><td class='num'>{_n(use.completion_tokens)}</td>"
            f"<td class='num'>{_e(money(use.cost_usd))}</td></tr>"
        )
    rows.append(
        f"<tr><th>Total</th><th></th><th class='num'>{_n(report.calls)}</th>"
        f"<th class='num'>{_n(report.prompt_tokens)}</th><th class='num'>{_n(report.completion_tokens)}</th>"
        f"<th class='num'>{_e(money(report.cost_usd))}</th></tr>"
    )
    cap = (
        f"The run had a hard spending cap of {money(report.cap_usd)}."
        if report.cap_usd is not None
        else "The run had no spending cap."
    )
    return f"<table class='grid'>{''.join(rows)}</table><p class='muted'>{_e(cap)}</p>"


def _note(c: ReportCitation) -> str:
    """A finding's note under its document in the summary table."""
    return f"<br/><span class='muted'>{_e(c.note)}</span>" if c.note else ""


def _citation_table(report: Report) -> str:
    rows = [
        "<tr class='head'><th>Marker</th><th>Document</th><th>Page</th><th>Characters</th><th>Verified</th></tr>"
    ]
    for c in report.citations:
        mark = "<span class='ok'>yes</span>" if c.verified else "<span class='badge-bad'>NO</span>"
        rows.append(
            f"<tr><td><a class='marker' href='#{c.anchor}'>{_e(c.marker)}</a></td><td>{_e(c.title)}{_note(c)}</td>"
            f"<td>{_e(c.pages_label)}</td><td class='mono'>{c.start:,}–{c.end:,}</td><td>{mark}</td></tr>"
        )
    for marker in report.unresolved_markers:
        rows.append(
            f"<tr><td class='bad'>{_e(marker)}</td><td colspan='3'>never registered with cite() or quote(): "
            "no source</td><td><span class='badge-bad'>NO</span></td></tr>"
        )
    return f"<table class='grid'>{''.join(rows)}</table>"


def _hash_cell(doc: DocumentInfo) -> str:
    cls = "ok" if doc.hash_check.status == "matches" else "bad"
    return f"<span class='{cls}'>{_e(doc.hash_check.summary)}</span> <span class='muted'>({_e(doc.hash_check.detail)})</span>"


def _text_hash(doc: DocumentInfo) -> str:
    value = doc.text_sha256 or "not recorded"
    return f"<span class='hash' data-text-sha256='{_e(value)}'>{_e(value)}</span>"


def _text_cell(doc: DocumentInfo) -> str:
    cls = "ok" if doc.text_check.ok else "bad"
    return (
        f"<span class='{cls}'>{_e(doc.text_check.summary)}</span> "
        f"<span class='muted'>({_e(doc.text_check.details)})</span>"
    )


def _citation_block(c: ReportCitation, image_src: ImageSource, max_image_width: float, unit: float) -> str:
    badge = (
        "<span class='badge-ok'>✓ Verified</span>"
        if c.verified
        else "<span class='badge-bad'>NOT VERIFIED</span>"
    )
    facts: list[tuple[str, str]] = []
    doc = c.doc
    facts.append(("Document", _e(c.title) + (f" <span class='muted'>(id {c.doc_id})</span>")))
    facts += [(_e(label), f"<b>{_e(text)}</b>" if label == "Note" else _e(text)) for label, text in c.extra]
    facts.append(("Path", f"<span class='mono'>{_e(c.path or (doc.location if doc else '—'))}</span>"))
    if doc is not None:
        facts.append(("Kind", _e(doc.kind_label)))
        if doc.parent:
            facts.append(("Attached to", _e(doc.parent)))
        facts.append(
            ("SHA-256", f"<span class='hash' data-sha256='{_e(doc.sha256)}'>{_e(doc.sha256)}</span>")
        )
        facts.append(("Hash check", _hash_cell(doc)))
        facts.append(("Text SHA-256", _text_hash(doc)))
        facts.append(("Text check", _text_cell(doc)))
        if doc.superseded:
            facts.append(
                ("Note", "<span class='bad'>This document was later replaced by a newer version.</span>")
            )
    if c.page:
        facts.append(("Page", _e(c.pages_label)))
    facts.append(("Characters", f"<span class='mono'>{c.start:,}–{c.end:,}</span> of the stored text"))
    if doc is not None and doc.email is not None:
        for label, value in doc.email.rows():
            facts.append((label, _e(value)))
    status_cls = "ok" if c.verified else "bad"
    facts.append(("Verification", f"<span class='{status_cls}'><b>{_e(c.verification)}</b></span>"))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    parts = [
        f"<div class='{'citation' if c.verified else 'citation-bad'}' id='{c.anchor}'>",
        f"<h3>{_e(c.marker)} {_e(c.title)} {badge}</h3>",
        f"<table class='facts'>{table}</table>",
    ]
    mark_attrs = f"data-doc-id='{c.doc_id}' data-start='{c.start}' data-end='{c.end}'"
    if c.source_text is not None:
        label = "Quote, in its context" if c.verified else "Source text at these offsets"
        parts.append(f"<p class='label'>{label}</p>")
        parts.append(
            f"<div class='quote'>{_e(c.context_before)}<mark {mark_attrs}>{_e(c.source_text)}</mark>"
            f"{_e(c.context_after)}</div>"
        )
    if not c.verified:
        parts.append("<p class='label'>Quote as the model registered it (does not match the source)</p>")
        parts.append(f"<div class='quote-claimed'>{_e(c.quote) or '(empty)'}</div>")
    for image in c.images:
        width = min(max_image_width, image.width_pt * unit)
        what = "the cited text highlighted" if image.highlighted else "whole page"
        parts.append(
            f"<div class='figure'><img src='{image_src(c, image)}' width='{width:.0f}' "
            f"alt='Page {image.page} of {_e(c.title)}, {what}'/>"
            f"<p class='caption'>Page {image.page} of {_e(c.title)}, rendered from the original file; "
            f"{what}.</p></div>"
        )
    if c.image_note:
        parts.append(f"<p class='note'>{_e(c.image_note)}</p>")
    parts.append("</div>")
    return "".join(parts)


def _step(entry: TrajectoryEntry) -> str:
    head = [f"<span class='step-kind'>{_e(entry.label)}</span>"]
    if entry.model:
        head.append(_e(entry.model))
    if entry.prompt_tokens or entry.completion_tokens:
        head.append(f"{_n(entry.prompt_tokens)} in / {_n(entry.completion_tokens)} out")
    if entry.cost_usd:
        head.append(_e(money(entry.cost_usd)))
    head.append(f"<span class='muted'>{_e(entry.status)} · node {_e(entry.node_id)}</span>")
    parts = [
        f"<div class='step' style='margin-left: {min(entry.depth, 6) * 14}px'>",
        f"<p class='step-head'>{' · '.join(head)}</p>",
    ]
    if entry.text:
        title = {"code": "Code", "llm_query": "Prompt", "rlm_query": "Question"}.get(
            entry.kind, "Model's notes"
        )
        parts.append(f"<p class='label'>{title}</p><pre>{_e(entry.text)}</pre>")
    if entry.output:
        title = "Output" if entry.kind == "code" else "Response"
        parts.append(f"<p class='label'>{title}</p><pre>{_e(entry.output)}</pre>")
    if entry.error:
        parts.append(f"<p class='label'>Error</p><pre class='error'>{_e(entry.error)}</pre>")
    if entry.spans:
        spans = "; ".join(
            f"{_e(s.title)} (id {s.doc_id}), characters {s.start:,}–{s.end:,}" for s in entry.spans
        )
        parts.append(f"<p class='spans'><b>Source text read:</b> {spans}</p>")
    parts.append("</div>")
    return "".join(parts)


def _document(doc: DocumentInfo) -> str:
    pages = f", {doc.pages} pages" if doc.pages else ""
    facts = [
        ("Kind", _e(doc.kind_label + pages)),
        ("Location", f"<span class='mono'>{_e(doc.location)}</span>"),
        ("SHA-256", f"<span class='hash' data-sha256='{_e(doc.sha256)}'>{_e(doc.sha256)}</span>"),
        ("Hash check", _hash_cell(doc)),
        ("Text SHA-256", _text_hash(doc)),
        ("Text check", _text_cell(doc)),
        ("Used", _e(doc.used_as)),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    return (
        f"<div class='doc'><p class='doc-title'><b>{_e(doc.title)}</b> <span class='muted'>(id {doc.doc_id})"
        f"</span></p><table class='facts'>{table}</table></div>"
    )


def report_blocks(
    report: Report,
    image_src: ImageSource = data_uri,
    *,
    max_image_width: float = CONTENT_WIDTH_PX,
    unit: float = 4 / 3,
) -> list[str]:
    """The report's body as HTML blocks in order, each one kept together on a PDF page when it fits.

    A section heading is part of the block after it, so a heading never ends a page alone. Images are shown
    at their size on the original page (`unit` HTML units per PDF point: CSS pixels in a browser, points in
    the PDF), never wider than `max_image_width`.
    """
    head = [
        "<p class='kicker'>RLM Desktop · Evidence report</p>",
        f"<h1>{_e(report.question) or '(no question)'}</h1>",
        "<table class='meta'>",
        *(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in _meta_rows(report)),
        "</table>",
    ]
    if report.unverified_count:
        n = report.unverified_count
        head.append(
            f"<div class='alert'>Warning: {n} {report.noun}{'s' if n != 1 else ''} in this report "
            f"{'are' if n != 1 else 'is'} NOT VERIFIED against the source documents. "
            "The claims they support are not backed by the quoted sources.</div>"
        )
    if report.integrity_alert:
        head.append(f"<div class='alert'>{_e(report.integrity_alert)}</div>")
    if report.status != "completed":
        head.append(f"<div class='alert'>This run did not complete: {_e(report.status_label)}.</div>")
    if report.is_findings:
        return _findings_blocks(report, head, image_src, max_image_width, unit)
    blocks = [
        "".join(head),
        f"<h2>Answer</h2><div class='answer'>{_answer(report)}</div>",
        f"<h2>Models, tokens and cost</h2>{_usage(report)}",
    ]
    if report.citations or report.unresolved_markers:
        blocks.append("<h2>Citations</h2>" + _citation_table(report))
        blocks += [_citation_block(c, image_src, max_image_width, unit) for c in report.citations]
    else:
        blocks.append("<h2>Citations</h2><p class='muted'>The answer cites no source.</p>")
    steps: list[str] = []
    pending = ""
    for entry in report.trajectory:
        if entry.text or entry.output or entry.error or entry.spans:
            steps.append(pending + _step(entry))
            pending = ""
        else:  # a heading-only step (a turn whose code is in the cells below) stays with the next step
            pending += _step(entry)
    if pending:
        steps.append(pending)
    steps = steps or ["<p class='muted'>No steps were recorded.</p>"]
    steps[0] = (
        "<h2>Appendix A. Trajectory</h2>"
        "<p class='muted'>Every step of the run in order: the root model's turns, the code it ran with its "
        "output, and each sub-call with its model, tokens, cost and the source text it read. Long texts are "
        "cut; the JSON export holds them in full.</p>" + steps[0]
    )
    blocks += steps
    return blocks + _closing_blocks(report)


def _findings_blocks(
    report: Report, head: list[str], image_src: ImageSource, max_image_width: float, unit: float
) -> list[str]:
    """A findings report: the findings (as citations, with their notes and sources), then the documents."""
    blocks = ["".join(head)]
    if report.citations:
        blocks.append(f"<h2>Findings</h2><p class='muted'>{_e(FINDINGS_INTRO)}</p>" + _citation_table(report))
        blocks += [_citation_block(c, image_src, max_image_width, unit) for c in report.citations]
    else:
        blocks.append("<h2>Findings</h2><p class='muted'>This case has no findings yet.</p>")
    return blocks + _closing_blocks(report)


def _closing_blocks(report: Report) -> list[str]:
    """The documents appendix and how to check the report."""
    blocks = []
    documents = [_document(doc) for doc in report.documents] or [
        "<p class='muted'>No document was cited or read.</p>"
    ]
    documents[0] = (
        f"<h2>{'Documents' if report.is_findings else 'Appendix B. Documents consulted'}</h2>"
        f"<p class='muted'>{_e(report.documents_intro)}</p>" + documents[0]
    )
    blocks += documents
    blocks.append(
        "<h2>How to check this report</h2>"
        "<ol class='checks'>" + "".join(f"<li>{_e(item)}</li>" for item in HOW_TO_CHECK) + "</ol>"
        f"<p class='footer'>Generated by RLM Desktop {_e(report.app_version)} on "
        f"{_e(human_time(report.generated_at))} from {_e(report.origin_label)}. "
        "No API key or credential is included in this report.</p>"
    )
    return blocks


def render_html(report: Report, image_src: ImageSource = data_uri) -> str:
    """The whole report as one self-contained HTML document (images inlined as data: URIs by default)."""
    body = "\n".join(f"<div class='block'>{block}</div>" for block in report_blocks(report, image_src))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'/>"
        f"<title>Evidence report: {_e(report.question[:120])}</title>"
        f"<style>{CSS}</style></head><body><div class='page'>\n{body}\n</div></body></html>\n"
    )
