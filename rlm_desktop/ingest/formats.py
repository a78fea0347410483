"""The one table of document formats: how a file is recognised, which extractor reads it, how its kind is named.

Adding a format is one extractor module plus one `register(Format(...))` line below. The detector,
the window's "Add files" filter, the kind labels and icons of the document list, the viewer and the
reports all read this table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Sniff = Callable[[bytes, str, str | None], bool]  # (first 4 KB, lower-case suffix, content type) -> is it?


@dataclass(frozen=True)
class Format:
    """One kind of document. `extractor` is "module:function" (imported only when a file needs it);
    None for kinds that are only stored (a mailbox's container, an unread attachment) or streamed."""

    kind: str
    label: str  # "Word document": the viewer and reports
    short: str  # "Word": the document list's Kind column
    icon: str  # one letter (or sign) on the kind's coloured tile
    colour: str  # the tile's colour, "#rrggbb"
    suffixes: tuple[str, ...] = ()
    mime_types: tuple[str, ...] = ()
    extractor: str | None = None
    sniff: Sniff | None = None  # a content signature, tried before any suffix
    addable: bool = True  # offered in the window's "Add files" filter
    needs_signature: bool = False  # the suffix alone is not enough (a ".pdf" without a PDF header is an error)
    # "module:function" (Source -> kind) run when `sniff` matched: a container (ZIP, OLE) says what it holds
    refine: str | None = None

    def load_extractor(self) -> Callable[[Any], Any]:
        if self.extractor is None:
            raise LookupError(f"documents of kind {self.kind!r} are not extracted one file at a time")
        module, _, name = self.extractor.partition(":")
        return getattr(importlib.import_module(module), name)

    def refined(self, source: Any) -> str:
        """The kind of a file whose signature matched this format (a container may hold another kind)."""
        if self.refine is None:
            return self.kind
        module, _, name = self.refine.partition(":")
        return getattr(importlib.import_module(module), name)(source)


_FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format (a later registration of the same kind replaces the earlier one)."""
    _FORMATS[fmt.kind] = fmt
    return fmt


def formats() -> list[Format]:
    """Every format, in registration order (the order sniffers are tried in)."""
    return list(_FORMATS.values())


def get(kind: str) -> Format | None:
    return _FORMATS.get(kind)


def label(kind: str) -> str:
    fmt = _FORMATS.get(kind)
    return fmt.label if fmt else (kind.upper() if len(kind) <= 4 else kind.title())


def short_label(kind: str) -> str:
    fmt = _FORMATS.get(kind)
    return fmt.short if fmt else (kind.upper() if len(kind) <= 4 else kind.title())


def kind_for_suffix(suffix: str, signed: bool = False) -> str | None:
    """The kind a suffix names; formats that need their signature only when `signed` (the signature matched)."""
    for fmt in _FORMATS.values():
        if suffix in fmt.suffixes and (signed or not fmt.needs_signature):
            return fmt.kind
    return None


def kind_for_mime(content_type: str) -> str | None:
    content_type = content_type.lower()
    for fmt in _FORMATS.values():
        if content_type in fmt.mime_types:
            return fmt.kind
    return None


def file_filter() -> str:
    """The "Add files" dialog's filter: every suffix a registered extractor reads, then all files."""
    patterns = [f"*{s}" for fmt in _FORMATS.values() if fmt.addable for s in fmt.suffixes]
    return f"Documents ({' '.join(dict.fromkeys(patterns))});;All files (*)"


# ---- signatures -------------------------------------------------------------------------------------

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# Containers and images whose own signature is at byte 0: a PDF stored uncompressed inside one (a ZIP made
# with no compression, a tar) shows "%PDF-" in the first KB without the file being a PDF.
_OTHER_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", OLE_MAGIC, b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b", b"!BDN",
                     b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*", b"RIFF")  # fmt: skip


def _is_pdf(head: bytes, suffix: str, content_type: str | None) -> bool:
    at = head.find(b"%PDF-", 0, 1024)  # readers accept the header anywhere in the first KB (junk before it)
    if at <= 0:
        return at == 0
    return not head.startswith(_OTHER_SIGNATURES) and not (len(head) >= 262 and head[257:262] == b"ustar")


def _starts_with(head: bytes, marker: bytes) -> bool:
    """A text signature after an optional UTF-8 BOM and blank lines, in any letter case."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()[: len(marker)].upper() == marker


def _is_image(head: bytes, suffix: str, content_type: str | None) -> bool:
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    ) or (head.startswith(b"BM") and suffix == ".bmp")  # "BM" alone is too common a start to trust


def _is_ole(head: bytes, suffix: str, content_type: str | None) -> bool:
    return head.startswith(OLE_MAGIC)  # Outlook, Word, Excel, PowerPoint: containers.ole_kind looks inside


def _is_archive(head: bytes, suffix: str, content_type: str | None) -> bool:
    # ZIP (office packages too: containers.zip_kind looks inside), 7z, gzip, tar
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b")) or (
        len(head) >= 262 and head[257:262] == b"ustar"
    )


def _is_pst(head: bytes, suffix: str, content_type: str | None) -> bool:
    return head.startswith(b"!BDN") or suffix in (".pst", ".ost")


# ---- the formats, in the order their signatures are tried -------------------------------------------

register(Format("pdf", "PDF", "PDF", "P", "#c82d2d", (".pdf",), ("application/pdf",),
                "rlm_desktop.ingest.pdf:extract_pdf", _is_pdf, needs_signature=True))  # fmt: skip
register(Format("msg", "Outlook message", "Outlook", "@", "#1e8296", (".msg",), ("application/vnd.ms-outlook",),
                "rlm_desktop.ingest.msg:extract_msg", _is_ole, refine="rlm_desktop.ingest.containers:ole_kind"))  # fmt: skip
register(Format("docx", "Word document", "Word", "W", "#285abe", (".docx", ".docm", ".dotx"),
                ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
                "rlm_desktop.ingest.docx:extract_docx", needs_signature=True))  # fmt: skip
register(Format("archive", "Archive", "Archive", "Z", "#8c6e3c", (".zip", ".7z", ".tar", ".tgz", ".gz"),
                ("application/zip", "application/x-7z-compressed", "application/x-tar", "application/gzip",
                 "application/x-gzip", "application/x-zip-compressed"),
                "rlm_desktop.ingest.archive:extract_archive", _is_archive,
                refine="rlm_desktop.ingest.containers:zip_kind"))  # fmt: skip
register(Format("spreadsheet", "Spreadsheet", "Sheet", "X", "#1e7846",
                (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".csv", ".tsv"),
                ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/vnd.ms-excel",
                 "application/vnd.oasis.opendocument.spreadsheet", "text/csv", "text/tab-separated-values"),
                "rlm_desktop.ingest.spreadsheet:extract_spreadsheet", needs_signature=False))  # fmt: skip
register(Format("presentation", "Presentation", "Slides", "S", "#c8501e", (".pptx", ".pptm", ".odp", ".ppt"),
                ("application/vnd.openxmlformats-officedocument.presentationml.presentation",
                 "application/vnd.oasis.opendocument.presentation", "application/vnd.ms-powerpoint"),
                "rlm_desktop.ingest.presentation:extract_presentation"))  # fmt: skip
register(Format("odt", "OpenDocument text", "ODT", "W", "#285abe", (".odt",),
                ("application/vnd.oasis.opendocument.text",), "rlm_desktop.ingest.opendocument:extract_odt"))  # fmt: skip
register(Format("rtf", "Rich Text document", "RTF", "R", "#285abe", (".rtf",), ("application/rtf", "text/rtf"),
                "rlm_desktop.ingest.rtf:extract_rtf", lambda head, suffix, ct: head.startswith(b"{\\rtf")))  # fmt: skip
register(Format("calendar", "Calendar event", "Event", "E", "#b4463c", (".ics", ".ical", ".ifb", ".vcs"),
                ("text/calendar", "text/x-vcalendar"), "rlm_desktop.ingest.events:extract_calendar",
                lambda head, suffix, ct: _starts_with(head, b"BEGIN:VCALENDAR")))  # fmt: skip
register(Format("contact", "Contact", "Contact", "C", "#3c8c8c", (".vcf", ".vcard"), ("text/vcard", "text/x-vcard"),
                "rlm_desktop.ingest.contacts:extract_contacts",
                lambda head, suffix, ct: _starts_with(head, b"BEGIN:VCARD")))  # fmt: skip
register(Format("image", "Image", "Image", "I", "#7850b4",
                (".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".gif", ".webp"),
                ("image/png", "image/jpeg", "image/tiff", "image/bmp", "image/gif", "image/webp"),
                "rlm_desktop.ingest.image:extract_image", _is_image))  # fmt: skip
register(Format("doc", "Word 97-2003 document", "Word 97", "W", "#285abe", (".doc", ".dot"), ("application/msword",),
                "rlm_desktop.ingest.doc:extract_doc"))  # fmt: skip
register(Format("pst", "Outlook data file", "PST", "O", "#6e50a0", (".pst", ".ost"), ("application/vnd.ms-outlook-pst",),
                "rlm_desktop.ingest.pst:reject_nested", _is_pst))  # fmt: skip
register(Format("mbox", "Mailbox", "Mailbox", "M", "#6e50a0", (".mbox", ".mbx"), ("application/mbox",)))
register(Format("email", "Email", "Email", "@", "#1e8296", (".eml", ".emlx", ".mime"), ("message/rfc822",),
                "rlm_desktop.ingest.mail:extract_email"))  # fmt: skip
register(Format("html", "Web page", "HTML", "<", "#d26e14", (".html", ".htm", ".xhtml"), ("text/html",),
                "rlm_desktop.ingest.text:extract_html"))  # fmt: skip
register(Format("text", "Text", "Text", "T", "#646464",
                (".txt", ".text", ".md", ".markdown", ".rst", ".log", ".json", ".xml", ".yaml",
                 ".yml", ".ini", ".cfg", ".conf", ".tex", ".srt", ".vtt"),
                ("text/plain", "text/markdown"), "rlm_desktop.ingest.text:extract_text"))  # fmt: skip
# kinds a case holds that no single file is read as
register(Format("mailbox", "Mailbox", "Mailbox", "M", "#6e50a0", addable=False))
register(Format("markdown", "Markdown", "Markdown", "#", "#5a5a5a", addable=False))
register(Format("attachment", "Attachment (not read)", "Unread file", "?", "#a0a0a0", addable=False))
