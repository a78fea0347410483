"""Readable plain text from HTML (mail bodies, saved pages) with the stdlib parser."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements that end a line; the "paragraph" ones also leave a blank line around them.
_LINE_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "body",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "legend",
        "main",
        "nav",
        "section",
        "summary",
        "details",
        "option",
    ]
)
_PARAGRAPH_BLOCKS = frozenset(
    ["p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"]
)
_SKIPPED = frozenset(("script", "style", "template", "noscript", "svg", "object", "title"))
_WHITESPACE = re.compile(r"[ \t\n\r\f\v\u00a0\u2000-\u200b\u3000]+")
_NEWLINE = "\n"
_INDENT = "\x01"  # marks list nesting; becomes two spaces once lines are stripped


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.in_head = False
        self.pre_depth = 0
        self.list_stack: list[str] = []
        self.cells_in_row: list[int] = []
        self.links: list[tuple[int, str]] = []  # (index into parts where the link text starts, href)

    # -- output helpers -----------------------------------------------------------------------------
    def _newline(self, count: int = 1) -> None:
        """End the current line, and leave `count - 1` blank lines, unless already there."""
        have = 0
        for part in reversed(self.parts):
            stripped = part.rstrip(" ")
            if stripped.strip("\n"):
                have += len(stripped) - len(stripped.rstrip("\n"))
                break
            have += stripped.count("\n")
            if have >= count:
                return
        else:
            return  # nothing written yet: no leading blank lines
        if have < count:
            self.parts.append(_NEWLINE * (count - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self.in_head = True
            return
        if tag == "body":
            self.in_head = False  # a body ends an unclosed head
        if tag in _SKIPPED:
            self.skip_depth += 1
            return
        if tag == "br":
            self._newline()
        elif tag in ("ul", "ol"):
            self.list_stack.append(tag)
            self._newline(2 if len(self.list_stack) == 1 else 1)
        elif tag == "li":
            indent = _INDENT * max(len(self.list_stack) - 1, 0)
            self._newline()
            self.parts.append(indent + "- ")
        elif tag == "tr":
            self.cells_in_row.append(0)
            self._newline()
        elif tag in ("td", "th"):
            if self.cells_in_row:
                if self.cells_in_row[-1]:
                    self.parts.append(" | ")
                self.cells_in_row[-1] += 1
        elif tag == "pre":
            self.pre_depth += 1
            self._newline(2)
        elif tag in _PARAGRAPH_BLOCKS:
            self._newline(2)
        elif tag in _LINE_BLOCKS:
            self._newline()
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self.links.append((len(self.parts), href.strip()))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt and not self.skip_depth and not self.in_head:
                self.parts.append(f" {alt} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            return  # <script/> opens nothing
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.in_head = False
            return
        if tag in _SKIPPED:
            self.skip_depth = max(self.skip_depth - 1, 0)
            return
        if tag in ("ul", "ol"):
            if self.list_stack:
                self.list_stack.pop()
            self._newline(2 if not self.list_stack else 1)
        elif tag == "tr":
            if self.cells_in_row:
                self.cells_in_row.pop()
            self._newline()
        elif tag == "pre":
            self.pre_depth = max(self.pre_depth - 1, 0)
            self._newline(2)
        elif tag in _PARAGRAPH_BLOCKS:
            self._newline(2)
        elif tag in _LINE_BLOCKS or tag == "li":
            self._newline()
        elif tag == "a" and self.links:
            start, href = self.links.pop()
            self._close_link(start, href)

    def _close_link(self, start: int, href: str) -> None:
        text = _WHITESPACE.sub(" ", "".join(self.parts[start:])).strip()
        if not href or href.startswith(("#", "javascript:", "cid:")):
            return
        bare = href[len("mailto:") :] if href.lower().startswith("mailto:") else href
        if _same_target(text, bare) or _same_target(text, href):
            return
        self.parts.append(f" ({href})" if text else href)

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self.in_head:
            return
        if self.pre_depth:
            self.parts.append(data)
        else:
            self.parts.append(_WHITESPACE.sub(" ", data))


def _same_target(text: str, url: str) -> bool:
    def norm(value: str) -> str:
        return value.strip().rstrip("/").lower()

    return norm(text) == norm(url) or norm(text) == norm(re.sub(r"^[a-z]+://", "", url, flags=re.I))


def tidy_lines(text: str) -> str:
    """Strip each line's edges and keep at most one blank line in a row."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip(" \t\u00a0")
        if line.startswith(_INDENT):
            body = line.lstrip(_INDENT)
            line = "  " * (len(line) - len(body)) + body
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def html_to_text(html: str) -> str:
    """Convert an HTML document or fragment to readable text; never raises on broken markup."""
    builder = _TextBuilder()
    try:
        builder.feed(html)
        builder.close()
    except Exception:  # html.parser is lenient, but keep whatever was parsed on any internal failure
        pass
    while builder.links:  # unclosed <a>: still show its target
        start, href = builder.links.pop()
        builder._close_link(start, href)
    text = "".join(builder.parts).replace("\r\n", "\n").replace("\r", "\n")
    if not builder.pre_depth:
        # collapse spaces within lines (pre text was appended verbatim, so only squeeze runs of spaces
        # that the inline-whitespace rule produced around tags)
        text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    return tidy_lines(re.sub(r"(?<=\S) {2,}(?=\S)", " ", text))


_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)


def html_title(html: str) -> str | None:
    """The document's <title>, entities decoded and whitespace collapsed, or None."""
    match = _TITLE.search(html)
    if not match:
        return None
    from html import unescape

    title = _WHITESPACE.sub(" ", unescape(re.sub(r"<[^>]+>", "", match.group(1)))).strip()
    return title or None
