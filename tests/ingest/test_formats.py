"""The formats table: one registration makes a new kind detected, extracted, offered and named."""

from __future__ import annotations

import pytest

from rlm_desktop.ingest import formats
from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.extracted import Extracted
from rlm_desktop.ingest.source import Source


def test_every_extractor_in_the_table_can_be_loaded():
    for fmt in formats.formats():
        if fmt.extractor is not None:
            assert callable(fmt.load_extractor()), fmt.kind


def test_file_filter_offers_what_is_read_and_not_what_is_not():
    text = formats.file_filter()
    assert "*.pdf" in text and "*.docx" in text and "*.eml" in text and "*.mbox" in text and "*.msg" in text
    assert "*.pst" in text and "*.xlsx" in text and "*.zip" in text and "*.png" in text  # read since issue 14
    assert "*.rar" not in text and "*.mp3" not in text and text.endswith(";;All files (*)")


def test_labels_agree_everywhere():
    from rlm_desktop.gui.document_model import kind_label

    assert (
        formats.label("docx") == "Word document"
        and kind_label("docx") == formats.short_label("docx") == "Word"
    )
    assert formats.label("something-new") == "Something-New"


def extract_ledger(source: Source) -> Extracted:
    text = source.read_bytes().decode("ascii").replace(";", "\n")
    return Extracted(kind="text", title=source.name, text=text, meta={"format": "ledger"})


@pytest.fixture
def ledger_format():
    fmt = formats.register(
        formats.Format(
            "ledger", "Ledger file", "Ledger", "L", "#228822", (".ledger",), (), f"{__name__}:extract_ledger",
            lambda head, suffix, ct: head.startswith(b"LEDGER;"),
        )
    )  # fmt: skip
    yield fmt
    formats._FORMATS.pop("ledger")


def test_one_registration_adds_a_format(ledger_format, tmp_path):
    by_name = tmp_path / "books.ledger"
    by_name.write_bytes(b"2024-01-02 paid 300;2024-01-03 paid 200")
    by_content = tmp_path / "noname"
    by_content.write_bytes(b"LEDGER;2024-01-02 paid 300")
    assert detect_kind(Source(by_name.name, path=by_name)) == "ledger"
    assert detect_kind(Source(by_content.name, path=by_content)) == "ledger"
    extracted = extract(Source(by_name.name, path=by_name), "ledger")
    assert extracted.text == "2024-01-02 paid 300\n2024-01-03 paid 200"
    assert "*.ledger" in formats.file_filter() and formats.short_label("ledger") == "Ledger"


def test_text_by_content_type_when_it_looks_like_text():
    script = Source("deploy.rb", data=b"puts 'wire the money'\n")
    assert detect_kind(script, "text/x-ruby-script") == "text"
    with pytest.raises(Exception, match="not read"):
        detect_kind(Source("blob.rb", data=b"\x00\x01\x02binary"), "text/x-ruby-script")
