"""The case's findings as one evidence report: the run report's model and renderers, with findings as citations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rlm_desktop import __version__
from rlm_desktop.findings import Finding, list_findings
from rlm_desktop.ingest.reextract import Reextractor
from rlm_desktop.redact import redact_record
from rlm_desktop.reports.model import (
    Report,
    _citation,
    _consulted,
    _Documents,
    export_check,
    human_time,
    utc_now,
)
from rlm_desktop.store.case import Case


def build_findings_report(
    case: Case, findings: list[Finding] | None = None, *, generated_at: str | None = None, images: bool = True
) -> Report:
    """The report of `findings` (default: all the case's), each checked again now exactly as a run's citations
    are: the quote against the stored text, that text against its ingest hash, the original re-extracted."""
    generated_at = generated_at or utc_now()
    findings = list_findings(case) if findings is None else findings
    with Reextractor() as reextractor:
        docs = _Documents(case, generated_at, reextractor)
        docs.images = images
        citations = []
        for number, finding in enumerate(findings, 1):
            raw = dict(finding.citation, marker=finding.marker, verified=finding.verified)
            if finding.problem:
                raw["problem"] = finding.problem
            citation = _citation(case, docs, number, raw)
            citation.extra = [
                ("Note", finding.row.note or "—"),
                ("Source", finding.source),
                ("Added", human_time(finding.row.created)),
            ]
            citations.append(citation)
        documents = _consulted(docs)
    return Report(
        case_name=Path(case.path).stem,
        run_id="",
        question=f"Findings of case “{Path(case.path).stem}”",
        status="completed",
        answer="",
        started=None,
        ended=None,
        generated_at=generated_at,
        app_version=__version__,
        run_app_version=None,
        root_model=None,
        sub_model=None,
        endpoint=None,
        cap_usd=None,
        cost_usd=0.0,
        usage=[],
        citations=citations,
        unresolved_markers=[],
        error=None,
        warnings=[],
        trajectory=[],
        documents=documents,
        kind="findings",
    )


def findings_json(case: Case, findings: list[Finding] | None = None) -> dict[str, Any]:
    """The JSON export: every finding as stored and as checked now, plus the report's export check."""
    findings = list_findings(case) if findings is None else findings
    report = build_findings_report(case, findings, images=False)
    by_marker = {c.marker: c for c in report.citations}
    items = []
    for finding in findings:
        item = finding.to_json()
        checked = by_marker[finding.marker]
        item["verified"], item["problem"] = checked.verified, checked.problem  # re-extraction included
        items.append(item)
    return redact_record(
        {
            "kind": "findings",
            "case": report.case_name,
            "generated_at": report.generated_at,
            "app_version": report.app_version,
            "findings": items,
            "export_check": export_check(report),
        }
    )


def render_findings(case: Case, fmt: str, out_path: Path) -> bytes:
    """The findings report's bytes in `fmt` (Markdown also writes its images folder beside `out_path`)."""
    from rlm_desktop.ingest.pdf import MUPDF_LOCK
    from rlm_desktop.reports import REPORT_FORMATS

    if fmt == "json":
        return (json.dumps(findings_json(case), ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    renderer = REPORT_FORMATS[fmt].render
    assert renderer is not None
    with MUPDF_LOCK:  # MuPDF is not thread-safe (see reports.render)
        return renderer(build_findings_report(case), out_path)


def export_findings(case_path: str | Path, fmt: str, out_path: str | Path) -> Path:
    """Write the case's findings report; the file appears complete or not at all.

    Raises FileNotFoundError for a missing case or folder, ValueError for a format not in FORMATS.
    """
    from rlm_desktop.reports import FORMATS, write_atomically

    case_path, out_path = Path(case_path), Path(out_path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not case_path.exists():
        raise FileNotFoundError(f"no case at {case_path}")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"the folder {out_path.parent} does not exist")
    with Case.open(case_path) as case:
        data = render_findings(case, fmt, out_path)
    write_atomically(out_path, data)
    return out_path


def export_findings_cli(args: Any, path: Path) -> int:
    """`rlm-desktop export --findings --format F -o FILE`: 0 written, 2 unknown case, 1 failed."""
    out = Path(args.output).expanduser()
    if not path.exists():
        print(f"rlm-desktop: error: no case {path.stem!r} at {path} (ingest files into it first)", file=sys.stderr)
        return 2
    try:
        export_findings(path, args.format, out)
        with Case.open(path) as case:
            count = case.conn.execute("SELECT COUNT(*) FROM findings").fetchone()[0]
    except Exception as exc:
        print(f"rlm-desktop: export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(
            {"path": str(out.resolve()), "format": args.format, "findings": count, "bytes": out.stat().st_size},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        print(out.resolve())
    return 0
