"""Evidence reports: a saved run exported as HTML, PDF, DOCX, Markdown or JSON that a reader can check."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_desktop.redact import redact_record

if TYPE_CHECKING:
    from rlm_desktop.reports.model import Report
    from rlm_desktop.store.case import Case


def __getattr__(name: str) -> Any:
    # The report model pulls in PyMuPDF (about a second): only code that builds a report pays for it,
    # not every command that merely lists the formats.
    if name in ("Report", "build_report", "export_check"):
        from rlm_desktop.reports import model

        return getattr(model, name)
    raise AttributeError(name)


@dataclass(frozen=True)
class ReportFormat:
    """One way to write a report. `render(report, out_path)` returns the file's bytes; None for JSON,
    which is the run record itself (see render())."""

    name: str  # the --format value
    suffix: str
    label: str  # a save dialog's filter entry
    render: Callable[[Report, Path], bytes] | None


def _html(report: Report, out_path: Path) -> bytes:
    from rlm_desktop.reports.html import render_html

    return render_html(report).encode("utf-8")


def _pdf(report: Report, out_path: Path) -> bytes:
    from rlm_desktop.reports.pdf_report import render_pdf

    return render_pdf(report)


def _docx(report: Report, out_path: Path) -> bytes:
    from rlm_desktop.reports.docx_report import render_docx

    return render_docx(report)


def _markdown(report: Report, out_path: Path) -> bytes:
    from rlm_desktop.reports.markdown import render_markdown, write_images

    folder = write_images(report, out_path, write_atomically)
    return render_markdown(report, folder.name if folder else None).encode("utf-8")


# The one table of report formats: the CLI's --format choices and the window's save dialog read it.
# Adding a format is a renderer module plus one line here.
REPORT_FORMATS: dict[str, ReportFormat] = {
    f.name: f
    for f in (
        ReportFormat("html", ".html", "HTML report, one file (*.html)", _html),
        ReportFormat("pdf", ".pdf", "PDF report (*.pdf)", _pdf),
        ReportFormat("docx", ".docx", "Word document (*.docx)", _docx),
        ReportFormat("md", ".md", "Markdown with an images folder (*.md)", _markdown),
        ReportFormat("json", ".json", "Run record, JSON (*.json)", None),
    )
}
FORMATS = tuple(REPORT_FORMATS)
SUFFIXES = {f.name: f.suffix for f in REPORT_FORMATS.values()}
FORMAT_LABELS = {f.name: f.label for f in REPORT_FORMATS.values()}  # for a save dialog's filter list

__all__ = [
    "FORMAT_LABELS",
    "FORMATS",
    "REPORT_FORMATS",
    "ReportFormat",
    "SUFFIXES",
    "Report",
    "RunNotFound",
    "build_report",
    "export_cli",
    "export_run",
]


class RunNotFound(KeyError):
    """No run (or more than one) matches the given id in the case."""


def _file_mode() -> int:
    """The mode a newly created file would get (0o666 less the umask), read without changing the umask.

    os.umask() can only be read by setting it, which races with other threads creating files.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder: readers never see half a file."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(temp, _file_mode())  # mkstemp makes the file private; a report is an ordinary file
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def _load(case: Case, run_id: str) -> dict[str, Any]:
    from rlm_desktop.engine.runs import load_run

    try:
        return load_run(case, run_id)
    except KeyError as exc:
        raise RunNotFound(str(exc).strip('"')) from None


def render(case: Case, record: dict[str, Any], fmt: str, out_path: Path) -> bytes:
    """The report's bytes in `fmt`. Markdown also writes its images into `<name>_files/` beside `out_path`."""
    from rlm_desktop.reports.model import build_report, export_check

    if fmt == "json":
        # the run record as `show --json` prints it, plus `export_check`: the quotes, text hashes, file hashes
        # and re-extractions checked now, as every other format shows them
        checked = dict(record)
        checked["export_check"] = export_check(build_report(case, record, images=False))
        return (json.dumps(redact_record(checked), ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    from rlm_desktop.ingest.pdf import MUPDF_LOCK

    renderer = REPORT_FORMATS[fmt].render
    assert renderer is not None
    # MuPDF is not thread-safe: an export from the window's worker thread must not render while the
    # source viewer (or an in-process ingest) does
    with MUPDF_LOCK:
        report = build_report(case, record)
        return renderer(report, out_path)


def export_run(case_path: str | Path, run_id: str, fmt: str, out_path: str | Path) -> Path:
    """Export run `run_id` of the case at `case_path` as `fmt` to `out_path`; returns the written path.

    Raises RunNotFound for an unknown run, FileNotFoundError for a missing case, ValueError for a format
    not in FORMATS. The file appears complete or not at all.
    """
    return _export(Path(case_path), run_id, fmt, Path(out_path))[0]


def _export(case_path: Path, run_id: str, fmt: str, out_path: Path) -> tuple[Path, dict[str, Any]]:
    """export_run, also returning the run record."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not case_path.exists():
        raise FileNotFoundError(f"no case at {case_path}")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"the folder {out_path.parent} does not exist")
    from rlm_desktop.store.case import Case

    with Case.open(case_path) as case:
        record = _load(case, run_id)
        data = render(case, record, fmt, out_path)
    write_atomically(out_path, data)
    return out_path, record


def export_cli(args: argparse.Namespace, path: Path) -> int:
    """`rlm-desktop export RUN_ID --format F -o FILE`: 0 written, 2 unknown case or run, 1 failed."""
    out = Path(args.output).expanduser()
    if not path.exists():
        print(
            f"rlm-desktop: error: no case {path.stem!r} at {path} (ingest files into it first)",
            file=sys.stderr,
        )
        return 2
    try:
        _, record = _export(path, args.run_id, args.format, out)
    except RunNotFound as exc:
        print(f"rlm-desktop: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"rlm-desktop: export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        citations = len(record.get("citations") or [])
        json.dump(
            {
                "path": str(out.resolve()),
                "format": args.format,
                "citations": citations,
                "bytes": out.stat().st_size,
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        print(out.resolve())
    return 0
