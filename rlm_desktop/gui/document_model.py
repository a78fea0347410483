"""The case's documents as a tree (threads, emails, attachments) and its Qt model and filter proxy."""

from __future__ import annotations

import gc
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from email.utils import parseaddr
from functools import cache, lru_cache
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap

from rlm_desktop.gui import theme
from rlm_desktop.ingest import formats
from rlm_desktop.store.case import Case, DocumentRow
from rlm_desktop.store.findings import all_document_notes, all_tags

THREAD = "thread"
# The columns, in order; each is one entry of COLUMN_SPECS below (name, tooltip, text, sort key). A new
# column (tags, say) is one more name here and one more Column there; the browser shows it by its index.
COLUMNS = ("Title", "From", "To", "Date", "Size", "Kind")
TITLE, FROM, TO, DATE, SIZE, KIND = range(len(COLUMNS))

DOC_ID_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
KEY_ROLE = Qt.ItemDataRole.UserRole + 3
_TOP = QModelIndex()  # the invisible root, as a default argument
# the investigator's tags come last, after the document's own properties (store/findings.py holds them)
TAGS = len(COLUMNS)
COLUMNS = (*COLUMNS, "Tags")

THREAD_STYLE = ("Thread", "≡", QColor(20, 95, 110))  # a row the window makes, not a document kind


def _style(kind: str) -> tuple[str, str, QColor]:
    """(short label, icon letter, icon colour) from the formats table (ingest/formats.py)."""
    if kind == THREAD:
        return THREAD_STYLE
    fmt = formats.get(kind)
    if fmt is None:
        return formats.short_label(kind), kind[:1].upper() or "?", theme.MUTED
    return fmt.short, fmt.icon, QColor(fmt.colour)


def kind_label(kind: str) -> str:
    return _style(kind)[0]


@cache
def kind_icon(kind: str, size: int = 16) -> QIcon:
    """A small coloured tile with a letter: tells kinds apart at a glance without icon files."""
    _, letter, colour = _style(kind)
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawRoundedRect(1, 1, size - 2, size - 2, 3, 3)
    font = QFont()
    font.setPixelSize(size - 5)
    font.setBold(True)
    painter.setFont(font)
    painter.setPen(QColor("white"))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, letter)
    painter.end()
    return QIcon(pixmap)


def human_size(size: int | None) -> str:
    """1,234 bytes -> "1.2 KB"; decimal units like file managers."""
    if size is None:
        return ""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.5 or unit == "TB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def parse_when(value: Any) -> datetime | None:
    """An ISO 8601 date or datetime from metadata; naive values are taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _addresses(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return []


@lru_cache(maxsize=8192)  # a mailbox repeats its correspondents: parsing each once made a 20k tree 4x faster
def display_name(address: str) -> str:
    """ "Alice Example <alice@example.org>" -> "Alice Example"; a bare address stays as it is."""
    name, email = parseaddr(address)
    return name or email or address


@dataclass(eq=False)
class Node:
    """One row of the tree: a document (doc set) or an email thread (doc None)."""

    key: str  # stable across rebuilds: "doc:12" or "thread:<container>:<thread id>"
    kind: str
    title: str
    doc: DocumentRow | None = None
    when: datetime | None = None
    sender: str = ""  # what the From column shows
    sender_full: str = ""  # names and addresses, for the sender filter and tooltips
    recipients: str = ""  # what the To column shows: To names (an email), nothing for others
    recipients_full: str = ""  # To and Cc names and addresses, for the recipient filter and tooltips
    size: int | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    row: int = 0
    order: int = 0  # position in the case's own order, to undo a sort
    uid: int = 0  # the QModelIndex internal id
    sort_keys: tuple[Any, ...] | None = None  # per column, computed when first sorted
    tags: tuple[str, ...] = ()  # the investigator's tags on the document
    note: str = ""  # and their note on it

    @property
    def doc_id(self) -> int | None:
        return self.doc.id if self.doc is not None else None

    def add(self, child: Node) -> None:
        child.parent = self
        child.row = child.order = len(self.children)
        self.children.append(child)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            yield child
            yield from child.walk()


def _document_date(doc: DocumentRow) -> datetime | None:
    """Sent date for emails; otherwise the date the file's own properties give (created, else modified)."""
    meta = doc.meta
    for key in ("date", "creation_date", "created", "mod_date", "modified"):
        when = parse_when(meta.get(key))
        if when is not None:
            return when
    return None


def _document_node(doc: DocumentRow) -> Node:
    meta = doc.meta
    recipients = recipients_full = ""
    if doc.kind == "email":
        senders = _addresses(meta.get("from"))
        sender = ", ".join(display_name(a) for a in senders)
        sender_full = ", ".join(senders)
        to = _addresses(meta.get("to"))
        recipients = ", ".join(display_name(a) for a in to)
        recipients_full = ", ".join(to + _addresses(meta.get("cc")))
        title = doc.title or meta.get("subject") or "(no subject)"
    else:
        author = meta.get("author") if isinstance(meta.get("author"), str) else ""
        sender, sender_full = author or "", author or ""
        title = (
            doc.title or meta.get("filename") or (doc.path or "").rsplit("/", 1)[-1] or f"document {doc.id}"
        )
    return Node(
        key=f"doc:{doc.id}",
        kind=doc.kind,
        title=title,
        doc=doc,
        when=_document_date(doc),
        sender=sender,
        sender_full=sender_full,
        recipients=recipients,
        recipients_full=recipients_full,
        size=doc.size,
    )


def _thread_node(container: str, thread_id: str, emails: list[Node]) -> Node:
    latest = max((e.when for e in emails if e.when is not None), default=None)
    subject = emails[0].title
    people: dict[str, str] = {}  # display name -> full address, in order of appearance
    for email in emails:
        assert email.doc is not None
        for key in ("from", "to", "cc"):
            for address in _addresses(email.doc.meta.get(key)):
                people.setdefault(display_name(address), address)
    names = list(people)
    shown = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
    thread = Node(
        key=f"thread:{container}:{thread_id}",
        kind=THREAD,
        title=f"{subject} — {len(emails)} messages",
        when=latest,
        sender=shown,
        sender_full=", ".join(people.values()),
        recipients_full=", ".join(e.recipients_full for e in emails if e.recipients_full),
        size=sum(e.size or 0 for e in emails),
    )
    for email in emails:
        thread.add(email)
    return thread


def _date_key(node: Node) -> tuple[bool, datetime, int]:
    return (node.when is None, node.when or datetime.min.replace(tzinfo=UTC), node.doc_id or 0)


class DocumentTree:
    """Plain-Python tree of a case's documents: what the Qt model shows, testable without Qt."""

    def __init__(self, docs: list[DocumentRow]):
        self.root = Node(key="root", kind="root", title="")
        self.sorted_by: tuple[int, Any] | None = None  # (column, order) the levels are sorted by, once sorted
        self.by_id: dict[int, Node] = {}
        self.by_uid: dict[int, Node] = {}
        self.threads: list[Node] = []
        self.kinds: list[str] = sorted({d.kind for d in docs})
        self._build(docs)
        uids = itertools.count(1)
        for node in self.root.walk():
            node.uid = next(uids)
            self.by_uid[node.uid] = node

    @property
    def document_count(self) -> int:
        return len(self.by_id)

    @property
    def thread_count(self) -> int:
        return len(self.threads)

    def _build(self, docs: list[DocumentRow]) -> None:
        nodes = {d.id: _document_node(d) for d in docs}
        self.by_id = nodes
        # children of each container, in id order; emails at the top level or in a mailbox group into threads
        slots: dict[str, list[Node | tuple[str, str]]] = {}
        threads: dict[tuple[str, str], list[Node]] = {}
        for doc in docs:
            node = nodes[doc.id]
            parent = nodes.get(doc.parent_id) if doc.parent_id is not None else None
            container = parent.key if parent is not None else "root"
            slot = slots.setdefault(container, [])
            in_threadable_place = parent is None or parent.kind == "mailbox"
            thread_id = doc.meta.get("thread_id") if doc.kind == "email" else None
            if in_threadable_place and isinstance(thread_id, str) and thread_id:
                group = (container, thread_id)
                if group not in threads:
                    threads[group] = []
                    slot.append(group)
                threads[group].append(node)
            else:
                slot.append(node)
        owners = {"root": self.root, **{n.key: n for n in nodes.values()}}
        for container, entries in slots.items():
            owner = owners[container]
            for entry in entries:
                if isinstance(entry, Node):
                    owner.add(entry)
                    continue
                emails = sorted(threads[entry], key=_date_key)
                if len(emails) == 1:
                    owner.add(emails[0])
                else:
                    thread = _thread_node(container, entry[1], emails)
                    owner.add(thread)
                    self.threads.append(thread)

    @classmethod
    def from_case(cls, case: Case | None) -> DocumentTree:
        tree = cls(case.documents() if case is not None else [])
        if case is not None:
            tree.set_tags(all_tags(case), all_document_notes(case))
        return tree

    def set_tags(self, tags: dict[int, tuple[str, ...]], notes: dict[int, str] | None = None) -> None:
        """The tags (and notes) of every document by id; documents missing from them have none."""
        for doc_id, node in self.by_id.items():
            node.tags = tuple(tags.get(doc_id, ()))
            node.note = (notes or {}).get(doc_id, "")
            node.sort_keys = None
        names: dict[str, str] = {}  # one entry per tag whatever its letter case (the filter ignores case too)
        for values in tags.values():
            for tag in values:
                names.setdefault(tag.casefold(), tag)
        self.tag_names = sorted(names.values(), key=str.casefold)

    tag_names: list[str] = []  # the tags in use, for the tag filter (set by set_tags)


def _date_text(node: Node, zone: tzinfo | None = None) -> str:
    """The date in `zone` (None: this computer's local zone); a time only for emails and threads."""
    if node.when is None:
        return ""
    when = node.when.astimezone(zone)
    if node.kind in ("email", THREAD):
        return when.strftime("%Y-%m-%d %H:%M")
    return when.strftime("%Y-%m-%d")


def zone_name(zone: tzinfo | None) -> str:
    """"UTC", or the local zone as the computer names it with its offset now ("CET, UTC+01:00")."""
    if zone is not None:
        return str(zone.tzname(None) or zone)
    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now.tzname()}, UTC{offset[:3]}:{offset[3:]}" if offset else str(now.tzname())


def _date_tooltip(node: Node, zone: tzinfo | None) -> str:
    """The instant in UTC, and how the sender's own clock showed it (an email's Date header)."""
    if node.when is None:
        return "No date"
    utc = node.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"{_date_text(node, zone)} ({zone_name(zone)})", utc]
    if node.kind == "email" and node.when.utcoffset() is not None:
        offset = node.when.strftime("%z")
        lines.append(f"Sender's clock: {node.when.strftime('%Y-%m-%d %H:%M')} (UTC{offset[:3]}:{offset[3:]})")
    if node.kind == THREAD:
        lines[0] = "Latest message: " + lines[0]
    return "\n".join(lines)


def _tooltip(node: Node) -> str:
    if node.kind == THREAD:
        return (
            f"{node.title}\nLatest message: {_date_text(node, UTC) + ' UTC' if node.when else 'unknown'}\n"
            f"Participants: {node.sender_full or 'unknown'}"
        )
    doc = node.doc
    assert doc is not None
    lines = [node.title, f"{kind_label(node.kind)}, {human_size(doc.size)}"]
    if doc.pages:
        lines[-1] += f", {doc.pages} page{'s' if doc.pages != 1 else ''}"
    if doc.path:
        lines.append(doc.path)
    elif doc.origin:
        lines.append(f"Inside its parent ({doc.origin})")
    if node.kind == "email" and node.sender_full:
        lines.append(f"From: {node.sender_full}")
    if node.kind == "email" and node.recipients_full:
        lines.append(f"To/Cc: {node.recipients_full}")
    if doc.meta.get("not_extracted"):
        lines.append(f"Not read: {doc.meta['not_extracted']}")
    if doc.status == "partial":
        lines.append("Still being read (partial)")
    return "\n".join(lines)


def _title_text(node: Node, zone: tzinfo | None) -> str:
    partial = node.doc is not None and node.doc.status == "partial"
    return node.title + (" (still being read)" if partial else "")


def _instant(node: Node) -> float:
    """Sort key of the Date column: the true instant, whatever zone the sender wrote it in."""
    return node.when.timestamp() if node.when is not None else float("-inf")


@dataclass(frozen=True)
class Column:
    """One column of the document tree: its header tooltip, the text of a row, the key it sorts by (one
    Python type per column) and, if not the row's own, its tooltip."""

    tip: str
    text: Callable[[Node, tzinfo | None], str]
    sort_key: Callable[[Node], Any]
    tooltip: Callable[[Node, tzinfo | None], str | None] | None = None


COLUMN_SPECS: dict[int, Column] = {
    TITLE: Column(
        "Document title (the file name when its properties name none), email subject, or thread subject with"
        " its number of messages",
        _title_text,
        lambda n: n.title.casefold(),
    ),
    FROM: Column(
        "Sender for emails, participants for a thread, author for other documents",
        lambda n, _z: n.sender,
        lambda n: n.sender.casefold(),
        lambda n, _z: n.sender_full or None,
    ),
    TO: Column(
        "Recipients of an email (To; the tooltip adds Cc)",
        lambda n, _z: n.recipients,
        lambda n: n.recipients.casefold(),
        lambda n, _z: n.recipients_full or None,
    ),
    DATE: Column(
        "Sent date for emails (latest message for a thread), otherwise the date in the file's own properties;"
        " shown in one time zone (right-click to choose), sorted by the true instant, UTC in the tooltip",
        _date_text,
        _instant,
        _date_tooltip,
    ),
    SIZE: Column(
        "Size of the original file (for a thread: all its messages)",
        lambda n, _z: human_size(n.size),
        lambda n: n.size if n.size is not None else -1,
    ),
    KIND: Column("File type", lambda n, _z: kind_label(n.kind), lambda n: kind_label(n.kind).casefold()),
    TAGS: Column(
        "Your tags on the document (right-click a document to add or remove one); ✎ marks a note",
        lambda n, _z: ("✎ " if n.note else "") + ", ".join(n.tags),
        lambda n: ", ".join(n.tags).casefold() or "\uffff",  # untagged documents last
        lambda n, _z: "\n".join(
            (["Tags: " + ", ".join(n.tags)] if n.tags else []) + ([f"Note: {n.note}"] if n.note else [])
        )
        or None,
    ),
}
assert sorted(COLUMN_SPECS) == list(range(len(COLUMNS)))


class DocumentTreeModel(QAbstractItemModel):
    """Thin Qt adapter over DocumentTree. Call refresh(case) after an ingest."""

    def __init__(self, case: Case | None = None, parent: Any = None):
        super().__init__(parent)
        self.tree = DocumentTree.from_case(case)
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)
        self.zone: tzinfo | None = None  # dates are shown in this zone; None: the computer's local zone

    def set_zone(self, zone: tzinfo | None) -> None:
        """Show dates in `zone` (None: local). Sorting is by instant, so only the Date texts change."""
        self.layoutAboutToBeChanged.emit()  # every row's Date, at every level: views repaint them all
        self.zone = zone
        self.layoutChanged.emit()

    # ---- our API -------------------------------------------------------------------------------------

    def refresh(self, case: Case | None) -> None:
        self.set_tree(DocumentTree.from_case(case))

    def set_tags(self, tags: dict[int, tuple[str, ...]], notes: dict[int, str] | None = None) -> None:
        """New tags and notes for the documents (after one changed), without rebuilding the tree."""
        self.tree.set_tags(tags, notes)
        for owner in (self.tree.root, *self.tree.root.walk()):  # one signal per level, not per row
            if owner.children:
                parent = self.index_for(owner)
                last = len(owner.children) - 1
                self.dataChanged.emit(self.index(0, TAGS, parent), self.index(last, TAGS, parent))

    def set_tree(self, tree: DocumentTree) -> None:
        """Show a tree built elsewhere (a worker thread builds big ones so the window never waits)."""
        self.beginResetModel()
        self.tree = tree
        self._sort_tree(*self._sort)
        self.endResetModel()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort every level by a column (-1: the case's own order), in Python: a proxy sort of a big
        mailbox calls back into Python for each comparison and takes seconds."""
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        nodes = [(self.node(index), index.column()) for index in before]
        self.tree.sorted_by = None  # the user asked: sort again (tags may have changed since)
        self._sort_tree(column, order)
        self.changePersistentIndexList(before, [self.index_for(node, c) for node, c in nodes])
        self.layoutChanged.emit()

    @property
    def sort_order(self) -> tuple[int, Qt.SortOrder]:
        """(column, order) the tree is shown sorted by: a tree built elsewhere can be sorted the same way."""
        return self._sort

    def _sort_tree(self, column: int, order: Qt.SortOrder) -> None:
        if self.tree.sorted_by != (column, order):  # a tree built on a worker thread comes sorted already
            sort_tree(self.tree, column, order)

    def node(self, index: QModelIndex | QPersistentModelIndex) -> Node:
        if not index.isValid():
            return self.tree.root
        return self.tree.by_uid[index.internalId()]

    def doc_id(self, index: QModelIndex | QPersistentModelIndex) -> int | None:
        return self.node(index).doc_id if index.isValid() else None

    def index_of(self, doc_id: int) -> QModelIndex:
        node = self.tree.by_id.get(doc_id)
        return self.index_for(node) if node is not None else QModelIndex()

    def index_for(self, node: Node, column: int = 0) -> QModelIndex:
        if node is self.tree.root:
            return QModelIndex()
        return self.createIndex(node.row, column, node.uid)

    # ---- QAbstractItemModel --------------------------------------------------------------------------

    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = _TOP) -> QModelIndex:
        # called very often (sorting 10,000 messages asks ~150,000 times): keep it lean
        if parent.isValid():
            if parent.column() != 0:
                return QModelIndex()
            owner = self.tree.by_uid[parent.internalId()]
        else:
            owner = self.tree.root
        if 0 <= row < len(owner.children) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, owner.children[row].uid)
        return QModelIndex()

    def parent(self, index: QModelIndex | QPersistentModelIndex = _TOP) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        owner = self.node(index).parent
        if owner is None or owner is self.tree.root:
            return QModelIndex()
        return self.createIndex(owner.row, 0, owner.uid)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> int:
        return len(COLUMNS)

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = _TOP) -> bool:
        return self.rowCount(parent) > 0

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if not self.node(index).children:
            flags |= Qt.ItemFlag.ItemNeverHasChildren
        return flags

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = COLUMN_SPECS[section].tip
            return tip + f" (now: {zone_name(self.zone)})" if section == DATE else tip
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid():
            return None
        node = self.tree.by_uid[index.internalId()]
        column = index.column()
        if role == SORT_ROLE:
            return _sort_keys(node)[column]
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMN_SPECS[column].text(node, self.zone)
        if role == Qt.ItemDataRole.DecorationRole and column == TITLE:
            return kind_icon(node.kind)
        if role == Qt.ItemDataRole.ToolTipRole:
            own = COLUMN_SPECS[column].tooltip
            tip = own(node, self.zone) if own is not None else None
            return tip if tip is not None else _tooltip(node)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and (
            column != TITLE or (node.doc is not None and node.doc.status != "complete")
        ):
            return theme.MUTED
        if role == Qt.ItemDataRole.FontRole and node.kind == THREAD and column == TITLE:
            font = QFont()
            font.setBold(True)
            return font
        if role == DOC_ID_ROLE:
            return node.doc_id
        if role == KEY_ROLE:
            return node.key
        return None



def _sort_keys(node: Node) -> tuple[Any, ...]:
    if node.sort_keys is None:
        node.sort_keys = tuple(COLUMN_SPECS[c].sort_key(node) for c in range(len(COLUMNS)))
    return node.sort_keys


_paused = 0
_paused_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a big tree is built on a worker thread, and what was built kept out of
    later ones (`gc.freeze`): a collection walks the objects of its generations holding the GIL, and with a
    20,000-document tree in them that froze the window 100-300 ms at a time. A frozen tree is freed by
    `release_tree` when it is replaced (its nodes point to their parents: reference counting alone would not)."""
    global _paused
    with _paused_lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if not _paused:
                gc.freeze()  # else the first young collection after this walks the whole new tree
                gc.enable()


def release_tree(tree: DocumentTree | None) -> None:
    """Take a tree that is no longer shown apart, so reference counting frees it even if it was frozen."""
    if tree is None:
        return
    for node in list(tree.root.walk()):
        node.parent = None
        node.children = []
    tree.root.children = []
    tree.by_id = {}
    tree.threads = []


def sort_tree(tree: DocumentTree, column: int, order: Qt.SortOrder) -> None:
    """Sort every level of `tree` by a column (-1: the case's own order); no Qt involved, so a worker thread
    can sort a big tree before the window shows it."""
    descending = order == Qt.SortOrder.DescendingOrder and column >= 0
    stack = [tree.root]
    while stack:
        owner = stack.pop()
        if len(owner.children) > 1:
            if column < 0:
                owner.children.sort(key=lambda n: n.order)
            else:
                owner.children.sort(key=lambda n: _sort_keys(n)[column], reverse=descending)
            for row, child in enumerate(owner.children):
                child.row = row
        stack.extend(owner.children)
    tree.sorted_by = (column, order)


class DocumentFilterProxy(QSortFilterProxyModel):
    """Filters by kind, date range and sender; a thread stays while any of its emails match."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self._kinds: set[str] | None = None
        self._date_from: date | None = None
        self._date_to: date | None = None
        self._sender = ""
        self._recipient = ""
        self._tag = ""  # casefolded; documents carrying this tag
        self.setRecursiveFilteringEnabled(True)
        self.setAutoAcceptChildRows(True)  # the attachments of a matching email stay reachable
        self.setSortRole(SORT_ROLE)

    # ---- filters -------------------------------------------------------------------------------------

    def set_kinds(self, kinds: set[str] | None) -> None:
        self._change(lambda: setattr(self, "_kinds", set(kinds) if kinds else None))

    def set_date_range(self, start: date | None, end: date | None) -> None:
        def apply() -> None:
            self._date_from, self._date_to = start, end

        self._change(apply)

    def set_sender(self, text: str) -> None:
        self._change(lambda: setattr(self, "_sender", text.strip().casefold()))

    def set_recipient(self, text: str) -> None:
        """Emails whose To or Cc (names or addresses) contain `text`."""
        self._change(lambda: setattr(self, "_recipient", text.strip().casefold()))

    def set_tag(self, tag: str | None) -> None:
        self._change(lambda: setattr(self, "_tag", (tag or "").strip().casefold()))

    def clear(self) -> None:
        """No filter at all, in one change (each filter alone re-filters every row: 60 ms each at 20,000)."""
        if not self.active:
            return

        def apply() -> None:
            self._kinds = self._date_from = self._date_to = None
            self._sender = self._recipient = self._tag = ""

        self._change(apply)

    def _change(self, apply: Any) -> None:
        self.beginFilterChange()
        apply()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    @property
    def active(self) -> bool:
        return bool(
            self._kinds or self._date_from or self._date_to or self._sender or self._recipient or self._tag
        )

    def matches(self, node: Node) -> bool:
        """Whether a document row meets every active filter by itself (threads never do: their emails do)."""
        if not self.active:
            return True
        if node.doc is None:
            return False
        if self._kinds is not None and node.kind not in self._kinds:
            return False
        if self._date_from or self._date_to:
            if node.when is None:
                return False
            source = self.sourceModel()  # the day as the Date column shows it, in its zone
            day = node.when.astimezone(source.zone if isinstance(source, DocumentTreeModel) else None).date()
            if self._date_from and day < self._date_from:
                return False
            if self._date_to and day > self._date_to:
                return False
        if self._recipient and self._recipient not in node.recipients_full.casefold():
            return False
        if self._tag and self._tag not in (t.casefold() for t in node.tags):
            return False
        return not self._sender or self._sender in node.sender_full.casefold()

    def counts(self) -> tuple[int, int, int, int]:
        """(matching documents, all documents, threads with a matching email, all threads)."""
        tree = self._tree()
        if tree is None:
            return 0, 0, 0, 0
        if not self.active:
            return tree.document_count, tree.document_count, tree.thread_count, tree.thread_count
        docs = sum(1 for node in tree.by_id.values() if self.matches(node))
        shown = sum(1 for t in tree.threads if any(self.matches(e) for e in t.walk()))
        return docs, tree.document_count, shown, tree.thread_count

    def _tree(self) -> DocumentTree | None:
        source = self.sourceModel()
        return source.tree if isinstance(source, DocumentTreeModel) else None

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self.active:  # called for every row shown: 4,000 top-level rows at 20,000 emails
            return True
        source = self.sourceModel()
        if not isinstance(source, DocumentTreeModel):
            return True
        owner = source.node(source_parent)
        if source_row >= len(owner.children):
            return False
        return self.matches(owner.children[source_row])

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorting happens in the source tree (fast, plain Python); this proxy keeps the source's order."""
        source = self.sourceModel()
        if isinstance(source, DocumentTreeModel):
            source.sort(column, order)
        else:
            super().sort(column, order)

    # ---- conveniences --------------------------------------------------------------------------------

    def doc_id(self, index: QModelIndex | QPersistentModelIndex) -> int | None:
        source = self.sourceModel()
        if not isinstance(source, DocumentTreeModel) or not index.isValid():
            return None
        return source.doc_id(self.mapToSource(index))

    def index_of(self, doc_id: int) -> QModelIndex:
        source = self.sourceModel()
        if not isinstance(source, DocumentTreeModel):
            return QModelIndex()
        return self.mapFromSource(source.index_of(doc_id))
