"""DOCX extraction: body text in document order, then headers/footers, notes and comments."""

from __future__ import annotations

import mimetypes
import posixpath
import re
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from typing import Any

import docx
import olefile
from lxml import etree

from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError, UnsupportedFormat
from rlm_desktop.ingest.limits import check_zip
from rlm_desktop.ingest.source import Source
from rlm_desktop.store.titles import choose_title

__all__ = ["extract_docx"]

OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_W = f"{{{_W_NS}}}"
_M = "{http://schemas.openxmlformats.org/officeDocument/2006/math}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_RT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_RT_OFFICE_DOCUMENT = _RT + "officeDocument"
_RT_CORE = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"
_DC = "{http://purl.org/dc/elements/1.1/}"
_DCTERMS = "{http://purl.org/dc/terms/}"
_CP = "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}"

# Strict OOXML (ISO 29500 strict) only renames namespaces: .../ooxml/X/Y -> .../X/2006/Y.
_STRICT_NS = re.compile(rb"http://purl\.oclc\.org/ooxml/([A-Za-z]+)/")
_MAIN_CONTENT_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    "application/vnd.ms-word.document.macroEnabled.main+xml",
    "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
}
_SKIP_NOTE_TYPES = {"separator", "continuationSeparator", "continuationNotice"}
_MAX_ANCHOR_CHARS = 200
_HEADING_LEVELS = {str(level) for level in range(9)}
# Symbol-font letters map to Greek (w:sym with w:font="Symbol").
_SYMBOL_GREEK = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "ΑΒΧΔΕΦΓΗΙϑΚΛΜΝΟΠΘΡΣΤΥςΩΞΨΖαβχδεφγηιϕκλμνοπθρστυϖωξψζ",
)

_STRICT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
_RECOVER_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, recover=True)


@dataclass
class _Rel:
    reltype: str
    load: Callable[[], Any]  # returns the part's root element, or None


@dataclass
class _Package:
    """The bits of a DOCX package the walker needs, whichever way it was opened."""

    main: Any
    rels: dict[str, _Rel]
    core: Any | None
    embeddings: list[tuple[str, bytes, str]]  # (part name, data, content type)
    warnings: list[str] = field(default_factory=list)

    def roots_of(self, reltype_suffix: str) -> Iterator[Any]:
        for rel in self.rels.values():
            if rel.reltype.endswith("/" + reltype_suffix):
                root = rel.load()
                if root is not None:
                    yield root


def extract_docx(source: Source) -> Extracted:
    """Extract a .docx (or .docm/.dotx) file; raises ExtractionError/UnsupportedFormat with a reason.

    Text layout: body paragraphs one per line ("- " before list items), tables as rows of cells joined
    by " | " with a blank line around each table, text boxes after their anchor paragraph, note
    references as "[1]" (footnotes) and "[i]" (endnotes). Then, each after a blank line and a title
    line when present: "Headers and footers", "Footnotes", "Endnotes", "Comments".
    """
    data = source.read_bytes()
    if data[:8] == OLE_SIGNATURE and source.password:
        data = _decrypt(data, source.password)
    if data[:8] == OLE_SIGNATURE:
        _raise_for_ole(data, source.suffix)
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExtractionError("not a valid DOCX file (not a ZIP package)") from exc
    with archive:
        check_zip(archive, "DOCX package")  # before python-docx loads every part into memory
        try:
            package = _open_with_python_docx(data)
        except ExtractionError:
            raise
        except Exception:  # noqa: BLE001 - any python-docx failure means: read the ZIP ourselves
            package = _open_raw(archive)
        try:
            return _build(source, package)
        except RecursionError as exc:
            raise ExtractionError("DOCX structure is nested too deeply to read") from exc


ENCRYPTED_MSG = "DOCX is encrypted and needs a password"


def _decrypt(data: bytes, password: str) -> bytes:
    """The package inside an encrypted DOCX (an OLE file holding an ECMA-376 encrypted package)."""
    import msoffcrypto
    from msoffcrypto.exceptions import FileFormatError, InvalidKeyError

    try:
        office = msoffcrypto.OfficeFile(BytesIO(data))
        if not office.is_encrypted():
            return data  # a legacy .doc or another OLE file: _raise_for_ole explains it
        office.load_key(password=password)
        out = BytesIO()
        office.decrypt(out)
    except InvalidKeyError as exc:
        raise ExtractionError(f"{ENCRYPTED_MSG} (the given password is wrong)") from exc
    except FileFormatError:
        return data
    except Exception as exc:  # noqa: BLE001 - a hostile container must only ever fail its file
        raise ExtractionError(f"{ENCRYPTED_MSG}, and it could not be decrypted: {exc}") from exc
    return out.getvalue()


def _raise_for_ole(data: bytes, suffix: str) -> None:
    """OLE compound files are either encrypted OOXML packages or legacy Word binaries."""
    encrypted_msg = ENCRYPTED_MSG
    legacy_msg = "Word 97-2003 .doc files are not supported; save as .docx"
    try:
        with olefile.OleFileIO(BytesIO(data)) as ole:
            if ole.exists("EncryptedPackage") or ole.exists("EncryptionInfo"):
                raise ExtractionError(encrypted_msg)
            if ole.exists("WordDocument") or suffix == ".doc":
                raise UnsupportedFormat(legacy_msg)
    except ExtractionError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable OLE: decide by the name alone
        if suffix == ".doc":
            raise UnsupportedFormat(legacy_msg) from exc
        raise ExtractionError(encrypted_msg) from exc
    raise ExtractionError("not a valid DOCX file (an OLE compound file that is not a Word document)")


# --------------------------------------------------------------------------- opening the package


def _parse_xml(blob: bytes, name: str, warnings: list[str]) -> Any:
    blob = _STRICT_NS.sub(rb"http://schemas.openxmlformats.org/\1/2006/", blob)
    try:
        return etree.fromstring(blob, _STRICT_PARSER)
    except etree.XMLSyntaxError:
        root = etree.fromstring(blob, _RECOVER_PARSER)
        if root is None:
            warnings.append(f"{name}: unreadable XML, part skipped")
        else:
            warnings.append(f"{name}: malformed XML, recovered what could be read")
        return root


def _open_with_python_docx(data: bytes) -> _Package:
    document = docx.Document(BytesIO(data))
    main_part = document.part
    package = main_part.package
    warnings: list[str] = []

    def loader(part: Any) -> Callable[[], Any]:
        if hasattr(part, "element"):
            return lambda: part.element
        return lambda: _parse_xml(part.blob, str(part.partname).lstrip("/"), warnings)

    rels = {
        r_id: _Rel(rel.reltype, loader(rel.target_part))
        for r_id, rel in main_part.rels.items()
        if not rel.is_external
    }
    core = None
    for rel in package.rels.values():
        if rel.reltype == _RT_CORE and not rel.is_external:
            # parse the stored bytes: python-docx invents default core properties when the part is missing
            core = _parse_xml(rel.target_part.blob, "docProps/core.xml", warnings)
    embeddings = [
        (str(part.partname).lstrip("/"), part.blob, part.content_type)
        for part in package.iter_parts()
        if "/embeddings/" in str(part.partname)
    ]
    return _Package(main_part.element, rels, core, embeddings, warnings)


def _open_raw(archive: zipfile.ZipFile) -> _Package:
    """Read the package without python-docx: for strict OOXML, malformed XML, odd part names."""
    warnings: list[str] = []
    names = {info.filename.lstrip("/"): info.filename for info in archive.infolist()}
    lower_names = {name.lower(): name for name in names}

    def member(name: str) -> bytes | None:
        name = name.lstrip("/")
        real = names.get(name) or names.get(lower_names.get(name.lower(), ""))
        return archive.read(real) if real else None

    def xml(name: str) -> Any:
        blob = member(name)
        return None if blob is None else _parse_xml(blob, name.lstrip("/"), warnings)

    content_types = _content_types(xml("[Content_Types].xml"))
    package_rels = _read_rels(xml("_rels/.rels"), "/")
    main_name = next((target for rt, target in package_rels.values() if rt == _RT_OFFICE_DOCUMENT), None)
    if main_name is None or member(main_name) is None:
        main_name = next((n for n, ct in content_types.items() if ct in _MAIN_CONTENT_TYPES), None)
    if main_name is None or member(main_name) is None:
        main_name = "word/document.xml"
    main = xml(main_name)
    if main is None:
        raise ExtractionError("not a valid DOCX file (no readable main document part)")
    if main.tag != _W + "document":
        raise ExtractionError("not a valid DOCX file (the main part is not a Word document)")
    main_dir, main_base = posixpath.split(main_name.lstrip("/"))
    main_rels = _read_rels(xml(posixpath.join(main_dir, "_rels", main_base + ".rels")), "/" + main_dir)
    cache: dict[str, Any] = {}

    def loader(target: str) -> Callable[[], Any]:
        def load() -> Any:
            if target not in cache:
                cache[target] = xml(target) if target.lower().endswith(".xml") else None
            return cache[target]

        return load

    rels = {r_id: _Rel(rt, loader(target)) for r_id, (rt, target) in main_rels.items()}
    core_name = next((t for rt, t in package_rels.values() if rt == _RT_CORE), "docProps/core.xml")
    embeddings = []
    for name in names:
        if "/embeddings/" in name and not name.endswith("/"):
            ext = posixpath.splitext(name)[1].lstrip(".").lower()
            content_type = content_types.get(name) or content_types.get("*." + ext) or ""
            embeddings.append((name, member(name) or b"", content_type))
    return _Package(main, rels, xml(core_name), embeddings, warnings)


def _content_types(root: Any) -> dict[str, str]:
    """Part name (no leading slash) or "*.ext" -> content type."""
    types: dict[str, str] = {}
    if root is None:
        return types
    for el in root:
        if el.tag == _CT_NS + "Default":
            types["*." + el.get("Extension", "").lower()] = el.get("ContentType", "")
        elif el.tag == _CT_NS + "Override":
            types[el.get("PartName", "").lstrip("/")] = el.get("ContentType", "")
    return types


def _read_rels(root: Any, base_dir: str) -> dict[str, tuple[str, str]]:
    """rId -> (relationship type, target part name without leading slash); external targets dropped."""
    rels: dict[str, tuple[str, str]] = {}
    if root is None:
        return rels
    for el in root:
        if el.tag != _RELS_NS + "Relationship" or el.get("TargetMode") == "External":
            continue
        target = el.get("Target", "")
        path = target if target.startswith("/") else posixpath.join(base_dir, target)
        rels[el.get("Id", "")] = (el.get("Type", ""), posixpath.normpath(path).lstrip("/"))
    return rels


# --------------------------------------------------------------------------- building the result


def _build(source: Source, package: _Package) -> Extracted:
    walker = _Walker(*_list_styles(package))
    warnings = list(package.warnings)
    footnotes = walker.load_notes(package.roots_of("footnotes"), "footnote", _arabic)
    endnotes = walker.load_notes(package.roots_of("endnotes"), "endnote", _roman)
    comments = _comments_by_id(package)
    walker.track_comments(comments)

    body = package.main.find(_W + "body")
    walker.counting = walker.tracking = True
    body_text = _join_blocks(walker.blocks(body)) if body is not None else ""
    walker.counting = walker.tracking = False
    sections = [body_text] if body_text else []

    hdrftr = _headers_and_footers(package, walker)
    if hdrftr:
        sections.append("Headers and footers\n" + "\n".join(hdrftr))
    for title, notes in (("Footnotes", footnotes), ("Endnotes", endnotes)):
        if notes:
            sections.append(title + "\n" + "\n".join(f"[{label}] {text}" for label, text in notes))
    comment_lines = [walker.comment_line(c) for c in comments.values()]
    comment_lines = [line for line in comment_lines if line]
    if comment_lines:
        sections.append("Comments\n" + "\n".join(comment_lines))

    text, revisions = _resolve_revisions("\n\n".join(sections), walker.revisions)
    if walker.tracked_changes:
        warnings.append(
            "document has tracked changes: insertions are included, deletions are left out of the text "
            "(both are listed with author and date in the document's revisions)"
        )
    if walker.alt_chunks:
        warnings.append(f"{walker.alt_chunks} imported chunk(s) (altChunk) were not extracted")
    core = _core_properties(package.core)
    meta: dict[str, Any] = {
        **core,
        "paragraphs": walker.paragraph_count,
        "tables": walker.table_count,
        "has_comments": bool(comment_lines),
        "has_footnotes": bool(footnotes),
        "tracked_changes": walker.tracked_changes,
    }
    if revisions:
        meta["revisions"] = revisions
    if endnotes:
        meta["has_endnotes"] = True
    # a junk metadata title (a path, "Untitled", "x.doc") gives way to the file name; it stays in meta
    title = choose_title(core.get("title"), source.name)
    if core.get("title") and title != core.get("title"):
        meta["metadata_title"] = core.get("title")
    return Extracted(
        kind="docx",
        title=title,
        text=text,
        meta=meta,
        children=_embedded_children(package.embeddings),
        warnings=warnings,
    )


def _join_blocks(blocks: list[tuple[str, bool]]) -> str:
    """Paragraphs one per line; a blank line before and after each table."""
    parts: list[str] = []
    previous_is_table = False
    for index, (text, is_table) in enumerate(blocks):
        if index:
            parts.append("\n\n" if is_table or previous_is_table else "\n")
        parts.append(text)
        previous_is_table = is_table
    return "".join(parts)


def _headers_and_footers(package: _Package, walker: _Walker) -> list[str]:
    """Unique header/footer texts, in the order the sections reference them."""
    ordered_ids: list[str] = []
    for sect_pr in package.main.iter(_W + "sectPr"):
        for ref in sect_pr:
            if ref.tag in (_W + "headerReference", _W + "footerReference"):
                r_id = ref.get(_R_ID)
                if r_id and r_id not in ordered_ids:
                    ordered_ids.append(r_id)
    if not ordered_ids:
        # no section properties (seen in stripped-down files): take every header/footer the part relates to
        ordered_ids = [
            r_id for r_id, rel in package.rels.items() if rel.reltype.endswith(("/header", "/footer"))
        ]
    seen: set[str] = set()
    texts: list[str] = []
    for r_id in ordered_ids:
        rel = package.rels.get(r_id)
        root = rel.load() if rel is not None else None
        if root is None:
            continue
        # one line per paragraph or table row: blank lines would read as a new section here
        text = "\n".join(block for block, _ in walker.blocks(root)).strip()
        if text and text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


@dataclass
class _Comment:
    author: str
    date: str
    text: str
    anchor: list[str] = field(default_factory=list)
    anchor_len: int = 0


def _comments_by_id(package: _Package) -> dict[str, _Comment]:
    comments: dict[str, _Comment] = {}
    walker = _Walker(set(), set())
    for root in package.roots_of("comments"):
        for el in root.iter(_W + "comment"):
            text = " ".join(t for t, _ in walker.blocks(el) if t.strip()).strip()
            comments[el.get(_W + "id", "")] = _Comment(
                el.get(_W + "author", ""), el.get(_W + "date", ""), text
            )
    return comments


def _list_styles(package: _Package) -> tuple[set[str], set[str]]:
    """(numbered style ids, heading style ids), each directly or through w:basedOn.

    Headings are told apart because outline-numbered headings ("1.2 Scope") are not list items.
    """
    based_on: dict[str, str] = {}
    numbered: set[str] = set()
    headings: set[str] = set()
    for root in package.roots_of("styles"):
        for style in root.iter(_W + "style"):
            style_id = style.get(_W + "styleId", "")
            num_id = style.find(f"{_W}pPr/{_W}numPr/{_W}numId")
            if num_id is not None and num_id.get(_W + "val") not in (None, "0"):
                numbered.add(style_id)
            if _is_outline_level(style.find(f"{_W}pPr/{_W}outlineLvl")):
                headings.add(style_id)
            parent = style.find(_W + "basedOn")
            if parent is not None:
                based_on[style_id] = parent.get(_W + "val", "")
    return _inherit(numbered, based_on), _inherit(headings, based_on)


def _is_outline_level(el: Any) -> bool:
    """Levels 0-8 are headings; 9 is how some producers (Apple Pages) spell "body text"."""
    return el is not None and el.get(_W + "val", "0") in _HEADING_LEVELS


def _inherit(marked: set[str], based_on: dict[str, str]) -> set[str]:
    result = set(marked)
    for style_id in based_on:
        seen, current = set(), style_id
        while current in based_on and current not in seen and current not in marked:
            seen.add(current)
            current = based_on[current]
        if current in marked:
            result.add(style_id)
    return result


def _core_properties(root: Any) -> dict[str, str]:
    if root is None:
        return {}
    fields = {
        "title": _DC + "title",
        "author": _DC + "creator",
        "last_modified_by": _CP + "lastModifiedBy",
        "created": _DCTERMS + "created",
        "modified": _DCTERMS + "modified",
    }
    result: dict[str, str] = {}
    for key, tag in fields.items():
        el = root.find(tag)
        value = (el.text or "").strip() if el is not None else ""
        if not value:
            continue
        if key in ("created", "modified"):
            value = _iso_date(value)
        result[key] = value
    return result


def _iso_date(value: str) -> str:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return value


def _embedded_children(embeddings: list[tuple[str, bytes, str]]) -> list[Blob]:
    children = []
    for part_name, data, content_type in embeddings:
        filename, payload = posixpath.basename(part_name), data
        if data[:8] == OLE_SIGNATURE:
            filename, payload = _unwrap_ole_object(filename, data)
        if payload is not data or content_type in _VAGUE_CONTENT_TYPES:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        children.append(Blob(filename, payload, content_type, part_name))
    return children


_VAGUE_CONTENT_TYPES = {
    "",
    "application/octet-stream",
    "application/vnd.openxmlformats-officedocument.oleObject",
    "application/vnd.ms-office.oleObject",
}


def _unwrap_ole_object(filename: str, data: bytes) -> tuple[str, bytes]:
    """Best effort: OLE "Package" objects hold a file in Ole10Native; Acrobat objects a PDF in CONTENTS."""
    try:
        with olefile.OleFileIO(BytesIO(data)) as ole:
            if ole.exists("\x01Ole10Native"):
                return _parse_ole10native(ole.openstream("\x01Ole10Native").read(), filename)
            if ole.exists("CONTENTS"):
                contents = ole.openstream("CONTENTS").read()
                if contents.startswith(b"%PDF"):
                    return posixpath.splitext(filename)[0] + ".pdf", contents
    except Exception:  # noqa: BLE001 - keep the object as it is
        pass
    return filename, data


def _parse_ole10native(stream: bytes, fallback_name: str) -> tuple[str, bytes]:
    # layout: u32 size, u16 flags, label\0, source path\0, u32, u32 len, temp path\0, u32 size, data
    pos = 6
    label_end = stream.index(b"\0", pos)
    label = stream[pos:label_end].decode("latin-1")
    pos = stream.index(b"\0", label_end + 1) + 1 + 4
    (temp_len,) = struct.unpack_from("<I", stream, pos)
    pos += 4 + temp_len
    (size,) = struct.unpack_from("<I", stream, pos)
    payload = stream[pos + 4 : pos + 4 + size]
    return (label or fallback_name), payload


def _arabic(n: int) -> str:
    return str(n)


def _roman(n: int) -> str:
    numerals = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"))
    numerals += ((40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))
    out = []
    for value, letters in numerals:
        count, n = divmod(n, value)
        out.append(letters * count)
    return "".join(out)


# --------------------------------------------------------------------------- the walker


class _Walker:
    """Turns WordprocessingML elements into text; one instance per document."""

    def __init__(self, list_styles: set[str], heading_styles: set[str]) -> None:
        self.list_styles = list_styles
        self.heading_styles = heading_styles
        self.note_labels: dict[tuple[str, str], str] = {}
        self.comments: dict[str, _Comment] = {}
        self.open_comments: list[_Comment] = []
        self.tracked_changes = False
        self.tracking = False  # while walking the body: mark each tracked insertion and deletion in the text
        self.revisions: list[dict[str, Any]] = []
        self.alt_chunks = 0
        self.counting = False
        self.paragraph_count = 0
        self.table_count = 0

    def load_notes(
        self, roots: Iterable[Any], kind: str, label: Callable[[int], str]
    ) -> list[tuple[str, str]]:
        notes: list[tuple[str, str]] = []
        for root in roots:
            for note in root.iter(_W + kind):
                if note.get(_W + "type", "normal") in _SKIP_NOTE_TYPES:
                    continue
                text = " ".join(t.strip() for t, _ in self.blocks(note) if t.strip())
                if not text:
                    continue
                notes.append((label(len(notes) + 1), text))
                self.note_labels[(kind, note.get(_W + "id", ""))] = notes[-1][0]
        return notes

    def track_comments(self, comments: dict[str, _Comment]) -> None:
        self.comments = comments

    def comment_line(self, comment: _Comment) -> str:
        if not comment.text:
            return ""
        who = ", ".join(x for x in (comment.author, comment.date) if x)
        line = f"[{who}] {comment.text}" if who else comment.text
        anchor = " ".join("".join(comment.anchor).split())
        if anchor:
            if comment.anchor_len > _MAX_ANCHOR_CHARS:
                anchor = anchor[:_MAX_ANCHOR_CHARS].rstrip() + "…"
            line += f' (on: "{anchor}")'
        return line

    # -- block level ---------------------------------------------------------------------------

    def blocks(self, container: Any) -> list[tuple[str, bool]]:
        """(text, is_table) for each non-empty paragraph or table under a block container."""
        out: list[tuple[str, bool]] = []
        carry = ""  # text of a paragraph whose mark was deleted joins the next paragraph
        for el in self._block_children(container):
            tag = el.tag
            if tag == _W + "p":
                text, extra, mark_deleted = self.paragraph(el)
                text = carry + text
                carry = ""
                if mark_deleted:
                    carry = text
                elif _visible(text).strip():
                    out.append((text, False))
                    if self.counting:
                        self.paragraph_count += 1
                else:
                    carry = _marks(text)  # a paragraph whose text was all deleted: the deletion marks the next
                out.extend(extra)
            elif tag == _W + "tbl":
                table = self.table(el)
                if _visible(table).strip():
                    out.append((table, True))
        if _visible(carry).strip():
            out.append((carry, False))
        elif out and _marks(carry):
            out[-1] = (out[-1][0] + _marks(carry), out[-1][1])
        return out

    def _block_children(self, container: Any) -> Iterator[Any]:
        """Paragraphs and tables, looking through content controls, custom XML and tracked insertions."""
        for el in container:
            tag = el.tag
            if not isinstance(tag, str):
                continue
            if tag in (_W + "p", _W + "tbl"):
                yield el
            elif tag == _W + "sdt":
                content = el.find(_W + "sdtContent")
                if content is not None:
                    yield from self._block_children(content)
            elif tag == _W + "customXml" or tag == _W + "smartTag":
                yield from self._block_children(el)
            elif tag == _W + "ins" or tag == _W + "moveTo":
                self.tracked_changes = True
                yield from self._block_children(el)
            elif tag in (_W + "del", _W + "moveFrom"):
                self.tracked_changes = True
            elif tag == _MC + "AlternateContent":
                choice = el.find(_MC + "Choice")
                if choice is not None:
                    yield from self._block_children(choice)
            elif tag == _W + "altChunk":
                self.alt_chunks += 1
            elif tag == _W + "commentRangeStart" or tag == _W + "commentRangeEnd":
                self._comment_marker(el)

    def table(self, tbl: Any) -> str:
        if self.counting:
            self.table_count += 1
        rows: list[str] = []
        for tr in self._children(tbl, _W + "tr"):
            tr_pr = tr.find(_W + "trPr")
            if tr_pr is not None and tr_pr.find(_W + "del") is not None:
                self.tracked_changes = True
                continue
            cells: list[str] = []
            for tc in self._children(tr, _W + "tc"):
                tc_pr = tc.find(_W + "tcPr")
                if tc_pr is not None:
                    v_merge = tc_pr.find(_W + "vMerge")
                    h_merge = tc_pr.find(_W + "hMerge")
                    if h_merge is not None and h_merge.get(_W + "val") != "restart":
                        continue  # legacy horizontal merge: the first cell holds the text
                    if v_merge is not None and v_merge.get(_W + "val") != "restart":
                        cells.append("")  # continuation of a vertical merge: keep the column, not the text
                        continue
                # a cell's paragraphs share one line so that each table row stays one line
                cells.append(" ".join(_strip(text) for text, _ in self.blocks(tc)))
            if any(_visible(cell) for cell in cells):
                rows.append(" | ".join(cells))
        return "\n".join(rows)

    def _children(self, parent: Any, tag: str) -> Iterator[Any]:
        """Direct children with `tag`, looking through content controls and custom XML wrappers."""
        for el in parent:
            if el.tag == tag:
                yield el
            elif el.tag == _W + "sdt":
                content = el.find(_W + "sdtContent")
                if content is not None:
                    yield from self._children(content, tag)
            elif el.tag == _W + "customXml":
                yield from self._children(el, tag)

    # -- paragraph level -----------------------------------------------------------------------

    def paragraph(self, p: Any) -> tuple[str, list[tuple[str, bool]], bool]:
        """(text, text-box blocks anchored here, paragraph mark deleted)."""
        pieces: list[str] = []
        extra: list[tuple[str, bool]] = []
        prefix = ""
        mark_deleted = False
        p_pr = p.find(_W + "pPr")
        if p_pr is not None:
            if self._is_list(p_pr):
                prefix = "- "
            mark = p_pr.find(_W + "rPr")
            if mark is not None:
                if mark.find(_W + "del") is not None or mark.find(_W + "moveFrom") is not None:
                    self.tracked_changes = mark_deleted = True
                elif mark.find(_W + "ins") is not None or mark.find(_W + "moveTo") is not None:
                    self.tracked_changes = True
        self._inline(p, pieces, extra)
        for comment in self.open_comments:
            self._feed_comment(comment, " ")
        text = "".join(pieces)
        return (prefix + text if _visible(text).strip() else text), extra, mark_deleted

    def _mark(self, el: Any, kind: str, pieces: list[str], deleted: str = "") -> int | None:
        """Record a tracked change and put its mark in the text (taken out again by _resolve_revisions)."""
        if len(self.revisions) >= MAX_REVISIONS:
            return None
        revision: dict[str, Any] = {
            "kind": kind,
            "author": el.get(_W + "author", ""),
            "date": el.get(_W + "date", ""),
        }
        if el.tag in (_W + "moveTo", _W + "moveFrom"):
            revision["move"] = True
        if kind == "del":
            revision["text"] = deleted[:MAX_DELETED_CHARS]
        number = len(self.revisions)
        self.revisions.append(revision)
        pieces.append((_INS_START if kind == "ins" else _DEL_AT) + _id_char(number))
        return number

    def _is_list(self, p_pr: Any) -> bool:
        style = p_pr.find(_W + "pStyle")
        style_id = style.get(_W + "val") if style is not None else None
        if style_id in self.heading_styles or _is_outline_level(p_pr.find(_W + "outlineLvl")):
            return False
        num_id = p_pr.find(f"{_W}numPr/{_W}numId")
        if num_id is not None:
            return num_id.get(_W + "val") != "0"
        return style_id in self.list_styles

    def _emit(self, text: str, pieces: list[str]) -> None:
        pieces.append(text)
        for comment in self.open_comments:
            self._feed_comment(comment, text)

    @staticmethod
    def _feed_comment(comment: _Comment, text: str) -> None:
        if comment.anchor_len <= _MAX_ANCHOR_CHARS:
            comment.anchor.append(text)
        comment.anchor_len += len(text)

    def _comment_marker(self, el: Any) -> None:
        comment = self.comments.get(el.get(_W + "id", ""))
        if comment is None:
            return
        if el.tag == _W + "commentRangeStart":
            if comment not in self.open_comments:
                self.open_comments.append(comment)
        elif comment in self.open_comments:
            self.open_comments.remove(comment)

    def _inline(self, parent: Any, pieces: list[str], extra: list[tuple[str, bool]]) -> None:
        for el in parent:
            tag = el.tag
            if not isinstance(tag, str):
                continue
            if tag == _W + "t" or tag == _M + "t":
                if el.text:
                    self._emit(el.text, pieces)
            elif tag == _W + "r" or tag == _W + "hyperlink" or tag == _W + "smartTag":
                self._inline(el, pieces, extra)
            elif tag in _SKIPPED_INLINE:
                if tag in _TRACKED_REMOVALS:
                    self.tracked_changes = True
                    if self.tracking:
                        deleted = "".join(t.text or "" for t in el.iter(_W + "delText", _W + "t"))
                        self._mark(el, "del", pieces, deleted)
            elif tag == _W + "tab" or tag == _W + "ptab":
                self._emit("\t", pieces)
            elif tag == _W + "br" or tag == _W + "cr":
                self._emit("\n", pieces)
            elif tag == _W + "noBreakHyphen":
                self._emit("-", pieces)
            elif tag == _W + "sym":
                self._emit(_symbol(el), pieces)
            elif tag == _W + "fldChar":
                box = el.find(f"{_W}ffData/{_W}checkBox")
                if box is not None:
                    self._emit("☒" if _checkbox_checked(box) else "☐", pieces)
            elif tag == _W + "txbxContent":
                # a text box: its paragraphs follow the paragraph that anchors it
                extra.extend(self.blocks(el))
            elif tag == _W + "footnoteReference" or tag == _W + "endnoteReference":
                kind = "footnote" if tag == _W + "footnoteReference" else "endnote"
                label = self.note_labels.get((kind, el.get(_W + "id", "")))
                if label:
                    self._emit(f"[{label}]", pieces)
            elif tag == _W + "commentRangeStart" or tag == _W + "commentRangeEnd":
                self._comment_marker(el)
            elif tag == _MC + "AlternateContent":
                choice = el.find(_MC + "Choice")
                if choice is not None:
                    self._inline(choice, pieces, extra)
            elif tag == _W + "ins" or tag == _W + "moveTo":
                self.tracked_changes = True
                number = self._mark(el, "ins", pieces) if self.tracking else None
                self._inline(el, pieces, extra)
                if number is not None:
                    pieces.append(_INS_END + _id_char(number))
            else:
                # w:sdt, w:fldSimple, w:customXml, drawings, VML shapes, math...: look inside
                self._inline(el, pieces, extra)


_SKIPPED_INLINE = {
    _W + "del",
    _W + "moveFrom",
    _W + "delText",
    _W + "pPr",
    _W + "rPr",
    _W + "sdtPr",
    _W + "sdtEndPr",
    _W + "instrText",
    _W + "delInstrText",
    _W + "fldData",
    _W + "footnoteRef",
    _W + "endnoteRef",
    _W + "annotationRef",
    _MC + "Fallback",
    _M + "rPr",
    _M + "ctrlPr",
}
_TRACKED_REMOVALS = {_W + "del", _W + "moveFrom"}


def _checkbox_checked(box: Any) -> bool:
    """Legacy form check box: w:checked overrides w:default; a bare w:checked means checked."""
    for name in ("checked", "default"):
        flag = box.find(_W + name)
        if flag is not None:
            return flag.get(_W + "val", "true") not in ("0", "false", "off")
    return False


def _symbol(el: Any) -> str:
    """Best effort for w:sym: symbol fonts use the private-use area F0xx for their glyph codes."""
    try:
        code = int(el.get(_W + "char", ""), 16)
    except ValueError:
        return ""
    if 0xF000 <= code <= 0xF0FF:
        code -= 0xF000
    char = chr(code) if code >= 0x20 else ""
    font = (el.get(_W + "font") or "").lower()
    if font == "symbol":
        return char.translate(_SYMBOL_GREEK)
    if font.startswith("wingdings"):
        # its glyphs are pictures, not letters: name the few that carry meaning (check boxes, marks)
        return _WINGDINGS.get(code, "")
    return char


_WINGDINGS = {
    0x6F: "□",
    0x71: "❑",
    0x9F: "•",
    0xA7: "▪",
    0xA8: "☐",
    0xFB: "✗",
    0xFC: "✓",
    0xFD: "☒",
    0xFE: "☑",
}


# --------------------------------------------------------------------------- tracked changes

# Marks put in the body text while it is walked, taken out once the whole text is built, so that each
# revision gets its offset in the final text whatever joins and separators came between: a Unicode
# noncharacter (reserved for internal use, never in a document) and the revision's number in plane 15.
_INS_START, _INS_END, _DEL_AT = "\ufdd0", "\ufdd1", "\ufdd2"
_MARK_RE = re.compile("[\ufdd0-\ufdd2][\U000f0000-\U000ffffd]")
MAX_REVISIONS = 20_000  # a document rewritten with changes tracked; more are counted, not listed
MAX_DELETED_CHARS = 4_000  # of one deletion's text kept in meta


def _id_char(number: int) -> str:
    return chr(0xF0000 + number)


def _visible(text: str) -> str:
    return _MARK_RE.sub("", text)


def _marks(text: str) -> str:
    return "".join(_MARK_RE.findall(text))


def _strip(text: str) -> str:
    """`text.strip()` as if the marks were not there, keeping the marks."""
    if not _MARK_RE.search(text):
        return text.strip()
    edge = r"(?:\s|[\ufdd0-\ufdd2][\U000f0000-\U000ffffd])*"
    lead = re.match(edge, text).group()
    rest = text[len(lead) :]
    trail = re.search(edge + r"\Z", rest).group()
    core = rest[: len(rest) - len(trail)]
    return _marks(lead) + core + _marks(trail)


def _resolve_revisions(text: str, revisions: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The text without its marks, and each revision with its offsets in that text: an insertion's
    [start, end) span, a deletion's point (start == end) where its text stood."""
    if not revisions:
        return text, []
    pieces: list[str] = []
    position = clean = 0
    found: dict[int, dict[str, Any]] = {}
    for match in _MARK_RE.finditer(text):
        pieces.append(text[position : match.start()])
        clean += match.start() - position
        position = match.end()
        mark, number = match.group()[0], ord(match.group()[1]) - 0xF0000
        if not 0 <= number < len(revisions):
            continue
        revision = found.setdefault(number, {**revisions[number]})
        if mark == _INS_END:
            revision["end"] = clean
        else:
            revision["start"] = revision["end"] = clean
    pieces.append(text[position:])
    out = [found[n] for n in sorted(found) if "start" in found[n]]
    for revision in out:
        if revision["kind"] == "ins":
            revision["end"] = max(revision["end"], revision["start"])
    out.sort(key=lambda r: (r["start"], r["end"]))
    return "".join(pieces), out
