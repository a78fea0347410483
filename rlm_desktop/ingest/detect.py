"""Which extractor reads a file: by content signature first, then by extension or MIME type."""

from __future__ import annotations

from rlm_desktop.ingest.extracted import Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.source import Source

TEXT_SUFFIXES = {
    ".txt",
    ".text",
    ".md",
    ".markdown",
    ".rst",
    ".csv",
    ".tsv",
    ".log",
    ".json",
    ".xml",
    ".yaml",
    ".yml",
    ".ini",
    ".cfg",
    ".conf",
    ".tex",
    ".srt",
    ".vtt",
}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
EMAIL_SUFFIXES = {".eml", ".emlx", ".mime"}
MBOX_SUFFIXES = {".mbox", ".mbx"}
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# Types we know and deliberately do not read: say so plainly instead of "unknown".
KNOWN_UNREADABLE = {
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".gif": "image",
    ".bmp": "image",
    ".tif": "image",
    ".tiff": "image",
    ".webp": "image",
    ".heic": "image",
    ".svg": "image",
    ".zip": "archive",
    ".gz": "archive",
    ".tgz": "archive",
    ".7z": "archive",
    ".rar": "archive",
    ".tar": "archive",
    ".xlsx": "spreadsheet",
    ".xls": "spreadsheet",
    ".ods": "spreadsheet",
    ".pptx": "presentation",
    ".ppt": "presentation",
    ".odp": "presentation",
    ".odt": "OpenDocument text",
    ".rtf": "RTF document",
    ".mp3": "audio",
    ".wav": "audio",
    ".mp4": "video",
    ".mov": "video",
    ".exe": "program",
    ".dll": "program",
    ".p7s": "signature",
    ".asc": "signature",
    ".sig": "signature",
    ".ics": "calendar",
    ".vcf": "contact card",
}

MIME_KINDS = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "message/rfc822": "email",
    "text/plain": "text",
    "text/markdown": "text",
    "text/csv": "text",
    "text/html": "html",
    "application/vnd.ms-outlook": "msg",
}


def detect_kind(source: Source, content_type: str | None = None) -> str:
    """One of pdf, docx, email, mbox, msg, pst, html, text; UnsupportedFormat otherwise."""
    head = source.head(4096)
    suffix = source.suffix
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(OLE_MAGIC):
        if suffix == ".msg" or content_type == "application/vnd.ms-outlook":
            return "msg"
        if suffix in {".docx", ".doc", ".docm", ".dotx"}:
            return "docx"  # the DOCX reader explains encrypted DOCX and old .doc files
    from rlm_desktop.ingest.msg import is_pst

    if is_pst(source):
        return "pst"
    if head.startswith(b"PK\x03\x04") and suffix in {".docx", ".docm", ".dotx", ".dotm", ""}:
        return "docx"
    if suffix in MBOX_SUFFIXES:
        return "mbox"
    if suffix in EMAIL_SUFFIXES:
        return "email"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix == ".msg":
        return "msg"
    if content_type:
        kind = MIME_KINDS.get(content_type.lower())
        if kind:
            return kind
    from rlm_desktop.ingest.mbox import looks_like_email

    if head.startswith(b"From ") and suffix == "":
        return "mbox"
    if looks_like_email(head):
        return "email"
    if suffix in KNOWN_UNREADABLE:
        raise UnsupportedFormat(
            f"{KNOWN_UNREADABLE[suffix]} files ({suffix}) are not read: they have no text layer we extract"
        )
    if suffix == "" and head and b"\x00" not in head[:1024] and _mostly_text(head):
        return "text"
    if suffix == ".pdf" or content_type == "application/pdf":
        # named a PDF but no PDF header: say so, rather than "unsupported type", so the user looks at the file
        raise ExtractionError("not a PDF: the file has no PDF header (damaged, truncated or misnamed)")
    if suffix == ".docx":
        raise ExtractionError("not a DOCX: the file is not a ZIP package (damaged, truncated or misnamed)")
    what = f"'{suffix}' files" if suffix else "files without an extension that are not text or email"
    raise UnsupportedFormat(
        f"unsupported file type: {what} are not read (content type {content_type or 'unknown'})"
    )


def _mostly_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the end of the sample


def extract(source: Source, kind: str) -> Extracted:
    """Run the extractor for `kind` (mailboxes are streamed by the pipeline, not here)."""
    if kind == "pdf":
        from rlm_desktop.ingest.pdf import extract_pdf

        return extract_pdf(source)
    if kind == "docx":
        from rlm_desktop.ingest.docx import extract_docx

        return extract_docx(source)
    if kind == "email":
        from rlm_desktop.ingest.mail import extract_email

        return extract_email(source)
    if kind == "msg":
        from rlm_desktop.ingest.msg import extract_msg

        return extract_msg(source)
    if kind == "pst":
        from rlm_desktop.ingest.msg import reject_pst

        reject_pst(source)
    if kind == "html":
        from rlm_desktop.ingest.text import extract_html

        return extract_html(source)
    if kind == "text":
        from rlm_desktop.ingest.text import extract_text

        return extract_text(source)
    raise UnsupportedFormat(f"no extractor for {kind!r}")
