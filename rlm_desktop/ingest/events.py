"""Calendars (.ics, .vcs via icalendar): one document per event.

A file with one event is that event's document. A file with several is a listing whose children are the
events, each kept as its own small original (one VCALENDAR holding one VEVENT and its time zones), so a
citation opens the event it came from. Events carry their UID as `thread_id`, so an event's updates and
recurrences sit together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rlm_desktop.ingest.extracted import Blob, Extracted, ExtractionError
from rlm_desktop.ingest.source import Source
from rlm_desktop.ingest.text import decode_text_bytes, normalise_newlines

MAX_ENTRIES = 50_000  # events or cards in one file


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    value = getattr(value, "dt", value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def _address(value: Any) -> str:
    text = str(value)
    name = getattr(value, "params", {}).get("CN") if hasattr(value, "params") else None
    address = text[7:] if text.lower().startswith("mailto:") else text
    return f"{name} <{address}>" if name else address


def _event_document(event: Any, name: str) -> Extracted:
    summary = str(event.get("SUMMARY", "") or "").strip()
    start, end = _iso(event.get("DTSTART")), _iso(event.get("DTEND"))
    organizer = _address(event["ORGANIZER"]) if event.get("ORGANIZER") else None
    attendees = event.get("ATTENDEE") or []
    if not isinstance(attendees, list):
        attendees = [attendees]
    people = [_address(a) for a in attendees]
    location = str(event.get("LOCATION", "") or "").strip()
    description = normalise_newlines(str(event.get("DESCRIPTION", "") or "")).strip()
    uid = str(event.get("UID", "") or "").strip()
    lines = [f"Event: {summary or '(no title)'}"]
    if start:
        lines.append(f"When: {start}" + (f" to {end}" if end else ""))
    if location:
        lines.append(f"Where: {location}")
    if organizer:
        lines.append(f"Organiser: {organizer}")
    if people:
        lines.append("Attendees: " + "; ".join(people))
    for key, label in (("STATUS", "Status"), ("RRULE", "Repeats"), ("RECURRENCE-ID", "Occurrence")):
        if event.get(key):
            value = event[key]
            lines.append(f"{label}: {_iso(value) if key == 'RECURRENCE-ID' else value.to_ical().decode() if hasattr(value, 'to_ical') else value}")
    if description:
        lines += ["", description]
    meta: dict[str, Any] = {"format": "ics", "summary": summary, "start": start, "end": end, "date": start,
                            "organizer": organizer, "attendees": people, "location": location, "uid": uid}  # fmt: skip
    if uid:
        meta["thread_id"] = f"uid:{uid}"
    return Extracted(kind="calendar", title=summary or name, text="\n".join(lines) + "\n", meta=meta)


def extract_calendar(source: Source) -> Extracted:
    """An .ics/.vcs file: the event itself when it holds one, else a listing with one child per event."""
    import icalendar

    text, _ = decode_text_bytes(source.read_bytes(), source.name)
    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except Exception as exc:  # noqa: BLE001 - icalendar's ValueError names the broken line
        raise ExtractionError(f"damaged calendar file: {exc}") from exc
    if not calendars:
        raise ExtractionError("damaged calendar file: no complete BEGIN:VCALENDAR ... END:VCALENDAR in it")
    name = source.name.rsplit("/", 1)[-1]
    events = []
    timezones = []
    for calendar in calendars:
        timezones += list(calendar.walk("VTIMEZONE"))
        events += list(calendar.walk("VEVENT")) + list(calendar.walk("VTODO"))
    if len(events) > MAX_ENTRIES:
        raise ExtractionError(f"the calendar has {len(events):,} events (limit {MAX_ENTRIES:,}); split it")
    if len(events) == 1:
        return _event_document(events[0], name)
    children = []
    lines = [f"Calendar {name} ({len(events)} events)"]
    for number, event in enumerate(events, 1):
        one = icalendar.Calendar()
        one.add("prodid", "-//rlm-desktop//one event//EN")
        one.add("version", "2.0")
        for tz in timezones:
            one.add_component(tz)
        one.add_component(event)
        summary = str(event.get("SUMMARY", "") or "(no title)")
        lines.append(f"{_iso(event.get('DTSTART')) or '?'}  {summary}")
        children.append(Blob(f"event-{number}.ics", one.to_ical(), "text/calendar", origin=f"event {number}"))
    meta = {"format": "ics", "events": len(events)}
    return Extracted(kind="calendar", title=name, text="\n".join(lines) + "\n", meta=meta, children=children)
