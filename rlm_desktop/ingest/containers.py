"""What a ZIP or OLE container really holds (Word, Excel, PowerPoint, OpenDocument, Outlook, or a plain archive),
read from its directory rather than trusted from its name."""

from __future__ import annotations

import io
import zipfile
from contextlib import suppress

from rlm_desktop.ingest import formats
from rlm_desktop.ingest.source import Source

_OOXML = (
    (b"wordprocessingml", "docx"),
    (b"spreadsheetml", "spreadsheet"),
    (b"presentationml", "presentation"),
)
_ODF = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "spreadsheet",
    "application/vnd.oasis.opendocument.presentation": "presentation",
}
_SMALL_PART = 1024 * 1024  # [Content_Types].xml and mimetype are a few KB; never inflate a large one to sniff


def _open_zip(source: Source) -> zipfile.ZipFile:
    if source.data is not None:
        return zipfile.ZipFile(io.BytesIO(source.data))
    assert source.path is not None
    return zipfile.ZipFile(source.path)


def zip_kind(source: Source) -> str:
    """docx, spreadsheet, presentation or odt for an office package, else archive; the name decides only when
    the directory cannot be read (the extractor then says what is wrong). Non-ZIP archives are archives."""
    if not source.head(4).startswith(b"PK"):
        return "archive"
    try:
        with _open_zip(source) as package:
            names = {info.filename: info for info in package.infolist()}
            mimetype = names.get("mimetype")
            if mimetype is not None and mimetype.file_size < 200:
                kind = _ODF.get(package.read(mimetype).decode("ascii", "replace").strip())
                if kind and formats.get(kind):
                    return kind
            types = names.get("[Content_Types].xml")
            if types is not None and types.file_size < _SMALL_PART:
                body = package.read(types)
                mains = (b".document.main", b".template.main", b".sheet.main", b".presentation.main",
                         b".slideshow.main")  # fmt: skip
                for marker, kind in _OOXML:  # the main part's content type names the application
                    if any(marker + main in body for main in mains) and formats.get(kind):
                        return kind
                for marker, kind in _OOXML:
                    if marker in body and formats.get(kind):
                        return kind
            return "archive"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, NotImplementedError):
        pass
    return formats.kind_for_suffix(source.suffix, signed=True) or "archive"


def ole_kind(source: Source) -> str:
    """msg, docx (which explains encrypted OOXML and Word 97-2003), spreadsheet or presentation for an OLE
    compound file."""
    import olefile

    suffix = source.suffix
    with suppress(Exception):
        data = source.data if source.data is not None else source.path
        with olefile.OleFileIO(data) as ole:  # type: ignore[arg-type]
            streams = {"/".join(entry) for entry in ole.listdir(streams=True, storages=True)}
            if any(name.startswith("__substg1.0_") for name in streams) or "__properties_version1.0" in streams:
                return "msg"
            if "EncryptedPackage" in streams or "EncryptionInfo" in streams:
                by_suffix = formats.kind_for_suffix(suffix, signed=True)
                return by_suffix if by_suffix in ("spreadsheet", "presentation") else "docx"
            if "Workbook" in streams or "Book" in streams:
                return "spreadsheet"
            if "PowerPoint Document" in streams:
                return "presentation"
            if "WordDocument" in streams:
                return "doc" if formats.get("doc") else "docx"
    if suffix == ".msg":
        return "msg"
    return formats.kind_for_suffix(suffix, signed=True) or "docx"
