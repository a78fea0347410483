"""The source viewer: a document as it was ingested, with a cited span highlighted and brought into view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QLabel,
    QMenu,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.gui import originals, theme
from rlm_desktop.gui.document_header import MAX_CHIPS, DocumentHeader
from rlm_desktop.gui.email_body import header_block_end
from rlm_desktop.gui.find_bar import FindBar
from rlm_desktop.gui.pdf_page_view import PdfPageView
from rlm_desktop.gui.pdf_selection import PdfTextSelection
from rlm_desktop.gui.sheet_grid import SheetGrid
from rlm_desktop.gui.span_text_view import SpanTextView
from rlm_desktop.gui.tag_bar import TagBar
from rlm_desktop.gui.tasks import run_in_background
from rlm_desktop.gui.widgets import NoticeBar
from rlm_desktop.sources import SourceUnavailable, source_bytes
from rlm_desktop.store.case import Case, DocumentRow
from rlm_desktop.store.pages import Page, page_for_offset, span_rects

EMPTY_MESSAGE = "Select a document or click a citation to see its source"
# Originals up to this size are read and hashed at once (a few ms); bigger ones on the task pool.
SYNC_LOAD_BYTES = 8 * 1024 * 1024
UNVERIFIED_MESSAGE = "Unverified citation: the quoted text was not found at these offsets"
def _looks_like_pdf(doc: DocumentRow) -> bool:
    if doc.kind in ("pdf", "image"):  # an image's OCR words are highlighted on it like a scanned page's
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


class SourceViewer(QWidget):
    """Shows one document of the case with a source span highlighted: PDF pages, or the extracted text.

    The main window opens the Case (on the main thread) and calls `show_document` or `show_citation`.
    """

    document_opened = Signal(int)
    finding_requested = Signal(int, int, int)  # doc_id, start, end: "Add to findings" on the user's selection

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
        self._loading: int | None = None  # a document whose original is being read in the background

        self.citation_notice = NoticeBar()
        self.info_notice = NoticeBar()
        self.doc_header = DocumentHeader()
        self.doc_header.document_requested.connect(self.show_document)
        self.doc_header.open_original_requested.connect(self.open_original)
        self.doc_header.save_original_requested.connect(lambda: self.save_original_as())
        # the header's parts, by the names the window and its tests use
        head = self.doc_header
        self.header, self.email_panel, self.children_bar = head.header, head.email_panel, head.children_bar
        self.kind_label, self.title_label, self.location_label = head.kind_label, head.title_label, head.location_label
        self.parent_button, self.parent_prefix = head.parent_button, head.parent_prefix
        self.details_label, self.sha_label = head.details_label, head.sha_label
        self.attachment_buttons = head.attachment_buttons
        self.toolbar = self._build_toolbar()

        self.pdf_view = PdfPageView()
        self.pdf_view.page_changed.connect(self._sync_toolbar)
        self.pdf_view.zoom_changed.connect(self._sync_toolbar)
        self.pdf_view.failed.connect(self._on_pdf_failed)
        self.text_view = SpanTextView()
        self.find_bar = FindBar()  # Ctrl+F inside the viewer: find in the open document
        self.find_bar.hide()
        self.find_bar.match_changed.connect(self._show_find_match)
        self.find_bar.closed.connect(self._find_closed)
        self._span_marks: tuple[list[tuple[int, list[float]]], bool] = ([], False)  # the span's PDF rects
        # selected text (or words dragged over on a PDF page) can be kept as a finding from the context menu
        self.pdf_selection = PdfTextSelection(self.pdf_view)
        self.pdf_selection.menu_requested.connect(self._selection_menu)
        self.text_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.text_view.customContextMenuRequested.connect(
            lambda pos: self._selection_menu(self.text_view.viewport().mapToGlobal(pos))
        )
        self.tag_bar = TagBar()
        self.empty_label = QLabel(EMPTY_MESSAGE)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet(f"color: {theme.MUTED.name()}; font-size: 14px; padding: 30px;")
        self.stack = QStackedWidget()
        self.sheet_grid = SheetGrid()  # spreadsheets: a grid with the cited cells
        for widget in (self.empty_label, self.pdf_view, self.text_view, self.sheet_grid):
            self.stack.addWidget(widget)

        top = QVBoxLayout()
        top.setContentsMargins(8, 8, 8, 4)
        top.setSpacing(6)
        for widget in (self.citation_notice, self.doc_header, self.tag_bar, self.info_notice):
            top.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.find_bar)
        layout.addWidget(self.stack, 1)
        self._show_empty()

    # ---- building ----------------------------------------------------------------------------------

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
        self.tag_bar.set_case(case)
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
        self.doc_header.clear()
        self.tag_bar.show_document(None)
        self.pdf_selection.set_pages([])
        self.toolbar.hide()
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
            self.find_bar.close_bar()  # what was found belongs to the document being left
            self._text = self._case.text(doc.id)
            self._pages = self._case.pages(doc.id)
            self._text_loaded_for = None
            self._text_mode = False
            self._pdf_problem = None
            self.pdf_view.clear()
            self.pdf_selection.set_pages(self._pages)
        self._doc = doc
        self._span = self._clamp(span)
        self._unverified = citation is not None and not citation.get("verified", False)
        self._update_header(doc)
        self.tag_bar.show_document(doc.id)
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
            if doc.size > SYNC_LOAD_BYTES and self._case is not None:
                self._load_in_background(doc, citation)
                return
            try:
                data = source_bytes(self._case, doc)  # the row already read
            except SourceUnavailable as exc:
                self._pdf_problem = f"Original file unavailable: the extracted text is shown instead.\n{exc}"
            else:
                self.pdf_view.load(data, len(self._pages) or doc.pages or 0)
        self._show_pdf(citation)

    def _load_in_background(self, doc: DocumentRow, citation: dict[str, Any] | None) -> None:
        """A big original is read and checked against its SHA-256 on the task pool, not the GUI thread;
        its text (with the span) is shown meanwhile."""
        case_path, doc_id = self._case.path, doc.id
        self._loading = doc_id
        self._add_notice(f"Loading the original pages ({doc.size / 1e6:.0f} MB, checking its hash)…", "ok")
        self._show_text()

        def read() -> bytes:
            with Case.open(case_path) as case:
                return source_bytes(case, doc_id)

        def loaded(data: bytes) -> None:
            if self._loading != doc_id or self._doc is None or self._doc.id != doc_id:
                return  # another document was opened meanwhile
            self._loading = None
            self._notice_reasons = [r for r in self._notice_reasons if not r[0].startswith("Loading the original")]
            self.info_notice.clear_notice()
            if self._notice_reasons:
                self.info_notice.show_notice("\n".join(t for t, _ in self._notice_reasons), self._notice_reasons[-1][1])
            self.pdf_view.load(data, len(self._pages) or doc.pages or 0)
            self._show_pdf(citation)

        def failed(error: BaseException) -> None:
            if self._loading != doc_id or self._doc is None or self._doc.id != doc_id:
                return
            self._loading = None
            reason = str(error) if isinstance(error, SourceUnavailable) else f"{type(error).__name__}: {error}"
            self._pdf_problem = f"Original file unavailable: the extracted text is shown instead.\n{reason}"
            self._show_text()

        run_in_background(read, loaded, failed, owner=self)

    def _show_pdf(self, citation: dict[str, Any] | None) -> None:
        """Draw the span on its page (or fall back to the text) once the pages are loaded."""
        stored = citation or {}
        boxes, box_pages = stored.get("rects") or [], stored.get("rect_pages") or []
        if (
            stored.get("verified")
            and boxes
            and len(boxes) == len(box_pages)
            and self._span == (stored.get("start"), stored.get("end"))
        ):
            # a verified citation carries its boxes (engine/citations.py): no need to work them out again
            rects = [(int(number), [float(v) for v in rect]) for number, rect in zip(box_pages, boxes, strict=True)]
        else:
            rects = span_rects(self._pages, *self._span) if self._span and self._pages else []
            # rounded like a run record's citation rects (engine/citations.py), so both name the same boxes
            rects = [(number, [round(v, 2) for v in rect]) for number, rect in rects]
        self._span_marks = (rects, self._unverified)
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
            revisions = doc.meta.get("revisions") if doc.kind == "docx" else None
            self.text_view.show_text(self._text, self._pages, revisions if isinstance(revisions, list) else None)
            reason = doc.meta.get("not_extracted")
            self.text_view.setPlaceholderText(
                f"No text was extracted from this file: {reason}" if reason else "This document has no text."
            )
            if doc.kind == "email":  # its From/To/Date/Subject are in the header panel above
                self.text_view.hide_head(header_block_end(self._text))
            self._text_loaded_for = doc.id
        if self._pdf_problem is not None:
            self._add_notice(self._pdf_problem, "warning")
        if self.text_view.revisions:
            kinds = [r.get("kind") for r in self.text_view.revisions]
            self._add_notice(
                f"Tracked changes\n{kinds.count('ins'):,} insertions (green, underlined) and {kinds.count('del'):,}"
                " deletions (red, struck through; not part of the document's text). Hover one for its author and date.",
                "ok",
            )
        if doc.kind == "spreadsheet" and doc.meta.get("sheets"):
            self.sheet_grid.show_document(self._text, doc.meta, self._span, self._unverified)
            self.stack.setCurrentWidget(self.sheet_grid)
            self._sync_toolbar()
            return
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

    # ---- selection and findings --------------------------------------------------------------------

    def selected_span(self) -> tuple[int, int] | None:
        """What the user selected, as offsets of the stored text: dragged words on a page, or text."""
        if self._doc is None:
            return None
        if self.mode == "pdf":
            return self.pdf_selection.span
        return self.text_view.selected_span()

    def request_finding(self) -> bool:
        """Ask for the selection to be kept as a finding; False when nothing is selected."""
        span = self.selected_span()
        if span is None or self._doc is None:
            return False
        self.finding_requested.emit(self._doc.id, *span)
        return True

    def _selection_menu(self, global_pos: Any) -> None:
        menu = self.selection_menu()
        menu.exec(global_pos)
        menu.deleteLater()

    def selection_menu(self) -> QMenu:
        """The context menu of the text or page: "Add selection to findings…" first, then the text's own."""
        menu = self.text_view.createStandardContextMenu() if self.mode == "text" else QMenu(self)
        first = menu.actions()[0] if menu.actions() else None
        span = self.selected_span()
        add = QAction("Add selection to findings…" if span else "Select text to add it to the findings", menu)
        add.setEnabled(span is not None)
        add.triggered.connect(self.request_finding)
        menu.insertAction(first, add)
        if first is not None:
            menu.insertSeparator(first)
        return menu

    # ---- header and notices ------------------------------------------------------------------------

    def _update_header(self, doc: DocumentRow) -> None:
        parent = None
        if doc.parent_id is not None:
            try:
                parent = self._case.document(doc.parent_id)
            except KeyError:
                parent = None
        children, total = self._case.children(doc.id, MAX_CHIPS)
        self.doc_header.show_document(doc, parent, children, total, own_file=originals.has_own_file(doc))

    def open_original(self) -> Path | None:
        """Open the shown document's original outside the app (an attachment through a private temp copy)."""
        if self._case is None or self._doc is None:
            return None
        return originals.open_original(self, self._case, self._doc)

    def save_original_as(self, target: Path | None = None) -> Path | None:
        """Save the shown document's original bytes (asks where when `target` is None)."""
        if self._case is None or self._doc is None:
            return None
        return originals.save_original_as(self, self._case, self._doc, target)

    def _update_notices(self, doc: DocumentRow, citation: dict[str, Any] | None) -> None:
        self.citation_notice.clear_notice()
        self.info_notice.clear_notice()
        self._notice_reasons = []
        if citation is not None and citation.get("verified", False):
            where = f"characters {self._span[0]:,}–{self._span[1]:,}" if self._span else "its offsets"
            if isinstance(citation.get("page"), int):
                where += f", page {citation['page']}"
            marker = f"Citation {citation['marker']}" if citation.get("marker") else "Citation"
            if str(citation.get("marker") or "").startswith("F"):  # a kept finding (rlm_desktop/findings.py)
                marker = f"Finding {citation['marker']}"
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
        self._refind()

    # ---- find in the document ----------------------------------------------------------------------

    def open_find(self) -> None:
        """Show the find bar over the open document's text (Ctrl+F inside the viewer)."""
        if self._doc is None:
            return
        anchor = self._span[0] if self._span else 0
        if self.find_bar.isVisible() and self.find_bar.matches and self.find_bar.current is not None:
            anchor = self.find_bar.matches[self.find_bar.current][0]
        self.find_bar.open(self._text, anchor)

    def _refind(self) -> None:
        """Show the current match again (after switching between page and text)."""
        if self.find_bar.isVisible() and self.find_bar.current is not None:
            self._show_find_match(*self.find_bar.matches[self.find_bar.current])

    def _show_find_match(self, start: int, end: int) -> None:
        if start < 0:  # no match: take the marks away, stay where the reader is
            self.text_view.clear_find()
            if self.mode == "pdf":
                self.pdf_view.set_highlights([])
            return
        if self.mode != "pdf":
            self.text_view.show_find(self.find_bar.matches, self.find_bar.current)
            return
        # on a drawn page only the current match is marked, in the span's place (it comes back on close)
        rects = span_rects(self._pages, start, end) if self._pages else []
        page = rects[0][0] if rects else page_for_offset(self._pages, start)
        self.pdf_view.set_highlights(rects)
        if page is not None:
            self.pdf_view.show_page(page, reveal=True)
        self._sync_toolbar()

    def _find_closed(self) -> None:
        """Put back the span's highlight where the finding left off; the focus returns to the document."""
        self.text_view.clear_find()
        rects, unverified = self._span_marks
        if self._doc is not None and self.mode == "pdf":
            self.pdf_view.set_highlights(rects, unverified=unverified)
        self.stack.currentWidget().setFocus(Qt.FocusReason.OtherFocusReason)

    def _find_key(self, event: QKeyEvent) -> str | None:
        """What a key means for finding here: "open", "next", "previous", "close", or None."""
        if event.matches(QKeySequence.StandardKey.Find):
            return "open"
        if event.matches(QKeySequence.StandardKey.FindNext) or event.key() == Qt.Key.Key_F3 and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            return "next" if self.find_bar.isVisible() else "open"
        if event.matches(QKeySequence.StandardKey.FindPrevious) or event.key() == Qt.Key.Key_F3:
            return "previous" if self.find_bar.isVisible() else "open"
        if event.key() == Qt.Key.Key_Escape and self.find_bar.isVisible():
            return "close"
        return None

    def event(self, event: QEvent) -> bool:  # noqa: A003 - Qt override
        # Ctrl+F, F3 and Esc pressed inside the viewer are its own (find), not the window's shortcuts
        # (search all documents, stop the run): claiming them here makes Qt deliver them as key presses.
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and self._doc is not None
            and self._find_key(event) is not None
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        action = self._find_key(event) if self._doc is not None else None
        if action is None:
            super().keyPressEvent(event)
            return
        {"open": self.open_find, "next": self.find_bar.next, "previous": self.find_bar.previous,
         "close": self.find_bar.close_bar}[action]()
        event.accept()
