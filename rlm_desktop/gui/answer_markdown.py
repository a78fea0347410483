"""An answer's Markdown as the HTML a QTextBrowser shows, with citation markers kept as links.

markdown-it-py (CommonMark with GitHub tables and strikethrough) rather than QTextDocument.setMarkdown:
an answer is written by a model that has read untrusted documents, and here raw HTML is escaped and
images and links are left as text (setMarkdown would pass `<img src=file:…>` and links through); and the
markers become links coloured by their verification before Qt sees the HTML, which setMarkdown cannot do.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markdown_it import MarkdownIt

_HOLD = re.compile("\ue000(\\d+)\ue001")  # private-use characters: Markdown leaves them alone

# Qt's rich text has no CSS for table borders in every version: the attributes draw the grid everywhere
TABLE = "<table border='1' cellspacing='0' cellpadding='4' style='border-collapse: collapse; border-color: #c9d2de'>"
STYLE = (
    "h1, h2, h3, h4 { margin-top: 10px; margin-bottom: 4px; }"
    " th { background-color: #eef2f7; }"
    " pre { background-color: #f4f6f9; }"
    " code { font-family: monospace; background-color: #f4f6f9; }"
    " blockquote { color: #555555; }"
)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    md.enable(["table", "strikethrough"])
    md.disable(["image", "link", "autolink"])
    return md


_MD = _parser()


def answer_html(text: str, marker: re.Pattern[str], marker_html: Callable[[str], str]) -> str:
    """`text` rendered from Markdown; every match of `marker` replaced by `marker_html(the marker)`."""
    held: list[str] = []

    def hold(match: re.Match[str]) -> str:
        held.append(match.group(0))
        return f"\ue000{len(held) - 1}\ue001"

    body = _MD.render(marker.sub(hold, text))
    body = body.replace("<table>", TABLE)
    return _HOLD.sub(lambda m: marker_html(held[int(m.group(1))]), body)
