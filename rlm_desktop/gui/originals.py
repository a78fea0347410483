"""A document's original outside the app: open it with the system's viewer, or save an attachment's bytes."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from rlm_desktop.sources import SourceUnavailable, source_bytes
from rlm_desktop.store.case import Case, DocumentRow

_temp_dir: Path | None = None


def file_name(doc: DocumentRow) -> str:
    """A safe file name for the document's bytes: its own name, never a path (an attachment names itself)."""
    name = str(doc.meta.get("filename") or (Path(doc.path).name if doc.path else "") or doc.title or "")
    name = re.sub(r'[\x00-\x1f/\\:*?"<>|]+', "_", Path(name.replace("\\", "/")).name).strip(" .")
    return name[:150] or f"document-{doc.id}"


def has_own_file(doc: DocumentRow) -> bool:
    """Whether the document is a file of its own on disk (else only its stored copy, as for attachments)."""
    return any(Path(p).is_file() for p in doc.paths)


def _private_dir() -> Path:
    """A folder only this user can read, for the copies handed to other applications in this session."""
    global _temp_dir
    if _temp_dir is None or not _temp_dir.is_dir():
        _temp_dir = Path(tempfile.mkdtemp(prefix="rlm-desktop-originals-"))  # mode 0700
    return _temp_dir


def open_original(parent: QWidget | None, case: Case, doc: DocumentRow) -> Path | None:
    """Open the file at its path with the system's application for it; an attachment (no file of its own) is
    first written, from the bytes stored at ingest and checked against its SHA-256, to a private temp file.
    The path opened, or None (with a message saying why)."""
    target = next((Path(p) for p in doc.paths if Path(p).is_file()), None)
    if target is None:
        try:
            data = source_bytes(case, doc)
        except SourceUnavailable as exc:
            QMessageBox.warning(parent, "Open original", str(exc))
            return None
        folder = Path(tempfile.mkdtemp(prefix=f"{doc.id}-", dir=_private_dir()))  # same names never collide
        target = folder / file_name(doc)
        target.write_bytes(data)
        target.chmod(0o400)  # a copy of evidence: the other application reads it, nobody edits it by mistake
    if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(target))):
        QMessageBox.warning(parent, "Open original", f"No application could open {target}.")
        return None
    return target


def save_original_as(
    parent: QWidget | None, case: Case, doc: DocumentRow, target: Path | None = None
) -> Path | None:
    """Write the document's original bytes (checked against its SHA-256) where the user chooses; the path
    written, or None when cancelled or impossible (with a message saying why)."""
    try:
        data = source_bytes(case, doc)
    except SourceUnavailable as exc:
        QMessageBox.warning(parent, "Save attachment", str(exc))
        return None
    if target is None:
        chosen, _ = QFileDialog.getSaveFileName(
            parent, "Save attachment as", str(Path.home() / file_name(doc))
        )
        if not chosen:
            return None
        target = Path(chosen)
    try:
        target.write_bytes(data)
    except OSError as exc:
        QMessageBox.warning(
            parent, "Save attachment", f"{target} could not be written: {exc.strerror or exc}"
        )
        return None
    return target
