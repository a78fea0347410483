"""The report as a Word document (python-docx): headings, a citation table, the page images, the appendix."""

from __future__ import annotations

import io

import docx
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_COLOR_INDEX, WD_PARAGRAPH_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor

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

NAVY = RGBColor(0x14, 0x30, 0x4F)
GREY = RGBColor(0x5B, 0x65, 0x73)
GREEN = RGBColor(0x1E, 0x7A, 0x3C)
RED = RGBColor(0xB3, 0x26, 0x1E)
MONO = "Consolas"
TEXT_WIDTH_CM = 17.0  # A4 less two 2 cm margins


# Elements that must follow w:shd in a paragraph's or cell's properties: Word rejects them out of order.
# fmt: off
_AFTER_SHD_IN_PPR = (
    "w:tabs", "w:suppressAutoHyphens", "w:kinsoku", "w:wordWrap", "w:overflowPunct", "w:topLinePunct",
    "w:autoSpaceDE", "w:autoSpaceDN", "w:bidi", "w:adjustRightInd", "w:snapToGrid", "w:spacing", "w:ind",
    "w:contextualSpacing", "w:mirrorIndents", "w:suppressOverlap", "w:jc", "w:textDirection",
    "w:textAlignment", "w:textboxTightWrap", "w:outlineLvl", "w:divId", "w:cnfStyle", "w:rPr", "w:sectPr",
    "w:pPrChange",
)
_AFTER_SHD_IN_TCPR = (
    "w:noWrap", "w:tcMar", "w:textDirection", "w:tcFitText", "w:vAlign", "w:hideMark", "w:headers",
    "w:cellIns", "w:cellDel", "w:cellMerge", "w:tcPrChange",
)
# fmt: on


def _shade(element, fill: str) -> None:
    """Background colour for a table cell (a w:tc) or a paragraph (a w:p)."""
    if element.tag == qn("w:tc"):
        props, successors = element.get_or_add_tcPr(), _AFTER_SHD_IN_TCPR
    else:
        props, successors = element.get_or_add_pPr(), _AFTER_SHD_IN_PPR
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    props.insert_element_before(shd, *successors)


def _run(paragraph, text: str, *, bold=False, italic=False, color=None, size=None, font=None, highlight=None):
    run = paragraph.add_run(visible(text))  # XML forbids control characters (a PDF's page feed)
    run.bold = bold or None
    run.italic = italic or None
    if color is not None:
        run.font.color.rgb = color
    if size is not None:
        run.font.size = Pt(size)
    if font is not None:
        run.font.name = font
        run.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), font)
    if highlight is not None:
        run.font.highlight_color = highlight
    return run


def _para(document, text: str = "", *, style=None, size=None, color=None, bold=False, space_after=4):
    paragraph = document.add_paragraph(style=style)
    if text:
        _run(paragraph, text, size=size, color=color, bold=bold)
    paragraph.paragraph_format.space_after = Pt(space_after)
    return paragraph


def _cell_text(cell, text: str, *, bold=False, color=None, font=None, size=9):
    paragraph = cell.paragraphs[0]
    paragraph.paragraph_format.space_after = Pt(0)
    _run(paragraph, text, bold=bold, color=color, font=font, size=size)
    return paragraph


def _grid(document, header: list[str], rows: list[list[str]], widths_cm: list[float]):
    table = document.add_table(rows=1, cols=len(header))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.LEFT
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        _cell_text(cell, text, bold=True, color=NAVY)
        _shade(cell._tc, "EEF1F5")
    for values in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, values, strict=True):
            _cell_text(cell, text)
    for row in table.rows:
        for cell, width in zip(row.cells, widths_cm, strict=True):
            cell.width = Cm(width)
    document.add_paragraph().paragraph_format.space_after = Pt(2)
    return table


def _facts(document, facts: list[tuple[str, str, dict]]):
    """A two-column key/value table; each value may carry run options (colour, font)."""
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for key, value, options in facts:
        cells = table.add_row().cells
        _cell_text(cells[0], key, color=GREY)
        _shade(cells[0]._tc, "F4F6F9")
        _cell_text(cells[1], value, **options)
    for row in table.rows:
        row.cells[0].width = Cm(3.4)
        row.cells[1].width = Cm(TEXT_WIDTH_CM - 3.4)
    return table


def _code(document, text: str, *, indent_cm: float, error: bool = False) -> None:
    paragraph = document.add_paragraph()
    paragraph.paragraph_format.left_indent = Cm(indent_cm)
    paragraph.paragraph_format.space_after = Pt(4)
    _shade(paragraph._p, "FDECEA" if error else "F5F6F8")
    lines = text.split("\n")
    for index, line in enumerate(lines):
        run = _run(paragraph, line, font=MONO, size=7.5)
        if index < len(lines) - 1:
            run.add_break()


def _meta(report: Report) -> list[tuple[str, str, dict]]:
    if report.is_findings:
        return [
            ("Case", report.case_name, {}),
            ("Report generated", human_time(report.generated_at), {}),
            ("Software", report.software, {}),
            ("Findings", report.citation_summary, {"color": RED, "bold": True} if report.unverified_count else {}),
        ]
    rows = [
        ("Case", report.case_name, {}),
        ("Run", report.run_id, {"font": MONO}),
        *([("Thread", report.thread_summary, {})] if report.thread_summary else []),
        ("Status", report.status_label, {}),
        ("Run started", human_time(report.started), {}),
        ("Run ended", human_time(report.ended), {}),
        ("Report generated", human_time(report.generated_at), {}),
        ("Software", report.software, {}),
        ("Root model", report.root_model or "—", {}),
        ("Sub model", report.sub_model or "—", {}),
    ]
    if report.endpoint:
        rows.append(("Model endpoint", report.endpoint, {"font": MONO}))
    rows += [
        ("Cost", report.cost_summary, {}),
        ("Tokens", report.tokens_summary, {}),
        (
            "Citations",
            report.citation_summary,
            {"color": RED, "bold": True} if report.unverified_count else {},
        ),
    ]
    if report.error:
        rows.append(("Error", report.error, {"color": RED}))
    rows += [("Warning", warning, {}) for warning in report.warnings]
    return rows


def _alert(document, text: str) -> None:
    table = document.add_table(rows=1, cols=1)
    table.style = "Table Grid"
    cell = table.rows[0].cells[0]
    _shade(cell._tc, "FDECEA")
    _cell_text(cell, text, bold=True, color=RED, size=10)
    document.add_paragraph().paragraph_format.space_after = Pt(0)


def _hash_text(doc: DocumentInfo) -> tuple[str, dict]:
    ok = doc.hash_check.status == "matches"
    return f"{doc.hash_check.summary} ({doc.hash_check.detail})", {"color": GREEN if ok else RED}


def _text_check(doc: DocumentInfo) -> tuple[str, dict]:
    check = doc.text_check
    return f"{check.summary} ({check.details})", {"color": GREEN if check.ok else RED}


def _citation(document, c: ReportCitation) -> None:
    heading = document.add_heading(level=2)
    _run(heading, f"{c.marker} {c.title}  ")
    _run(heading, "Verified" if c.verified else "NOT VERIFIED", color=GREEN if c.verified else RED, size=10)
    doc = c.doc
    facts: list[tuple[str, str, dict]] = [
        ("Document", f"{c.title} (id {c.doc_id})", {}),
        *((label, text, {"bold": label == "Note"}) for label, text in c.extra),  # a finding's note, source, date
        ("Path", c.path or (doc.location if doc else "—"), {"font": MONO, "size": 8}),
    ]
    if doc is not None:
        facts += [
            ("Kind", doc.kind_label, {}),
            *([("Attached to", doc.parent, {})] if doc.parent else []),
            ("SHA-256", doc.sha256, {"font": MONO, "size": 8}),
            ("Hash check", *_hash_text(doc)),
            ("Text SHA-256", doc.text_sha256 or "not recorded", {"font": MONO, "size": 8}),
            ("Text check", *_text_check(doc)),
        ]
        if doc.superseded:
            facts.append(("Note", "This document was later replaced by a newer version.", {"color": RED}))
    if c.page:
        facts.append(("Page", c.pages_label, {}))
    facts.append(("Characters", f"{c.start:,}–{c.end:,} of the stored text", {}))
    if doc is not None and doc.email is not None:
        for key, value in doc.email.rows():
            facts.append((key, value, {}))
    facts.append(("Verification", c.verification, {"color": GREEN if c.verified else RED, "bold": True}))
    _facts(document, facts)
    if c.source_text is not None:
        _para(
            document,
            "Quote, in its context" if c.verified else "Source text at these offsets",
            size=8,
            color=GREY,
            space_after=1,
        ).paragraph_format.space_before = Pt(6)
        quote = document.add_paragraph()
        quote.paragraph_format.left_indent = Cm(0.5)
        _shade(quote._p, "FBF8EF")
        _run(quote, c.context_before, font="Georgia", size=10)
        _run(quote, c.source_text, font="Georgia", size=10, bold=True, highlight=WD_COLOR_INDEX.YELLOW)
        _run(quote, c.context_after, font="Georgia", size=10)
    if not c.verified:
        _para(
            document,
            "Quote as the model registered it (does not match the source)",
            size=8,
            color=RED,
            space_after=1,
        )
        claimed = document.add_paragraph()
        claimed.paragraph_format.left_indent = Cm(0.5)
        _shade(claimed._p, "FDECEA")
        _run(claimed, c.quote or "(empty)", font="Georgia", size=10)
    for image in c.images:
        width_cm = min(TEXT_WIDTH_CM, image.width_pt / 72 * 2.54)
        document.add_picture(io.BytesIO(image.png), width=Cm(width_cm))
        what = "the cited text highlighted" if image.highlighted else "whole page"
        _para(
            document,
            f"Page {image.page} of {c.title}, rendered from the original file; {what}.",
            size=8,
            color=GREY,
        )
    if c.image_note:
        _para(document, c.image_note, size=9, color=RED)


def _step(document, entry: TrajectoryEntry) -> None:
    indent = min(entry.depth, 6) * 0.5
    head = document.add_paragraph()
    head.paragraph_format.left_indent = Cm(indent)
    head.paragraph_format.space_before = Pt(6)
    head.paragraph_format.space_after = Pt(2)
    head.paragraph_format.keep_with_next = True
    _run(head, entry.label, bold=True, color=NAVY, size=9.5)
    details = []
    if entry.model:
        details.append(entry.model)
    if entry.prompt_tokens or entry.completion_tokens:
        details.append(f"{entry.prompt_tokens:,} in / {entry.completion_tokens:,} out")
    if entry.cost_usd:
        details.append(money(entry.cost_usd))
    details.append(f"{entry.status} · node {entry.node_id}")
    _run(head, "  " + " · ".join(details), color=GREY, size=8.5)
    if entry.text:
        _code(document, entry.text, indent_cm=indent)
    if entry.output:
        label = "Output" if entry.kind == "code" else "Response"
        _para(document, label, size=8, color=GREY, space_after=1).paragraph_format.left_indent = Cm(indent)
        _code(document, entry.output, indent_cm=indent)
    if entry.error:
        _code(document, entry.error, indent_cm=indent, error=True)
    if entry.spans:
        spans = "; ".join(f"{s.title} (id {s.doc_id}), characters {s.start:,}–{s.end:,}" for s in entry.spans)
        paragraph = document.add_paragraph()
        paragraph.paragraph_format.left_indent = Cm(indent)
        _run(paragraph, "Source text read: ", bold=True, size=8.5)
        _run(paragraph, spans, size=8.5)


def _document(document, doc: DocumentInfo) -> None:
    title = document.add_paragraph()
    title.paragraph_format.space_before = Pt(8)
    title.paragraph_format.space_after = Pt(2)
    title.paragraph_format.keep_with_next = True
    _run(title, doc.title, bold=True)
    _run(title, f"  (id {doc.doc_id})", color=GREY, size=9)
    pages = f", {doc.pages} pages" if doc.pages else ""
    _facts(
        document,
        [
            ("Kind", doc.kind_label + pages, {}),
            ("Location", doc.location, {"font": MONO, "size": 8}),
            ("SHA-256", doc.sha256, {"font": MONO, "size": 8}),
            ("Hash check", *_hash_text(doc)),
            ("Text SHA-256", doc.text_sha256 or "not recorded", {"font": MONO, "size": 8}),
            ("Text check", *_text_check(doc)),
            ("Used", doc.used_as, {}),
        ],
    )


def _page_field(paragraph) -> None:
    """A PAGE field: Word fills in the page number."""
    run = paragraph.add_run()
    for tag, attrs in (
        ("w:fldChar", {"w:fldCharType": "begin"}),
        ("w:instrText", {}),
        ("w:fldChar", {"w:fldCharType": "end"}),
    ):
        element = OxmlElement(tag)
        for key, value in attrs.items():
            element.set(qn(key), value)
        if tag == "w:instrText":
            element.set(qn("xml:space"), "preserve")
            element.text = " PAGE "
        run._r.append(element)
    run.font.size = Pt(7.5)
    run.font.color.rgb = GREY


def _setup(document, report: Report) -> None:
    section = document.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    for side in ("left_margin", "right_margin"):
        setattr(section, side, Cm(2.0))
    section.top_margin, section.bottom_margin = Cm(1.8), Cm(1.8)
    normal = document.styles["Normal"]
    normal.font.name = "Calibri"
    normal.font.size = Pt(10)
    for name, size in (("Title", 18), ("Heading 1", 14), ("Heading 2", 11.5)):
        style = document.styles[name]
        style.font.size = Pt(size)
        style.font.color.rgb = NAVY
    footer = section.footer.paragraphs[0]
    footer.alignment = WD_PARAGRAPH_ALIGNMENT.LEFT
    _run(footer, f"{report.footer_label} · page ", size=7.5, color=GREY)
    _page_field(footer)
    props = document.core_properties
    props.title = f"Evidence report: {report.question[:200]}"
    props.subject = report.subject_label
    props.author = f"RLM Desktop {report.app_version}"
    props.comments = "Generated by RLM Desktop; no API key or credential is included."


def render_docx(report: Report) -> bytes:
    document = docx.Document()
    _setup(document, report)
    _para(document, "RLM DESKTOP · EVIDENCE REPORT", size=8, color=GREY, space_after=2)
    document.add_heading(report.question or "(no question)", level=0)
    _facts(document, _meta(report))
    document.add_paragraph().paragraph_format.space_after = Pt(0)
    if report.unverified_count:
        n = report.unverified_count
        _alert(
            document,
            f"Warning: {n} {report.noun}{'s' if n != 1 else ''} in this report {'are' if n != 1 else 'is'} NOT "
            "VERIFIED against the source documents. The claims they support are not backed by the quoted sources.",
        )
    if report.integrity_alert:
        _alert(document, report.integrity_alert)
    if report.status != "completed":
        _alert(document, f"This run did not complete: {report.status_label}.")
    if report.is_findings:
        _findings_body(document, report)
    else:
        _run_body(document, report)
    _closing(document, report)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _citation_grid(document, report: Report) -> None:
    rows = [
        [c.marker, c.title + (f"\n{c.note}" if c.note else ""), c.pages_label, f"{c.start:,}–{c.end:,}",
         "yes" if c.verified else "NO"]
        for c in report.citations
    ]
    rows += [
        [m, "never registered with cite() or quote(): no source", "—", "—", "NO"] for m in report.unresolved_markers
    ]
    _grid(document, ["Marker", "Document", "Page", "Characters", "Verified"], rows, [2.0, 7.6, 1.6, 3.4, 2.4])


def _findings_body(document, report: Report) -> None:
    document.add_heading("Findings", level=1)
    if not report.citations:
        _para(document, "This case has no findings yet.", color=GREY)
        return
    _para(document, FINDINGS_INTRO, size=9, color=GREY)
    _citation_grid(document, report)
    for c in report.citations:
        _citation(document, c)


def _run_body(document, report: Report) -> None:
    document.add_heading("Answer", level=1)
    answer = document.add_paragraph()
    _shade(answer._p, "F4F7FB")
    for text, citation, is_marker in report.answer_parts():
        if is_marker:
            ok = citation is not None and citation.verified
            _run(answer, text, bold=True, color=RGBColor(0x1B, 0x5F, 0xA8) if ok else RED, size=9)
        else:
            _run(answer, text, size=11)
    if not report.answer:
        _run(answer, "(no answer)", italic=True, color=GREY)

    document.add_heading("Models, tokens and cost", level=1)
    rows = [
        [
            u.model,
            u.role,
            f"{u.calls:,}",
            f"{u.prompt_tokens:,}",
            f"{u.completion_tokens:,}",
            money(u.cost_usd),
        ]
        for u in report.usage
    ]
    rows.append(
        [
            "Total",
            "",
            f"{report.calls:,}",
            f"{report.prompt_tokens:,}",
            f"{report.completion_tokens:,}",
            money(report.cost_usd),
        ]
    )
    _grid(
        document,
        ["Model", "Role", "Calls", "Input tokens", "Output tokens", "Cost"],
        rows,
        [4.2, 2.0, 1.8, 3.0, 3.0, 3.0],
    )
    cap = (
        f"The run had a hard spending cap of {money(report.cap_usd)}."
        if report.cap_usd is not None
        else "The run had no spending cap."
    )
    _para(document, cap, size=9, color=GREY)

    document.add_heading("Citations", level=1)
    if report.citations or report.unresolved_markers:
        _citation_grid(document, report)
        for c in report.citations:
            _citation(document, c)
    else:
        _para(document, "The answer cites no source.", color=GREY)

    document.add_page_break()
    document.add_heading("Appendix A. Trajectory", level=1)
    _para(
        document,
        "Every step of the run in order: the root model's turns, the code it ran with its output, "
        "and each sub-call with its model, tokens, cost and the source text it read. Long texts are cut; the "
        "JSON export holds them in full.",
        size=9,
        color=GREY,
    )
    for entry in report.trajectory:
        _step(document, entry)
    if not report.trajectory:
        _para(document, "No steps were recorded.", color=GREY)


def _closing(document, report: Report) -> None:
    document.add_heading("Documents" if report.is_findings else "Appendix B. Documents consulted", level=1)
    _para(document, report.documents_intro, size=9, color=GREY)
    for doc in report.documents:
        _document(document, doc)
    if not report.documents:
        _para(document, "No document was cited or read.", color=GREY)

    document.add_heading("How to check this report", level=1)
    for item in HOW_TO_CHECK:
        _para(document, item, style="List Number", size=9.5)
    _para(
        document,
        f"Generated by RLM Desktop {report.app_version} on {human_time(report.generated_at)} from "
        f"{report.origin_label}. No API key or credential is included in this report.",
        size=8,
        color=GREY,
    )
