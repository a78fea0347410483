"""Which extractor reads a file: by content signature first, then by extension or MIME type."""

from __future__ import annotations

from rlm_desktop.ingest import formats
from rlm_desktop.ingest.extracted import Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.source import Source

# Types we know and deliberately do not read: say so plainly instead of "unknown".
KNOWN_UNREADABLE = {
    ".heic": "image",
    ".svg": "image",
    ".rar": "archive",
    ".mp3": "audio",
    ".wav": "audio",
    ".mp4": "video",
    ".mov": "video",
    ".exe": "program",
    ".dll": "program",
    ".p7s": "signature",
    ".asc": "signature",
    ".sig": "signature",
}

def detect_kind(source: Source, content_type: str | None = None) -> str:
    """The kind of a file (see ingest/formats.py): by content signature, suffix, content type, then content;
    UnsupportedFormat otherwise."""
    head = source.head(4096)
    suffix = source.suffix
    for fmt in formats.formats():
        if fmt.sniff is not None and fmt.sniff(head, suffix, content_type):
            return fmt.refined(source)
    kind = formats.kind_for_suffix(suffix)
    if kind:
        return kind
    if content_type:
        kind = formats.kind_for_mime(content_type)
        if kind:
            return kind
    from rlm_desktop.ingest.mbox import looks_like_email

    if head.startswith(b"From ") and suffix == "":
        return "mbox"
    if looks_like_email(head):
        return "email"
    if (content_type or "").lower().startswith("text/") and head and b"\x00" not in head[:1024] and _mostly_text(head):
        return "text"  # an attachment the sender called text (a script, a log) that looks like text is read as such
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
    """Run the extractor registered for `kind` (mailboxes are streamed by the pipeline, not here)."""
    fmt = formats.get(kind)
    if fmt is None or fmt.extractor is None:
        raise UnsupportedFormat(f"no extractor for {kind!r}")
    return fmt.load_extractor()(source)
