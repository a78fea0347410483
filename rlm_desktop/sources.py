"""The original bytes of a document: the stored copy of an attachment, or its file on disk checked by hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rlm_desktop.store.case import Case, DocumentRow


class SourceUnavailable(Exception):
    """The original bytes cannot be had (file moved or changed since ingest); the stored text still can."""


def source_bytes(case: Case, doc_id: int | DocumentRow) -> bytes:
    """The exact bytes that were ingested as `doc_id`, verified against the document's SHA-256.
    A DocumentRow the caller already read may be given instead of the id."""
    doc = doc_id if isinstance(doc_id, DocumentRow) else case.document(doc_id)
    data = case.blob(doc.sha256)
    if data is not None:
        return data
    if not doc.paths:
        raise SourceUnavailable(
            f"document {doc_id} ({doc.title}) has no file of its own and no stored copy; "
            "re-ingest its parent to store one"
        )
    reasons = []
    for path in doc.paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            reasons.append(f"{path}: {exc.strerror or exc}")
            continue
        if hashlib.sha256(data).hexdigest() == doc.sha256:
            return data
        reasons.append(f"{path}: changed since it was ingested (SHA-256 differs)")
    raise SourceUnavailable("original file not available: " + "; ".join(reasons))
