"""Whether a case's evidence still holds: stored texts against their text hashes, originals against their
file hashes and a fresh extraction, a run's citations against the stored text (`rlm-desktop verify`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from rlm_desktop.ingest.reextract import Job, Reextraction, Reextractor, job_for
from rlm_desktop.store.case import Case, DocumentRow, text_problem


@dataclass(frozen=True)
class Check:
    status: str  # "matches" | "changed" | "unavailable"
    detail: str


def check_original(case: Case, doc: DocumentRow) -> Check:
    """Recompute the SHA-256 of the original bytes: the file(s) on disk first, else the case's stored copy."""
    changed, missing = [], []
    for path in doc.paths:
        try:
            with open(path, "rb") as original:  # streamed: a mailbox can be gigabytes
                digest = hashlib.file_digest(original, "sha256").hexdigest()
        except OSError as exc:
            missing.append(f"{path}: {exc.strerror or exc}")
            continue
        if digest == doc.sha256:
            return Check("matches", f"the file at {path}")
        changed.append(path)
    blob = case.blob(doc.sha256)
    if blob is not None:
        if hashlib.sha256(blob).hexdigest() == doc.sha256:
            where = "the copy stored in the case" + (" (the email's attachment)" if doc.parent_id else "")
            if changed:
                where += f"; the file at {', '.join(changed)} has changed since ingest"
            return Check("matches", where)
        return Check("changed", "the copy stored in the case does not match its hash")
    if changed:
        return Check("changed", f"the file at {', '.join(changed)} differs from the ingested one")
    if missing:
        return Check("unavailable", "; ".join(missing))
    if doc.parent_id is not None:
        return Check("unavailable", "no separate original: it is part of its parent document, hashed there")
    return Check("unavailable", "no file of its own and no stored copy in the case")


def check_text(case: Case, doc: DocumentRow) -> Check:
    """The stored text against the SHA-256 recorded when it was extracted."""
    problem = text_problem(doc, case.text(doc.id))
    if problem is None:
        return Check("matches", "the stored text has the SHA-256 recorded at ingest")
    return Check("changed", problem)


def reextract(case: Case, doc: DocumentRow, reextractor: Reextractor) -> Reextraction:
    """Extract the original again and compare it with the stored text (bounded in time and memory)."""
    job = job_for(case, doc)
    if not isinstance(job, Job):
        return job
    return reextractor.check(job, case.text(doc.id))


@dataclass
class Finding:
    """One thing that does not hold (or could not be checked), named so a reader can act on it."""

    what: str  # "text", "original", "re-extraction", "citation"
    doc_id: int | None
    title: str
    detail: str
    marker: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.what, "doc_id": self.doc_id, "title": self.title, "marker": self.marker,
                "detail": self.detail}

    def line(self) -> str:
        who = f"citation {self.marker} " if self.marker else ""
        doc = f"document {self.doc_id} “{self.title}”" if self.doc_id is not None else self.title
        return f"{self.what}: {who}{doc}: {self.detail}"


@dataclass
class Verification:
    run_id: str | None = None
    documents: int = 0
    texts_checked: int = 0
    originals_checked: int = 0
    reextracted: int = 0
    citations_checked: int = 0
    mismatches: list[Finding] = field(default_factory=list)
    unavailable: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "checked": {
                "documents": self.documents,
                "texts": self.texts_checked,
                "originals": self.originals_checked,
                "reextracted": self.reextracted,
                "citations": self.citations_checked,
            },
            "mismatches": [f.to_json() for f in self.mismatches],
            "unavailable": [f.to_json() for f in self.unavailable],
        }


def verify_case(
    case: Case, run_id: str | None = None, *, reextract_all: bool = False, reextractor: Reextractor | None = None
) -> Verification:
    """Check every document of the case (superseded versions too: old runs cite them) and, with `run_id`,
    that run's citations, re-extracting the documents it cites (all documents with `reextract_all`).

    Raises KeyError for an unknown run.
    """
    from rlm_desktop.engine.citations import build_citation
    from rlm_desktop.engine.runs import load_run

    result = Verification(run_id=run_id)
    record = load_run(case, run_id) if run_id else None
    if record is not None:
        result.run_id = record["run_id"]
    cited = {int(c["doc_id"]) for c in (record or {}).get("citations") or []}
    own = reextractor is None
    reextractor = reextractor or Reextractor()
    try:
        for doc in case.documents(include_superseded=True):
            result.documents += 1
            text = check_text(case, doc)
            result.texts_checked += 1
            if text.status != "matches":
                result.mismatches.append(Finding("text", doc.id, doc.title, text.detail))
            original = check_original(case, doc)
            if original.status == "changed":
                result.mismatches.append(Finding("original", doc.id, doc.title, original.detail))
            elif original.status == "matches":
                result.originals_checked += 1
            elif doc.parent_id is None:
                result.unavailable.append(Finding("original", doc.id, doc.title, original.detail))
            if reextract_all or doc.id in cited:
                again = reextract(case, doc, reextractor)
                if again.status == "differs":
                    result.mismatches.append(Finding("re-extraction", doc.id, doc.title, again.detail))
                elif again.status == "matches":
                    result.reextracted += 1
                else:
                    result.unavailable.append(Finding("re-extraction", doc.id, doc.title, again.detail))
        for raw in (record or {}).get("citations") or []:
            result.citations_checked += 1
            marker = str(raw.get("marker"))
            doc_id = int(raw["doc_id"])
            now = build_citation(case, marker, doc_id, int(raw["start"]), int(raw["end"]), raw.get("quote") or "")
            if not now["verified"]:
                title = now.get("title") or raw.get("title") or f"document {doc_id}"
                result.mismatches.append(Finding("citation", doc_id, title, now.get("problem") or "", marker))
        for marker in (record or {}).get("unresolved_markers") or []:
            result.mismatches.append(
                Finding("citation", None, "no document", "never registered with cite() or quote()", marker)
            )
    finally:
        if own:
            reextractor.close()
    return result


def verify_cli(case: Case, run_id: str | None, *, reextract_all: bool, as_json: bool) -> int:
    """`rlm-desktop verify [RUN_ID]`: 0 when everything holds, 1 naming each mismatch."""
    import json
    import sys

    result = verify_case(case, run_id, reextract_all=reextract_all)
    if as_json:
        json.dump({"case": case.path.stem, **result.to_json()}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0 if result.ok else 1
    scope = f"run {result.run_id} in case '{case.path.stem}'" if result.run_id else f"case '{case.path.stem}'"
    print(
        f"{scope}: {result.documents} documents, {result.texts_checked} stored texts against their text hashes, "
        f"{result.originals_checked} originals against their file hashes, {result.reextracted} re-extracted "
        f"and matching, {result.citations_checked} citations"
    )
    for finding in result.mismatches:
        print(f"  MISMATCH {finding.line()}")
    for finding in result.unavailable:
        print(f"  not checked: {finding.line()}")
    print("all checks hold" if result.ok else f"{len(result.mismatches)} mismatch(es)")
    return 0 if result.ok else 1
