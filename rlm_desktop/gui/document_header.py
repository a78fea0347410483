"""What a document is: its kind, title, file, parent, size and hash, an email's headers, and its attachments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.gui import theme
from rlm_desktop.gui.widgets import ZWSP, ElidedButton, ElidedLabel, FlowLayout, breakable
from rlm_desktop.ingest import formats
from rlm_desktop.store.case import DocumentRow

MAX_CHIPS = 40  # a mailbox may hold thousands of messages: list the first ones and say how many more
MAX_ADDRESSES = 6  # To and Cc show this many recipients, then how many more
CHIP_CHARS = 40  # a chip shows this much of a child's name (all of it in its tooltip)


def _short(text: str, limit: int = CHIP_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _join(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value if item)
    return str(value)


def _readable_date(value: str) -> str:
    """ISO 8601 as "Fri 28 Apr 2023, 10:00 (UTC+00:00)"; anything else unchanged."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value
    shown = moment.strftime("%a %d %b %Y, %H:%M")
    if moment.tzinfo is not None:
        offset = moment.strftime("%z")
        shown += f" (UTC{offset[:3]}:{offset[3:]})" if offset else ""
    return shown


def _size(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


class EmailHeaderPanel(QFrame):
    """From, To, Cc, Date and Subject of an email, from its metadata."""

    FIELDS = (("from", "From"), ("to", "To"), ("cc", "Cc"), ("date", "Date"), ("subject", "Subject"))

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("emailHeader")
        self.setStyleSheet(
            "#emailHeader { background: #f4f6f9; border: 1px solid #d5dae1; border-radius: 4px; }"
        )
        grid = QGridLayout(self)
        grid.setContentsMargins(10, 6, 10, 6)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(1, 1)
        self.names: dict[str, QLabel] = {}
        self.values: dict[str, QLabel] = {}
        for row, (key, label) in enumerate(self.FIELDS):
            name = QLabel(f"{label}:")
            name.setStyleSheet("color: #555; font-weight: bold;")
            name.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
            value = QLabel()
            value.setWordWrap(True)
            value.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wraps, never widens
            value.setTextFormat(Qt.TextFormat.PlainText)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, row, 0)
            grid.addWidget(value, row, 1)
            self.names[key] = name
            self.values[key] = value

    def set_meta(self, meta: dict[str, Any]) -> None:
        for key, _ in self.FIELDS:
            raw = _join(meta.get(key))
            shown = _readable_date(raw) if key == "date" else raw
            tip = str(meta.get("date_raw") or raw) if key == "date" else ""
            people = meta.get(key)
            if key in ("to", "cc") and isinstance(people, list) and len(people) > MAX_ADDRESSES:
                # 200 recipients would push the body out of view: the first ones, and all in the tooltip
                shown = _join(people[:MAX_ADDRESSES]) + f" … and {len(people) - MAX_ADDRESSES:,} more"
                tip = "\n".join(str(p) for p in people)
            value = self.values[key]
            value.setText(breakable(shown))
            value.setToolTip(tip)
            visible = bool(shown) or key in ("from", "subject")
            if not shown:
                value.setText("(none)")
            self.names[key].setVisible(visible)
            value.setVisible(visible)

    def value_text(self, key: str) -> str:
        return self.values[key].text().replace(ZWSP, "")


class DocumentHeader(QWidget):
    """The header above a document: what it is and where it came from, an email's headers, its children.

    It shows what it is given and reads nothing itself; a click on the parent or a child asks for that
    document through `document_requested`.
    """

    document_requested = Signal(int)
    open_original_requested = Signal()
    save_original_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sha256 = ""
        self.header = self._build_header()
        self.email_panel = EmailHeaderPanel()
        self.children_bar = QWidget()
        self.children_layout = FlowLayout(self.children_bar)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        for widget in (self.header, self.email_panel, self.children_bar):
            layout.addWidget(widget)

    def _build_header(self) -> QWidget:
        header = QWidget()
        layout = QVBoxLayout(header)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        first = QHBoxLayout()
        first.setSpacing(8)
        self.kind_label = QLabel()
        self.kind_label.setStyleSheet(
            "background: #e3e8ef; color: #33404f; border-radius: 3px; padding: 1px 6px; font-size: 11px;"
        )
        self.title_label = QLabel()
        self.title_label.setWordWrap(True)
        self.title_label.setTextFormat(Qt.TextFormat.PlainText)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title_label.font()
        font.setPointSizeF(font.pointSizeF() + 3)
        font.setBold(True)
        self.title_label.setFont(font)
        # a title without spaces (a long file name) must wrap, not widen the window: the label takes the
        # width it is given and its text gets break points (see breakable)
        self.title_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        first.addWidget(self.kind_label, 0, Qt.AlignmentFlag.AlignVCenter)
        first.addWidget(self.title_label, 1)
        self.open_button = QToolButton()
        self.open_button.setText("Open original")
        self.open_button.setToolTip("Open the original file with this computer's application for it")
        self.open_button.clicked.connect(self.open_original_requested)
        self.save_button = QToolButton()
        self.save_button.setText("Save attachment as…")
        self.save_button.setToolTip("Save the attachment's original bytes, exactly as ingested, to a file")
        self.save_button.clicked.connect(self.save_original_requested)
        layout.addLayout(first)

        # the file's place, then the buttons for its bytes: on their own row the title keeps the whole width
        # (beside them a long file name wrapped a few letters a line)
        self.location_label = ElidedLabel()
        self.location_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        location = QHBoxLayout()
        location.setSpacing(6)
        location.addWidget(self.location_label, 1)
        location.addStretch(0)  # the buttons stay at the right when there is no location to show
        for button in (self.open_button, self.save_button):
            location.addWidget(button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addLayout(location)

        # "Attachment of <email>", size and hash wrap onto more lines in a narrow viewer, and the email's
        # subject elides: nothing in this row may set the window's width (a long one once widened it past
        # the screen)
        self.parent_button = ElidedButton()
        self.parent_button.setFlat(True)
        self.parent_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.parent_button.setStyleSheet(
            "QPushButton { color: #1a5fb4; text-decoration: underline; border: none; padding: 0; text-align: left; }"
        )
        self.parent_button.clicked.connect(self._open_parent)
        self.parent_prefix = QLabel()
        self.parent_prefix.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.parent_row = QWidget()
        parent_layout = QHBoxLayout(self.parent_row)
        parent_layout.setContentsMargins(0, 0, 0, 0)
        parent_layout.setSpacing(6)
        parent_layout.addWidget(self.parent_prefix)
        parent_layout.addWidget(self.parent_button, 1)
        self.details_label = QLabel()
        self.details_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.sha_label = QLabel()
        self.sha_label.setFont(theme.monospace())
        self.sha_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.sha_label.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        copy_sha = QAction("Copy full SHA-256", self.sha_label)
        copy_sha.triggered.connect(self._copy_sha)
        self.sha_label.addAction(copy_sha)
        second = QWidget()
        flow = FlowLayout(second, spacing=10)
        for widget in (self.parent_row, self.details_label, self.sha_label):
            flow.addWidget(widget)
        layout.addWidget(second)
        return header

    def clear(self) -> None:
        for widget in (self.header, self.email_panel, self.children_bar):
            widget.hide()

    def show_document(
        self,
        doc: DocumentRow,
        parent: DocumentRow | None,
        children: list[DocumentRow],
        total_children: int,
        own_file: bool = True,
    ) -> None:
        """`own_file`: the document is a file on disk (else only its stored bytes, as an attachment)."""
        self.sha256 = doc.sha256
        self.save_button.setVisible(not own_file)
        self.save_button.setText("Save attachment as…" if parent is not None else "Save original as…")
        self.header.show()
        self.kind_label.setText(formats.label(doc.kind))
        self.title_label.setText(breakable(doc.title or "(untitled)"))
        self.title_label.setToolTip(doc.title)
        if doc.path:
            self.location_label.set_full_text(doc.path)
            self.location_label.show()
        elif parent is None:
            self.location_label.set_full_text("(no file on disk)")
            self.location_label.show()
        else:
            self.location_label.hide()
        if parent is not None:
            role = {"email": "Attachment of", "mailbox": "Message in"}.get(parent.kind, "Inside")
            self.parent_prefix.setText(f"{role}:")
            self.parent_button.setText(parent.title or f"document {parent.id}")
            self.parent_button.setToolTip(
                f"Open {formats.label(parent.kind).lower()} “{parent.title}”"
            )
            self.parent_button.setProperty("doc_id", parent.id)
        self.parent_row.setVisible(parent is not None)
        details = []
        if doc.pages:
            details.append(f"{doc.pages} page" + ("s" if doc.pages != 1 else ""))
        details.append(f"{doc.chars:,} characters")
        details.append(_size(doc.size))
        self.details_label.setText(" · ".join(details))
        self.sha_label.setText(f"SHA-256 {doc.sha256[:12]}…")
        self.sha_label.setToolTip(f"SHA-256 of the original bytes:\n{doc.sha256}\n(right-click to copy)")
        if doc.kind == "email":
            self.email_panel.set_meta(doc.meta)
            self.email_panel.show()
        else:
            self.email_panel.hide()
        self._show_children(doc, children, total_children)

    def _show_children(self, doc: DocumentRow, children: list[DocumentRow], total: int) -> None:
        while (item := self.children_layout.takeAt(0)) is not None:
            if item.widget() is not None:
                item.widget().deleteLater()
        if not children:
            self.children_bar.hide()
            return
        word = {"email": "Attachments", "mailbox": "Messages"}.get(doc.kind, "Contains")
        label = QLabel(f"{word} ({total}):" if total > 1 else f"{word}:")
        label.setStyleSheet("color: #555; font-weight: bold;")
        label.setMinimumHeight(24)  # level with the chips beside it
        self.children_layout.addWidget(label)
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon)
        for child in children:
            chip = QToolButton()
            chip.setObjectName(f"child-{child.id}")
            chip.setIcon(icon)
            chip.setText(_short(child.title or f"document {child.id}"))
            chip.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.setToolTip(
                f"Open {child.title} ({formats.label(child.kind)}, {_size(child.size)})"
            )
            chip.setStyleSheet(
                "QToolButton { background: #eef2f7; border: 1px solid #c9d2de; border-radius: 10px;"
                " padding: 2px 8px; } QToolButton:hover { background: #dde7f5; border-color: #1a5fb4; }"
            )
            chip.setProperty("doc_id", child.id)
            chip.clicked.connect(lambda _=False, target=child.id: self.document_requested.emit(target))
            self.children_layout.addWidget(chip)
        if total > len(children):
            more = QLabel(f"… and {total - len(children):,} more")
            more.setStyleSheet(f"color: {theme.MUTED.name()};")
            self.children_layout.addWidget(more)
        self.children_bar.show()

    def attachment_buttons(self) -> list[QToolButton]:
        """The chips of the document's attachments (or other children), in order."""
        return [
            item.widget()
            for item in (self.children_layout.itemAt(i) for i in range(self.children_layout.count()))
            if isinstance(item.widget(), QToolButton)
        ]

    def _open_parent(self) -> None:
        doc_id = self.parent_button.property("doc_id")
        if doc_id is not None:
            self.document_requested.emit(int(doc_id))

    def _copy_sha(self) -> None:
        if self.sha256:
            QApplication.clipboard().setText(self.sha256)
