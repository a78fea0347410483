"""html_to_text: block structure, lists, tables, links, dropped elements, entities, broken markup."""

from __future__ import annotations

from rlm_desktop.ingest.html_text import html_title, html_to_text


def test_blocks_and_breaks_become_lines() -> None:
    text = html_to_text("<div>one</div><div>two<br>three</div><p>para</p>")
    assert text == "one\ntwo\nthree\n\npara"


def test_list_items_are_bulleted() -> None:
    text = html_to_text("<p>Items:</p><ul><li>apple</li><li>pear<ul><li>nested</li></ul></li></ul>")
    assert "- apple" in text.splitlines()
    assert "- pear" in text.splitlines()
    assert "  - nested" in text.split("\n")


def test_table_cells_and_rows() -> None:
    html = "<table><tr><th>Name</th><th>Qty</th></tr><tr><td>Bolt</td><td>12</td></tr></table>"
    assert html_to_text(html) == "Name | Qty\nBolt | 12"


def test_links_show_their_target_when_it_differs() -> None:
    html = (
        '<a href="https://example.org/report">the report</a> and '
        '<a href="https://example.org">https://example.org</a> and '
        '<a href="mailto:ann@example.org">ann@example.org</a> and <a href="#top">top</a>'
    )
    text = html_to_text(html)
    assert "the report (https://example.org/report)" in text
    assert text.count("https://example.org") == 2  # once for the report, once as its own text
    assert "mailto:" not in text
    assert "top (" not in text


def test_script_style_head_are_dropped_and_entities_decoded() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head>"
        "<body><script>alert('x')</script><p>Fish &amp; chips &lt;3 &eacute;t&#233; &nbsp;done</p></body></html>"
    )
    assert html_to_text(html) == "Fish & chips <3 été done"


def test_whitespace_collapses_and_blank_lines_are_limited() -> None:
    html = "<p>  a   lot\n\n of   space </p><p></p><p></p><br><br><br><p>next</p>"
    assert html_to_text(html) == "a lot of space\n\nnext"


def test_broken_html_does_not_raise_and_keeps_text() -> None:
    html = "<div><p>unclosed <b>bold <a href='http://x.example/'>link<table><tr><td>cell"
    text = html_to_text(html)
    assert "unclosed bold link" in text
    assert "cell" in text
    assert "(http://x.example/)" in text


def test_head_without_close_ends_at_body() -> None:
    assert html_to_text("<head><meta charset=utf-8><body>visible") == "visible"


def test_pre_keeps_its_line_breaks() -> None:
    assert html_to_text("<pre>line 1\nline 2</pre>") == "line 1\nline 2"


def test_html_title() -> None:
    assert html_title("<html><head><title> A &amp; B\n</title></head></html>") == "A & B"
    assert html_title("<p>no title</p>") is None
