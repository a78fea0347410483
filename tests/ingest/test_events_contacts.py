"""Calendars and contact cards: one document per event or contact, each with its own original."""

from __future__ import annotations

from datetime import UTC, datetime

import icalendar

from rlm_desktop.ingest.detect import detect_kind, extract
from rlm_desktop.ingest.pipeline import ingest
from rlm_desktop.ingest.source import Source
from rlm_desktop.sources import source_bytes
from rlm_desktop.store.case import Case


def event(uid: str, summary: str, start: datetime, **extra: str) -> icalendar.Event:
    item = icalendar.Event()
    item.add("uid", uid)
    item.add("summary", summary)
    item.add("dtstart", start)
    item.add("dtend", start.replace(hour=start.hour + 1))
    organizer = icalendar.vCalAddress("mailto:ann@example.org")
    organizer.params["cn"] = icalendar.vText("Ann Lee")
    item["organizer"] = organizer
    item.add("attendee", "mailto:bob@example.org")
    for key, value in extra.items():
        item.add(key, value)
    return item


def calendar_bytes(*events: icalendar.Event) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//test//EN")
    cal.add("version", "2.0")
    for item in events:
        cal.add_component(item)
    return cal.to_ical()


def test_one_event_is_its_own_document(tmp_path):
    path = tmp_path / "meeting.ics"
    path.write_bytes(calendar_bytes(event("u1@x", "Transfer sign-off", datetime(2024, 3, 1, 9, tzinfo=UTC),
                                          location="Zurich office", description="Bring the\\nwire form")))  # fmt: skip
    source = Source(path.name, path=path)
    ex = extract(source, detect_kind(source))
    assert ex.kind == "calendar" and ex.title == "Transfer sign-off"
    assert ex.text.startswith(
        "Event: Transfer sign-off\nWhen: 2024-03-01T09:00:00+00:00 to 2024-03-01T10:00:00+00:00\n"
        "Where: Zurich office\nOrganiser: Ann Lee <ann@example.org>\nAttendees: bob@example.org\n"
    )
    assert ex.meta["thread_id"] == "uid:u1@x" and ex.meta["date"] == "2024-03-01T09:00:00+00:00"
    assert ex.meta["attendees"] == ["bob@example.org"] and ex.meta["location"] == "Zurich office"


def test_many_events_are_children_threaded_by_uid(tmp_path):
    start = datetime(2024, 3, 1, 9, tzinfo=UTC)
    (tmp_path / "export.ics").write_bytes(calendar_bytes(
        event("a@x", "Board call", start), event("b@x", "Audit", start.replace(day=2)),
        event("a@x", "Board call (moved)", start.replace(day=3), sequence="1"),
    ))  # fmt: skip
    (tmp_path / "renamed.txt").write_bytes(calendar_bytes(event("c@x", "Lunch", start)))  # content decides
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path], jobs=1)
        assert report.failed == [] and report.added == 2
        docs = {d.title: d for d in case.documents()}
        listing = docs["export.ics"]
        assert listing.kind == "calendar" and listing.meta["events"] == 3
        children = [d for d in docs.values() if d.parent_id == listing.id]
        assert sorted(d.title for d in children) == ["Audit", "Board call", "Board call (moved)"]
        assert docs["Board call"].meta["thread_id"] == docs["Board call (moved)"].meta["thread_id"] == "uid:a@x"
        original = source_bytes(case, docs["Audit"].id)  # each event keeps a small original of its own
        assert b"SUMMARY:Audit" in original and b"Board call" not in original
        assert docs["Lunch"].kind == "calendar"


def test_contacts(tmp_path):
    cards = (
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann Lee\r\nORG:Lee & Partners;Legal\r\nEMAIL;TYPE=work:ann@example.org\r\n"
        "TEL;TYPE=cell:+41 44 123 45 67\r\nNOTE:Met in Zurich\\, 2019\r\n  about the trust\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:2.1\r\nN:Smith;Bob\r\nEMAIL:bob@example.org\r\nEND:VCARD\r\n"
    )
    (tmp_path / "people.vcf").write_text(cards, encoding="utf-8")
    (tmp_path / "one.vcf").write_text(cards.split("END:VCARD\r\n")[0] + "END:VCARD\r\n", encoding="utf-8")
    with Case.open(tmp_path / "case.sqlite") as case:
        report = ingest(case, [tmp_path], jobs=1)
        assert report.failed == []
        docs = {(d.title, d.parent_id is None): d for d in case.documents()}
        assert docs[("people.vcf", True)].meta["contacts"] == 2
        ann = docs[("Ann Lee", True)]  # one.vcf: the contact itself
        assert ann.kind == "contact" and ann.meta["emails"] == ["ann@example.org"]
        assert case.text(ann.id) == (
            "Name: Ann Lee\nOrganisation: Lee & Partners, Legal\nEmail (work): ann@example.org\n"
            "Phone (cell): +41 44 123 45 67\nNote: Met in Zurich, 2019 about the trust\n"
        )
        assert docs[("Bob Smith", False)].meta["emails"] == ["bob@example.org"]


def test_a_broken_calendar_fails_with_a_reason(tmp_path):
    (tmp_path / "bad.ics").write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2024\n", encoding="utf-8")  # cut off
    (tmp_path / "bad.vcf").write_text("no cards here", encoding="utf-8")
    with Case.open(tmp_path / "case.sqlite") as case:
        failed = {f["path"].rsplit("/", 1)[1]: f["error"] for f in ingest(case, [tmp_path], jobs=1).failed}
        assert "damaged calendar" in failed["bad.ics"] and "no BEGIN:VCARD" in failed["bad.vcf"]
