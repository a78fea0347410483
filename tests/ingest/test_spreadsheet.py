"""Spreadsheets: one document per workbook, sheet by sheet, row by row, and any span names its cells."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest
import xlsxwriter  # comes with python-pptx; writes real workbooks, formulas with their cached values

from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.spreadsheet import cell_range, column_name
from rlm_desktop.store.case import Case


def make_xlsx(path: Path) -> Path:
    book = xlsxwriter.Workbook(str(path))
    pay = book.add_worksheet("Payments")
    pay.write_row(0, 0, ["Date", "Payee", "Amount"])
    pay.write_datetime(1, 0, dt.datetime(2024, 3, 1), book.add_format({"num_format": "yyyy-mm-dd"}))
    pay.write_row(1, 1, ["Zurich Bank\tAG", 1500.5])
    pay.write_row(2, 0, ["2024-03-02", "Geneva Trust", 200])
    pay.write_formula(4, 2, "=SUM(C2:C3)", None, 1700.5)
    notes = book.add_worksheet("Q1 notes")
    notes.write(3, 2, "offshore account at row four")
    notes.hide()
    book.close()
    return path


def make_ods(path: Path) -> Path:
    """A minimal OpenDocument spreadsheet, as LibreOffice writes one (mimetype first, stored)."""
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2">'
        "<office:body><office:spreadsheet><table:table table:name=\"Ledger\">"
        '<table:table-row><table:table-cell office:value-type="string"><text:p>Invoice</text:p></table:table-cell>'
        '<table:table-cell office:value-type="string"><text:p>Lugano</text:p></table:table-cell></table:table-row>'
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED)
        package.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        package.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
    return path


def read(path: Path):
    source = Source(path.name, path=path)
    kind = detect_kind(source)
    assert kind == "spreadsheet"
    return extract(source, kind)


def test_a_workbook_is_laid_out_sheet_by_sheet_with_hidden_sheets_flagged(tmp_path):
    ex = read(make_xlsx(tmp_path / "book.xlsx"))
    assert ex.kind == "spreadsheet" and ex.title == "book.xlsx"
    assert ex.text.startswith("Sheet: Payments\nDate\tPayee\tAmount\n2024-03-01\tZurich Bank AG\t1500.5\n")
    assert "\t\t1700.5\n" in ex.text  # a formula's value
    assert "Sheet: Q1 notes (hidden)\n" in ex.text
    assert ex.meta["sheet_names"] == ["Payments", "Q1 notes"] and ex.meta["hidden_sheets"] == ["Q1 notes"]


def test_any_span_resolves_to_its_cells(tmp_path):
    ex = read(make_xlsx(tmp_path / "book.xlsx"))
    text, meta = ex.text, ex.meta

    def where(quote: str) -> str | None:
        start = text.index(quote)
        return cell_range(meta, text, start, start + len(quote))

    assert where("Zurich Bank AG") == "Payments!B2"
    assert where("Bank") == "Payments!B2"
    assert where("Payee\tAmount\n2024-03-01\tZurich") == "Payments!A1:C2"
    assert where("1700.5") == "Payments!C5"
    assert where("offshore account") == "'Q1 notes'!C4"  # the sheet's used range starts at C4
    assert where("Sheet: Payments\nDate") == "Payments!A1"  # a span from a heading starts at the first cell
    assert column_name(0) == "A" and column_name(25) == "Z" and column_name(26) == "AA" and column_name(701) == "ZZ"


def test_ods_and_csv_and_tsv(tmp_path):
    ods = read(make_ods(tmp_path / "ledger.ods"))
    assert ods.text == "Sheet: Ledger\nInvoice\tLugano\n\n"
    (tmp_path / "rates.csv").write_text('name,rate\n"Smith, J",3.5\n', encoding="utf-8")
    csv_doc = read(tmp_path / "rates.csv")
    assert csv_doc.text == "Sheet: rates\nname\trate\nSmith, J\t3.5\n\n"
    start = csv_doc.text.index("3.5")
    assert cell_range(csv_doc.meta, csv_doc.text, start, start + 3) == "rates!B2"
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n", encoding="utf-8")
    assert read(tmp_path / "t.tsv").text == "Sheet: t\na\tb\n1\t2\n\n"


def test_a_renamed_workbook_is_found_by_content(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx")
    renamed = tmp_path / "export.dat"
    renamed.write_bytes(book.read_bytes())
    assert detect_kind(Source(renamed.name, path=renamed)) == "spreadsheet"
    in_memory = Source("attachment", data=book.read_bytes())
    assert "Zurich" in extract(in_memory, detect_kind(in_memory)).text


def test_ingest_search_and_a_damaged_workbook(tmp_path):
    make_xlsx(tmp_path / "book.xlsx")
    good = (tmp_path / "book.xlsx").read_bytes()
    broken = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():  # a workbook whose sheet part is garbage
            dst.writestr(info, b"<not xml" if info.filename.endswith("sheet1.xml") else src.read(info))
    (tmp_path / "broken.xlsx").write_bytes(broken.getvalue())
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path / "book.xlsx", tmp_path / "broken.xlsx"], jobs=1)
        assert report.added == 2 and report.failed == []
        (doc,) = [d for d in case.documents() if d.title == "book.xlsx"]
        assert doc.kind == "spreadsheet" and doc.meta["hidden_sheets"] == ["Q1 notes"]
        hit = case.search("offshore")[0]
        text = case.text(hit.doc_id)
        assert cell_range(doc.meta, text, hit.start, hit.end) == "'Q1 notes'!C4"
        # the damaged sheet says so, in the text and the warnings; the other sheet is read
        (broken_doc,) = [d for d in case.documents() if d.title == "broken.xlsx"]
        assert "(sheet not read: " in case.text(broken_doc.id) and "offshore" in case.text(broken_doc.id)
        assert "sheet 'Payments': sheet not read" in broken_doc.meta["warnings"][0]


@pytest.mark.parametrize("damage", [b"PK\x03\x04 not really a zip", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)])
def test_garbage_named_xlsx_or_xls_fails_with_a_reason(tmp_path, damage):
    path = tmp_path / ("bad.xlsx" if damage.startswith(b"PK") else "bad.xls")
    path.write_bytes(damage)
    with Case.open(tmp_path / "case.sqlite") as case:
        (failure,) = ingest(case, [path], jobs=1).failed
        assert failure["error"]


def test_a_workbook_zip_bomb_is_refused_before_inflating(tmp_path):
    from ingest.test_bombs import write_zip_bomb

    from rlm_desktop.ingest.limits import LimitExceeded
    from rlm_desktop.ingest.spreadsheet import extract_spreadsheet

    bomb = tmp_path / "bomb.xlsx"
    write_zip_bomb(bomb, members=2, member_mib=300)
    with pytest.raises(LimitExceeded, match="workbook package looks like a zip bomb"):
        extract_spreadsheet(Source(bomb.name, path=bomb))


def test_the_fast_cell_path_writes_every_value_as_the_general_one():
    import datetime as dt

    from rlm_desktop.ingest.spreadsheet import _cell_text, _fast_cell_text

    values = ["", "plain", "tab\there", "line\nbreak\r", 0.0, -3.0, 1047.29, 1e16, float("nan"), float("inf"),
              7235143.499999999, True, False, 12, None, dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 9, 30),
              dt.datetime(2024, 3, 1), dt.time(8, 15), dt.timedelta(hours=2)]  # fmt: skip
    assert [_fast_cell_text(v) for v in values] == [_cell_text(v) for v in values]
