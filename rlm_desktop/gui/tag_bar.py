"""Tags and a note on a document: the strip under the viewer's header, and the dialogs the document list shares."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from rlm_desktop.gui import theme
from rlm_desktop.store import findings as store
from rlm_desktop.store.case import Case

CHIP_CHARS = 28  # a long tag is cut in the strip (whole in its tooltip): the strip must never widen the window


def ask_tag(parent: QWidget, case: Case, doc_ids: list[int]) -> str | None:
    """Ask for a tag (offering the case's tags) and put it on `doc_ids`; the tag added, or None."""
    names = [name for name, _ in store.tag_names(case)]
    what = "this document" if len(doc_ids) == 1 else f"these {len(doc_ids)} documents"
    tag, ok = QInputDialog.getItem(parent, "Add tag", f"Tag for {what}:", names, 0, True)
    if not ok or not tag.strip():
        return None
    try:
        for doc_id in doc_ids:
            tag = store.add_tag(case, doc_id, tag)
    except (store.InvalidTag, KeyError) as exc:
        QMessageBox.warning(parent, "Add tag", f"The tag was not added: {str(exc).strip(chr(34))}.")
        return None
    return tag


def edit_note(parent: QWidget, case: Case, doc_id: int) -> bool:
    """Edit a document's note; True when it was saved."""
    title = case.document(doc_id).title
    note, ok = QInputDialog.getMultiLineText(
        parent, "Note on the document", f"Note on “{title}” (empty removes it):", store.document_note(case, doc_id)
    )
    if not ok:
        return False
    try:
        store.set_document_note(case, doc_id, note)
    except ValueError as exc:
        QMessageBox.warning(parent, "Note on the document", f"The note was not saved: {exc}.")
        return False
    return True


def add_tag_actions(menu: QMenu, parent: QWidget, case: Case, doc_id: int, changed: Signal) -> None:
    """The tag and note entries of a document's context menu; `changed` is emitted with the doc id after a
    change."""
    menu.addAction("Add tag…", lambda: ask_tag(parent, case, [doc_id]) and changed.emit(doc_id))
    tags = store.tags_of(case, doc_id)
    remove = menu.addMenu("Remove tag")
    remove.setEnabled(bool(tags))
    for tag in tags:
        remove.addAction(tag, lambda t=tag: store.remove_tag(case, doc_id, t) and changed.emit(doc_id))
    menu.addAction("Note…", lambda: edit_note(parent, case, doc_id) and changed.emit(doc_id))


class TagBar(QWidget):
    """"Tags: a ✕, b ✕  + Tag  Note…" for the document shown, and its note (one line, whole in the tooltip)."""

    tags_changed = Signal(int)  # doc id: its tags or note changed

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._case: Case | None = None
        self.doc_id: int | None = None
        self.tags: list[str] = []
        self.tags_label = QLabel()
        self.tags_label.setWordWrap(True)  # wraps rather than widening the viewer
        self.tags_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.tags_label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.tags_label.linkActivated.connect(self._link)
        self.add_button = QToolButton()
        self.add_button.setText("+ Tag")
        self.add_button.setToolTip("Tag this document (the document list can show and filter by tags)")
        self.add_button.clicked.connect(self.ask_tag)
        self.note_button = QToolButton()
        self.note_button.setText("Note…")
        self.note_button.setToolTip("Write a note on this document")
        self.note_button.clicked.connect(self.edit_note)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.tags_label, 1)
        layout.addWidget(self.add_button)
        layout.addWidget(self.note_button)
        self.hide()

    def set_case(self, case: Case | None) -> None:
        self._case = case
        self.show_document(None)

    def show_document(self, doc_id: int | None) -> None:
        self.doc_id = doc_id
        if doc_id is None or self._case is None:
            self.hide()
            return
        self.tags = store.tags_of(self._case, doc_id)
        note = store.document_note(self._case, doc_id)
        muted = theme.MUTED.name()
        chips = [
            f"<a href='remove:{html.escape(tag, quote=True)}' style='text-decoration:none; color:#14304f'>"
            f"<span style='background:#e3ecf7'>&nbsp;{html.escape(self._short(tag))}&nbsp;✕&nbsp;</span></a>"
            for tag in self.tags
        ]
        text = f"<span style='color:{muted}'>Tags:</span> " + (" ".join(chips) or f"<i style='color:{muted}'>none</i>")
        if note:
            shown = " ".join(note.split())
            shown = shown if len(shown) <= 90 else shown[:89] + "…"
            text += f"<br><span style='color:{muted}'>Note:</span> {html.escape(shown)}"
        self.tags_label.setText(text)
        self.tags_label.setToolTip(
            ("Tags: " + ", ".join(self.tags) if self.tags else "No tags") + (f"\n\nNote:\n{note}" if note else "")
            + "\n\nClick a tag's ✕ to remove it."
        )
        self.show()

    def ask_tag(self) -> None:
        if self._case is not None and self.doc_id is not None and ask_tag(self, self._case, [self.doc_id]):
            self._changed()

    def edit_note(self) -> None:
        if self._case is not None and self.doc_id is not None and edit_note(self, self._case, self.doc_id):
            self._changed()

    def remove_tag(self, tag: str) -> None:
        if self._case is not None and self.doc_id is not None and store.remove_tag(self._case, self.doc_id, tag):
            self._changed()

    def _link(self, href: str) -> None:
        if href.startswith("remove:"):
            self.remove_tag(html.unescape(href[7:]))

    def _changed(self) -> None:
        assert self.doc_id is not None
        self.show_document(self.doc_id)
        self.tags_changed.emit(self.doc_id)

    @staticmethod
    def _short(tag: str) -> str:
        return tag if len(tag) <= CHIP_CHARS else tag[: CHIP_CHARS - 1] + "…"


class TagFilterCombo(QComboBox):
    """"Any tag" or one of the case's tags: the document list's tag filter."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setToolTip("Show only documents with this tag")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(8)  # a long tag must not widen the pane
        self.fill([])

    def fill(self, names: list[str]) -> bool:
        """Offer `names`, keeping the chosen tag; True when the chosen tag is gone (the filter must be cleared)."""
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        self.addItem("Any tag", None)
        for name in names:
            self.addItem(name, name)
        at = self.findData(current) if current else 0
        self.setCurrentIndex(max(at, 0))
        self.setEnabled(bool(names) or at > 0)
        self.blockSignals(False)
        return bool(current) and at < 0
