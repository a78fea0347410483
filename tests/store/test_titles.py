"""A metadata title that names nothing (a path, a file name, "Untitled", an app's prefix) gives way to the
file name; a real title stays."""

import pytest

from rlm_desktop.store.titles import choose_title, is_junk_title


@pytest.mark.parametrize(
    "title",
    [
        None,
        "",
        "   ",
        "\t\n",
        "10811",
        "2020-01-01",
        "---",
        r"C:\Datatech\ScanWatermark\Samples\Scanned Document.tiff",
        r"\\server\share\memo",
        "/home/user/report",
        "file:///tmp/x",
        "10811.exe",
        "Scanned Document.tiff",
        "memo.DOC",
        "report final v2.pdf",
        "Untitled",
        "untitled-1",
        "Untitled document",
        "Document1",
        "Microsoft Word - memo.doc",
        "Microsoft Word - Budget notes",
        "Microsoft PowerPoint - deck",
        "(anonymous)",
    ],
)
def test_junk_titles(title):
    assert is_junk_title(title)
    assert choose_title(title, "greek.pdf") == "greek.pdf"


@pytest.mark.parametrize(
    "title",
    [
        "Budget 2024 for the harbour",
        "Node.js in production",
        "Mr. Smith's statement",
        "Q1/Q2 review",
        "U.S. Department of Transportation",
        "Acme Inc.",
        "Report v1.2",
        "Ελληνικά",
        "Untitled Pages of an Unknown Poet",
    ],
)
def test_real_titles_stay(title):
    assert not is_junk_title(title)
    assert choose_title(title, "greek.pdf") == title


def test_a_real_title_has_its_whitespace_collapsed():
    assert choose_title("  Annual\n report  ", "x.pdf") == "Annual report"
