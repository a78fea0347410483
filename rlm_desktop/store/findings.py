"""Rows of an investigator's own marks in a case: tags and notes on documents, and findings (kept spans).

Plain SQL over a Case. Whether a finding's quote holds is decided by `rlm_desktop.findings`, which verifies
a span before it is added here and again whenever it is read.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from rlm_desktop.store.case import Case, now_iso

MAX_TAG_CHARS = 64
MAX_NOTE_CHARS = 20_000


class InvalidTag(ValueError):
    """A tag that cannot be stored, with the reason in words."""


def clean_tag(tag: str) -> str:
    """The tag as stored: trimmed, inner whitespace runs made one space; InvalidTag says what is wrong."""
    if not isinstance(tag, str):
        raise InvalidTag("a tag must be text")
    cleaned = " ".join(tag.split())
    if not cleaned:
        raise InvalidTag("a tag cannot be empty")
    if len(cleaned) > MAX_TAG_CHARS:
        raise InvalidTag(f"a tag can have at most {MAX_TAG_CHARS} characters (this one has {len(cleaned)})")
    if any(unicodedata.category(ch).startswith("C") for ch in cleaned):
        raise InvalidTag("a tag cannot hold control characters")
    return cleaned


def clean_note(note: str) -> str:
    if not isinstance(note, str):
        raise ValueError("a note must be text")
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"a note can have at most {MAX_NOTE_CHARS:,} characters (this one has {len(note):,})")
    return note


def _require_document(case: Case, doc_id: int) -> None:
    if case.conn.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
        raise KeyError(f"no document {doc_id} in this case")


# ---- tags ----------------------------------------------------------------------------------------------


def add_tag(case: Case, doc_id: int, tag: str) -> str:
    """Tag a document (a tag it has already, in any letter case, is kept once); returns the stored tag."""
    tag = clean_tag(tag)
    _require_document(case, doc_id)
    with case.transaction():
        case.conn.execute(
            "INSERT OR IGNORE INTO document_tags (doc_id, tag, added) VALUES (?, ?, ?)", (doc_id, tag, now_iso())
        )
    return tag


def remove_tag(case: Case, doc_id: int, tag: str) -> bool:
    """Take a tag off a document; False when it did not have it."""
    with case.transaction():
        cur = case.conn.execute("DELETE FROM document_tags WHERE doc_id = ? AND tag = ?", (doc_id, tag.strip()))
    return cur.rowcount > 0


def tags_of(case: Case, doc_id: int) -> list[str]:
    rows = case.conn.execute("SELECT tag FROM document_tags WHERE doc_id = ? ORDER BY tag COLLATE NOCASE", (doc_id,))
    return [r[0] for r in rows]


def all_tags(case: Case) -> dict[int, tuple[str, ...]]:
    """Every tagged document's tags, alphabetically."""
    tags: dict[int, list[str]] = {}
    for doc_id, tag in case.conn.execute("SELECT doc_id, tag FROM document_tags ORDER BY tag COLLATE NOCASE"):
        tags.setdefault(doc_id, []).append(tag)
    return {doc_id: tuple(values) for doc_id, values in tags.items()}


def tag_names(case: Case) -> list[tuple[str, int]]:
    """Each tag used in the case with how many documents carry it, alphabetically."""
    rows = case.conn.execute(
        "SELECT MIN(tag), COUNT(*) FROM document_tags GROUP BY tag COLLATE NOCASE ORDER BY MIN(tag) COLLATE NOCASE"
    )
    return [(tag, count) for tag, count in rows]


def carry_marks(case: Case, old: int, new: int) -> None:
    """Give document `new` (a changed file's new version) the tags and note of `old`, inside the caller's
    transaction. Findings stay on `old`: they are spans of its text, which is kept."""
    case.conn.execute(
        "INSERT OR IGNORE INTO document_tags (doc_id, tag, added) SELECT ?, tag, added FROM document_tags"
        " WHERE doc_id = ?",
        (new, old),
    )
    case.conn.execute(
        "INSERT OR IGNORE INTO document_notes (doc_id, note, updated) SELECT ?, note, updated FROM document_notes"
        " WHERE doc_id = ?",
        (new, old),
    )


# ---- notes on documents --------------------------------------------------------------------------------


def set_document_note(case: Case, doc_id: int, note: str) -> None:
    """Write a document's note; an empty note removes it."""
    note = clean_note(note)
    _require_document(case, doc_id)
    with case.transaction():
        if note:
            case.conn.execute(
                "INSERT INTO document_notes (doc_id, note, updated) VALUES (?, ?, ?)"
                " ON CONFLICT(doc_id) DO UPDATE SET note = excluded.note, updated = excluded.updated",
                (doc_id, note, now_iso()),
            )
        else:
            case.conn.execute("DELETE FROM document_notes WHERE doc_id = ?", (doc_id,))


def document_note(case: Case, doc_id: int) -> str:
    row = case.conn.execute("SELECT note FROM document_notes WHERE doc_id = ?", (doc_id,)).fetchone()
    return row[0] if row else ""


def all_document_notes(case: Case) -> dict[int, str]:
    return dict(case.conn.execute("SELECT doc_id, note FROM document_notes"))


# ---- findings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingRow:
    """A finding as stored: the span, the quote it had when it was added, and where it came from."""

    id: int
    doc_id: int
    start: int
    end: int
    quote: str
    note: str
    created: str
    run_id: str | None
    origin: str  # the citation marker it came from, or "selection"
    text_sha256: str | None  # the stored text's hash when it was added


_FINDING_COLUMNS = 'id, doc_id, start, "end", quote, note, created, run_id, origin, text_sha256'


def insert_finding(
    case: Case,
    *,
    doc_id: int,
    start: int,
    end: int,
    quote: str,
    note: str,
    run_id: str | None,
    origin: str,
    text_sha256: str | None,
) -> FindingRow:
    """Store a finding (the caller has verified it: see rlm_desktop.findings.add_finding)."""
    note = clean_note(note)
    created = now_iso()
    with case.transaction():
        cur = case.conn.execute(
            f"INSERT INTO findings ({_FINDING_COLUMNS.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc_id, start, end, quote, note, created, run_id, origin, text_sha256),
        )
    return FindingRow(int(cur.lastrowid), doc_id, start, end, quote, note, created, run_id, origin, text_sha256)


def finding_rows(case: Case) -> list[FindingRow]:
    """Every finding, oldest first."""
    rows = case.conn.execute(f"SELECT {_FINDING_COLUMNS} FROM findings ORDER BY id")
    return [FindingRow(*row) for row in rows]


def finding_row(case: Case, finding_id: int) -> FindingRow:
    row = case.conn.execute(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id = ?", (finding_id,)).fetchone()
    if row is None:
        raise KeyError(f"no finding {finding_id} in this case")
    return FindingRow(*row)


def set_finding_note(case: Case, finding_id: int, note: str) -> None:
    note = clean_note(note)
    with case.transaction():
        cur = case.conn.execute("UPDATE findings SET note = ? WHERE id = ?", (note, finding_id))
    if cur.rowcount == 0:
        raise KeyError(f"no finding {finding_id} in this case")


def delete_finding(case: Case, finding_id: int) -> bool:
    with case.transaction():
        cur = case.conn.execute("DELETE FROM findings WHERE id = ?", (finding_id,))
    return cur.rowcount > 0
