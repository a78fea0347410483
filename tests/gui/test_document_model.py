"""The document tree: threads, attachments, columns, filters and sorting over a real ingested case."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from builders import make_email, make_mbox, pdf_bytes
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from sample_case import build_sample_case

from rlm_desktop.gui.document_model import (
    DATE,
    FROM,
    KIND,
    SIZE,
    TITLE,
    TO,
    DocumentFilterProxy,
    DocumentTree,
    DocumentTreeModel,
    human_size,
)
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.store.case import Case

pytestmark = pytest.mark.usefixtures("qapp")  # icons are pixmaps: they need the application


@pytest.fixture
def sample(tmp_path):
    built = build_sample_case(tmp_path)
    case = Case.open(built.case_path)
    yield built, case
    case.close()


def titles(model, parent=None):
    parent = QModelIndex() if parent is None else parent
    return [model.index(r, TITLE, parent).data() for r in range(model.rowCount(parent))]


def row_of(model, title, parent=None):
    parent = QModelIndex() if parent is None else parent
    for r in range(model.rowCount(parent)):
        index = model.index(r, TITLE, parent)
        if index.data().startswith(title):
            return index
    raise AssertionError(f"{title!r} not among {titles(model, parent)}")


def test_tree_groups_thread_and_nests_attachment(sample):
    _, case = sample
    tree = DocumentTree.from_case(case)
    top = [(n.kind, n.title) for n in tree.root.children]
    assert top == [
        ("pdf", "harbour report.pdf"),
        ("docx", "memo.docx"),
        ("text", "notes.txt"),
        ("thread", "Blue Heron shipment — 2 messages"),
    ]
    thread = tree.root.children[3]
    assert thread.doc_id is None
    assert [e.title for e in thread.children] == ["Blue Heron shipment", "Re: Blue Heron shipment"]
    assert thread.when == datetime(2023, 5, 6, 16, 45, tzinfo=UTC)  # the latest message
    assert "Alice Example" in thread.sender and "Bob Example" in thread.sender
    first = thread.children[0]
    assert [(c.kind, c.title) for c in first.children] == [("pdf", "invoice 778.pdf")]
    assert tree.document_count == 6 and tree.thread_count == 1


def test_model_columns_and_lookup(sample, qtmodeltester):
    _, case = sample
    model = DocumentTreeModel(case)
    qtmodeltester.check(model)
    thread = row_of(model, "Blue Heron shipment —")
    assert model.doc_id(thread) is None
    assert model.index(thread.row(), KIND).data() == "Thread"
    assert model.index(thread.row(), DATE).data() == "2023-05-06 16:45"
    first = model.index(0, TITLE, thread)
    assert model.index(0, FROM, thread).data() == "Alice Example"
    assert "alice@example.org" in model.index(0, FROM, thread).data(Qt.ItemDataRole.ToolTipRole)
    attachment = model.index(0, TITLE, first)
    assert attachment.data() == "invoice 778.pdf"
    assert model.index(0, KIND, first).data() == "PDF"
    assert model.index(0, SIZE, first).data() == human_size(case.document(model.doc_id(attachment)).size)
    assert model.index(0, TITLE, first).data(Qt.ItemDataRole.DecorationRole) is not None
    # index_of finds nested rows and round-trips through doc_id
    for doc in case.documents():
        index = model.index_of(doc.id)
        assert index.isValid() and model.doc_id(index) == doc.id
    assert not model.index_of(9999).isValid()


def test_human_size():
    assert human_size(0) == "0 B"
    assert human_size(999) == "999 B"
    assert human_size(1377) == "1.4 KB"
    assert human_size(36_631) == "36.6 KB"
    assert human_size(250_000_000) == "250 MB"
    assert human_size(None) == ""


def test_refresh_after_ingest_adds_rows(sample, qtmodeltester, tmp_path):
    built, case = sample
    model = DocumentTreeModel(case)
    proxy = DocumentFilterProxy()
    proxy.setSourceModel(model)
    qtmodeltester.check(proxy)
    more = tmp_path / "more"
    more.mkdir()
    third = make_email(
        "Re: Blue Heron shipment",
        "A third message in the thread.",
        message_id="<third@example.org>",
        in_reply_to="<reply@example.org>",
        date=datetime(2023, 5, 8, 9, 0, tzinfo=UTC),
        attachments=[("manifest.pdf", pdf_bytes(["Manifest"]), "application/pdf")],
    )
    (more / "3 third.eml").write_bytes(third.as_bytes())
    (more / "extra.txt").write_text("An extra note.", encoding="utf-8")
    make_mbox(more / "archive.mbox", 3)
    ingest(case, [more], jobs=1)
    with qtmodeltester_resets(model) as resets:
        model.refresh(case)
    assert resets == ["begin", "end"]
    qtmodeltester.check(model)
    qtmodeltester.check(proxy)
    thread = row_of(model, "Blue Heron shipment — 3 messages")
    assert model.rowCount(thread) == 3
    newest = model.index(2, TITLE, thread)
    assert model.index(2, DATE, thread).data() == "2023-05-08 09:00"
    assert titles(model, newest) == ["manifest.pdf"]
    # a mailbox is a top-level document; its messages (each its own thread here) sit under it
    mailbox = row_of(model, "archive.mbox")
    assert model.index(mailbox.row(), KIND).data() == "Mailbox"
    assert titles(model, mailbox) == ["Report 0", "Report 1", "Report 2"]
    assert "extra.txt" in titles(model)


class qtmodeltester_resets:
    """Records the model's reset signals around a block."""

    def __init__(self, model):
        self.model = model
        self.seen: list[str] = []

    def __enter__(self):
        self.model.modelAboutToBeReset.connect(lambda: self.seen.append("begin"))
        self.model.modelReset.connect(lambda: self.seen.append("end"))
        return self.seen

    def __exit__(self, *exc):
        return False


def visible(proxy, parent=None):
    parent = QModelIndex() if parent is None else parent
    """Titles of every visible row, depth first, indented by level."""
    out = []
    for r in range(proxy.rowCount(parent)):
        index = proxy.index(r, TITLE, parent)
        depth, p = 0, index.parent()
        while p.isValid():
            depth, p = depth + 1, p.parent()
        out.append("  " * depth + index.data())
        out.extend(visible(proxy, index))
    return out


def test_filters_are_recursive(sample, qtmodeltester):
    _, case = sample
    model = DocumentTreeModel(case)
    proxy = DocumentFilterProxy()
    proxy.setSourceModel(model)

    proxy.set_kinds({"pdf"})
    qtmodeltester.check(proxy)
    # the attachment PDF keeps its email and thread visible, the other email and documents go
    assert visible(proxy) == [
        "harbour report.pdf",
        "Blue Heron shipment — 2 messages",
        "  Blue Heron shipment",
        "    invoice 778.pdf",
    ]
    assert proxy.counts() == (2, 6, 1, 1)

    proxy.set_kinds({"email"})
    # emails match; the attachment of a matching email stays reachable
    assert visible(proxy) == [
        "Blue Heron shipment — 2 messages",
        "  Blue Heron shipment",
        "    invoice 778.pdf",
        "  Re: Blue Heron shipment",
    ]
    proxy.set_kinds(None)

    proxy.set_sender("bob@")
    assert visible(proxy) == ["Blue Heron shipment — 2 messages", "  Re: Blue Heron shipment"]
    proxy.set_sender("")

    proxy.set_date_range(date(2023, 5, 1), None)
    assert "  Re: Blue Heron shipment" in visible(proxy)
    assert "  Blue Heron shipment" not in visible(proxy)
    proxy.set_date_range(None, date(2023, 4, 30))
    assert "  Blue Heron shipment" in visible(proxy)
    assert "  Re: Blue Heron shipment" not in visible(proxy)
    proxy.set_date_range(date(2030, 1, 1), date(2030, 12, 31))
    assert visible(proxy) == [] and proxy.counts()[0] == 0
    qtmodeltester.check(proxy)
    proxy.set_date_range(None, None)
    assert len(visible(proxy)) == 7
    assert proxy.counts() == (6, 6, 1, 1)
    doc_ids = {proxy.doc_id(proxy.index_of(d.id)) for d in case.documents()}
    assert doc_ids == {d.id for d in case.documents()}


def test_sorting_by_column(sample, qtmodeltester):
    _, case = sample
    model = DocumentTreeModel(case)
    proxy = DocumentFilterProxy()
    proxy.setSourceModel(model)
    memo = QPersistentModelIndex(proxy.index_of(next(d.id for d in case.documents() if d.kind == "docx")))
    proxy.sort(SIZE, Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(proxy)
    assert memo.isValid() and proxy.doc_id(memo) == model.doc_id(model.index_of(proxy.doc_id(memo)))
    assert memo.data() == "memo.docx"  # a view's current row survives a sort
    sizes = [model.node(proxy.mapToSource(proxy.index(r, 0))).size for r in range(proxy.rowCount())]
    assert sizes == sorted(sizes, reverse=True)
    proxy.sort(TITLE, Qt.SortOrder.AscendingOrder)
    assert visible(proxy)[0] == "Blue Heron shipment — 2 messages"
    proxy.sort(DATE, Qt.SortOrder.DescendingOrder)
    thread = proxy.index(
        [r for r in range(proxy.rowCount()) if proxy.index(r, KIND).data() == "Thread"][0], TITLE
    )
    assert [proxy.index(r, TITLE, thread).data() for r in range(proxy.rowCount(thread))] == [
        "Re: Blue Heron shipment",
        "Blue Heron shipment",
    ]
    proxy.sort(-1)  # back to the case's own order
    assert visible(proxy)[0] == "harbour report.pdf"
    proxy.sort(TITLE, Qt.SortOrder.DescendingOrder)
    model.refresh(case)  # the sort outlives a refresh
    qtmodeltester.check(model)
    assert visible(proxy)[0] == "notes.txt"


def test_empty_and_no_case(qtmodeltester, tmp_path):
    model = DocumentTreeModel(None)
    qtmodeltester.check(model)
    assert model.rowCount() == 0
    with Case.open(tmp_path / "empty.sqlite") as case:
        model.refresh(case)
    qtmodeltester.check(model)
    assert model.rowCount() == 0 and not model.index_of(1).isValid()


@pytest.fixture
def zones_case(tmp_path):
    """Two messages of a thread written on clocks nine hours apart: the reply's own clock reads 09:30, the
    original's 18:00, yet the reply was sent half an hour after the original (16:30 vs 16:00 UTC)."""
    from datetime import timedelta, timezone

    folder = tmp_path / "mail"
    folder.mkdir()
    original = make_email(
        "Berlin meeting",
        "Shall we meet?",
        sender="Anna Berlin <anna@example.de>",
        to="Pat Seattle <pat@example.com>, Quinn <quinn@example.com>",
        message_id="<orig@example.de>",
        date=datetime(2023, 5, 6, 18, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    original["Cc"] = "Carol Copy <carol@example.net>"
    reply = make_email(
        "Re: Berlin meeting",
        "Yes.",
        sender="Pat Seattle <pat@example.com>",
        to="Anna Berlin <anna@example.de>",
        message_id="<reply@example.com>",
        in_reply_to="<orig@example.de>",
        date=datetime(2023, 5, 6, 9, 30, tzinfo=timezone(timedelta(hours=-7))),
    )
    (folder / "a.eml").write_bytes(original.as_bytes())
    (folder / "b.eml").write_bytes(reply.as_bytes())
    path = tmp_path / "zones.sqlite"
    with Case.open(path) as case:
        ingest(case, [folder], jobs=1)
    case = Case.open(path)
    yield case
    case.close()


def test_dates_show_in_one_zone_with_utc_in_the_tooltip_and_sort_by_instant(zones_case, qtmodeltester):
    from datetime import timedelta, timezone

    model = DocumentTreeModel(zones_case)
    qtmodeltester.check(model)
    thread = row_of(model, "Berlin meeting —")
    model.set_zone(UTC)
    qtmodeltester.check(model)
    assert [model.index(r, DATE, thread).data() for r in range(2)] == ["2023-05-06 16:00", "2023-05-06 16:30"]
    assert titles(model, thread) == ["Berlin meeting", "Re: Berlin meeting"]  # the reply after the original
    tip = model.index(1, DATE, thread).data(Qt.ItemDataRole.ToolTipRole)
    assert "2023-05-06 16:30:00 UTC" in tip and "Sender's clock: 2023-05-06 09:30 (UTC-07:00)" in tip
    tokyo = timezone(timedelta(hours=9), "JST")
    model.set_zone(tokyo)
    assert [model.index(r, DATE, thread).data() for r in range(2)] == ["2023-05-07 01:00", "2023-05-07 01:30"]
    assert "JST" in model.headerData(DATE, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    proxy = DocumentFilterProxy()
    proxy.setSourceModel(model)
    for order, expected in (
        (Qt.SortOrder.AscendingOrder, ["Berlin meeting", "Re: Berlin meeting"]),
        (Qt.SortOrder.DescendingOrder, ["Re: Berlin meeting", "Berlin meeting"]),
    ):
        proxy.sort(DATE, order)
        qtmodeltester.check(proxy)
        top = proxy.index(0, TITLE)
        assert [proxy.index(r, TITLE, top).data() for r in range(2)] == expected
    # the date filter reads days in the zone shown: in Tokyo both were sent on the 7th
    proxy.set_date_range(date(2023, 5, 7), date(2023, 5, 7))
    assert proxy.counts()[0] == 2
    model.set_zone(UTC)
    proxy.set_date_range(date(2023, 5, 7), date(2023, 5, 7))
    assert proxy.counts()[0] == 0


def test_to_column_and_recipient_filter(zones_case, qtmodeltester):
    model = DocumentTreeModel(zones_case)
    thread = row_of(model, "Berlin meeting —")
    assert model.index(0, TO, thread).data() == "Pat Seattle, Quinn"
    tip = model.index(0, TO, thread).data(Qt.ItemDataRole.ToolTipRole)
    assert "quinn@example.com" in tip and "Carol Copy <carol@example.net>" in tip  # Cc in the tooltip
    assert model.index(0, FROM, thread).data() == "Anna Berlin"
    proxy = DocumentFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_recipient("carol@")  # a Cc address
    qtmodeltester.check(proxy)
    assert proxy.counts() == (1, 2, 1, 1)
    top = proxy.index(0, TITLE)
    assert [proxy.index(r, TITLE, top).data() for r in range(proxy.rowCount(top))] == ["Berlin meeting"]
    proxy.set_recipient("ANNA")  # a name, any case
    assert proxy.counts()[0] == 1 and proxy.index(0, TITLE, proxy.index(0, TITLE)).data() == "Re: Berlin meeting"
    proxy.set_recipient("")
    assert not proxy.active
