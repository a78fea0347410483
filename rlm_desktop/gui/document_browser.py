"""The document browser: filterable tree of the case's documents and a full-text search with snippets."""

from __future__ import annotations

import html
import re
import sqlite3
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

from PySide6.QtCore import (
    QDate,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAbstractTextDocumentLayout, QKeyEvent, QKeySequence, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from rlm_desktop.gui import theme
from rlm_desktop.gui.document_model import (
    COLUMNS,
    DATE,
    FROM,
    KEY_ROLE,
    KIND,
    SIZE,
    TAGS,
    TITLE,
    TO,
    DocumentFilterProxy,
    DocumentTree,
    DocumentTreeModel,
    collector_paused,
    kind_label,
    release_tree,
    sort_tree,
    zone_name,
)
from rlm_desktop.gui.tag_bar import TagFilterCombo, add_tag_actions
from rlm_desktop.gui.tasks import run_in_background
from rlm_desktop.store.case import Case
from rlm_desktop.store.findings import all_document_notes, all_tags
from rlm_desktop.store.fts import FtsMatch, InvalidQuery
from rlm_desktop.store.names import FIELDS
from rlm_desktop.store.search_query import parse_query

SEARCH_LIMIT = 200
SEARCH_PLACEHOLDER = 'Search documents: words, names, emails, "phrases"'
NO_DATE = QDate(1900, 1, 1)  # the date edits' minimum, shown as "any date"
AUTO_EXPAND_MAX = 400  # expand every match while filtering, unless that would mean thousands of rows
SYNC_TREE_MAX = 2_000  # documents: a case up to this size is shown at once when opened, a bigger one is read off the GUI thread
HIT_ROLE = Qt.ItemDataRole.UserRole + 10
HIT_HTML_ROLE = Qt.ItemDataRole.UserRole + 11
_OPERATORS = {"AND", "OR", "NOT", "NEAR"}
# a selection opens its document after this pause: holding an arrow key (a repeat every ~30 ms) walks the
# list without opening every document on the way, and the one the key stops on opens at once
PREVIEW_DELAY_MS = 60


@dataclass(frozen=True)
class SearchHit:
    doc_id: int
    start: int
    end: int
    title: str
    html: str


# ---- snippets ------------------------------------------------------------------------------------------


def query_terms(query: str) -> list[tuple[str, bool]]:
    """Words of a query worth bolding in a snippet: (word, is_prefix), as the search parser reads them."""
    try:
        return list(parse_query(query).terms)
    except InvalidQuery:
        return _loose_terms(query)


def _loose_terms(query: str) -> list[tuple[str, bool]]:
    """The words of a query the parser refused (a bad NEAR distance): still worth bolding."""
    terms: list[tuple[str, bool]] = []
    query = re.sub(r",\s*\d+\s*\)", ")", query)  # NEAR(a b, 5): the distance is no word
    for token in re.findall(r'"[^"]*"|[^\s()"]+', query):
        if token.startswith('"'):
            words = re.findall(r"\w+", token)
            terms.extend((w, False) for w in words)
            continue
        if token in _OPERATORS:  # FTS5 operators are upper case; "and" is a word
            continue
        token = token.split(":", 1)[-1]  # a column filter ("text:word")
        prefix = token.endswith("*")
        for word in re.findall(r"\w+", token):
            terms.append((word, prefix))
    return terms


def snippet_html(match: FtsMatch, terms: list[tuple[str, bool]], before: int = 70, after: int = 150) -> str:
    """A window of the matched chunk around the hit, HTML-escaped, with the matched words in bold."""
    text = match.chunk_text
    start = max(0, min(len(text), match.start - match.chunk_start))
    end = max(start, min(len(text), match.end - match.chunk_start))
    lo, hi = max(0, start - before), min(len(text), end + after)
    if lo > 0:  # begin and end on word boundaries
        space = text.find(" ", lo, start)
        lo = space + 1 if space != -1 else lo
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space != -1 else hi
    marks: list[tuple[int, int]] = [(start, end)] if end > start else []
    window = text[lo:hi]
    for word, prefix in terms:
        pattern = r"(?<!\w)" + re.escape(word) + (r"\w*" if prefix else r"(?!\w)")
        for found in re.finditer(pattern, window, re.IGNORECASE):
            marks.append((lo + found.start(), lo + found.end()))
    marks.sort()
    merged: list[list[int]] = []
    for a, b in marks:
        if merged and (a <= merged[-1][1] or text[merged[-1][1] : a].isspace()):  # "Blue Heron": one run
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])

    def plain(piece: str) -> str:
        return html.escape(re.sub(r"\s+", " ", piece))

    parts = ["…" if lo > 0 else ""]
    at = lo
    for a, b in merged:
        parts.append(plain(text[at:a]))
        parts.append(f'<b class="hit">{plain(text[a:b])}</b>')
        at = b
    parts.append(plain(text[at:hi]))
    parts.append("…" if hi < len(text) else "")
    return "".join(parts).strip()


def _page_of(case: Case, doc_id: int, offset: int, cache: dict[int, list[tuple[int, int]]]) -> int | None:
    if doc_id not in cache:
        cache[doc_id] = [(p.start, p.number) for p in case.pages(doc_id)]
    pages = cache[doc_id]
    if not pages:
        return None
    at = bisect_right([s for s, _ in pages], offset) - 1
    return pages[max(0, at)][1]


class HtmlDelegate(QStyledItemDelegate):
    """Paints an item's HTML (HIT_HTML_ROLE) wrapped to the view's width."""

    def _document(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QTextDocument:
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        # the muted "where" text must stay readable on the selection colour; matched words keep dark text
        where = option.palette.color(QPalette.ColorRole.HighlightedText) if selected else theme.MUTED
        doc.setDefaultStyleSheet(
            f".title {{ font-weight: 600; }} .where {{ color: {where.name()}; }}"
            f" .hit {{ background-color: {theme.HIGHLIGHT_TEXT.name()}; color: black; }}"
        )
        doc.setDocumentMargin(4)
        doc.setHtml(index.data(HIT_HTML_ROLE) or "")
        doc.setTextWidth(max(80, option.rect.width()))
        return doc

    def paint(
        self, painter: Any, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        doc = self._document(option, index)
        context = QAbstractTextDocumentLayout.PaintContext()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        context.palette.setColor(QPalette.ColorRole.Text, option.palette.color(role))
        painter.save()
        painter.translate(option.rect.topLeft())
        painter.setClipRect(QRectF(0, 0, option.rect.width(), option.rect.height()))
        doc.documentLayout().draw(painter, context)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        width = option.rect.width()
        if width <= 0 and option.widget is not None:
            width = option.widget.width() - 24
        opt = QStyleOptionViewItem(option)
        opt.rect.setWidth(width)
        doc = self._document(opt, index)
        return QSize(int(doc.idealWidth()), int(doc.size().height()) + 2)


# ---- the widget ----------------------------------------------------------------------------------------


class DocumentBrowser(QWidget):
    """Documents of the open case: a filterable tree, and full-text search hits in place of the tree."""

    document_activated = Signal(int)  # doc_id
    zone_changed = Signal(object)  # the tzinfo dates are shown in, None for the local zone
    span_activated = Signal(int, int, int)  # doc_id, start, end
    tags_changed = Signal(int)  # doc_id: its tags or note were changed from the list's context menu

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._case: Case | None = None
        self._generation = 0  # a background refresh older than the newest one is dropped
        self._reading = 0  # documents of the case being read in the background (0: none)
        self.big_case = False  # more than SYNC_TREE_MAX documents: read (and counted) off the GUI thread
        self.model = DocumentTreeModel(None, self)
        self.proxy = DocumentFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self._build()
        self._sender_timer = QTimer(self, singleShot=True, interval=200)
        self._sender_timer.timeout.connect(
            lambda: self._apply(lambda: self.proxy.set_sender(self.sender_box.text()))
        )
        self.sender_box.textChanged.connect(lambda _t: self._sender_timer.start())
        self._recipient_timer = QTimer(self, singleShot=True, interval=200)
        self._recipient_timer.timeout.connect(
            lambda: self._apply(lambda: self.proxy.set_recipient(self.recipient_box.text()))
        )
        self.recipient_box.textChanged.connect(lambda _t: self._recipient_timer.start())
        # a click or an arrow key previews: the selection opens in the viewer, a moment after it settles
        self._quiet = 0  # >0 while the browser itself moves the selection (a refresh keeps it): no preview
        self._preview_timer = QTimer(self, singleShot=True, interval=PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self._preview)
        self.tree.selectionModel().currentChanged.connect(lambda current, _previous: self._selection_moved())
        self.hits.currentRowChanged.connect(lambda _row: self._selection_moved())
        self.set_case(None)

    # ---- layout --------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText(SEARCH_PLACEHOLDER)
        self.search_box.setToolTip(
            "Full-text search over every document (Enter to search, Esc to go back to the list).\n"
            'Examples:  Rotterdam   "Blue Heron"   invoice AND payment   relabel*   shipment NOT draft'
        )
        self.search_box.setClearButtonEnabled(True)
        self.search_box.returnPressed.connect(lambda: self.run_search(self.search_box.text()))
        self.search_box.textChanged.connect(self._search_text_changed)
        self.search_box.installEventFilter(self)

        self.search_error = QLabel()
        self.search_error.setWordWrap(True)
        self.search_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.search_error.setStyleSheet(f"color: {theme.UNVERIFIED.name()};")
        self.search_error.hide()

        self.kind_combo = QComboBox()
        self.kind_combo.setToolTip("Show only documents of this type")
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._apply(self._kind_changed))
        self.sender_box = QLineEdit()
        self.sender_box.setPlaceholderText("Sender or author contains…")
        self.sender_box.setToolTip(
            "Show emails whose sender (name or address), or documents whose author, contains this"
        )
        self.sender_box.setClearButtonEnabled(True)
        self.recipient_box = QLineEdit()
        self.recipient_box.setPlaceholderText("To or Cc contains…")
        self.recipient_box.setToolTip("Show emails with a recipient (To or Cc, name or address) that contains this")
        self.recipient_box.setClearButtonEnabled(True)

        self.date_from = self._date_edit("Show documents dated on or after this day")
        self.date_to = self._date_edit("Show documents dated on or before this day")
        self.clear_filters_button = QToolButton()
        self.clear_filters_button.setText("Clear")
        self.clear_filters_button.setToolTip("Clear the filters: show every document again")
        self.clear_filters_button.clicked.connect(self.clear_filters)

        self.tag_combo = TagFilterCombo()
        # compact beside the sender and recipient boxes; the list opens as wide as its tags need
        self.tag_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.tag_combo.setMinimumContentsLength(5)
        self.tag_combo.currentIndexChanged.connect(lambda _i: self._apply(self._tag_changed))

        filters = QHBoxLayout()
        filters.setContentsMargins(0, 0, 0, 0)
        filters.addWidget(self.kind_combo)
        filters.addWidget(self.sender_box, 1)
        filters.addWidget(self.recipient_box, 1)
        filters.addWidget(self.tag_combo)
        # "Clear" (the filters) ends the first row: the dates row then fits a narrow pane (its minimum width set
        # the whole pane's, which made the viewer narrow on a 1280 px screen)
        filters.addWidget(self.clear_filters_button)
        dates = QHBoxLayout()
        dates.setContentsMargins(0, 0, 0, 0)
        dates.addWidget(QLabel("Dated"))
        dates.addWidget(self.date_from, 1)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to, 1)
        dates.addStretch(0)

        self.tree = QTreeView()
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setExpandsOnDoubleClick(False)  # activation decides: documents open, threads fold
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.header().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.tree.setSortingEnabled(True)
        self.tree.activated.connect(self._tree_activated)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(TITLE, QHeaderView.ResizeMode.Stretch)
        metrics = self.tree.fontMetrics()
        date_width = metrics.horizontalAdvance("2023-05-06 16:45") + 20
        for column, width in ((FROM, 110), (TO, 110), (DATE, date_width), (SIZE, 64), (KIND, 64)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, width)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)  # long subjects and recipient lists
        header.setSectionResizeMode(TAGS, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(TAGS, 90)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._document_menu)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._column_menu)
        header.setToolTip("Click to sort; right-click to choose the columns")
        self._columns_chosen = False  # until the user picks columns, they follow the pane's width
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet(f"color: {theme.MUTED.name()}; padding: 16px;")

        self.hits_header = QLabel()
        self.hits_header.setWordWrap(True)
        self.back_button = QPushButton("Back to documents")
        self.back_button.setToolTip("Close the search results (Esc)")
        self.back_button.clicked.connect(self.clear_search)
        self.hits = QListWidget()
        self.hits.setItemDelegate(HtmlDelegate(self.hits))
        self.hits.setWordWrap(True)
        self.hits.setAlternatingRowColors(True)
        self.hits.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.hits.setToolTip("Select a hit (click or arrow keys) to open the document at the matched words")
        self.hits.itemActivated.connect(self._hit_activated)
        self.hits.installEventFilter(self)
        hits_page = QWidget()
        hits_layout = QVBoxLayout(hits_page)
        hits_layout.setContentsMargins(0, 0, 0, 0)
        hits_top = QHBoxLayout()
        hits_top.addWidget(self.hits_header, 1)
        hits_top.addWidget(self.back_button)
        hits_layout.addLayout(hits_top)
        hits_layout.addWidget(self.hits, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.tree)
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(hits_page)
        self._hits_page = hits_page

        self.count_label = QLabel()
        self.count_label.setStyleSheet(f"color: {theme.MUTED.name()};")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.search_box)
        layout.addWidget(self.search_error)
        layout.addLayout(filters)
        layout.addLayout(dates)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.count_label)

    def _date_edit(self, tip: str) -> QDateEdit:
        edit = QDateEdit()
        edit.setCalendarPopup(True)
        edit.setMaximumWidth(150)
        edit.setDisplayFormat("yyyy-MM-dd")
        edit.setMinimumDate(NO_DATE)
        edit.setSpecialValueText("any date")  # shown while the date is the minimum: no limit
        edit.setDate(NO_DATE)
        edit.setToolTip(tip + ". Clear (or pick the earliest date) for any date.")
        edit.dateChanged.connect(lambda _d: self._apply(self._dates_changed))
        edit.calendarWidget().installEventFilter(self)
        return edit

    # ---- public API ----------------------------------------------------------------------------------

    def set_case(self, case: Case | None) -> None:
        self._case = case
        self._generation += 1  # a refresh still building for the previous case is dropped
        self.clear_search()
        # A small case's tree is built at once (no empty list flashing by); a big one's on a worker thread: 20,000
        # documents took seconds of reading and parsing, and the window must not stop for that.
        # (the highest id is instant; counting scans the table, texts and all)
        self._reading = (case.conn.execute("SELECT max(id) FROM documents").fetchone()[0] or 0) if case else 0
        self.big_case = self._reading > SYNC_TREE_MAX
        if not self.big_case:
            self._reading = 0
        self.model.refresh(None if self._reading else case)
        self._after_refresh()
        self.clear_filters()  # another case: the old filters would only confuse
        enabled = case is not None
        for widget in (
            self.search_box, self.kind_combo, self.sender_box, self.recipient_box, self.date_from, self.date_to
        ):
            widget.setEnabled(enabled)
        if self._reading:
            self.refresh_in_background()

    def refresh(self) -> None:
        """Re-read the case (after an ingest) keeping expanded rows, the selection and any search."""
        self._show_tree(DocumentTree.from_case(self._case))

    def refresh_in_background(self) -> None:
        """refresh(), with the case read and the tree built on a worker thread (a big mailbox takes a second)."""
        if self._case is None:
            return
        self._generation += 1
        generation, path = self._generation, self._case.path
        column, order = self.model.sort_order

        def build() -> DocumentTree:
            with collector_paused(), Case.open(path) as case:
                tree = DocumentTree.from_case(case)
                sort_tree(tree, column, order)  # here, not on the GUI thread: 150 ms at 20,000 documents
            return tree

        run_in_background(build, lambda tree: self._on_tree_built(generation, tree), owner=self)

    def _on_tree_built(self, generation: int, tree: DocumentTree) -> None:
        if generation == self._generation and self._case is not None:  # not for a case closed meanwhile
            self._reading = 0
            old = self.model.tree
            self._show_tree(tree)
            if old is not tree:
                release_tree(old)
        else:
            release_tree(tree)

    def _show_tree(self, tree: DocumentTree) -> None:
        expanded = self._expanded_keys()
        selected = self.selected_doc_id()
        with self._quietly():
            self.model.set_tree(tree)
        self._after_refresh()
        self._expand_keys(expanded)
        if selected is not None:
            self.select_document(selected)
        if self.showing_hits():
            self.run_search(self.search_box.text())

    def focus_search(self) -> None:
        self.search_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_box.selectAll()

    def run_search(self, text: str) -> list[SearchHit]:
        """Run a full-text search and show its hits; an invalid query shows its message instead."""
        if self.search_box.text() != text:
            self.search_box.setText(text)
        self.search_error.hide()
        if not text.strip():
            self.clear_search()
            return []
        if self._case is None:
            return []
        try:
            matches = self._case.search(text, limit=SEARCH_LIMIT)
        except InvalidQuery as exc:
            self._show_search_error(str(exc))
            return []
        except sqlite3.Error as exc:  # a locked or busy database must not take the window down
            self._show_search_error(f"The search could not run: {exc}")
            return []
        hits = self._hits_for(matches, query_terms(text))
        self.hits.clear()
        for hit in hits:
            item = QListWidgetItem()
            item.setData(HIT_ROLE, (hit.doc_id, hit.start, hit.end))
            item.setData(HIT_HTML_ROLE, hit.html)
            node = self.model.tree.by_id.get(hit.doc_id)
            if node is not None and node.doc is not None and node.doc.path:
                item.setToolTip(node.doc.path)
            self.hits.addItem(item)
        shown = html.escape(text.strip())
        if not hits:
            self.hits_header.setText(f"No documents contain <b>{shown}</b>.")
        elif any(not m.ranked for m in matches):  # a stop-word search (store/fts.py COMMON_SHARE)
            self.hits_header.setText(
                f"The first {len(hits)} hits for <b>{shown}</b>, in case order: it is in too many passages"
                " to rank. Add a rarer word to find the best."
            )
        elif len(hits) >= SEARCH_LIMIT:
            self.hits_header.setText(f"The best {len(hits)} hits for <b>{shown}</b> (refine to see others)")
        else:
            self.hits_header.setText(f"{len(hits)} hit{'s' if len(hits) != 1 else ''} for <b>{shown}</b>")
        self.stack.setCurrentWidget(self._hits_page)
        if hits:
            with self._quietly():  # the first hit is ready for Enter; the viewer keeps what it shows
                self.hits.setCurrentRow(0)
        return hits

    def clear_search(self) -> None:
        """Leave the search results and show the document tree again."""
        self.search_error.hide()
        with self._quietly():
            self.hits.clear()
        if self.search_box.text():
            self.search_box.blockSignals(True)
            self.search_box.clear()
            self.search_box.blockSignals(False)
        self.stack.setCurrentWidget(self.tree)
        self._show_tree_or_empty()

    def showing_hits(self) -> bool:
        return self.stack.currentWidget() is self._hits_page

    def select_document(self, doc_id: int) -> bool:
        """Show and select a document in the tree (clearing filters that hide it); False if it is not here."""
        index = self.proxy.index_of(doc_id)
        if not index.isValid() and self.model.index_of(doc_id).isValid():
            self.clear_filters()
            index = self.proxy.index_of(doc_id)
        if not index.isValid():
            return False
        if self.showing_hits():
            self.clear_search()
        parent = index.parent()
        while parent.isValid():
            self.tree.expand(parent)
            parent = parent.parent()
        with self._quietly():  # showing where a document is must not open it again (or another one)
            self.tree.setCurrentIndex(index)
        self.tree.scrollTo(index)
        return True

    def selected_doc_id(self) -> int | None:
        return self.proxy.doc_id(self.tree.currentIndex())

    def clear_filters(self) -> None:
        boxes = (self.kind_combo, self.sender_box, self.recipient_box, self.date_from, self.date_to)
        for widget in boxes:
            widget.blockSignals(True)
        self.kind_combo.setCurrentIndex(0)
        self.sender_box.clear()
        self.recipient_box.clear()
        self.date_from.setDate(NO_DATE)
        self.date_to.setDate(NO_DATE)
        for widget in boxes:
            widget.blockSignals(False)
        self._sender_timer.stop()
        self._recipient_timer.stop()
        self.tag_combo.blockSignals(True)
        self.tag_combo.setCurrentIndex(0)
        self.tag_combo.blockSignals(False)
        with self._quietly():
            self.proxy.clear()
            self._filters_changed()

    def hit_count(self) -> int:
        return self.hits.count()

    def hit(self, row: int) -> tuple[int, int, int]:
        return self.hits.item(row).data(HIT_ROLE)

    # ---- internals -----------------------------------------------------------------------------------

    def _after_refresh(self) -> None:
        current = self.kind_combo.currentData()
        self.kind_combo.blockSignals(True)
        self.kind_combo.clear()
        self.kind_combo.addItem("All kinds", None)
        for kind in self.model.tree.kinds:
            self.kind_combo.addItem(kind_label(kind), kind)
        at = self.kind_combo.findData(current) if current else 0
        self.kind_combo.setCurrentIndex(max(at, 0))
        self.kind_combo.blockSignals(False)
        if current and at < 0:  # the kind is gone from the case
            self.proxy.set_kinds(None)
        self._fill_tags()
        self._filters_changed()

    def refresh_tags(self) -> None:
        """Show the case's tags again (after one was added or removed) without rebuilding the tree."""
        if self._case is not None:
            self.model.set_tags(all_tags(self._case), all_document_notes(self._case))
            self._fill_tags()
            self._apply(self._tag_changed)

    def _fill_tags(self) -> None:
        if self.tag_combo.fill(self.model.tree.tag_names):
            self.proxy.set_tag(None)  # the chosen tag is on no document any more
        if not self._columns_chosen:  # the Tags column shows once the case has tags
            self._fit_columns(self.width())

    def _tag_changed(self) -> None:
        self.proxy.set_tag(self.tag_combo.currentData())

    def _document_menu(self, pos: Any) -> None:
        index = self.tree.indexAt(pos)
        doc_id = self.proxy.doc_id(index) if index.isValid() else None
        if doc_id is None or self._case is None:
            return
        menu = QMenu(self)
        menu.addAction("Open", lambda: self.document_activated.emit(doc_id))
        menu.addSeparator()
        add_tag_actions(menu, self, self._case, doc_id, self.tags_changed)
        menu.exec(self.tree.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def _kind_changed(self) -> None:
        kind = self.kind_combo.currentData()
        self.proxy.set_kinds({kind} if kind else None)

    def _dates_changed(self) -> None:
        self.proxy.set_date_range(self._date_of(self.date_from), self._date_of(self.date_to))

    @staticmethod
    def _date_of(edit: QDateEdit) -> date | None:
        value = edit.date()
        return None if value == NO_DATE else date(value.year(), value.month(), value.day())

    def _apply(self, change: Any) -> None:
        with self._quietly():  # a filter that hides the selected row moves the selection: not the user's choice
            change()
            self._filters_changed()

    def _filters_changed(self) -> None:
        docs, all_docs, threads, all_threads = self.proxy.counts()
        self.clear_filters_button.setEnabled(self.proxy.active)
        if self.proxy.active:
            text = f"{docs:,} of {all_docs:,} documents match"
            if all_threads:
                text += f", in {threads:,} of {all_threads:,} threads"
            if docs and docs <= AUTO_EXPAND_MAX:
                self.tree.expandAll()  # matches hide inside threads and emails: show them
        else:
            text = f"{all_docs:,} document{'s' if all_docs != 1 else ''}"
            if all_threads:
                text += f", {all_threads:,} thread{'s' if all_threads != 1 else ''}"
        self.count_label.setText(text)
        self._show_tree_or_empty()

    def _show_tree_or_empty(self) -> None:
        if self.showing_hits():
            return
        if self._case is None:
            self.empty_label.setText("No case is open.")
        elif self._reading and not self.model.tree.document_count:
            self.empty_label.setText("Reading the case's documents…")
        elif not self.model.tree.document_count:
            self.empty_label.setText(
                "This case has no documents yet.\n\nDrop files or folders on the window, or use Add files."
            )
        elif self.proxy.rowCount() == 0:
            self.empty_label.setText(
                "No documents match these filters.\n\nPress Clear (top right) to see them all."
            )
        else:
            self.stack.setCurrentWidget(self.tree)
            return
        self.stack.setCurrentWidget(self.empty_label)

    def _expanded_keys(self) -> set[str]:
        keys: set[str] = set()

        def visit(parent: QModelIndex) -> None:
            for row in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(row, 0, parent)
                if self.tree.isExpanded(index):
                    keys.add(index.data(KEY_ROLE))
                    visit(index)

        visit(QModelIndex())
        return keys

    def _expand_keys(self, keys: set[str]) -> None:
        if not keys:
            return

        def visit(parent: QModelIndex) -> None:
            for row in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(row, 0, parent)
                if index.data(KEY_ROLE) in keys:
                    self.tree.expand(index)
                    visit(index)

        visit(QModelIndex())

    def _hits_for(self, matches: list[FtsMatch], terms: list[tuple[str, bool]]) -> list[SearchHit]:
        assert self._case is not None
        pages: dict[int, list[tuple[int, int]]] = {}
        hits = []
        for match in matches:
            node = self.model.tree.by_id.get(match.doc_id)
            if node is None:  # added since the last refresh
                doc = self._case.document(match.doc_id)
                title, kind, parent_title = doc.title, doc.kind, None
            else:
                title, kind = node.title, node.kind
                holder = node.parent
                parent_title = holder.title if holder is not None and holder.doc is not None else None
            where = kind_label(kind)
            if match.field != "text":  # found by a name: the empty span at its start (store/fts.py)
                where += f", by its {FIELDS.get(match.field, match.field)}"
            elif kind == "pdf":
                page = _page_of(self._case, match.doc_id, match.start, pages)
                if page is not None:
                    where += f", page {page}"
            if parent_title:
                where += f", in {parent_title}"
            body = snippet_html(match, terms)
            html_text = (
                f'<div><span class="title">{html.escape(title)}</span>'
                f'&nbsp;&nbsp;<span class="where">{html.escape(where)}</span></div>'
                f"<div>{body}</div>"
            )
            hits.append(SearchHit(match.doc_id, match.start, match.end, title, html_text))
        return hits

    def _show_search_error(self, message: str) -> None:
        self.search_error.setText(message)
        self.search_error.show()

    def _search_text_changed(self, text: str) -> None:
        self.search_error.hide()
        if not text and self.showing_hits():
            self.clear_search()

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def _selection_moved(self) -> None:
        if self._quiet:
            return
        self._preview_timer.start()  # restarted by every move: only where the selection settles opens

    def stop_pending(self) -> None:
        """Drop a preview or filter still waiting on its timer (the case is about to close)."""
        for timer in (self._preview_timer, self._sender_timer, self._recipient_timer):
            timer.stop()

    def _preview(self) -> None:
        if self._case is None:
            return
        if self.showing_hits():
            item = self.hits.currentItem()
            if item is not None:
                self._hit_activated(item)
            return
        index = self.tree.currentIndex()
        doc_id = self.proxy.doc_id(index) if index.isValid() else None
        if doc_id is not None:  # a thread row previews nothing: its emails are one step down
            self.document_activated.emit(doc_id)

    def _tree_activated(self, index: QModelIndex) -> None:
        self._preview_timer.stop()  # opened now: the pending preview would open it twice
        doc_id = self.proxy.doc_id(index)
        if doc_id is not None:
            self.document_activated.emit(doc_id)
        else:  # a thread row: open or fold it
            first = index.siblingAtColumn(0)
            self.tree.setExpanded(first, not self.tree.isExpanded(first))

    def _hit_activated(self, item: QListWidgetItem) -> None:
        self._preview_timer.stop()
        doc_id, start, end = item.data(HIT_ROLE)
        self.span_activated.emit(doc_id, start, end)

    # ---- columns -------------------------------------------------------------------------------------

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if not self._columns_chosen:
            self._fit_columns(event.size().width())

    # optional columns and the pane width from which each shows while the user has not chosen (Kind is in
    # the icon; it shows only when chosen); a new column is one more entry
    FIT_WIDTHS = {DATE: 0, FROM: 420, TO: 560, SIZE: 680, TAGS: 760, KIND: None}

    def _fit_columns(self, width: int) -> None:
        """A narrow pane shows Title and Date; wider ones add From, To and Size, and the user's own tags and notes
        once there are any."""
        marked = self.model.tree.tag_names or any(n.note for n in self.model.tree.by_id.values())
        for column, from_width in self.FIT_WIDTHS.items():
            if column == TAGS and marked:
                from_width = 460  # below that the titles would be cut to a few letters
            self.tree.setColumnHidden(column, from_width is None or width < from_width)

    def _column_menu(self, pos: Any) -> None:
        menu = QMenu(self)
        menu.addSection("Columns")
        for column in self.FIT_WIDTHS:
            action = menu.addAction(COLUMNS[column])
            action.setCheckable(True)
            action.setChecked(not self.tree.isColumnHidden(column))
            action.toggled.connect(lambda on, c=column: self._choose_column(c, on))
        automatic = menu.addAction("Fit to the pane's width")
        automatic.triggered.connect(self._columns_automatic)
        menu.addSection("Dates in")
        for label, zone in ((f"Local time ({zone_name(None)})", None), ("UTC", UTC)):
            action = menu.addAction(label)
            action.setCheckable(True)
            action.setChecked(self.model.zone is zone)
            action.triggered.connect(lambda _on=False, z=zone: self.set_zone(z))
        menu.exec(self.tree.header().mapToGlobal(pos))

    def set_zone(self, zone: Any) -> None:
        """Show dates in `zone` (None: this computer's local zone); the date filter reads days in it too."""
        self.model.set_zone(zone)
        self._apply(self._dates_changed)
        self.zone_changed.emit(zone)

    def _choose_column(self, column: int, shown: bool) -> None:
        self._columns_chosen = True
        self.tree.setColumnHidden(column, not shown)

    def _columns_automatic(self) -> None:
        self._columns_chosen = False
        self._fit_columns(self.width())

    # ---- keys ----------------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        # Ctrl+F from anywhere inside the browser (the main window may also bind it to focus_search)
        if event.matches(QKeySequence.StandardKey.Find):
            self.focus_search()
            event.accept()
            return
        if event.key() == Qt.Key.Key_Escape and self.showing_hits():
            self.clear_search()
            event.accept()
            return
        super().keyPressEvent(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
            and watched in (self.search_box, self.hits)
            and (self.showing_hits() or self.search_box.text())
        ):
            self.clear_search()
            self.tree.setFocus()
            return True
        if event.type() == QEvent.Type.Show:
            # a calendar opened from "any date" would show the year 1900: "from" opens at the case's earliest
            # date, "to" at its latest, and at today when no document has a date (or the list is loading)
            for edit in (self.date_from, self.date_to):
                if watched is edit.calendarWidget() and edit.date() == NO_DATE:
                    dated = [n.when for n in self.model.tree.by_id.values() if n.when]
                    shown = (min if edit is self.date_from else max)(dated) if dated else date.today()
                    edit.calendarWidget().setCurrentPage(shown.year, shown.month)
        return super().eventFilter(watched, event)
