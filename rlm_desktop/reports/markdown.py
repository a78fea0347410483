"""The report as Markdown; page images are PNG files in a `<name>_files/` folder beside the .md file.

Separate files rather than data: URIs keep the Markdown readable as text and small enough for any
viewer; the links are relative, so the .md and its folder move together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote as url_quote

from rlm_desktop.reports.html import image_name
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

_SPECIAL = re.compile(r"[\\`*_{}\[\]<>#|~!]")
_LINE_START = re.compile(r"^([-+=]|\d+(?=\.))", re.M)  # a list item or heading underline at a line start
_IMAGE_FILE = re.compile(r"^citation-\d+-page-\d+\.png$")


def escape(text: str) -> str:
    """Text that Markdown shows literally (no emphasis, links or HTML); newlines stay line breaks."""
    text = _SPECIAL.sub(lambda m: "\\" + m.group(0), visible(text))
    text = _LINE_START.sub(
        lambda m: m.group(0) + "\\" if m.group(0)[0].isdigit() else "\\" + m.group(0), text
    )
    return text.replace("\n", "  \n")


def unescape(text: str) -> str:
    """The inverse of `escape` (tests use it to compare quotes with the source)."""
    return re.sub(r"\\(.)", r"\1", text.replace("  \n", "\n"))


def _cell(text: str) -> str:
    return escape(text).replace("  \n", "<br>")


def _code_cell(text: str) -> str:
    """A code span inside a table cell: GFM ends the cell at any unescaped pipe, even inside backticks."""
    text = visible(text).replace("\n", " ").replace("|", "\\|")
    return f"``{text}``" if "`" in text else f"`{text}`"


def _fence(text: str, lang: str = "") -> str:
    """A fenced block longer than any backtick run inside, so code holding ``` cannot end it early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{visible(text).rstrip()}\n{fence}"


def files_folder(out_path: Path) -> Path:
    return out_path.with_name(out_path.stem + "_files")


def write_images(report: Report, out_path: Path, write: Callable[[Path, bytes], None]) -> Path | None:
    """Write every citation image into the folder beside `out_path`; returns the folder, or None if no image.

    Images from an earlier export to the same name that this report no longer has are removed.
    """
    folder = files_folder(out_path)
    wanted = {image_name(c, image): image.png for c in report.citations for image in c.images}
    if not wanted and not folder.exists():
        return None
    folder.mkdir(exist_ok=True)
    for name, png in wanted.items():
        write(folder / name, png)
    for stale in folder.iterdir():
        if _IMAGE_FILE.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    return folder if wanted else None


def _meta(report: Report) -> list[str]:
    citations = f"**{report.citation_summary}**" if report.unverified_count else report.citation_summary
    if report.is_findings:
        rows = [
            ("Case", escape(report.case_name)),
            ("Report generated", human_time(report.generated_at)),
            ("Software", escape(report.software)),
            ("Findings", citations),
        ]
        return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    rows = [
        ("Case", escape(report.case_name)),
        ("Run", f"`{report.run_id}`"),
        *([("Thread", escape(report.thread_summary))] if report.thread_summary else []),
        ("Status", escape(report.status_label)),
        ("Run started", human_time(report.started)),
        ("Run ended", human_time(report.ended)),
        ("Report generated", human_time(report.generated_at)),
        ("Software", escape(report.software)),
        ("Root model", escape(report.root_model or "—")),
        ("Sub model", escape(report.sub_model or "—")),
    ]
    if report.endpoint:
        rows.append(("Model endpoint", f"`{report.endpoint}`"))
    rows += [
        ("Cost", escape(report.cost_summary)),
        ("Tokens", report.tokens_summary),
        ("Citations", citations),
    ]
    if report.error:
        rows.append(("Error", f"**{_cell(report.error)}**"))
    rows += [("Warning", _cell(w)) for w in report.warnings]
    return ["| | |", "|---|---|", *(f"| {k} | {v.replace(chr(10), ' ')} |" for k, v in rows)]


def _text_check(doc: DocumentInfo) -> str:
    """The stored text's check; a mismatch in bold and red (where the viewer renders inline HTML)."""
    check = _cell(f"{doc.text_check.summary} ({doc.text_check.details})")
    if doc.text_check.ok:
        return check
    return f'<span style="color:#b00020">**MISMATCH: {check}**</span>'


def _citation(c: ReportCitation, folder: str | None) -> list[str]:
    status = "Verified" if c.verified else "**NOT VERIFIED**"
    lines = [f'<a id="{c.anchor}"></a>', "", f"### {escape(c.marker)} {escape(c.title)} ({status})", ""]
    doc = c.doc
    facts = [
        ("Document", f"{_cell(c.title)} (id {c.doc_id})"),
        *((label, _cell(text)) for label, text in c.extra),  # a finding's note, source and date
        ("Path", _code_cell(c.path or (doc.location if doc else "—"))),
    ]
    if doc is not None:
        ok = doc.hash_check.status == "matches"
        check = _cell(f"{doc.hash_check.summary} ({doc.hash_check.detail})")
        facts += [
            ("Kind", doc.kind_label),
            *([("Attached to", _cell(doc.parent))] if doc.parent else []),
            ("SHA-256", f"`{doc.sha256}`"),
            ("Hash check", check if ok else f"**{check}**"),
            ("Text SHA-256", f"`{doc.text_sha256 or 'not recorded'}`"),
            ("Text check", _text_check(doc)),
        ]
        if doc.superseded:
            facts.append(("Note", "**This document was later replaced by a newer version.**"))
    if c.page:
        facts.append(("Page", c.pages_label))
    facts.append(("Characters", f"{c.start:,}–{c.end:,} of the stored text"))
    if doc is not None and doc.email is not None:
        for key, value in doc.email.rows():
            facts.append((key, _cell(value)))
    verification = escape(c.verification)
    facts.append(("Verification", verification if c.verified else f"**{verification}**"))
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts), ""]
    if c.source_text is not None:
        lines.append("*Quote, in its context:*" if c.verified else "*Source text at these offsets:*")
        lines.append("")
        body = f"{escape(c.context_before)}**{escape(c.source_text)}**{escape(c.context_after)}"
        lines += ["> " + line for line in body.split("\n")] + [""]
    if not c.verified:
        lines += ["*Quote as the model registered it (does not match the source):*", ""]
        lines += ["> " + line for line in escape(c.quote or "(empty)").split("\n")] + [""]
    for image in c.images:
        what = "the cited text highlighted" if image.highlighted else "whole page"
        alt = f"Page {image.page} of {c.title}, {what}"
        if folder:
            target = url_quote(f"{folder}/{image_name(c, image)}")
            lines += [f"![{escape(alt)}]({target})", ""]
        lines += [f"*Page {image.page} of {escape(c.title)}, rendered from the original file; {what}.*", ""]
    if c.image_note:
        lines += [f"**{escape(c.image_note)}**", ""]
    return lines


def _step(entry: TrajectoryEntry) -> list[str]:
    details = []
    if entry.model:
        details.append(entry.model)
    if entry.prompt_tokens or entry.completion_tokens:
        details.append(f"{entry.prompt_tokens:,} in / {entry.completion_tokens:,} out")
    if entry.cost_usd:
        details.append(money(entry.cost_usd))
    details.append(f"{entry.status} · node {entry.node_id}")
    level = "#" * min(4 + entry.depth, 6)
    lines = [f"{level} {escape(entry.label)}", "", escape(" · ".join(details)), ""]
    if entry.text:
        lines += [_fence(entry.text, "python" if entry.kind == "code" else "text"), ""]
    if entry.output:
        lines += ["Output:" if entry.kind == "code" else "Response:", "", _fence(entry.output, "text"), ""]
    if entry.error:
        lines += ["**Error:**", "", _fence(entry.error, "text"), ""]
    if entry.spans:
        spans = "; ".join(
            f"{escape(s.title)} (id {s.doc_id}), characters {s.start:,}–{s.end:,}" for s in entry.spans
        )
        lines += [f"**Source text read:** {spans}", ""]
    return lines


def _document(doc: DocumentInfo) -> list[str]:
    ok = doc.hash_check.status == "matches"
    check = _cell(f"{doc.hash_check.summary} ({doc.hash_check.detail})")
    pages = f", {doc.pages} pages" if doc.pages else ""
    return [
        f"#### {escape(doc.title)} (id {doc.doc_id})",
        "",
        "| | |",
        "|---|---|",
        f"| Kind | {doc.kind_label}{pages} |",
        f"| Location | {_code_cell(doc.location)} |",
        f"| SHA-256 | `{doc.sha256}` |",
        f"| Hash check | {check if ok else f'**{check}**'} |",
        f"| Text SHA-256 | `{doc.text_sha256 or 'not recorded'}` |",
        f"| Text check | {_text_check(doc)} |",
        f"| Used | {escape(doc.used_as)} |",
        "",
    ]


def render_markdown(report: Report, folder: str | None) -> str:
    """The report as Markdown; `folder` is the images folder's name relative to the .md file (None: none)."""
    lines = ["*RLM Desktop · Evidence report*", "", f"# {escape(report.question) or '(no question)'}", ""]
    lines += _meta(report) + [""]
    if report.unverified_count:
        n = report.unverified_count
        lines += [
            f"> **Warning: {n} {report.noun}{'s' if n != 1 else ''} in this report {'are' if n != 1 else 'is'} "
            "NOT VERIFIED against the source documents.** The claims they support are not backed by the "
            "quoted sources.",
            "",
        ]
    if report.integrity_alert:
        lines += [f'> <span style="color:#b00020">**{escape(report.integrity_alert)}**</span>', ""]
    if report.status != "completed":
        lines += [f"> **This run did not complete: {escape(report.status_label)}.**", ""]
    lines += _findings_body(report, folder) if report.is_findings else _run_body(report, folder)
    return "\n".join(lines + _closing(report))


def _citation_table(report: Report) -> list[str]:
    lines = ["| Marker | Document | Page | Characters | Verified |", "|---|---|---|---|---|"]
    for c in report.citations:
        lines.append(
            f"| [{escape(c.marker)}](#{c.anchor}) | {_cell(c.title)}{f'<br>*{_cell(c.note)}*' if c.note else ''} | "
            f"{c.pages_label} | "
            f"{c.start:,}–{c.end:,} | {'yes' if c.verified else '**NO**'} |"
        )
    for marker in report.unresolved_markers:
        lines.append(f"| {escape(marker)} | never registered with cite() or quote(): no source | — | — | **NO** |")
    return lines + [""]


def _findings_body(report: Report, folder: str | None) -> list[str]:
    lines = ["## Findings", ""]
    if not report.citations:
        return lines + ["This case has no findings yet.", ""]
    lines += [escape(FINDINGS_INTRO), ""] + _citation_table(report)
    for c in report.citations:
        lines += _citation(c, folder)
    return lines


def _run_body(report: Report, folder: str | None) -> list[str]:
    lines: list[str] = []
    answer = []
    for text, citation, is_marker in report.answer_parts():
        if not is_marker:
            answer.append(escape(text))
        elif citation is None:
            answer.append(f"**{escape(text)} (unverified)**")
        else:
            label = escape(text) if citation.verified else f"{escape(text)} NOT VERIFIED"
            answer.append(f"[{label}](#{citation.anchor})")
    lines += ["## Answer", ""]
    lines += ["> " + line for line in ("".join(answer) or "(no answer)").split("\n")] + [""]

    lines += [
        "## Models, tokens and cost",
        "",
        "| Model | Role | Calls | Input tokens | Output tokens | Cost |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for u in report.usage:
        lines.append(
            f"| {_cell(u.model)} | {u.role} | {u.calls:,} | {u.prompt_tokens:,} | {u.completion_tokens:,} | "
            f"{money(u.cost_usd)} |"
        )
    lines.append(
        f"| **Total** | | **{report.calls:,}** | **{report.prompt_tokens:,}** | "
        f"**{report.completion_tokens:,}** | **{money(report.cost_usd)}** |"
    )
    cap = (
        f"The run had a hard spending cap of {money(report.cap_usd)}."
        if report.cap_usd is not None
        else "The run had no spending cap."
    )
    lines += ["", escape(cap), "", "## Citations", ""]
    if report.citations or report.unresolved_markers:
        lines += _citation_table(report)
        for c in report.citations:
            lines += _citation(c, folder)
    else:
        lines += ["The answer cites no source.", ""]

    lines += [
        "## Appendix A. Trajectory",
        "",
        "Every step of the run in order: the root model's turns, the code it ran with its output, and each "
        "sub-call with its model, tokens, cost and the source text it read. Long texts are cut; the JSON export "
        "holds them in full.",
        "",
    ]
    for entry in report.trajectory:
        lines += _step(entry)
    return lines


def _closing(report: Report) -> list[str]:
    lines = [
        "## Documents" if report.is_findings else "## Appendix B. Documents consulted",
        "",
        escape(report.documents_intro),
        "",
    ]
    for doc in report.documents:
        lines += _document(doc)
    lines += ["## How to check this report", ""]
    lines += [f"{n}. {escape(item)}" for n, item in enumerate(HOW_TO_CHECK, 1)]
    lines += [
        "",
        "---",
        "",
        f"*Generated by RLM Desktop {report.app_version} on {human_time(report.generated_at)} from "
        f"{escape(report.origin_label)}. No API key or credential is included in this report.*",
        "",
    ]
    return lines
