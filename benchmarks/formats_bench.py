"""Throughput of the new formats against their bare libraries, on a generated mixed evidence dump.

    .venv/bin/python -m benchmarks.formats_bench [--scale 1.0] [--workdir DIR]

At scale 1: 200 XLSX payment ledgers (300 rows each), 100 PPTX decks, 500 scanned PNGs, 50 ZIPs each holding 4 emails and 4 PDFs, and
the shared sample PST (when it is beside the checkout) copied 20 times. Each kind is ingested into a case of its
own with the real pipeline (hashing, detection, extraction, children, SQLite and FTS writes, one transaction per
file; in this process by default, `--jobs 0` for the worker processes `rlm-desktop ingest` starts) and read by
its bare library in one process: calamine's `to_python` on every sheet, python-pptx's text frames, PyMuPDF's Tesseract OCR on each
page at the same resolution, zipfile plus the stdlib email parser, pypff walking every message body.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pymupdf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "ingest"))

TARGET = 0.60
SAMPLE_PST = ROOT.parent / "shared" / "corpus" / "mbox" / "ingestfile__testPST.pst"


PAYEES = ("Zurich Bank AG", "Geneva Trust SA", "Lugano Holdings", "Basel Freight GmbH", "Bern Notaries",
          "Lausanne Realty", "Zug Commodities AG", "Chur Consulting")


def make_payments_xlsx(path: Path, seed: int, rows: int = 300) -> Path:
    """A payments workbook as an accounts team keeps one: a dated ledger of a few hundred rows (text, dates,
    amounts, a formula total) and a short hidden notes sheet."""
    import datetime as dt

    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    money = book.add_format({"num_format": "#,##0.00"})
    ledger = book.add_worksheet("Payments")
    ledger.write_row(0, 0, ["Date", "Reference", "Payee", "Account", "Amount CHF", "Approved by", "Memo"])
    total = 0.0
    for r in range(1, rows + 1):
        amount = round(((seed * 7919 + r * 104729) % 5_000_000) / 100, 2)
        total += amount
        ledger.write_datetime(r, 0, dt.datetime(2023, 1, 1) + dt.timedelta(days=(seed + r) % 700), dates)
        ledger.write_row(r, 1, [f"PAY-{seed:04}-{r:05}", PAYEES[(seed + r) % len(PAYEES)],
                                f"CH93 0076 2011 6238 {r % 10000:04} {seed % 10}"])  # fmt: skip
        ledger.write_number(r, 4, amount, money)
        ledger.write_row(r, 5, ["M. Keller" if r % 3 else "A. Rossi", f"invoice {r} of batch {seed}"])
    ledger.write_formula(rows + 2, 4, f"=SUM(E2:E{rows + 1})", money, total)
    notes = book.add_worksheet("Notes")
    for r, line in enumerate(("Reconciled against bank statements", "Two payments to Zug pending review")):
        notes.write(r, 0, line)
    notes.hide()
    book.close()
    return path


def generate(root: Path, scale: float, only: set[str] | None = None) -> dict[str, list[Path]]:
    """Write the dump (only the kinds in `only`, when given); returns the files of each kind."""
    from builders import make_email, pdf_bytes
    from test_image import encoded, rendered
    from test_presentation import make_pptx
    from test_spreadsheet import make_xlsx

    kinds: dict[str, list[Path]] = {}
    for kind, count, make in (
        ("xlsx", 200, lambda p, i: make_payments_xlsx(p, i)),
        ("xlsx-toy", 200, lambda p, i: make_xlsx(p)),  # the test suite's 3-cell workbook: per-file cost alone
        ("pptx", 100, lambda p, i: make_pptx(p)),
    ):
        if only and kind not in only:
            continue
        folder = root / kind
        folder.mkdir(parents=True)
        kinds[kind] = []
        for i in range(max(1, int(count * scale))):
            path = folder / f"{kind}-{i:04}.{kind.split('-')[0]}"
            make(path, i)
            # every copy differs by a few bytes appended past the package end, so none is a duplicate
            path.write_bytes(path.read_bytes() + f"\n{i}".encode())
            kinds[kind].append(path)
    folder = root / "png"
    folder.mkdir(parents=True)
    kinds["png"] = []
    for i in range(max(1, int(500 * scale)) if not only or "png" in only else 0):
        path = folder / f"scan-{i:04}.png"
        path.write_bytes(encoded(rendered(f"Receipt {i} paid to Geneva Trust"), "PNG"))
        kinds["png"].append(path)
    folder = root / "zip"
    folder.mkdir(parents=True)
    kinds["zip"] = []
    for i in range(max(1, int(50 * scale)) if not only or "zip" in only else 0):
        path = folder / f"bundle-{i:03}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
            for j in range(4):
                mail = make_email(f"Transfer {i}-{j}", f"Please wire {i * 100 + j} CHF to Zurich.")
                bundle.writestr(f"mail/{j}.eml", mail.as_bytes())
                bundle.writestr(f"docs/{j}.pdf", pdf_bytes([f"Statement {i}-{j}: balance {i * j} CHF"]))
        kinds["zip"].append(path)
    if SAMPLE_PST.exists() and (not only or "pst" in only):
        folder = root / "pst"
        folder.mkdir()
        kinds["pst"] = []
        for i in range(max(1, int(20 * scale))):
            path = folder / f"store-{i:02}.pst"
            shutil.copyfile(SAMPLE_PST, path)
            with path.open("ab") as fh:  # distinct bytes, same messages
                fh.write(bytes([i]) * 16)
            kinds["pst"].append(path)
    return {kind: files for kind, files in kinds.items() if files}


def bare(kind: str, files: list[Path]) -> tuple[int, float]:
    """(units, seconds) of the bare library reading every file: sheets, slides, pages, members, messages."""
    started = time.perf_counter()
    units = 0
    for path in files:
        if kind.startswith("xlsx"):
            import python_calamine as calamine

            book = calamine.CalamineWorkbook.from_path(str(path))
            for name in book.sheet_names:
                book.get_sheet_by_name(name).to_python()
            units += 1
        elif kind == "pptx":
            import pptx

            deck = pptx.Presentation(str(path))
            for slide in deck.slides:
                for shape in slide.shapes:
                    if shape.has_text_frame:
                        _ = shape.text_frame.text
                units += 1
        elif kind == "png":
            from rlm_desktop.ingest.pdf import find_tessdata

            image = pymupdf.open(path)
            pdf = pymupdf.open("pdf", image.convert_to_pdf())
            from PIL import Image

            pixels = Image.open(path).width
            for page in pdf:  # the resolution the ingest renders at: the image's own, within 150-400 dpi
                dpi = int(min(max(72 * pixels / page.rect.width, 150), 400))
                page.get_textpage_ocr(language="eng", dpi=dpi, full=True, tessdata=find_tessdata()).extractWORDS()
                units += 1
        elif kind == "zip":
            with zipfile.ZipFile(path) as bundle:
                for info in bundle.infolist():
                    data = bundle.read(info)
                    if info.filename.endswith(".eml"):
                        email.message_from_bytes(data, policy=email.policy.default).get_body()
                    else:
                        with pymupdf.open(stream=data, filetype="pdf") as doc:
                            for page in doc:
                                page.get_text()
                    units += 1
        elif kind == "pst":
            import pypff

            store = pypff.file()
            store.open(str(path))
            stack = [store.get_root_folder()]
            while stack:
                folder = stack.pop()
                stack.extend(folder.get_sub_folder(i) for i in range(folder.number_of_sub_folders))
                for i in range(folder.number_of_sub_messages):
                    message = folder.get_sub_message(i)
                    _ = (message.transport_headers, message.plain_text_body, message.html_body)
                    units += 1
            store.close()
    return units, time.perf_counter() - started


def ingested(kind: str, files: list[Path], workdir: Path, jobs: int | None) -> tuple[int, float, list[dict[str, str]]]:
    from rlm_desktop.ingest.pipeline import ingest
    from rlm_desktop.store.case import Case

    case_path = workdir / f"{kind}.sqlite"
    case_path.unlink(missing_ok=True)
    with Case.open(case_path) as case:
        started = time.perf_counter()
        report = ingest(case, [files[0].parent], jobs=jobs)
        seconds = time.perf_counter() - started
        docs = case.documents()
    units = {
        "xlsx": len([d for d in docs if d.kind == "spreadsheet"]),
        "xlsx-toy": len([d for d in docs if d.kind == "spreadsheet"]),
        "pptx": sum(d.pages or 0 for d in docs if d.kind == "presentation"),
        "png": sum(d.pages or 0 for d in docs if d.kind == "image"),
        "zip": len([d for d in docs if d.parent_id is not None and d.kind in ("email", "pdf")]),
        "pst": len([d for d in docs if d.kind == "email"]),
    }[kind]
    return units, seconds, report.failed


UNITS = {"xlsx": "workbooks", "xlsx-toy": "workbooks", "pptx": "slides", "png": "OCR pages", "zip": "members", "pst": "messages"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="extractor processes for the pipeline (default 1: in this process, like the bare library; 0: as "
        "`rlm-desktop ingest` chooses, where starting the worker processes dominates a small dump)",
    )  # fmt: skip
    parser.add_argument("--kinds", default="", help="comma-separated: xlsx,xlsx-toy,pptx,png,zip,pst (default: all)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rlm-formats-bench-"))
    data = workdir / "dump"
    if data.exists():
        shutil.rmtree(data)
    started = time.perf_counter()
    kinds = generate(data, args.scale, set(filter(None, args.kinds.split(","))) or None)
    print(f"generated {sum(len(v) for v in kinds.values())} files in {time.perf_counter() - started:.1f} s "
          f"under {data}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    for kind, files in kinds.items():
        n_bare, s_bare = bare(kind, files)
        n_ing, s_ing, failed = ingested(kind, files, workdir, args.jobs or None)
        rate_bare, rate_ing = n_bare / s_bare, n_ing / s_ing
        rows.append({"kind": kind, "files": len(files), "ingest": f"{n_ing} {UNITS[kind]} in {s_ing:.1f} s = "
                     f"{rate_ing:.1f}/s", "bare": f"{n_bare} in {s_bare:.1f} s = {rate_bare:.1f}/s",
                     "ratio": rate_ing / rate_bare, "failed": len(failed)})  # fmt: skip
    print(f"{'kind':8} {'files':>5}  {'ingest (pipeline)':38} {'bare library':28} {'ratio':>6}  failed")
    for row in rows:
        mark = "ok" if row["ratio"] >= TARGET else f"below {TARGET:.0%}"
        print(f"{row['kind']:8} {row['files']:>5}  {row['ingest']:38} {row['bare']:28} {row['ratio']:>6.0%}  "
              f"{row['failed']}  {mark}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
