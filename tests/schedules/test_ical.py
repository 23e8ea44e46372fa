"""iCalendar (RFC 5545) export and import of calendars: exact rules, round trip, refusals, the commands."""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest
from dateutil import rrule as dateutil_rrule
from django.core.management import CommandError, call_command

from bms.points.importer import ImportFailed
from bms.schedules import evaluate as ev
from bms.schedules.ical import entry_to_vevent_parts, export_calendar, import_calendar, parse_ical
from bms.schedules.models import Calendar, CalendarEntry

STAMP = datetime(2026, 1, 1, tzinfo=UTC)
ENTRIES: list[ev.Entry] = [
    date(2026, 12, 24),
    ev.DateRange(date(2026, 12, 27), date(2027, 1, 2)),
    ev.WeekNDay(11, 4, 4),  # 4th Thursday of November
    ev.WeekNDay(5, 6, 1),  # last Monday of May
    ev.WeekNDay(None, 1, 1),  # first Monday of every month
    ev.WeekNDay(13, 9, 3),  # odd months, Wednesday of the 7 days before the last 21
    ev.WeekNDay(None, None, 6),  # every Saturday
    ev.WeekNDay(8, None, 5),  # Fridays in August
    ev.WeekNDay(None, 5, None),  # days 29-31
    ev.WeekNDay(None, 7, None),  # the 7 days before the last 7
    ev.WeekNDay(14, None, None),  # every day of even months
    ev.DatePattern(None, 12, 25),  # every Christmas Day
    ev.DatePattern(None, 2, 29),  # leap days
    ev.DatePattern(None, None, 32),  # last day of every month
    ev.DatePattern(None, 13, 33),  # odd days of odd months
    ev.DatePattern(None, None, 13, 5),  # Friday the 13th
    ev.DatePattern(None, 7, None, 1),  # Mondays in July
    ev.DatePattern(2027, 14, 1),  # the 1st of even months in 2027 only
]


def matching(entry: ev.Entry, first: date, last: date) -> list[date]:
    found, day = [], first
    while day <= last:
        if ev.entry_matches(entry, day):
            found.append(day)
        day += timedelta(days=1)
    return found


@pytest.mark.parametrize("entry", ENTRIES, ids=str)
def test_every_exported_event_stands_for_exactly_the_days_the_entry_matches(entry):
    """Expanded by an independent RFC 5545 implementation (dateutil), the event gives the entry's days."""
    parts = entry_to_vevent_parts(entry)
    start, end = parts["dtstart"], date(2040, 12, 31)
    length = (parts["dtend"] - start).days
    if "rrule" in parts:
        text = icalendar.vRecur(parts["rrule"]).to_ical().decode()
        rule = dateutil_rrule.rrulestr(text, dtstart=datetime.combine(start, datetime.min.time()))
        days = [when.date() for when in rule.between(datetime(1999, 1, 1), datetime(2040, 12, 31), inc=True)]
        assert length == 1
        assert start == days[0] and ev.entry_matches(entry, start)  # DTSTART is on the rule (RFC 5545)
        assert days == matching(entry, start, end)
        assert matching(entry, date(2000, 1, 1), start - timedelta(days=1)) == []  # nothing lost before DTSTART
    else:
        assert [start + timedelta(days=offset) for offset in range(length)] == matching(entry, start, end)


def add_entries(calendar: Calendar) -> None:
    for number, entry in enumerate(ENTRIES):
        row = CalendarEntry(calendar=calendar, description=f"entry {number}")
        if isinstance(entry, date):
            row.kind, row.date = "date", entry
        elif isinstance(entry, ev.DateRange):
            row.kind, row.start_date, row.end_date = "range", entry.start, entry.end
        elif isinstance(entry, ev.WeekNDay):
            row.kind, row.month, row.week_of_month, row.day_of_week = "week_and_day", *astuple(entry)
        else:
            row.kind, row.year, row.month, row.day, row.day_of_week = "date_pattern", *astuple(entry)
        row.save()


def test_a_calendar_survives_export_and_import(db):
    original = Calendar.objects.create(
        name="site", description="site calendar", holiday_country="DE", holiday_subdivision="BY"
    )
    add_entries(original)
    text = export_calendar(original, stamp=STAMP)
    assert "RRULE:FREQ=YEARLY;BYDAY=4TH;BYMONTH=11" in text and "X-BMS-HOLIDAY-COUNTRY:DE" in text

    result = import_calendar(text, "copy")
    assert (result.name, result.created, result.skipped) == ("copy", True, 0)
    copy = Calendar.objects.get(name="copy")
    assert (copy.holiday_country, copy.holiday_subdivision, copy.description) == ("DE", "BY", "site calendar")
    back = [(entry.entry(), entry.description) for entry in copy.entries.all()]
    unbounded = [(entry, f"entry {number}") for number, entry in enumerate(ENTRIES[:-1])]
    # every entry comes back as itself (Mondays in July as the equivalent week-and-day) ...
    unbounded[16] = (ev.WeekNDay(7, None, 1), "entry 16")
    assert back[: len(unbounded)] == unbounded
    year_only = {entry for entry, _ in back[len(unbounded) :]}  # ... but one fixed to a year comes back as its dates
    assert year_only == {date(2027, month, 1) for month in (2, 4, 6, 8, 10, 12)}
    first, last = date(2025, 1, 1), date(2029, 12, 31)
    assert matching(copy.definition(), first, last) == matching(original.definition(), first, last)


def test_holidays_can_be_listed_for_other_programs_and_are_not_imported_twice(db):
    calendar = Calendar.objects.create(name="by", holiday_country="DE", holiday_subdivision="BY")
    text = export_calendar(calendar, holiday_years=range(2026, 2028), stamp=STAMP)
    assert text.count("X-BMS-GENERATED:holidays") == 24 and "SUMMARY:Corpus Christi" in text
    assert "DTSTART;VALUE=DATE:20260604" in text
    parsed = parse_ical(text)
    assert (parsed.entries, parsed.skipped, parsed.holiday_country) == ([], 24, "DE")
    # a program that dropped our X- properties still gets the holidays, as dates
    plain = text.replace("X-BMS-HOLIDAY-COUNTRY:DE\r\n", "")
    assert len(parse_ical(plain).entries) == 24


THIRD_PARTY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Example Corp//Holidays//EN
X-WR-CALNAME:us-office
BEGIN:VEVENT
UID:thanksgiving@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20261126
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=4TH
SUMMARY:Thanksgiving
END:VEVENT
BEGIN:VEVENT
UID:memorial@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260525
RRULE:FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO
SUMMARY:Memorial Day
END:VEVENT
BEGIN:VEVENT
UID:xmas@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20261225
RRULE:FREQ=YEARLY
SUMMARY:Christmas
END:VEVENT
BEGIN:VEVENT
UID:shutdown@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20261228
DURATION:P4D
SUMMARY:Year-end shutdown
END:VEVENT
BEGIN:VEVENT
UID:audits@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260105
RRULE:FREQ=MONTHLY;BYDAY=1MO;COUNT=4
EXDATE;VALUE=DATE:20260202
SUMMARY:Audit
END:VEVENT
BEGIN:VEVENT
UID:cancelled@example.com
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260704
STATUS:CANCELLED
SUMMARY:Picnic
END:VEVENT
END:VCALENDAR
"""


def test_a_third_party_file_becomes_patterns_ranges_and_dates(db):
    result = import_calendar(THIRD_PARTY)
    assert (result.name, result.entries, result.skipped) == ("us-office", 7, 1)
    entries = [(entry.entry(), entry.description) for entry in Calendar.objects.get(name="us-office").entries.all()]
    assert entries == [
        (ev.WeekNDay(11, 4, 4), "Thanksgiving"),
        (ev.WeekNDay(5, 6, 1), "Memorial Day"),
        (ev.DatePattern(None, 12, 25), "Christmas"),
        (ev.DateRange(date(2026, 12, 28), date(2026, 12, 31)), "Year-end shutdown"),
        (date(2026, 1, 5), "Audit"),
        (date(2026, 3, 2), "Audit"),
        (date(2026, 4, 6), "Audit"),
    ]
    definition = Calendar.objects.get(name="us-office").definition()
    assert definition.matches(date(2030, 11, 28)) and definition.matches(date(2031, 5, 26))


def test_events_without_an_exact_calendar_form_are_refused_all_together(db):
    bad = THIRD_PARTY.replace(
        "END:VCALENDAR",
        "\n".join(
            [
                "BEGIN:VEVENT",
                "UID:meeting",
                "DTSTART:20260105T090000Z",
                "SUMMARY:Meeting",
                "END:VEVENT",
                "BEGIN:VEVENT",
                "UID:fortnight",
                "DTSTART;VALUE=DATE:20260105",
                "RRULE:FREQ=WEEKLY;INTERVAL=2",
                "END:VEVENT",
                "BEGIN:VEVENT",
                "UID:setpos",
                "DTSTART;VALUE=DATE:20260130",
                "RRULE:FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1",
                "END:VEVENT",
                "BEGIN:VEVENT",
                "UID:exdate",
                "DTSTART;VALUE=DATE:20260103",
                "RRULE:FREQ=WEEKLY;BYDAY=SA",
                "EXDATE;VALUE=DATE:20260110",
                "END:VEVENT",
                "BEGIN:VEVENT",
                "UID:yearday",
                "DTSTART;VALUE=DATE:20260105",
                "RRULE:FREQ=YEARLY;BYDAY=20MO",
                "END:VEVENT",
                "END:VCALENDAR",
            ]
        ),
    )
    with pytest.raises(ImportFailed) as failed:
        import_calendar(bad, "refused")
    assert failed.value.errors == [
        "event 7 (UID meeting) 'Meeting': DTSTART is a date and time; a calendar takes whole days only (VALUE=DATE)",
        "event 8 (UID fortnight): INTERVAL other than 1 (every second week, ...) has no calendar-entry form",
        "event 9 (UID setpos): BYSETPOS has no calendar-entry form",
        "event 10 (UID exdate): an unbounded RRULE with EXDATE or RDATE has no calendar-entry form; "
        "give COUNT or UNTIL",
        "event 11 (UID yearday): a numbered BYDAY (e.g. 4TH) maps only to a week of a month (MONTHLY, or YEARLY with "
        "BYMONTH)",
    ]
    assert not Calendar.objects.exists()
    with pytest.raises(ImportFailed, match="not an iCalendar file"):
        import_calendar("hello", "x")


def test_an_existing_calendar_is_replaced_only_when_asked(db):
    import_calendar(THIRD_PARTY)
    with pytest.raises(ImportFailed, match="calendar us-office exists; replace its entries with --replace"):
        import_calendar(THIRD_PARTY)
    calendar = Calendar.objects.get(name="us-office")
    CalendarEntry.objects.create(calendar=calendar, kind="date", date=date(2026, 8, 1))
    assert import_calendar(THIRD_PARTY, replace=True).created is False
    assert calendar.entries.count() == 7


def test_the_commands_import_and_export_a_calendar(db, tmp_path, capsys):
    source = tmp_path / "us.ics"
    source.write_text(THIRD_PARTY, encoding="utf-8")
    call_command("importcalendar", str(source), "--dry-run")
    assert "would create calendar us-office: 7 entries, 1 event(s) skipped" in capsys.readouterr().out
    assert not Calendar.objects.exists()
    call_command("importcalendar", str(source), "--name", "office")
    assert Calendar.objects.get(name="office").entries.count() == 7
    with pytest.raises(CommandError, match="calendar office exists"):
        call_command("importcalendar", str(source), "--name", "office")

    target = tmp_path / "out.ics"
    call_command("exportcalendar", "office", "-o", str(target))
    assert parse_ical(target.read_text(encoding="utf-8")).entries[0] == (ev.WeekNDay(11, 4, 4), "Thanksgiving")
    capsys.readouterr()
    call_command("exportcalendar", "office")
    assert capsys.readouterr().out.startswith("BEGIN:VCALENDAR")
    with pytest.raises(CommandError, match="there is no calendar named 'nope' \\(calendars: office\\)"):
        call_command("exportcalendar", "nope")
    with pytest.raises(CommandError, match="--holiday-years takes a year or a range"):
        call_command("exportcalendar", "office", "--holiday-years", "soon")
