"""Bounds on what one input may cost: an extractor process's memory, a ZIP package's expansion, an mbox line."""

from __future__ import annotations

import zipfile

from rlm_desktop.ingest.extracted import ExtractionError

# Address space of an extractor process (ingest workers, export-time re-extraction). Python with PyMuPDF, lxml
# and python-docx loaded maps about 550 MB before reading anything; the rest is room for one document.
EXTRACTOR_MEMORY_BYTES = 1536 * 1024 * 1024

# A DOCX (or any ZIP package) is refused before anything is decompressed when its members would expand past
# these: a 1.5 MB zip bomb claimed 4.66 GB of memory before they existed. The sizes come from the ZIP's own
# directory, and zipfile never returns more than a member's declared size, so they cannot be lied past.
ZIP_MAX_TOTAL_BYTES = 512 * 1024 * 1024
ZIP_MAX_XML_BYTES = 128 * 1024 * 1024  # XML is parsed into trees several times its size
ZIP_MAX_RATIO = 200  # real packages compress XML 5-30x; far more is a bomb
ZIP_RATIO_MIN_BYTES = 1024 * 1024  # tiny members may compress absurdly well (empty parts)
ZIP_MAX_MEMBERS = 20_000

# mbox: a line is read in pieces of at most this size, and a longer one fails its message (no email has
# one: RFC 5322 allows 998 characters); a message larger than MBOX_MAX_MESSAGE_BYTES fails with a reason.
MBOX_MAX_LINE_BYTES = 1024 * 1024
MBOX_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class LimitExceeded(ExtractionError):
    """An input larger than the bounds above; the message says which bound and by how much."""


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MB"


def check_zip(archive: zipfile.ZipFile, what: str = "ZIP package") -> None:
    """Raise LimitExceeded if `archive` would expand past the size or ratio limits."""
    infos = archive.infolist()
    if len(infos) > ZIP_MAX_MEMBERS:
        raise LimitExceeded(f"{what} has {len(infos):,} parts (limit {ZIP_MAX_MEMBERS:,}); not read")
    total = xml = 0
    for info in infos:
        total += info.file_size
        if info.filename.lower().endswith((".xml", ".rels", ".vml")):
            xml += info.file_size
        if info.file_size >= ZIP_RATIO_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > ZIP_MAX_RATIO:
                raise LimitExceeded(
                    f"{what} looks like a zip bomb: {info.filename!r} expands {ratio:,.0f}x "
                    f"({_mb(info.compress_size)} to {_mb(info.file_size)}; limit {ZIP_MAX_RATIO}x); not read"
                )
    if total > ZIP_MAX_TOTAL_BYTES:
        raise LimitExceeded(
            f"{what} expands to {_mb(total)} (limit {_mb(ZIP_MAX_TOTAL_BYTES)}); not read"
        )
    if xml > ZIP_MAX_XML_BYTES:
        raise LimitExceeded(f"{what} holds {_mb(xml)} of XML (limit {_mb(ZIP_MAX_XML_BYTES)}); not read")


def limit_memory(limit_bytes: int = EXTRACTOR_MEMORY_BYTES) -> bool:
    """Cap this process's address space (RLIMIT_AS) so a hostile file fails with MemoryError instead of
    taking the machine. Never raises the limit; False where the platform has no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    target = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    if soft != resource.RLIM_INFINITY and soft <= target:
        return True
    try:
        resource.setrlimit(resource.RLIMIT_AS, (target, hard))
    except (ValueError, OSError):
        return False
    return True
