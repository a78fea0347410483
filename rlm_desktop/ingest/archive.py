"""Archives (.zip, .7z, .tar, .tar.gz, .tgz, .gz): a listing as the document's text, each member a child document.

Members are read one at a time, each bounded, and every byte kept counts against one expansion budget shared
by the whole file being ingested (archives inside archives included), so a nested bomb stops at the same limit
as a flat one. The bytes that are kept become child documents like attachments (see prepare.py), which are
detected and extracted in turn: mail, PDFs and further archives inside.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import mimetypes
import tarfile
import zipfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import IO, Any

from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError
from rlm_desktop.ingest.limits import LimitExceeded, _mb
from rlm_desktop.ingest.source import Source

# Everything one ingested file may expand to through archives (nested ones share it). The bytes kept are held
# by the extractor process until the file is written, so this bounds its memory too.
ARCHIVE_MAX_TOTAL_BYTES = 256 * 1024 * 1024
ARCHIVE_MAX_MEMBERS = 10_000  # per ingested file, nested archives included
ARCHIVE_MAX_RATIO = 200  # expanded / compressed; real data compresses 2-20x, text logs up to ~50x
ARCHIVE_RATIO_MIN_BYTES = 1024 * 1024  # tiny members may compress absurdly well
ARCHIVE_MAX_DEPTH = 4  # archives inside archives (checked in prepare.py)
_CHUNK = 1024 * 1024

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
GZIP_MAGIC = b"\x1f\x8b"


def is_tar_header(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


@dataclass
class ExpansionBudget:
    """What archives may still expand to while one file is ingested."""

    remaining: int = field(default_factory=lambda: ARCHIVE_MAX_TOTAL_BYTES)
    members: int = 0


_budget: ContextVar[ExpansionBudget | None] = ContextVar("archive_budget", default=None)


@contextlib.contextmanager
def expansion_budget() -> Iterator[ExpansionBudget]:
    """One budget for everything extracted from one ingested file (prepare.py opens it per file)."""
    budget = ExpansionBudget()
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


@dataclass
class _Listing:
    fmt: str
    name: str
    lines: list[str] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    encrypted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expanded: int = 0


class _Reader:
    """Reads members against the budget, and names the limit that stops it."""

    def __init__(self, listing: _Listing, compressed_size: int, budget: ExpansionBudget):
        self.listing = listing
        self.compressed_size = max(compressed_size, 1)
        self.budget = budget
        self.taken = 0

    def count_member(self) -> None:
        self.budget.members += 1
        if self.budget.members > ARCHIVE_MAX_MEMBERS:
            raise LimitExceeded(
                f"{self.listing.fmt} archive holds more than {ARCHIVE_MAX_MEMBERS:,} files (nested archives "
                "included); not read: extract it and ingest the folder"
            )

    def take(self, n: int, member: str) -> None:
        if n > self.budget.remaining:
            raise LimitExceeded(
                f"{self.listing.fmt} archive expands past {_mb(ARCHIVE_MAX_TOTAL_BYTES)} (at {member!r}; the limit "
                "counts archives inside it too); not read: extract it and ingest the folder"
            )
        self.budget.remaining -= n
        self.taken += n
        self.listing.expanded += n
        if self.listing.expanded >= ARCHIVE_RATIO_MIN_BYTES:
            ratio = self.listing.expanded / self.compressed_size
            if ratio > ARCHIVE_MAX_RATIO:
                raise LimitExceeded(
                    f"{self.listing.fmt} archive looks like a decompression bomb: it expands more than "
                    f"{ratio:,.0f}x ({_mb(self.compressed_size)} to {_mb(self.listing.expanded)} and counting; "
                    f"limit {ARCHIVE_MAX_RATIO}x); not read"
                )

    def read_stream(self, stream: IO[bytes], member: str) -> bytes:
        out = bytearray()
        while chunk := stream.read(_CHUNK):
            self.take(len(chunk), member)
            out += chunk
        return bytes(out)

    def refund(self) -> None:
        """A failed archive keeps nothing: what it took is available to its siblings again."""
        self.budget.remaining += self.taken
        self.taken = 0

    def add(self, member: str, data: bytes, when: datetime | None = None) -> None:
        name = PurePosixPath(member).name or member
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.listing.blobs.append(Blob(member, data, content_type, origin=f"member {member}"))
        stamp = f"  {when:%Y-%m-%d %H:%M}" if when else ""
        self.listing.lines.append(f"{member}  {len(data):,} bytes{stamp}")


def extract_archive(source: Source) -> Extracted:
    """An archive: its listing as text, its members as children (kind "archive")."""
    budget = _budget.get() or ExpansionBudget()
    head = source.head(512)
    data_size = len(source.data) if source.data is not None else (source.path.stat().st_size if source.path else 0)
    fmt = _format_of(head)
    listing = _Listing(fmt, source.name)
    reader = _Reader(listing, data_size, budget)
    try:
        with _open(source) as fh:
            if fmt == "ZIP":
                _read_zip(fh, reader)
            elif fmt == "7z":
                _read_7z(fh, reader)
            elif fmt in ("tar", "tar.gz"):
                _read_tar(fh, reader, "r:gz" if fmt == "tar.gz" else "r:")
            elif fmt == "gzip":
                _read_gzip(fh, reader, source.name)
            else:
                raise ExtractionError(
                    f"damaged or not an archive: no ZIP, 7z, tar or gzip signature (named {source.suffix or 'without a suffix'})"
                )
    except (ExtractionError, MemoryError):
        reader.refund()
        raise
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
        reader.refund()
        raise ExtractionError(f"damaged or truncated {fmt} archive: {exc}") from exc
    except Exception as exc:  # py7zr raises its own zoo of errors on damaged files
        reader.refund()
        raise ExtractionError(f"damaged {fmt} archive: {type(exc).__name__}: {exc}") from exc
    if listing.encrypted and not listing.blobs:
        raise ExtractionError(
            f"password-protected {fmt} archive ({len(listing.encrypted)} encrypted file(s)); not read: "
            "no password was given"
        )
    if listing.encrypted:
        listing.warnings.append(
            f"{len(listing.encrypted)} encrypted file(s) not read (password-protected): "
            + ", ".join(listing.encrypted[:10])
        )
    count = len(listing.blobs)
    header = f"Archive {source.name} ({fmt}, {count} file{'s' if count != 1 else ''}"
    header += f", {len(listing.encrypted)} encrypted)" if listing.encrypted else ")"
    text = "\n".join([header, *listing.lines]) + "\n"
    meta: dict[str, Any] = {"format": fmt, "members": count, "expanded_bytes": listing.expanded}
    if listing.encrypted:
        meta["encrypted_members"] = listing.encrypted
    return Extracted(
        kind="archive", title=PurePosixPath(source.name).name, text=text, meta=meta,
        children=listing.blobs, warnings=listing.warnings,
    )  # fmt: skip


def _format_of(head: bytes) -> str:
    if head.startswith(ZIP_MAGIC):
        return "ZIP"
    if head.startswith(SEVENZIP_MAGIC):
        return "7z"
    if is_tar_header(head):
        return "tar"
    if head.startswith(GZIP_MAGIC):
        try:  # a gzip whose first bytes unpack to a tar header is a .tar.gz, whatever its name
            inner = gzip.GzipFile(fileobj=io.BytesIO(head)).read(262)
        except (OSError, EOFError):
            inner = b""
        return "tar.gz" if is_tar_header(inner) else "gzip"
    return "unknown"


@contextlib.contextmanager
def _open(source: Source) -> Iterator[IO[bytes]]:
    if source.data is not None:
        yield io.BytesIO(source.data)
    else:
        assert source.path is not None
        with source.path.open("rb") as fh:
            yield fh


def _read_zip(fh: IO[bytes], reader: _Reader) -> None:
    with zipfile.ZipFile(fh) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            reader.count_member()
            if info.flag_bits & 0x1:
                reader.listing.encrypted.append(info.filename)
                reader.listing.lines.append(f"{info.filename}  {info.file_size:,} bytes  (encrypted, not read)")
                continue
            if info.file_size >= ARCHIVE_RATIO_MIN_BYTES:  # the directory's claim, checked before inflating
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > ARCHIVE_MAX_RATIO:
                    raise LimitExceeded(
                        f"ZIP archive looks like a decompression bomb: {info.filename!r} expands {ratio:,.0f}x "
                        f"({_mb(info.compress_size)} to {_mb(info.file_size)}; limit {ARCHIVE_MAX_RATIO}x); not read"
                    )
            if info.file_size > reader.budget.remaining:
                reader.take(info.file_size, info.filename)  # raises with the reason, before inflating
            try:
                with archive.open(info) as member:  # zipfile stops at the declared size and checks the CRC
                    data = reader.read_stream(member, info.filename)
            except zipfile.BadZipFile as exc:
                reader.listing.warnings.append(f"{info.filename}: damaged member, not read ({exc})")
                reader.listing.lines.append(f"{info.filename}  (damaged, not read)")
                continue
            except NotImplementedError as exc:  # an unsupported compression method (e.g. deflate64)
                reader.listing.warnings.append(f"{info.filename}: not read ({exc})")
                reader.listing.lines.append(f"{info.filename}  (compression method not supported, not read)")
                continue
            reader.add(info.filename, data, _zip_time(info.date_time))


def _zip_time(fields: tuple[int, int, int, int, int, int]) -> datetime | None:
    try:
        return datetime(*fields)
    except ValueError:  # zeroed or garbage DOS time
        return None


def _read_tar(fh: IO[bytes], reader: _Reader, mode: str) -> None:
    # streaming mode ("r|"): members one after another, never a seek back over a gzip stream
    with tarfile.open(fileobj=fh, mode=mode.replace(":", "|")) as archive:
        for info in archive:
            if info.isdir():
                continue
            if not info.isfile():
                reader.listing.lines.append(f"{info.name}  (link or special file, not read)")
                continue
            reader.count_member()
            if info.size > reader.budget.remaining:
                reader.take(info.size, info.name)
            member = archive.extractfile(info)
            assert member is not None
            data = reader.read_stream(member, info.name)
            try:
                when = datetime.fromtimestamp(info.mtime) if info.mtime else None
            except (ValueError, OverflowError, OSError):
                when = None
            reader.add(info.name, data, when)


def _read_gzip(fh: IO[bytes], reader: _Reader, name: str) -> None:
    inner = PurePosixPath(name).name
    lower = inner.lower()
    if lower.endswith(".gz"):
        inner = inner[:-3]
    elif lower.endswith(".tgz"):
        inner = inner[:-4] + ".tar"
    with gzip.GzipFile(fileobj=fh) as stream:
        reader.count_member()
        data = reader.read_stream(stream, inner)  # type: ignore[arg-type]
    reader.add(inner or "content", data)


class _BudgetedWriter:
    """A py7zr writer for one member that counts every byte against the budget as it is decompressed."""

    def __init__(self, name: str, reader: _Reader):
        self.name = name
        self.reader = reader
        self.buffer = io.BytesIO()

    def write(self, s: bytes | bytearray) -> int:
        self.reader.take(len(s), self.name)
        return self.buffer.write(s)

    def read(self, size: int | None = None) -> bytes:
        return self.buffer.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.buffer.seek(offset, whence)

    def flush(self) -> None:
        pass

    def size(self) -> int:
        return len(self.buffer.getbuffer())

    def close(self) -> None:
        pass


def _read_7z(fh: IO[bytes], reader: _Reader) -> None:
    import py7zr
    from py7zr.io import Py7zIO, WriterFactory

    Py7zIO.register(_BudgetedWriter)

    class Factory(WriterFactory):
        def __init__(self) -> None:
            self.products: dict[str, _BudgetedWriter] = {}

        def create(self, filename: str) -> Py7zIO:
            reader.count_member()
            product = _BudgetedWriter(filename, reader)
            self.products[filename] = product
            return product  # type: ignore[return-value]

    try:
        archive = py7zr.SevenZipFile(fh, mode="r")
    except py7zr.exceptions.PasswordRequired as exc:  # encrypted headers: not even the names are readable
        raise ExtractionError("password-protected 7z archive (its file names are encrypted too); not read: "
                              "no password was given") from exc  # fmt: skip
    with archive:
        infos = [info for info in archive.list() if not info.is_directory]
        if archive.needs_password():
            reader.listing.encrypted.extend(info.filename for info in infos)
            return
        declared = sum(info.uncompressed for info in infos)
        if declared > reader.budget.remaining:
            reader.take(declared, infos[-1].filename if infos else "?")
        factory = Factory()
        archive.extractall(factory=factory)
        stamps = {info.filename: info.creationtime for info in infos}
        for info in infos:
            product = factory.products.get(info.filename)
            if product is None:
                reader.listing.lines.append(f"{info.filename}  (not read)")
                continue
            when = stamps.get(info.filename)
            reader.add(info.filename, product.buffer.getvalue(), when if isinstance(when, datetime) else None)
