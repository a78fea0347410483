"""A document's title: the PDF/DOCX metadata title when it names the document, else its file name.

Metadata titles are often junk left by the software that made the file: the path of a scanned image
("C:\\Datatech\\ScanWatermark\\Samples\\Scanned Document.tiff"), a program's name ("10811.exe"),
"Untitled", "Microsoft Word - memo.doc", or nothing. Ingest and migration m005 both decide with
`choose_title`, so a case ingested before and one ingested after agree.
"""

from __future__ import annotations

import re

# extensions of files a metadata title is often just the name of
_FILE_EXTENSIONS = ["pdf", "doc", "docx", "docm", "dot", "dotx", "rtf", "txt", "odt", "ods", "odp", "wpd", "wps", "pages", "xls", "xlsx", "xlsm", "csv", "ppt", "pptx", "pps", "ppsx", "key", "tif", "tiff", "jpg", "jpeg", "jfif", "png", "gif", "bmp", "psd", "ai", "eps", "ps", "indd", "qxd", "pub", "vsd", "vsdx", "dwg", "msg", "eml", "htm", "html", "xml", "mht", "exe", "dll", "zip", "tmp", "mdi", "xps", "oxps"]
_FILE_NAME = re.compile(r"\.(" + "|".join(_FILE_EXTENSIONS) + r")\s*$", re.IGNORECASE)
_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\|/|~/|file:)|\\", re.IGNORECASE)
_APP_PREFIX = re.compile(
    r"^\s*Microsoft\s+(?:Office\s+)?(?:Word|Excel|PowerPoint|Outlook|Publisher|Visio)\s*-\s*", re.IGNORECASE
)
_PLACEHOLDERS = re.compile(
    r"^\s*(?:untitled(?:[\s_-]*\d*)?(?:\s+document)?|document\s*\d*|doc\d+|title|no\s+title|none|null|"
    r"unknown|new\s+document|blank|slide\s*\d+|\(?anonymous\)?)\s*$",
    re.IGNORECASE,
)
_LETTER = re.compile(r"[^\W\d_]")


def is_junk_title(title: str | None) -> bool:
    """Whether a metadata title says nothing about the document (see the module docstring)."""
    if title is None:
        return True
    text = title.strip()
    if not text or not _LETTER.search(text):  # empty, whitespace, only digits and punctuation
        return True
    return bool(
        _PATH.search(text) or _FILE_NAME.search(text) or _APP_PREFIX.match(text) or _PLACEHOLDERS.match(text)
    )


def choose_title(metadata_title: str | None, file_name: str) -> str:
    """The metadata title when it is a real one, else the file name."""
    if is_junk_title(metadata_title):
        return file_name
    return " ".join((metadata_title or "").split())
