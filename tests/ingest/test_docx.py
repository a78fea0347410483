"""Tests for DOCX extraction, on documents generated here with python-docx and edited at the ZIP level."""

from __future__ import annotations

import re
import zipfile
from datetime import UTC, datetime
from io import BytesIO

import docx
import pytest

from rlm_desktop.ingest.docx import OLE_SIGNATURE, extract_docx
from rlm_desktop.ingest.extracted import ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.source import Source

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NAMESPACES = (
    f'xmlns:w="{W_NS}" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:v="urn:schemas-microsoft-com:vml"'
)
RT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def save(document: docx.document.Document) -> bytes:
    buffer = BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def edit_zip(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    """Copy a ZIP, replacing (bytes), adding, or dropping (None) the named members."""
    out = BytesIO()
    with zipfile.ZipFile(BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            if name not in changes:
                dst.writestr(name, src.read(name))
        for name, content in changes.items():
            if content is not None:
                dst.writestr(name, content)
    return out.getvalue()


def read_member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(BytesIO(data)) as archive:
        return archive.read(name)


def with_body(body_xml: str, parts: dict[str, tuple[str, str, str]] | None = None) -> bytes:
    """A python-docx document whose body is `body_xml`, plus extra parts {name: (xml, reltype, content type)}."""
    data = save(docx.Document())
    document = f'<?xml version="1.0" encoding="UTF-8"?><w:document {NAMESPACES}><w:body>{body_xml}</w:body></w:document>'
    changes: dict[str, bytes | None] = {"word/document.xml": document.encode()}
    rels = read_member(data, "word/_rels/document.xml.rels").decode()
    types = read_member(data, "[Content_Types].xml").decode()
    for index, (name, (xml, reltype, content_type)) in enumerate((parts or {}).items()):
        changes[name] = xml.encode()
        target = name.removeprefix("word/")
        rel = f'<Relationship Id="rIdX{index}" Type="{RT}{reltype}" Target="{target}"/>'
        rels = rels.replace("</Relationships>", rel + "</Relationships>")
        types = types.replace(
            "</Types>", f'<Override PartName="/{name}" ContentType="{content_type}"/></Types>'
        )
    changes["word/_rels/document.xml.rels"] = rels.encode()
    changes["[Content_Types].xml"] = types.encode()
    return edit_zip(data, changes)


def para(text: str) -> str:
    return f'<w:p><w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'


def extract(data: bytes, name: str = "doc.docx"):
    return extract_docx(Source(name=name, data=data))


# --------------------------------------------------------------------------- body structure


def test_paragraphs_headings_and_tables_in_document_order() -> None:
    document = docx.Document()
    document.add_heading("Report", level=1)
    document.add_paragraph("Intro text.")
    document.add_paragraph("")  # empty paragraphs leave no blank line
    table = document.add_table(rows=3, cols=3)
    for row_index, row in enumerate(table.rows):
        for col_index, cell in enumerate(row.cells):
            cell.text = f"r{row_index}c{col_index}"
    table.cell(0, 0).merge(table.cell(0, 1)).text = "wide"  # horizontal merge
    table.cell(1, 2).merge(table.cell(2, 2)).text = "tall"  # vertical merge
    nested = table.cell(2, 0).add_table(rows=1, cols=2)
    nested.cell(0, 0).text = "in1"
    nested.cell(0, 1).text = "in2"
    document.add_paragraph("Outro text.")

    result = extract(save(document))

    assert result.kind == "docx"
    assert result.text == (
        "Report\nIntro text.\n\nwide | r0c2\nr1c0 | r1c1 | tall\nr2c0 in1 | in2 | r2c1 | \n\nOutro text."
    )
    assert result.meta["tables"] == 2
    assert result.meta["paragraphs"] == 3 + 9  # body paragraphs plus non-empty cell paragraphs
    assert result.warnings == []


def test_list_paragraphs_get_a_dash_prefix() -> None:
    document = docx.Document()
    document.add_paragraph("Shopping:")
    document.add_paragraph("apples", style="List Bullet")
    document.add_paragraph("pears", style="List Number")
    heading = document.add_heading("1.2 Numbered heading", level=1)
    # outline numbering on a heading does not make it a list item
    heading.paragraph_format.element.get_or_add_pPr().get_or_add_numPr().get_or_add_numId().val = 1

    assert extract(save(document)).text == "Shopping:\n- apples\n- pears\n1.2 Numbered heading"


def test_inline_markup_that_paragraph_text_misses() -> None:
    body = (
        "<w:p>"
        '<w:r><w:t xml:space="preserve">Go </w:t></w:r>'
        '<w:hyperlink r:id="rIdNone"><w:r><w:t>here</w:t></w:r></w:hyperlink>'
        '<w:smartTag w:uri="x" w:element="place"><w:r><w:t xml:space="preserve"> now</w:t></w:r></w:smartTag>'
        "<w:r><w:tab/><w:t>x</w:t><w:noBreakHyphen/><w:t>y</w:t><w:br/><w:t>z</w:t>"
        '<w:sym w:font="Symbol" w:char="F061"/></w:r>'
        '<w:sdt><w:sdtPr><w:alias w:val="Name"/></w:sdtPr><w:sdtContent><w:r><w:t xml:space="preserve"> filled</w:t>'
        "</w:r></w:sdtContent></w:sdt>"
        '<w:r><w:instrText xml:space="preserve"> PAGE </w:instrText></w:r>'
        "</w:p>"
        "<w:sdt><w:sdtPr/><w:sdtContent>" + para("Block control") + "</w:sdtContent></w:sdt>"
    )

    assert extract(with_body(body)).text == "Go here now\tx-y\nzα filled\nBlock control"


def test_text_box_is_included_once_after_its_anchor_paragraph() -> None:
    box = "<w:txbxContent>" + para("Boxed words") + "</w:txbxContent>"
    body = (
        "<w:p><w:r><w:t>Anchor</w:t></w:r><w:r><mc:AlternateContent>"
        f'<mc:Choice Requires="wps"><w:drawing><wp:anchor><a:graphic><a:graphicData><wps:wsp><wps:txbx>{box}'
        "</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice>"
        f"<mc:Fallback><w:pict><v:shape><v:textbox>{box}</v:textbox></v:shape></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>" + para("After")
    )

    assert extract(with_body(body)).text == "Anchor\nBoxed words\nAfter"


def test_tracked_insertions_kept_and_deletions_dropped() -> None:
    change = 'w:id="{}" w:author="Ed" w:date="2024-01-01T00:00:00Z"'
    body = (
        '<w:p><w:r><w:t xml:space="preserve">Keep </w:t></w:r>'
        f'<w:ins {change.format(1)}><w:r><w:t xml:space="preserve">added </w:t></w:r></w:ins>'
        f"<w:del {change.format(2)}><w:r><w:delText>removed </w:delText></w:r></w:del>"
        f"<w:moveFrom {change.format(3)}><w:r><w:t>moved away </w:t></w:r></w:moveFrom>"
        "<w:r><w:t>end.</w:t></w:r></w:p>"
        # a deleted paragraph mark joins this paragraph to the next one
        f"<w:p><w:pPr><w:rPr><w:del {change.format(4)}/></w:rPr></w:pPr><w:r><w:t>Joined</w:t></w:r></w:p>"
        + para(" here.")
    )

    result = extract(with_body(body))

    assert result.text == "Keep added end.\nJoined here."
    assert result.meta["tracked_changes"] is True
    assert any("tracked changes" in warning for warning in result.warnings)


def test_document_without_tracked_changes_says_so() -> None:
    result = extract(with_body(para("Plain")))
    assert result.meta["tracked_changes"] is False
    assert result.meta["has_comments"] is False
    assert result.meta["has_footnotes"] is False


# --------------------------------------------------------------------------- sections after the body


def test_headers_and_footers_unique_including_first_page() -> None:
    document = docx.Document()
    document.add_paragraph("Body")
    section = document.sections[0]
    section.different_first_page_header_footer = True
    section.header.paragraphs[0].text = "Running header"
    section.footer.paragraphs[0].text = "Running footer"
    section.first_page_header.paragraphs[0].text = "Cover header"
    section.first_page_footer.paragraphs[0].text = "Running footer"  # duplicate text appears once
    document.add_section()  # the new section links to the previous headers: no new text

    text = extract(save(document)).text

    body, hdrftr = text.split("\n\n")
    assert body == "Body"
    lines = hdrftr.split("\n")
    assert lines[0] == "Headers and footers"
    assert sorted(lines[1:]) == ["Cover header", "Running footer", "Running header"]


def test_footnotes_and_endnotes_are_numbered_and_referenced() -> None:
    def notes(kind: str, texts: list[str]) -> str:
        items = [
            f'<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>',
            f'<w:{kind} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
            f"</w:r></w:p></w:{kind}>",
        ]
        for number, text in enumerate(texts, start=1):
            items.append(
                f'<w:{kind} w:id="{number}"><w:p><w:r><w:{kind}Ref/></w:r>'
                f'<w:r><w:t xml:space="preserve"> {text}</w:t></w:r></w:p></w:{kind}>'
            )
        return f'<w:{kind}s xmlns:w="{W_NS}">{"".join(items)}</w:{kind}s>'

    ct = "application/vnd.openxmlformats-officedocument.wordprocessingml.{}+xml"
    body = (
        '<w:p><w:r><w:t>Claim</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r>'
        '<w:r><w:t xml:space="preserve"> and another</w:t></w:r><w:r><w:footnoteReference w:id="2"/></w:r>'
        '<w:r><w:t>.</w:t></w:r><w:r><w:endnoteReference w:id="1"/></w:r></w:p>'
    )
    parts = {
        "word/footnotes.xml": (
            notes("footnote", ["First source.", "Second source."]),
            "footnotes",
            ct.format("footnotes"),
        ),
        "word/endnotes.xml": (notes("endnote", ["Closing note."]), "endnotes", ct.format("endnotes")),
    }

    result = extract(with_body(body, parts))

    assert result.text == (
        "Claim[1] and another[2].[i]\n\n"
        "Footnotes\n[1] First source.\n[2] Second source.\n\n"
        "Endnotes\n[i] Closing note."
    )
    assert result.meta["has_footnotes"] is True


def test_comments_with_author_date_and_commented_text() -> None:
    document = docx.Document()
    paragraph = document.add_paragraph("Before ")
    commented = paragraph.add_run("the disputed clause")
    paragraph.add_run(" after.")
    comment = document.add_comment(commented, text="Is this right?", author="Ann Reviewer", initials="AR")

    result = extract(save(document))

    body, comments = result.text.split("\n\n")
    assert body == "Before the disputed clause after."
    title, line = comments.split("\n")
    assert title == "Comments"
    date = comment.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ") if comment.timestamp else ""
    assert re.fullmatch(r'\[Ann Reviewer(, .+)?\] Is this right\? \(on: "the disputed clause"\)', line)
    assert date in line
    assert result.meta["has_comments"] is True


# --------------------------------------------------------------------------- metadata


def test_core_properties_become_meta_and_title() -> None:
    document = docx.Document()
    document.add_paragraph("x")
    props = document.core_properties
    props.title = "Quarterly memo"
    props.author = "Bea Author"
    props.last_modified_by = "Cy Editor"
    props.created = datetime(2020, 5, 17, 8, 30, tzinfo=UTC)
    props.modified = datetime(2021, 6, 18, 9, 45, tzinfo=UTC)

    result = extract(save(document))

    assert result.title == "Quarterly memo"
    assert result.meta["author"] == "Bea Author"
    assert result.meta["last_modified_by"] == "Cy Editor"
    assert result.meta["created"] == "2020-05-17T08:30:00+00:00"
    assert result.meta["modified"] == "2021-06-18T09:45:00+00:00"


def test_missing_core_properties_part_falls_back_to_file_name() -> None:
    data = save(docx.Document())
    rels = read_member(data, "_rels/.rels").decode()
    rels = re.sub(r"<Relationship [^>]*core-properties[^>]*/>", "", rels)
    data = edit_zip(with_body(para("No props")), {"docProps/core.xml": None, "_rels/.rels": rels.encode()})

    result = extract(data, name="memo.docx")

    assert result.title == "memo.docx"
    assert result.text == "No props"
    assert "author" not in result.meta


# --------------------------------------------------------------------------- broken and unusual packages


def test_strict_ooxml_namespaces_are_read() -> None:
    data = with_body(para("Strict text"))
    changes = {}
    for name in ("word/document.xml", "_rels/.rels", "word/_rels/document.xml.rels"):
        xml = read_member(data, name)
        changes[name] = re.sub(
            rb"http://schemas\.openxmlformats\.org/(wordprocessingml|officeDocument|drawingml)/2006/",
            rb"http://purl.oclc.org/ooxml/\1/",
            xml,
        )
    strict = edit_zip(data, changes)
    assert b"purl.oclc.org" in read_member(strict, "word/document.xml")

    assert extract(strict).text == "Strict text"


def test_malformed_xml_is_recovered_with_a_warning() -> None:
    data = with_body(para("Survives") + "<w:p><w:r><w:t>Also here</w:t></w:r></w:p><w:p><bad tag")
    result = extract(data)

    assert result.text.startswith("Survives\nAlso here")
    assert any("malformed XML" in warning for warning in result.warnings)


def test_missing_styles_part_is_fine() -> None:
    document = docx.Document()
    document.add_paragraph("Unstyled")
    data = save(document)
    rels = re.sub(
        r"<Relationship [^>]*/styles\"[^>]*/>", "", read_member(data, "word/_rels/document.xml.rels").decode()
    )
    data = edit_zip(data, {"word/styles.xml": None, "word/_rels/document.xml.rels": rels.encode()})

    assert extract(data).text == "Unstyled"


def test_missing_styles_part_still_referenced_is_fine() -> None:
    document = docx.Document()
    document.add_paragraph("Dangling")
    data = edit_zip(save(document), {"word/styles.xml": None})

    assert extract(data).text == "Dangling"


def test_renamed_main_part_without_content_type_override() -> None:
    data = with_body(para("Renamed main"))
    package_rels = read_member(data, "_rels/.rels").replace(b"word/document.xml", b"word/main.xml")
    types = re.sub(
        rb'<Override PartName="/word/document.xml"[^>]*/>', b"", read_member(data, "[Content_Types].xml")
    )
    data = edit_zip(
        data,
        {
            "word/document.xml": None,
            "word/main.xml": read_member(data, "word/document.xml"),
            "word/_rels/document.xml.rels": None,
            "word/_rels/main.xml.rels": read_member(data, "word/_rels/document.xml.rels"),
            "_rels/.rels": package_rels,
            "[Content_Types].xml": types,
        },
    )

    assert extract(data).text == "Renamed main"


def test_encrypted_docx_is_reported() -> None:
    data = OLE_SIGNATURE + b"\0" * 504
    with pytest.raises(ExtractionError, match="encrypted") as info:
        extract(data)
    assert not isinstance(info.value, UnsupportedFormat)


def test_word_97_doc_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormat, match="Word 97-2003"):
        extract(OLE_SIGNATURE + b"\0" * 504, name="old.doc")


def test_not_a_zip_is_reported() -> None:
    with pytest.raises(ExtractionError, match=r"not a valid DOCX file \(not a ZIP package\)"):
        extract(b"%PDF-1.4 this is not a docx")


def test_zip_without_a_word_document_is_reported() -> None:
    out = BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ExtractionError, match="not a valid DOCX file"):
        extract(out.getvalue())


# --------------------------------------------------------------------------- embedded files


def test_embedded_files_become_children_and_images_do_not() -> None:
    inner_document = docx.Document()
    inner_document.add_paragraph("Inner text")
    inner = save(inner_document)
    data = with_body(para("Outer"))
    types = read_member(data, "[Content_Types].xml").replace(
        b"</Types>",
        f'<Default Extension="docx" ContentType="{DOCX_TYPE}"/><Default Extension="png" ContentType="image/png"/>'
        "</Types>".encode(),
    )
    rels = read_member(data, "word/_rels/document.xml.rels").replace(
        b"</Relationships>",
        f'<Relationship Id="rIdE1" Type="{RT}package" Target="embeddings/inner.docx"/>'
        f'<Relationship Id="rIdI1" Type="{RT}image" Target="media/image1.png"/></Relationships>'.encode(),
    )
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    changes = {
        "word/embeddings/inner.docx": inner,
        "word/media/image1.png": png,
        "[Content_Types].xml": types,
        "word/_rels/document.xml.rels": rels,
    }
    data = edit_zip(data, changes)

    result = extract(data)

    assert [(c.filename, c.content_type, c.data) for c in result.children] == [
        ("inner.docx", DOCX_TYPE, inner)
    ]
    assert extract(result.children[0].data).text == "Inner text"
    # the same package read without python-docx (it fails on the dangling styles relationship)
    fallback = extract(edit_zip(data, {"word/styles.xml": None}))
    assert [(c.filename, c.content_type, c.data) for c in fallback.children] == [
        ("inner.docx", DOCX_TYPE, inner)
    ]
