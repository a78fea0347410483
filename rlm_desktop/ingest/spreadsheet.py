"""Spreadsheets (.xlsx .xlsm .xls .ods via python-calamine; .csv .tsv via the csv module): one document per
workbook, laid out sheet by sheet and row by row, with a map that turns any span into `Sheet!A1:C3`.

Layout: each sheet is a heading line `Sheet: NAME` (`Sheet: NAME (hidden)`), then one line per row from the
sheet's first used row to its last, empty rows included (so a line's number is its row), cells separated by a
tab from the first used column on (tabs and line breaks inside a cell become spaces, so a cell never spans two
columns or rows). `meta["sheets"]` holds, per sheet, its name, whether it is hidden, the character range of
its rows and its first row and column: that is all `cell_range` needs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from typing import Any

from rlm_desktop.ingest.extracted import Extracted, ExtractionError
from rlm_desktop.ingest.limits import check_zip
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import decode_text_bytes

MAX_CELLS = 5_000_000  # a workbook past this is read up to it, with a warning (a bounded text, bounded memory)
_CELL_CLEAN = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def extract_spreadsheet(source: Source) -> Extracted:
    """A workbook (or CSV/TSV file) as one document of kind "spreadsheet"."""
    if source.suffix in (".csv", ".tsv"):
        sheets = [_csv_sheet(source)]
        fmt = source.suffix[1:]
    else:
        sheets, fmt = _workbook_sheets(source)
    extracted = _layout(source, sheets, fmt)
    extracted.warnings = [f"sheet {name!r}: {rows[0][0][1:-1]}" for name, _, _, _, rows in sheets
                          if rows and rows[0] and str(rows[0][0]).startswith("(sheet not read")]  # fmt: skip
    return extracted


def _workbook_sheets(source: Source) -> tuple[list[tuple[str, bool, int, int, list[list[Any]]]], str]:
    import python_calamine as calamine

    if source.head(4).startswith(b"PK"):  # .xlsx/.ods: refused before inflating, like a DOCX, if it would balloon
        try:
            with zipfile.ZipFile(io.BytesIO(source.data) if source.data is not None else source.path) as package:
                check_zip(package, "workbook package")
        except zipfile.BadZipFile as exc:
            raise ExtractionError("damaged workbook: the file is not a valid ZIP package") from exc
    try:
        if source.data is not None:
            book = calamine.CalamineWorkbook.from_filelike(io.BytesIO(source.data))
        else:
            book = calamine.CalamineWorkbook.from_path(str(source.path))
    except calamine.PasswordError as exc:
        raise ExtractionError("the workbook is encrypted (password-protected); not read") from exc
    except Exception as exc:  # noqa: BLE001 - calamine's errors name the damage; pass them on
        text = str(exc)
        if "password" in text.lower() or "encrypt" in text.lower():
            raise ExtractionError("the workbook is encrypted (password-protected); not read") from exc
        raise ExtractionError(f"damaged or unreadable workbook: {type(exc).__name__}: {text}") from exc
    sheets = []
    cells = 0
    for info in book.sheets_metadata:
        hidden = info.visible != calamine.SheetVisibleEnum.Visible
        try:
            sheet = book.get_sheet_by_name(info.name)
            rows = sheet.to_python()  # from the first used cell; formulas as their cached values
            first_row, first_col = sheet.start or (0, 0)
        except Exception as exc:  # noqa: BLE001 - a chart sheet or a damaged sheet: say so, keep the rest
            sheets.append((info.name, hidden, 0, 0, [[f"(sheet not read: {exc})"]]))
            continue
        cells += sum(len(row) for row in rows)
        if cells > MAX_CELLS:
            raise ExtractionError(f"the workbook has more than {MAX_CELLS:,} cells; not read (split it)")
        sheets.append((info.name, hidden, first_row, first_col, rows))
    fmt = source.suffix.lstrip(".") or "workbook"
    return sheets, fmt


def _csv_sheet(source: Source) -> tuple[str, bool, int, int, list[list[Any]]]:
    text, _warnings = decode_text_bytes(source.read_bytes(), source.name)
    delimiter = "\t" if source.suffix == ".tsv" else ","
    if delimiter == ",":
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            pass
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    name = source.name.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "Sheet1"
    return name, False, 0, 0, rows


def _fast_cell_text(value: Any, str: type = str, float: type = float, date: type = dt.date) -> str:
    """`_cell_text` with the common types first, without a call for them: a ledger has a million cells, and
    this loop was half of a workbook's ingest (the names are bound as defaults for speed)."""
    kind = type(value)
    if kind is str:
        if "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_CELL_CLEAN)
        return value
    if kind is float:
        return str(int(value)) if value.is_integer() and -1e15 < value < 1e15 else repr(value)
    if kind is date:
        return value.isoformat()
    return _cell_text(value)


def _cell_text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if (value.hour, value.minute, value.second) != (0, 0, 0) else value.date().isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).translate(_CELL_CLEAN)


def _layout(source: Source, sheets: list[tuple[str, bool, int, int, list[list[Any]]]], fmt: str) -> Extracted:
    parts: list[str] = []
    offset = 0
    described = []
    for name, hidden, first_row, first_col, rows in sheets:
        heading = f"Sheet: {name}{' (hidden)' if hidden else ''}\n"
        parts.append(heading)
        offset += len(heading)
        start = offset
        cell = _fast_cell_text
        for row in rows:
            # no cell's text holds a tab (they become spaces), so stripping tabs drops exactly the empty cells
            # at the end of the row
            line = "\t".join(map(cell, row)).rstrip("\t") + "\n"
            parts.append(line)
            offset += len(line)
        described.append(
            {"name": name, "hidden": hidden, "start": start, "end": offset, "first_row": first_row,
             "first_col": first_col, "rows": len(rows)}
        )  # fmt: skip
        parts.append("\n")
        offset += 1
    text = "".join(parts)
    meta: dict[str, Any] = {
        "format": fmt,
        "sheet_names": [s["name"] for s in described],
        "hidden_sheets": [s["name"] for s in described if s["hidden"]],
        "sheets": described,
    }
    title = source.name.rsplit("/", 1)[-1]
    return Extracted(kind="spreadsheet", title=title, text=text, meta=meta)


def column_name(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name


def cell_at(meta: dict[str, Any], text: str, offset: int) -> tuple[str, int, int] | None:
    """(sheet name, 0-based row, 0-based column) of the cell holding text[offset], or None (a heading)."""
    for sheet in meta.get("sheets", ()):
        if sheet["start"] <= offset < sheet["end"]:
            line_start = max(text.rfind("\n", sheet["start"], offset) + 1, sheet["start"])
            row = text.count("\n", sheet["start"], line_start)
            col = text.count("\t", line_start, offset)
            return sheet["name"], sheet["first_row"] + row, sheet["first_col"] + col
    return None


def _quote_sheet(name: str) -> str:
    if name.replace("_", "").isalnum():
        return name
    return "'" + name.replace("'", "''") + "'"


def cell_range(meta: dict[str, Any], text: str, start: int, end: int) -> str | None:
    """`Sheet!A1:C3` for the span text[start:end] of a spreadsheet document (`Sheet!B2` for one cell), or None
    when the span holds no cell. A span over several sheets names the first sheet's part."""
    end = max(start + 1, end)
    first = cell_at(meta, text, start)
    if first is None:  # the span starts on a heading: begin at the first cell after it
        for sheet in meta.get("sheets", ()):
            if start < sheet["start"] < end:
                start = sheet["start"]
                first = cell_at(meta, text, start)
                break
    if first is None:
        return None
    sheet = next(s for s in meta["sheets"] if s["name"] == first[0])
    segment = text[start : min(end, sheet["end"])].rstrip("\n")
    left = right = first[2]
    for number, piece in enumerate(segment.split("\n")):
        column = first[2] if number == 0 else sheet["first_col"]  # later rows start at the first column
        left, right = min(left, column), max(right, column + piece.count("\t"))
    top, bottom = first[1], first[1] + segment.count("\n")
    a = f"{column_name(left)}{top + 1}"
    b = f"{column_name(right)}{bottom + 1}"
    return f"{_quote_sheet(first[0])}!{a}" + (f":{b}" if b != a else "")
