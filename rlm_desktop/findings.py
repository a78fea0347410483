"""Findings: spans of the case's documents an investigator keeps as evidence, verified exactly as `cite` is.

A finding is added only when its quote equals the stored text at its offsets and that text still has the
SHA-256 recorded at ingest (engine/citations.build_citation, the check every run citation gets). Nothing
about it is stored as "verified": every read checks it again, so a text changed after the finding was added
shows it as not verified, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_desktop.engine.citations import build_citation
from rlm_desktop.store import findings as rows
from rlm_desktop.store.case import Case
from rlm_desktop.store.findings import FindingRow

SELECTION = "selection"
HASH_MOVED = "the document's text hash differs from the one recorded when the finding was added"


class FindingNotVerified(ValueError):
    """The span does not verify against the case (the reason is the message): it is not added."""


class DuplicateFinding(ValueError):
    """The same span of the same document is a finding already."""

    def __init__(self, finding_id: int):
        super().__init__(f"this passage is already finding {finding_id}")
        self.finding_id = finding_id


@dataclass(frozen=True)
class Finding:
    """A finding with its verification as of now and what a list or a report shows of its document."""

    row: FindingRow
    verified: bool
    problem: str | None
    title: str | None
    kind: str | None
    path: str | None
    page: int | None
    citation: dict[str, Any] = field(repr=False)  # a CONTRACTS citation dict, for the viewer and reports

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def marker(self) -> str:
        return marker_for(self.row.id)

    @property
    def source(self) -> str:
        """Where it came from, in words: 'citation [c2] of run 1a2b3c4d' or 'selected in the viewer'."""
        if self.row.origin == SELECTION or not self.row.run_id:
            return "selected in the viewer"
        return f"citation {self.row.origin} of run {self.row.run_id[:8]}"

    def to_json(self) -> dict[str, Any]:
        r = self.row
        return {
            "id": r.id,
            "marker": self.marker,
            "doc_id": r.doc_id,
            "title": self.title,
            "path": self.path,
            "start": r.start,
            "end": r.end,
            "quote": r.quote,
            "note": r.note,
            "created": r.created,
            "run_id": r.run_id,
            "origin": r.origin,
            "verified": self.verified,
            "problem": self.problem,
            "page": self.page,
            "sha256": self.citation.get("sha256"),
            "text_sha256": self.citation.get("text_sha256"),
            "text_sha256_when_added": r.text_sha256,
        }


def marker_for(finding_id: int) -> str:
    return f"F{finding_id}"


def check(case: Case, row: FindingRow) -> Finding:
    """Verify a stored finding now, as a run's citation is verified."""
    citation = build_citation(case, marker_for(row.id), row.doc_id, row.start, row.end, row.quote)
    verified = bool(citation["verified"])
    problem = citation.get("problem")
    if verified and row.text_sha256 is not None and citation.get("text_sha256") != row.text_sha256:
        verified, problem = False, HASH_MOVED
        citation["verified"], citation["problem"] = False, problem
    return Finding(
        row=row,
        verified=verified,
        problem=None if verified else problem,
        title=citation.get("title"),
        kind=citation.get("kind"),
        path=citation.get("path"),
        page=citation.get("page"),
        citation=citation,
    )


def add_finding(
    case: Case,
    doc_id: int,
    start: int,
    end: int,
    quote: str | None = None,
    *,
    note: str = "",
    run_id: str | None = None,
    origin: str = SELECTION,
) -> Finding:
    """Keep a span as a finding. `quote` is what a citation claimed (None: a selection, whose quote is the
    stored text at the offsets, as `cite(doc_id, start, end)` takes it).

    Raises FindingNotVerified (with the reason) when the span does not verify, DuplicateFinding when the
    same span is already kept, KeyError for an unknown document, ValueError for a note that is too long.
    """
    doc_id, start, end = int(doc_id), int(start), int(end)
    if quote is None:
        text = case.text(doc_id)  # KeyError names an unknown document
        if not 0 <= start < end <= len(text):
            raise FindingNotVerified(
                f"characters {start:,}–{end:,} are not a passage of this document ({len(text):,} characters)"
            )
        quote = text[start:end]
    else:
        case.document(doc_id)
    citation = build_citation(case, SELECTION if run_id is None else origin, doc_id, start, end, quote)
    if not citation["verified"]:
        raise FindingNotVerified(f"not added to the findings: {citation.get('problem') or 'it does not verify'}")
    existing = case.conn.execute(
        'SELECT id FROM findings WHERE doc_id = ? AND start = ? AND "end" = ?', (doc_id, start, end)
    ).fetchone()
    if existing is not None:
        raise DuplicateFinding(int(existing[0]))
    row = rows.insert_finding(
        case,
        doc_id=doc_id,
        start=start,
        end=end,
        quote=quote,
        note=note,
        run_id=run_id,
        origin=origin if run_id is not None else SELECTION,
        text_sha256=citation.get("text_sha256"),
    )
    return check(case, row)


def add_citation(case: Case, citation: dict[str, Any], run_id: str | None, note: str = "") -> Finding:
    """Keep a run's citation (a CONTRACTS citation dict) as a finding; its quote is checked, not trusted."""
    try:
        doc_id, start, end = int(citation["doc_id"]), int(citation["start"]), int(citation["end"])
    except (KeyError, TypeError, ValueError):
        raise FindingNotVerified("the citation names no document span") from None
    marker = str(citation.get("marker") or "citation")
    return add_finding(
        case, doc_id, start, end, str(citation.get("quote") or ""), note=note, run_id=run_id, origin=marker
    )


def list_findings(case: Case) -> list[Finding]:
    """Every finding of the case, oldest first, each verified now."""
    return [check(case, row) for row in rows.finding_rows(case)]


def get_finding(case: Case, finding_id: int) -> Finding:
    return check(case, rows.finding_row(case, finding_id))


# ---- command line --------------------------------------------------------------------------------------


def tag_cli(case: Case, doc_id: int, tags: list[str], *, remove: bool, as_json: bool) -> int:
    """`rlm-desktop tag DOC_ID [TAG...] [--remove]`: add (or remove) tags, then print the document's tags."""
    import json
    import sys

    try:
        title = case.document(doc_id).title
        for tag in tags:
            if remove:
                if not rows.remove_tag(case, doc_id, tag):
                    print(f"rlm-desktop: document {doc_id} has no tag {tag!r}", file=sys.stderr)
            else:
                rows.add_tag(case, doc_id, tag)
    except (KeyError, rows.InvalidTag) as exc:
        print(f"rlm-desktop: error: {str(exc).strip(chr(34))}", file=sys.stderr)
        return 2
    now = rows.tags_of(case, doc_id)
    if as_json:
        json.dump({"doc_id": doc_id, "title": title, "tags": now}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{doc_id} {title}: " + (", ".join(now) if now else "no tags"))
    return 0


def findings_cli(case: Case, *, as_json: bool) -> int:
    """`rlm-desktop findings`: every finding, verified now; exit 1 when one does not verify."""
    import json
    import sys

    findings = list_findings(case)
    if as_json:
        json.dump([f.to_json() for f in findings], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        if not findings:
            print("no findings in this case")
        for f in findings:
            check = "verified" if f.verified else f"NOT VERIFIED ({f.problem})"
            where = f", page {f.page}" if f.page else ""
            print(f"{f.marker}  {f.title}{where}, characters {f.row.start}-{f.row.end}  [{check}]  {f.source}")
            print(f"    “{' '.join(f.row.quote.split())}”")
            if f.row.note:
                print(f"    note: {f.row.note}")
    return 0 if all(f.verified for f in findings) else 1
