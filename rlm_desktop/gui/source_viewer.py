"""The source viewer: a document as it was ingested, with a cited span highlighted and brought into view."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from PySide6.QtCore import QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainter, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QTextEdit,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.gui import theme
from rlm_desktop.gui.pdf_page_view import PdfPageView
from rlm_desktop.ingest.extracted import Page
from rlm_desktop.ingest.pdf_geometry import page_for_offset, span_rects
from rlm_desktop.sources import SourceUnavailable, source_bytes
from rlm_desktop.store.case import Case, DocumentRow

EMPTY_MESSAGE = "Select a document or click a citation to see its source"
UNVERIFIED_MESSAGE = "Unverified citation: the quoted text was not found at these offsets"
KIND_NAMES = {
    "pdf": "PDF",
    "docx": "Word document",
    "email": "Email",
    "text": "Text",
    "markdown": "Markdown",
    "html": "Web page",
    "mailbox": "Mailbox",
    "attachment": "Attachment (not read)",
}
MAX_CHIPS = 40  # a mailbox may hold thousands of messages: list the first ones and say how many more
NOTICE_STYLES = {
    # background, border, text
    "error": ("#fde8e8", "#c82828", "#8a1414"),
    "warning": ("#fff6d6", "#d9a400", "#5c4500"),
    "ok": ("#e7f4ea", "#1e823c", "#14532a"),
}


def qt_position(text: str, offset: int) -> int:
    """The QTextDocument position of Python character `offset` in `text` shown as plain text.

    Qt counts UTF-16 units (a character outside the BMP takes two) and turns "\\r\\n" into one break.
    """
    offset = max(0, min(offset, len(text)))
    position = offset if text.isascii() else len(text[:offset].encode("utf-16-le")) // 2
    return position - text.count("\r\n", 0, offset)


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


def _looks_like_pdf(doc: DocumentRow) -> bool:
    if doc.kind == "pdf":
        return True
    # an attachment that failed extraction may still be a PDF that MuPDF can draw
    name = str(doc.meta.get("filename") or doc.title or "").lower()
    return doc.kind == "attachment" and (
        doc.meta.get("content_type") == "application/pdf" or name.endswith(".pdf")
    )


def _key_sequences(shortcuts: list[Any]) -> list[QKeySequence]:
    """Shortcuts (standard keys or strings) as key sequences without repeats: a platform's standard key
    may already bind the extra one given (Ctrl+- for zoom out), and a repeat makes Qt call it ambiguous."""
    sequences: list[QKeySequence] = []
    for shortcut in shortcuts:
        if isinstance(shortcut, QKeySequence.StandardKey):
            bindings = QKeySequence.keyBindings(shortcut)
        else:
            bindings = [QKeySequence(shortcut)]
        for sequence in bindings:
            if sequence not in sequences:
                sequences.append(sequence)
    return sequences


class FlowLayout(QLayout):
    """Lays widgets out left to right and wraps to the next line, like words (for attachment chips)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        return size

    def _arrange(self, rect: QRect, move: bool) -> int:
        x, y, line_height = rect.x(), rect.y(), 0
        for item in self._items:
            if item.widget() is not None and item.widget().isHidden():
                continue
            hint = item.sizeHint()
            if x + hint.width() > rect.right() + 1 and line_height:
                x, y, line_height = rect.x(), y + line_height + self.spacing(), 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self.spacing()
            line_height = max(line_height, hint.height())
        return y + line_height - rect.y()


class NoticeBar(QLabel):
    """A coloured strip above the document: red for an unverified citation, yellow for a fallback."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.level = ""
        self.plain_text = ""
        self.hide()

    def show_notice(self, text: str, level: str) -> None:
        """Show `text` (plain; its first line in bold) in the colours of `level`: error, warning or ok."""
        background, border, colour = NOTICE_STYLES[level]
        self.level = level
        self.plain_text = text
        self.setStyleSheet(
            f"QLabel {{ background: {background}; color: {colour}; border: 1px solid {border};"
            f" border-left: 5px solid {border}; border-radius: 3px; padding: 6px 8px; }}"
        )
        first, _, rest = text.partition("\n")
        body = f"<b>{html.escape(first)}</b>"
        if rest:
            body += "<br>" + html.escape(rest).replace("\n", "<br>")
        self.setText(body)
        self.show()

    def clear_notice(self) -> None:
        self.level = ""
        self.plain_text = ""
        self.setText("")
        self.hide()


class ElidedLabel(QLabel):
    """One line of text that shortens in the middle ("/home/…/file.pdf") when the widget is narrow."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.full_text = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text)
        self._elide()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(
            self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideMiddle, self.width())
        )


class PageGutter(QWidget):
    """The strip left of a PDF's text that marks where each page starts ("p. 2")."""

    WIDTH = 44

    def __init__(self, view: SpanTextView):
        super().__init__(view)
        self.view = view
        self.setToolTip("Page numbers of the PDF this text was extracted from")

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(event.rect(), QColor(244, 246, 249))
        painter.setPen(QColor(213, 218, 225))
        painter.drawLine(self.width() - 1, 0, self.width() - 1, self.height())
        font = painter.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() - 1.5))
        painter.setFont(font)
        self.view.paint_page_marks(painter, self.width())
        painter.end()


class SpanTextView(QPlainTextEdit):
    """Read-only plain text with one span highlighted; for PDFs a gutter shows where each page starts."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() + 1)
        self.setFont(font)
        self.document().setDocumentMargin(12)
        self.text = ""
        self.span: tuple[int, int] | None = None
        self.unverified = False
        self._page_blocks: dict[int, int] = {}  # block number where a page starts -> page number
        self._centre_pending = False
        self.gutter = PageGutter(self)
        self.gutter.hide()
        self.updateRequest.connect(self._update_gutter)

    def show_text(self, text: str, pages: list[Page]) -> None:
        self.text = text
        self.span = None
        # "\f" separates PDF pages: one position either way, but a line break reads better than a glyph
        self.setPlainText(text.replace("\f", "\n"))
        document = self.document()
        self._page_blocks = {}
        if len(pages) > 1:
            for page in pages:
                block = document.findBlock(qt_position(text, page.start))
                self._page_blocks.setdefault(block.blockNumber(), page.number)
        self.gutter.setVisible(bool(self._page_blocks))
        self.setViewportMargins(PageGutter.WIDTH if self._page_blocks else 0, 0, 0, 0)
        self.setExtraSelections([])

    def highlight(self, start: int, end: int, unverified: bool = False) -> None:
        """Highlight text[start:end] (Python offsets) and bring it to the middle of the view.

        `unverified` marks it in red: it is what sits at a citation's offsets, not a checked quote.
        """
        self.span = (start, end)
        self.unverified = unverified
        cursor = QTextCursor(self.document())
        cursor.setPosition(qt_position(self.text, start))
        cursor.setPosition(qt_position(self.text, end), QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(255, 205, 205) if unverified else theme.HIGHLIGHT_TEXT)
        fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
        fmt.setUnderlineColor(theme.UNVERIFIED if unverified else theme.HIGHLIGHT_ACTIVE)
        selection.format = fmt
        self.setExtraSelections([selection])
        self._centre_pending = True
        self.centre_span()
        QTimer.singleShot(0, self.centre_span)  # again once the layout knows the widget's real size

    def clear_highlight(self) -> None:
        self.span = None
        self.setExtraSelections([])

    def centre_span(self) -> None:
        if not self._centre_pending or self.span is None:
            return
        cursor = QTextCursor(self.document())
        cursor.setPosition(qt_position(self.text, self.span[0]))
        self.setTextCursor(cursor)
        self.centerCursor()
        if self.isVisible() and self.viewport().height() > 50:
            self._centre_pending = False

    def highlighted_text(self) -> str:
        """The text Qt shows under the highlight (as a Python string, line breaks as "\\n")."""
        selections = self.extraSelections()
        if not selections:
            return ""
        return selections[0].cursor.selectedText().replace("\u2029", "\n")

    def span_rect(self) -> QRect | None:
        """Where the highlight's first character is, in viewport coordinates."""
        if self.span is None:
            return None
        cursor = QTextCursor(self.document())
        cursor.setPosition(qt_position(self.text, self.span[0]))
        return self.cursorRect(cursor)

    def page_at_top(self) -> int | None:
        """The PDF page whose text is at the top of the view (None for a text without pages)."""
        if not self._page_blocks:
            return None
        number = self.firstVisibleBlock().blockNumber()
        starts = [block for block in self._page_blocks if block <= number]
        return self._page_blocks[max(starts)] if starts else None

    def paint_page_marks(self, painter: QPainter, width: int) -> None:
        """Draw "p. N" beside the first line of every page in view (called by the gutter)."""
        block = self.firstVisibleBlock()
        offset = self.contentOffset()
        height = self.viewport().height()
        while block.isValid():
            top = self.blockBoundingGeometry(block).translated(offset).top()
            if top > height:
                break
            page = self._page_blocks.get(block.blockNumber())
            if page is not None:
                line = round(top)
                painter.setPen(theme.MUTED)
                painter.drawText(
                    QRect(0, int(line), width - 6, self.fontMetrics().height()),
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                    f"p. {page}",
                )
                painter.setPen(QColor(200, 205, 212))
                painter.drawLine(4, int(line) - 1, width - 4, int(line) - 1)
            block = block.next()

    def _update_gutter(self, rect: QRect, dy: int) -> None:
        if self.gutter.isVisible():
            self.gutter.update()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        area = self.contentsRect()
        self.gutter.setGeometry(QRect(area.left(), area.top(), PageGutter.WIDTH, area.height()))

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self.centre_span)


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
            value = self.values[key]
            value.setText(shown)
            value.setToolTip(str(meta.get("date_raw") or raw) if key == "date" else "")
            visible = bool(shown) or key in ("from", "subject")
            if not shown:
                value.setText("(none)")
            self.names[key].setVisible(visible)
            value.setVisible(visible)

    def value_text(self, key: str) -> str:
        return self.values[key].text()


class SourceViewer(QWidget):
    """Shows one document of the case with a source span highlighted: PDF pages, or the extracted text.

    The main window opens the Case (on the main thread) and calls `show_document` or `show_citation`.
    """

    document_opened = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._case: Case | None = None
        self._doc: DocumentRow | None = None
        self._text = ""
        self._pages: list[Page] = []
        self._span: tuple[int, int] | None = None
        self._pdf_problem: str | None = None  # why the pages cannot be drawn (the text view is shown instead)
        self._fallback_page: int | None = None
        self._text_mode = False
        self._text_loaded_for: int | None = None
        self._notice_reasons: list[tuple[str, str]] = []
        self._unverified = False  # the span comes from a citation whose quote did not match

        self.citation_notice = NoticeBar()
        self.info_notice = NoticeBar()
        self.header = self._build_header()
        self.email_panel = EmailHeaderPanel()
        self.children_bar = QWidget()
        self.children_layout = FlowLayout(self.children_bar)
        self.toolbar = self._build_toolbar()

        self.pdf_view = PdfPageView()
        self.pdf_view.page_changed.connect(self._sync_toolbar)
        self.pdf_view.zoom_changed.connect(self._sync_toolbar)
        self.pdf_view.failed.connect(self._on_pdf_failed)
        self.text_view = SpanTextView()
        self.empty_label = QLabel(EMPTY_MESSAGE)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet(f"color: {theme.MUTED.name()}; font-size: 14px; padding: 30px;")
        self.stack = QStackedWidget()
        for widget in (self.empty_label, self.pdf_view, self.text_view):
            self.stack.addWidget(widget)

        top = QVBoxLayout()
        top.setContentsMargins(8, 8, 8, 4)
        top.setSpacing(6)
        for widget in (
            self.citation_notice,
            self.header,
            self.email_panel,
            self.children_bar,
            self.info_notice,
        ):
            top.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.stack, 1)
        self._show_empty()

    # ---- building ----------------------------------------------------------------------------------

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
        self.title_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        first.addWidget(self.kind_label, 0, Qt.AlignmentFlag.AlignVCenter)
        first.addWidget(self.title_label, 1)
        layout.addLayout(first)

        self.location_label = ElidedLabel()
        self.location_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        layout.addWidget(self.location_label)

        second = QHBoxLayout()
        second.setSpacing(10)
        self.parent_button = QPushButton()
        self.parent_button.setFlat(True)
        self.parent_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.parent_button.setStyleSheet(
            "QPushButton { color: #1a5fb4; text-decoration: underline; border: none; padding: 0; text-align: left; }"
        )
        self.parent_button.clicked.connect(self._open_parent)
        self.parent_prefix = QLabel()
        self.parent_prefix.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.details_label = QLabel()
        self.details_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.sha_label = QLabel()
        self.sha_label.setFont(theme.monospace())
        self.sha_label.setStyleSheet(f"color: {theme.MUTED.name()};")
        self.sha_label.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        copy_sha = QAction("Copy full SHA-256", self.sha_label)
        copy_sha.triggered.connect(self._copy_sha)
        self.sha_label.addAction(copy_sha)
        second.addWidget(self.parent_prefix)
        second.addWidget(self.parent_button)
        second.addWidget(self.details_label)
        second.addWidget(self.sha_label)
        second.addStretch(1)
        layout.addLayout(second)
        return header

    def _build_toolbar(self) -> QToolBar:
        bar = QToolBar()
        bar.setIconSize(QSize(16, 16))
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.setStyleSheet(
            "QToolBar { border-top: 1px solid #d5dae1; border-bottom: 1px solid #d5dae1; spacing: 4px; }"
        )

        def action(text: str, tip: str, shortcuts: list[Any], slot: Any, checkable: bool = False) -> QAction:
            act = QAction(text, self)
            sequences = _key_sequences(shortcuts)
            act.setShortcuts(sequences)
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in sequences[:2])
            act.setToolTip(f"{tip} ({keys})" if keys else tip)
            act.setCheckable(checkable)
            act.triggered.connect(slot)
            self.addAction(act)  # shortcuts work wherever the focus is inside the viewer
            return act

        self.previous_action = action(
            "◀", "Previous page", [QKeySequence.StandardKey.MoveToPreviousPage], self._previous_page
        )
        self.next_action = action(
            "▶", "Next page", [QKeySequence.StandardKey.MoveToNextPage], self._next_page
        )
        self.page_box = QSpinBox()
        self.page_box.setKeyboardTracking(False)  # typing "12" goes to page 12, not 1 then 12
        self.page_box.setMinimum(1)
        self.page_box.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.page_box.setToolTip("Page number: type one and press Enter")
        self.page_box.setMinimumWidth(84)
        self.page_box.valueChanged.connect(self._page_box_changed)
        self.zoom_out_action = action(
            "−", "Zoom out", [QKeySequence.StandardKey.ZoomOut, "Ctrl+-"], lambda: self.pdf_view.zoom_out()
        )
        self.zoom_label = QLabel("100%")
        self.zoom_label.setMinimumWidth(44)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoom_label.setToolTip("Zoom (Ctrl + mouse wheel also zooms)")
        self.zoom_in_action = action(
            "+", "Zoom in", [QKeySequence.StandardKey.ZoomIn, "Ctrl+="], lambda: self.pdf_view.zoom_in()
        )
        self.fit_action = action(
            "Fit", "Fit the page to the width of the view", ["Ctrl+0"], self._fit_width, checkable=True
        )
        self.page_action = action(
            "Page", "Show the original page as it was ingested", [], lambda: self._set_text_mode(False), True
        )
        self.text_action = action(
            "Text",
            "Show the extracted text with the passage highlighted instead of the page",
            ["Ctrl+T"],
            lambda checked: self._set_text_mode(checked),
            checkable=True,
        )
        bar.addAction(self.previous_action)
        bar.addWidget(self.page_box)
        bar.addAction(self.next_action)
        bar.addSeparator()
        bar.addAction(self.zoom_out_action)
        bar.addWidget(self.zoom_label)
        bar.addAction(self.zoom_in_action)
        bar.addAction(self.fit_action)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        bar.addAction(self.page_action)
        bar.addAction(self.text_action)
        return bar

    # ---- public API ----------------------------------------------------------------------------------

    def set_case(self, case: Case | None) -> None:
        """The case whose documents are shown (read only); None closes whatever is shown."""
        self._case = case
        self._show_empty()

    def show_document(self, doc_id: int, span: tuple[int, int] | None = None) -> None:
        """Open document `doc_id`; with `span` (start, end), highlight those characters and show them."""
        self._open(int(doc_id), span)

    def show_citation(self, citation: dict[str, Any]) -> None:
        """Open a run record's citation at its page with its span highlighted; warn if it is unverified."""
        start, end = citation.get("start"), citation.get("end")
        span = (int(start), int(end)) if isinstance(start, int) and isinstance(end, int) else None
        self._open(int(citation["doc_id"]), span, citation=citation)

    @property
    def current_doc_id(self) -> int | None:
        return self._doc.id if self._doc is not None else None

    @property
    def current_page(self) -> int | None:
        """The 1-based page shown (or, when only the text can be shown, the page holding the span)."""
        if self._doc is None or not self._is_pdf():
            return None
        return self.pdf_view.page if self._pdf_problem is None else self._fallback_page

    @property
    def page_count(self) -> int:
        if self._doc is None or not self._is_pdf():
            return 0
        if self._pdf_problem is None and self.pdf_view.page_count:
            return self.pdf_view.page_count
        return len(self._pages)

    @property
    def highlight_rects(self) -> list[list[float]]:
        """The span's rectangles (PDF points) drawn on the page shown; empty in text mode."""
        return self.pdf_view.highlight_rects if self.mode == "pdf" else []

    @property
    def highlighted_span(self) -> tuple[int, int] | None:
        return self._span

    @property
    def zoom(self) -> float:
        return self.pdf_view.zoom

    @property
    def mode(self) -> str:
        """Either "pdf" (a page is drawn) or "text" (the extracted text, or nothing open)."""
        return "pdf" if self.stack.currentWidget() is self.pdf_view else "text"

    @property
    def notice_text(self) -> str:
        """Every notice shown above the document, one per line (empty when there is none)."""
        bars = (self.citation_notice, self.info_notice)
        return "\n".join(bar.plain_text for bar in bars if not bar.isHidden())

    # ---- opening -----------------------------------------------------------------------------------

    def _show_empty(self, message: str = EMPTY_MESSAGE) -> None:
        self._doc = None
        self._text = ""
        self._pages = []
        self._span = None
        self._pdf_problem = None
        self._text_loaded_for = None
        self.pdf_view.clear()
        self.text_view.show_text("", [])
        self.empty_label.setText(message)
        self.stack.setCurrentWidget(self.empty_label)
        for widget in (self.header, self.email_panel, self.children_bar, self.toolbar):
            widget.hide()
        self.citation_notice.clear_notice()
        self.info_notice.clear_notice()

    def _open(
        self, doc_id: int, span: tuple[int, int] | None, citation: dict[str, Any] | None = None
    ) -> None:
        if self._case is None:
            self._show_empty("No case is open.")
            return
        try:
            doc = self._case.document(doc_id)
        except KeyError:
            self._show_empty(f"Document {doc_id} is not in this case (it may have been removed).")
            return
        same = self._doc is not None and self._doc.id == doc.id
        if not same:
            self._text = self._case.text(doc.id)
            self._pages = self._case.pages(doc.id)
            self._text_loaded_for = None
            self._text_mode = False
            self._pdf_problem = None
            self.pdf_view.clear()
        self._doc = doc
        self._span = self._clamp(span)
        self._unverified = citation is not None and not citation.get("verified", False)
        self._update_header(doc)
        self._update_notices(doc, citation)
        if self._is_pdf():
            self._open_pdf(doc, same, citation)
        else:
            self._show_text()
        self.document_opened.emit(doc.id)

    def _clamp(self, span: tuple[int, int] | None) -> tuple[int, int] | None:
        if span is None:
            return None
        start, end = max(0, min(span[0], len(self._text))), max(0, min(span[1], len(self._text)))
        return (start, end) if start < end else None

    def _is_pdf(self) -> bool:
        return self._doc is not None and _looks_like_pdf(self._doc)

    def _open_pdf(self, doc: DocumentRow, same: bool, citation: dict[str, Any] | None) -> None:
        if not same or not self.pdf_view.loaded:
            # also when the pages could not be had last time: the file may be back in place
            self._pdf_problem = None
            try:
                data = source_bytes(self._case, doc.id)
            except SourceUnavailable as exc:
                self._pdf_problem = f"Original file unavailable: the extracted text is shown instead.\n{exc}"
            else:
                self.pdf_view.load(data, len(self._pages) or doc.pages or 0)
        rects = span_rects(self._pages, *self._span) if self._span and self._pages else []
        # rounded like a run record's citation rects (engine/citations.py), so both name the same boxes
        rects = [(number, [round(v, 2) for v in rect]) for number, rect in rects]
        self.pdf_view.set_highlights(rects, unverified=self._unverified)
        page = rects[0][0] if rects else None
        if page is None and citation is not None and isinstance(citation.get("page"), int):
            page = citation["page"]
        if page is None and self._span and self._pages:
            page = page_for_offset(self._pages, self._span[0])
        self._fallback_page = page or 1
        if self._span and not rects and self._pdf_problem is None:
            self._add_notice(
                "The passage has no word positions on this page (a scanned page without OCR, or a page that "
                "could not be read), so it cannot be marked on the page. Press Text to see it highlighted.",
                "warning",
            )
        if self._pdf_problem is not None or self._text_mode:
            self._show_text()
            return
        self.stack.setCurrentWidget(self.pdf_view)
        self.pdf_view.show_page(self._fallback_page, reveal=True)
        self._sync_toolbar()

    def _show_text(self) -> None:
        """Show the text view (loading the text once per document) with the span highlighted."""
        doc = self._doc
        if doc is None:
            return
        if self._text_loaded_for != doc.id:
            self.text_view.show_text(self._text, self._pages)
            reason = doc.meta.get("not_extracted")
            self.text_view.setPlaceholderText(
                f"No text was extracted from this file: {reason}" if reason else "This document has no text."
            )
            self._text_loaded_for = doc.id
        if self._pdf_problem is not None:
            self._add_notice(self._pdf_problem, "warning")
        self.stack.setCurrentWidget(self.text_view)
        if self._span:
            self.text_view.highlight(*self._span, unverified=self._unverified)
        else:
            self.text_view.clear_highlight()
            self.text_view.moveCursor(QTextCursor.MoveOperation.Start)
        self._sync_toolbar()

    def _on_pdf_failed(self, reason: str) -> None:
        self._pdf_problem = (
            f"The pages cannot be drawn: the extracted text is shown instead.\nReason: {reason}."
        )
        self._show_text()

    # ---- header and notices ------------------------------------------------------------------------

    def _update_header(self, doc: DocumentRow) -> None:
        self.header.show()
        self.kind_label.setText(KIND_NAMES.get(doc.kind, doc.kind.title()))
        self.title_label.setText(doc.title or "(untitled)")
        self.title_label.setToolTip(doc.title)
        parent = self._parent_of(doc)
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
                f"Open {KIND_NAMES.get(parent.kind, parent.kind).lower()} “{parent.title}”"
            )
            self.parent_button.setProperty("doc_id", parent.id)
        self.parent_prefix.setVisible(parent is not None)
        self.parent_button.setVisible(parent is not None)
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
        self._update_children(doc)

    def _parent_of(self, doc: DocumentRow) -> DocumentRow | None:
        if doc.parent_id is None or self._case is None:
            return None
        try:
            return self._case.document(doc.parent_id)
        except KeyError:
            return None

    def _child_ids(self, doc_id: int) -> tuple[list[int], int]:
        """The first MAX_CHIPS direct children of a document (attachments, messages) and how many in all."""
        # Straight to SQL: Case.documents() would read the whole catalogue for every document opened.
        conn = self._case.conn
        total = conn.execute(
            "SELECT COUNT(*) FROM documents WHERE parent_id = ? AND superseded_by IS NULL", (doc_id,)
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT id FROM documents WHERE parent_id = ? AND superseded_by IS NULL ORDER BY id LIMIT ?",
            (doc_id, MAX_CHIPS),
        ).fetchall()
        return [row[0] for row in rows], total

    def _update_children(self, doc: DocumentRow) -> None:
        while (item := self.children_layout.takeAt(0)) is not None:
            if item.widget() is not None:
                item.widget().deleteLater()
        ids, total = self._child_ids(doc.id)
        if not ids:
            self.children_bar.hide()
            return
        word = {"email": "Attachments", "mailbox": "Messages"}.get(doc.kind, "Contains")
        label = QLabel(f"{word} ({total}):" if total > 1 else f"{word}:")
        label.setStyleSheet("color: #555; font-weight: bold;")
        label.setMinimumHeight(24)  # level with the chips beside it
        self.children_layout.addWidget(label)
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon)
        for child_id in ids:
            child = self._case.document(child_id)
            chip = QToolButton()
            chip.setObjectName(f"child-{child_id}")
            chip.setIcon(icon)
            chip.setText(child.title or f"document {child_id}")
            chip.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.setToolTip(
                f"Open {child.title} ({KIND_NAMES.get(child.kind, child.kind)}, {_size(child.size)})"
            )
            chip.setStyleSheet(
                "QToolButton { background: #eef2f7; border: 1px solid #c9d2de; border-radius: 10px;"
                " padding: 2px 8px; } QToolButton:hover { background: #dde7f5; border-color: #1a5fb4; }"
            )
            chip.setProperty("doc_id", child_id)
            chip.clicked.connect(lambda _=False, target=child_id: self.show_document(target))
            self.children_layout.addWidget(chip)
        if total > len(ids):
            more = QLabel(f"… and {total - len(ids):,} more")
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

    def _update_notices(self, doc: DocumentRow, citation: dict[str, Any] | None) -> None:
        self.citation_notice.clear_notice()
        self.info_notice.clear_notice()
        self._notice_reasons = []
        if citation is not None and citation.get("verified", False):
            where = f"characters {self._span[0]:,}–{self._span[1]:,}" if self._span else "its offsets"
            if isinstance(citation.get("page"), int):
                where += f", page {citation['page']}"
            marker = f"Citation {citation['marker']}" if citation.get("marker") else "Citation"
            self.citation_notice.show_notice(
                f"{marker} verified: the quoted text is exactly what the source holds at {where}.", "ok"
            )
        elif citation is not None:
            quoted = str(citation.get("quote") or "")
            if len(quoted) > 200:
                quoted = quoted[:200] + "…"
            lines = [UNVERIFIED_MESSAGE + "."]
            if citation.get("problem"):
                lines.append(f"Problem: {citation['problem']}.")
            if quoted:
                lines.append(f"The model quoted: “{quoted}”")
            if self._span:
                lines.append(
                    f"What the source holds at characters {self._span[0]:,}–{self._span[1]:,} is marked in red."
                )
            self.citation_notice.show_notice("\n".join(lines), "error")
        if doc.superseded_by is not None:
            self._add_notice(
                "This version of the document has been replaced: the file changed or was removed after it was "
                "ingested. It is kept because earlier runs cite it.",
                "warning",
            )

    def _add_notice(self, text: str, level: str) -> None:
        if (text, level) in self._notice_reasons:
            return
        self._notice_reasons.append((text, level))
        self.info_notice.show_notice("\n".join(t for t, _ in self._notice_reasons), level)

    # ---- toolbar -----------------------------------------------------------------------------------

    def _sync_toolbar(self, *_: Any) -> None:
        # page and zoom controls only where there are pages to draw
        self.toolbar.setVisible(self._is_pdf() and self._pdf_problem is None)
        pdf_shown = self.mode == "pdf"
        count = self.page_count
        page = self.current_page or 1
        self.page_box.blockSignals(True)
        self.page_box.setMaximum(max(1, count))
        self.page_box.setSuffix(f" / {count}")
        self.page_box.setValue(page)
        self.page_box.blockSignals(False)
        self.page_box.setEnabled(pdf_shown)
        self.previous_action.setEnabled(pdf_shown and page > 1)
        self.next_action.setEnabled(pdf_shown and page < count)
        for act in (self.zoom_in_action, self.zoom_out_action, self.fit_action):
            act.setEnabled(pdf_shown)
        self.zoom_label.setText(f"{round(self.pdf_view.zoom * 100)}%")
        self.zoom_label.setEnabled(pdf_shown)
        self.fit_action.setChecked(self.pdf_view.fit_width)
        self.text_action.setChecked(not pdf_shown)
        self.page_action.setChecked(pdf_shown)
        can_draw = self._pdf_problem is None and self.pdf_view.loaded
        self.text_action.setEnabled(can_draw)
        self.page_action.setEnabled(can_draw)
        self.page_action.setToolTip(
            "Show the original page as it was ingested" if can_draw else "The original pages cannot be shown"
        )

    def _previous_page(self) -> None:
        self.pdf_view.previous_page()
        self._sync_toolbar()

    def _next_page(self) -> None:
        self.pdf_view.next_page()
        self._sync_toolbar()

    def _page_box_changed(self, value: int) -> None:
        if self.mode == "pdf":
            self.pdf_view.show_page(value)
            self._sync_toolbar()

    def _fit_width(self) -> None:
        self.pdf_view.fit_to_width()
        self._sync_toolbar()

    def _set_text_mode(self, text: bool) -> None:
        """Switch a PDF between its drawn page and its extracted text (both with the span highlighted)."""
        if self._doc is None or not self._is_pdf() or self._pdf_problem is not None:
            self._sync_toolbar()
            return
        self._text_mode = text
        if text:
            self._show_text()
        else:
            self.stack.setCurrentWidget(self.pdf_view)
            self.pdf_view.show_page(self.pdf_view.page, reveal=True)
            self._sync_toolbar()

    def _open_parent(self) -> None:
        doc_id = self.parent_button.property("doc_id")
        if doc_id is not None:
            self.show_document(int(doc_id))

    def _copy_sha(self) -> None:
        if self._doc is not None:
            QApplication.clipboard().setText(self._doc.sha256)
