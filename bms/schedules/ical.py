"""iCalendar (RFC 5545) import and export of calendars, with the ``icalendar`` package.

A calendar's entries become all-day ``VEVENT``s and back:

=====================================  ===================================================================
entry                                  VEVENT
=====================================  ===================================================================
date                                   ``DTSTART;VALUE=DATE`` (``DTEND`` the next day)
date range                             ``DTSTART`` the first day, ``DTEND`` the day after the last
week and day (4th Thursday of Nov.)    ``RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=4TH``; any month: ``FREQ=MONTHLY``;
                                       every Saturday: ``FREQ=WEEKLY;BYDAY=SA``; last 7 days: ``BYDAY=-1MO``
                                       (weeks 6-9 are ``-1`` to ``-4``); a week without a weekday:
                                       ``FREQ=MONTHLY;BYMONTHDAY=8,...,14``
date pattern (every 25 December)       ``RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25``; other wildcards
                                       (odd/even months or days, last day ``-1``, a weekday) as
                                       ``FREQ=DAILY`` with ``BYMONTH``/``BYMONTHDAY``/``BYDAY``; a pattern
                                       fixed to one year adds ``UNTIL`` (imported back as its dates)
=====================================  ===================================================================

A rule's ``DTSTART`` is the first matching day from 2000 on (RFC 5545 wants
it on the rule). The calendar's public holidays travel as
``X-BMS-HOLIDAY-COUNTRY`` and ``X-BMS-HOLIDAY-SUBDIVISION``; with
``holiday_years`` the export also lists them as dated events marked
``X-BMS-GENERATED:holidays`` (for other programs), which an import skips when
the file names the country (the holidays come back as the setting).

Import takes all-day events only, and these rules: without ``INTERVAL`` (or
1), ``BYSETPOS``, ``BYWEEKNO``, ``BYYEARDAY`` or times; a rule with ``COUNT``
or ``UNTIL`` is expanded into its dates (at most :data:`MAX_EXPANDED`); an
unbounded one must map to week-and-day or date patterns (its ``DTSTART`` then
only anchors it: a BACnet pattern has no first year). ``EXDATE`` and
``RDATE`` are refused on unbounded rules; on bounded ones they are applied.
Cancelled events are skipped. Anything else is refused with the event named,
and nothing is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
from dateutil import rrule as dateutil_rrule
from django.db import transaction

from bms.points.importer import ImportFailed
from bms.schedules import evaluate as ev
from bms.schedules.models import DATE, PATTERN, RANGE, WEEK_AND_DAY, Calendar, CalendarEntry

PRODID = "-//BMS//schedules//EN"
ANCHOR = date(2000, 1, 1)
MAX_EXPANDED = 1000
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # BACnet weekday 1..7
ODD_MONTHS = tuple(range(1, 13, 2))
EVEN_MONTHS = tuple(range(2, 13, 2))
ODD_DAYS = tuple(range(1, 32, 2))
EVEN_DAYS = tuple(range(2, 31, 2))
GENERATED = "X-BMS-GENERATED"
COUNTRY = "X-BMS-HOLIDAY-COUNTRY"
SUBDIVISION = "X-BMS-HOLIDAY-SUBDIVISION"
UNSUPPORTED_PARTS = ("BYSETPOS", "BYWEEKNO", "BYYEARDAY", "BYHOUR", "BYMINUTE", "BYSECOND")


class Unsupported(ValueError):
    """An event that cannot become calendar entries (the message says why)."""


# ---- export -------------------------------------------------------------------------------------------------------


def _week_days(week: int) -> tuple[int, ...]:
    """BYMONTHDAY values of a BACnet week of month (1-5 from the start, 6-9 from the end)."""
    if week <= 5:
        return tuple(range(7 * week - 6, min(7 * week, 31) + 1))
    first = 7 * (week - 6) + 1
    return tuple(-day for day in range(first, first + 7))


def _months(month: int | None) -> tuple[int, ...]:
    if month is None:
        return ()
    return {ev.ODD_MONTHS: ODD_MONTHS, ev.EVEN_MONTHS: EVEN_MONTHS}.get(month, (month,))


def _first_match(entry: ev.Entry, start: date, years: int = 40) -> date | None:
    day = start
    end = start.replace(year=start.year + years)
    while day < end:
        if ev.entry_matches(entry, day):
            return day
        day += timedelta(days=1)
    return None


def entry_to_vevent_parts(entry: ev.Entry) -> dict[str, Any]:
    """``DTSTART``, ``DTEND`` and ``RRULE`` (a dict for ``icalendar``) of one entry. ValueError: it matches no day."""
    if isinstance(entry, date):
        return {"dtstart": entry, "dtend": entry + timedelta(days=1)}
    if isinstance(entry, ev.DateRange):
        return {"dtstart": entry.start, "dtend": entry.end + timedelta(days=1)}
    if isinstance(entry, ev.DatePattern) and None not in (entry.year, entry.month, entry.day) and entry.weekday is None:
        if entry.month <= 12 and entry.day <= 31:
            return entry_to_vevent_parts(date(entry.year, entry.month, entry.day))
    rule: dict[str, Any]
    anchor = ANCHOR
    if isinstance(entry, ev.WeekNDay):
        months = _months(entry.month)
        if entry.weekday is not None and entry.week is not None:
            ordinal = entry.week if entry.week <= 5 else 5 - entry.week  # 6 -> -1 .. 9 -> -4
            single_month = entry.month is not None and entry.month <= 12
            rule = {"freq": "yearly" if single_month else "monthly", "byday": f"{ordinal}{_code(entry.weekday)}"}
        elif entry.weekday is not None:
            rule = {"freq": "weekly", "byday": _code(entry.weekday)}
        elif entry.week is not None:
            rule = {"freq": "monthly", "bymonthday": list(_week_days(entry.week))}
        else:
            rule = {"freq": "daily"}
        if months:
            rule["bymonth"] = list(months)
    else:
        assert isinstance(entry, ev.DatePattern)
        simple = entry.year is None and entry.weekday is None
        if simple and entry.month is not None and entry.month <= 12 and entry.day is not None and entry.day <= 31:
            rule = {"freq": "yearly", "bymonth": [entry.month], "bymonthday": [entry.day]}
        else:
            rule = {"freq": "daily"}
            if entry.month is not None:
                rule["bymonth"] = list(_months(entry.month))
            if entry.day is not None:
                days = {ev.LAST_DAY: (-1,), ev.ODD_DAYS: ODD_DAYS, ev.EVEN_DAYS: EVEN_DAYS}.get(entry.day, (entry.day,))
                rule["bymonthday"] = list(days)
            if entry.weekday is not None:
                rule["byday"] = _code(entry.weekday)
        if entry.year is not None:
            anchor = date(entry.year, 1, 1)
            rule["until"] = date(entry.year, 12, 31)
    first = _first_match(entry, anchor)
    if first is None:
        raise ValueError(f"{entry} matches no day")
    return {"dtstart": first, "dtend": first + timedelta(days=1), "rrule": rule}


def _code(weekday: int) -> str:
    return WEEKDAY_CODES[weekday - 1]


def export_calendar(calendar: Calendar, *, holiday_years: Iterable[int] = (), stamp: datetime | None = None) -> str:
    """The calendar as iCalendar text (see the module doc); ``stamp``: the DTSTAMP (default now)."""
    stamp = stamp or datetime.now(UTC)
    out = icalendar.Calendar()
    out.add("prodid", PRODID)
    out.add("version", "2.0")
    out.add("calscale", "GREGORIAN")
    out.add("x-wr-calname", calendar.name)
    if calendar.description:
        out.add("x-wr-caldesc", calendar.description)
    if calendar.holiday_country:
        out.add(COUNTRY, calendar.holiday_country)
        if calendar.holiday_subdivision:
            out.add(SUBDIVISION, calendar.holiday_subdivision)
    for entry in calendar.entries.all():
        event = icalendar.Event()
        event.add("uid", f"{calendar.name}-{entry.pk}@bms")
        event.add("dtstamp", stamp)
        event.add("summary", entry.description or entry.describe_days())
        parts = entry_to_vevent_parts(entry.entry())
        event.add("dtstart", parts["dtstart"])
        event.add("dtend", parts["dtend"])
        if "rrule" in parts:
            event.add("rrule", parts["rrule"])
        event.add("transp", "TRANSPARENT")
        out.add_component(event)
    holidays = calendar.holidays()
    if holidays is not None:
        for year in holiday_years:
            for day in sorted(ev.holiday_dates(holidays.country, holidays.subdivision, year)):
                event = icalendar.Event()
                event.add("uid", f"{calendar.name}-holiday-{day:%Y%m%d}@bms")
                event.add("dtstamp", stamp)
                event.add("summary", _holiday_name(holidays, day))
                event.add("dtstart", day)
                event.add("dtend", day + timedelta(days=1))
                event.add("categories", ["HOLIDAY"])
                event.add(GENERATED, "holidays")
                out.add_component(event)
    return out.to_ical().decode()


def _holiday_name(holidays: ev.Holidays, day: date) -> str:
    import holidays as package

    names = package.country_holidays(holidays.country, subdiv=holidays.subdivision or None, years=day.year)
    return names.get(day) or "public holiday"


# ---- import -------------------------------------------------------------------------------------------------------


@dataclass
class CalendarImport:
    """What an iCalendar file holds, ready to be stored: the entries (with descriptions) and the holiday setting."""

    name: str = ""
    description: str = ""
    holiday_country: str = ""
    holiday_subdivision: str = ""
    entries: list[tuple[ev.Entry, str]] = field(default_factory=list)
    skipped: int = 0


def parse_ical(text: str) -> CalendarImport:
    """Read iCalendar text into entries; raise :class:`ImportFailed` listing every event that cannot be taken."""
    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except ValueError as exc:
        raise ImportFailed([f"not an iCalendar file: {exc}"]) from None
    if not calendars:
        raise ImportFailed(["not an iCalendar file: no VCALENDAR"])
    result = CalendarImport()
    head = calendars[0]
    result.name = str(head.get("X-WR-CALNAME", "") or "")
    result.description = str(head.get("X-WR-CALDESC", "") or "")
    result.holiday_country = str(head.get(COUNTRY, "") or "").strip().upper()
    result.holiday_subdivision = str(head.get(SUBDIVISION, "") or "").strip().upper()
    errors: list[str] = []
    number = 0
    for cal in calendars:
        for event in cal.walk("VEVENT"):
            number += 1
            label = f"event {number}"
            if event.get("UID"):
                label += f" (UID {event.get('UID')})"
            if event.get("SUMMARY"):
                label += f" {str(event.get('SUMMARY'))!r}"
            if str(event.get("STATUS", "")).upper() == "CANCELLED" or (
                result.holiday_country and str(event.get(GENERATED, "")) == "holidays"
            ):
                result.skipped += 1
                continue
            try:
                entries = event_entries(event)
            except Unsupported as exc:
                errors.append(f"{label}: {exc}")
                continue
            summary = str(event.get("SUMMARY", "") or "")[:255]
            result.entries += [(entry, summary) for entry in entries]
    if errors:
        raise ImportFailed(errors)
    return result


def _all_day(event: icalendar.Event, name: str) -> date | None:
    prop = event.get(name)
    if prop is None:
        return None
    value = prop.dt
    if isinstance(value, datetime):
        raise Unsupported(f"{name} is a date and time; a calendar takes whole days only (VALUE=DATE)")
    return value


def event_entries(event: icalendar.Event) -> list[ev.Entry]:
    """The calendar entries one all-day VEVENT stands for; :class:`Unsupported` if there is no exact mapping."""
    start = _all_day(event, "DTSTART")
    if start is None:
        raise Unsupported("it has no DTSTART")
    end = _all_day(event, "DTEND")
    if end is None and event.get("DURATION") is not None:
        duration = event.get("DURATION").dt
        if not isinstance(duration, timedelta) or duration.seconds or duration.microseconds:
            raise Unsupported("its DURATION is not a whole number of days")
        end = start + duration
    days = (end - start).days if end is not None else 1
    if days < 1:
        raise Unsupported("it ends before it starts (DTEND is exclusive: a one-day event ends the next day)")
    rules = event.get("RRULE")
    if rules is None:
        if event.get("RDATE") is not None:
            return [*_span(start, days), *(entry for day in _dates(event, "RDATE") for entry in _span(day, days))]
        return _span(start, days)
    if isinstance(rules, list):
        if len(rules) > 1:
            raise Unsupported("it has more than one RRULE")
        rules = rules[0]
    rule = {key.upper(): list(values) for key, values in rules.items()}
    if "COUNT" in rule or "UNTIL" in rule:
        return [entry for day in _expand(event, rules, start) for entry in _span(day, days)]
    if event.get("EXDATE") is not None or event.get("RDATE") is not None:
        raise Unsupported("an unbounded RRULE with EXDATE or RDATE has no calendar-entry form; give COUNT or UNTIL")
    if days != 1:
        raise Unsupported("a repeating event must last one day (a repeating range has no calendar-entry form)")
    return rule_entries(rule, start)


def _span(start: date, days: int) -> list[ev.Entry]:
    return [start] if days == 1 else [ev.DateRange(start, start + timedelta(days=days - 1))]


def _dates(event: icalendar.Event, name: str) -> list[date]:
    props = event.get(name)
    found = []
    for prop in props if isinstance(props, list) else [props]:
        for item in prop.dts:
            value = item.dt
            if isinstance(value, datetime):
                raise Unsupported(f"{name} holds dates and times; a calendar takes whole days only")
            found.append(value)
    return found


def _expand(event: icalendar.Event, rules: Any, start: date) -> list[date]:
    """The dates of a bounded rule (with RDATE added and EXDATE removed), with dateutil."""
    text = rules.to_ical().decode()
    try:
        rule = dateutil_rrule.rrulestr(text, dtstart=datetime.combine(start, datetime.min.time()))
    except (ValueError, TypeError) as exc:
        raise Unsupported(f"its RRULE cannot be read: {exc}") from None
    found: list[date] = []
    for when in rule:
        found.append(when.date())
        if len(found) > MAX_EXPANDED:
            raise Unsupported(f"its RRULE makes more than {MAX_EXPANDED} dates")
    if event.get("RDATE") is not None:
        found += _dates(event, "RDATE")
    if event.get("EXDATE") is not None:
        removed = set(_dates(event, "EXDATE"))
        found = [day for day in found if day not in removed]
    return sorted(set(found))


def _ints(values: list[Any], name: str, low: int, high: int) -> list[int]:
    try:
        numbers = [int(value) for value in values]
    except (TypeError, ValueError):
        raise Unsupported(f"{name} must be numbers") from None
    if any(not low <= abs(number) <= high for number in numbers):
        raise Unsupported(f"{name} out of range")
    return numbers


def _weekday(code: str) -> int:
    if code not in WEEKDAY_CODES:
        raise Unsupported(f"unknown weekday {code!r} in BYDAY")
    return WEEKDAY_CODES.index(code) + 1


def rule_entries(rule: dict[str, list[Any]], start: date) -> list[ev.Entry]:
    """The week-and-day or date patterns an unbounded RRULE (parts upper-cased) stands for.

    Parts left out are filled from ``start`` as dateutil does (YEARLY: its
    month and day; MONTHLY: its day; WEEKLY: its weekday).
    """
    freq = str(rule.get("FREQ", [""])[0]).upper()
    if freq not in ("YEARLY", "MONTHLY", "WEEKLY", "DAILY"):
        raise Unsupported(f"FREQ={freq or '?'} has no calendar-entry form (use YEARLY, MONTHLY, WEEKLY or DAILY)")
    interval = rule.get("INTERVAL", [1])
    if [int(value) for value in interval] != [1]:
        raise Unsupported("INTERVAL other than 1 (every second week, ...) has no calendar-entry form")
    for part in UNSUPPORTED_PARTS:
        if part in rule:
            raise Unsupported(f"{part} has no calendar-entry form")
    months = _ints(rule["BYMONTH"], "BYMONTH", 1, 12) if "BYMONTH" in rule else []
    monthdays = _ints(rule["BYMONTHDAY"], "BYMONTHDAY", 1, 31) if "BYMONTHDAY" in rule else []
    byday: list[tuple[int | None, int]] = []
    for item in rule.get("BYDAY", []):
        text = str(item).upper()
        code, ordinal = text[-2:], text[:-2]
        try:
            byday.append((int(ordinal) if ordinal else None, _weekday(code)))
        except ValueError:
            raise Unsupported(f"BYDAY {text!r} cannot be read") from None
    if not monthdays and not byday:
        if freq == "YEARLY":
            months = months or [start.month]
            monthdays = [start.day]
        elif freq == "MONTHLY":
            monthdays = [start.day]
        elif freq == "WEEKLY":
            byday = [(None, start.isoweekday())]
    ordinals = [item for item in byday if item[0] is not None]
    if ordinals:
        if freq not in ("MONTHLY", "YEARLY") or (freq == "YEARLY" and not months):
            raise Unsupported(
                "a numbered BYDAY (e.g. 4TH) maps only to a week of a month (MONTHLY, or YEARLY with BYMONTH)"
            )
        if monthdays or len(byday) != len(ordinals):
            raise Unsupported("a numbered BYDAY with BYMONTHDAY or plain weekdays has no calendar-entry form")
        if any(not (1 <= ordinal <= 5 or -4 <= ordinal <= -1) for ordinal, _ in ordinals):
            raise Unsupported("a numbered BYDAY maps only for 1 to 5 and -1 to -4")
    month_parts = _month_parts(months)
    weekday_parts: list[int | None] = [weekday for ordinal, weekday in byday if ordinal is None] or [None]
    entries: list[ev.Entry] = []
    for month in month_parts:
        if ordinals:
            for ordinal, weekday in ordinals:
                entries.append(ev.WeekNDay(month, ordinal if ordinal > 0 else 5 - ordinal, weekday))
            continue
        if not monthdays:
            for weekday in weekday_parts:
                if month is None and weekday is None:
                    raise Unsupported("it repeats every day: that is no calendar")
                entries.append(ev.WeekNDay(month, None, weekday))
            continue
        week = _week_of(monthdays)
        for weekday in weekday_parts:
            if week is not None:
                entries.append(ev.WeekNDay(month, week, weekday))
            else:
                entries += [ev.DatePattern(None, month, day, weekday) for day in _day_parts(monthdays)]
    return entries


def _month_parts(months: list[int]) -> list[int | None]:
    unique = sorted(set(months))
    if not unique:
        return [None]
    if tuple(unique) == ODD_MONTHS:
        return [ev.ODD_MONTHS]
    if tuple(unique) == EVEN_MONTHS:
        return [ev.EVEN_MONTHS]
    return list(unique)


def _week_of(monthdays: list[int]) -> int | None:
    unique = sorted(set(monthdays), key=abs)
    for week in range(1, 10):
        if unique == sorted(_week_days(week), key=abs):
            return week
    return None


def _day_parts(monthdays: list[int]) -> list[int]:
    unique = sorted(set(monthdays))
    if tuple(unique) == ODD_DAYS:
        return [ev.ODD_DAYS]
    if tuple(unique) == EVEN_DAYS:
        return [ev.EVEN_DAYS]
    parts = []
    for day in unique:
        if day == -1:
            parts.append(ev.LAST_DAY)
        elif day < 0:
            raise Unsupported(f"BYMONTHDAY={day} has no calendar-entry form (only -1, the last day, or whole weeks)")
        else:
            parts.append(day)
    return parts


def entry_row(entry: ev.Entry, description: str = "") -> CalendarEntry:
    """An unsaved CalendarEntry for ``entry``."""
    if isinstance(entry, date):
        return CalendarEntry(kind=DATE, date=entry, description=description)
    if isinstance(entry, ev.DateRange):
        return CalendarEntry(kind=RANGE, start_date=entry.start, end_date=entry.end, description=description)
    if isinstance(entry, ev.WeekNDay):
        return CalendarEntry(
            kind=WEEK_AND_DAY,
            month=entry.month,
            week_of_month=entry.week,
            day_of_week=entry.weekday,
            description=description,
        )
    return CalendarEntry(
        kind=PATTERN,
        year=entry.year,
        month=entry.month,
        day=entry.day,
        day_of_week=entry.weekday,
        description=description,
    )


@dataclass
class ImportedCalendar:
    """The outcome of :func:`import_calendar`."""

    name: str
    created: bool
    entries: int
    skipped: int


def import_calendar(text: str, name: str = "", *, replace: bool = False, dry_run: bool = False) -> ImportedCalendar:
    """Store an iCalendar file as the calendar ``name`` (default: the file's X-WR-CALNAME), all of it or nothing.

    An existing calendar is refused unless ``replace``: then its entries (and
    its holiday setting, when the file has one) are replaced.
    """
    parsed = parse_ical(text)
    name = name or parsed.name
    if not name:
        raise ImportFailed(["the file does not name its calendar (X-WR-CALNAME): give a name"])
    existing = Calendar.objects.filter(name=name).first()
    if existing is not None and not replace:
        raise ImportFailed([f"calendar {name} exists; replace its entries with --replace"])
    calendar = existing or Calendar(name=name, description=parsed.description[:255])
    if parsed.holiday_country or existing is None:
        calendar.holiday_country = parsed.holiday_country
        calendar.holiday_subdivision = parsed.holiday_subdivision
    errors: list[str] = []
    try:
        calendar.full_clean(validate_unique=existing is None)
    except Exception as exc:
        errors += _messages(exc)
    rows = [entry_row(entry, description) for entry, description in parsed.entries]
    for number, row in enumerate(rows, 1):
        try:
            row.full_clean(exclude=["calendar"])
        except Exception as exc:
            errors += [f"entry {number} ({row.describe_days()}): {message}" for message in _messages(exc)]
    if errors:
        raise ImportFailed(errors)
    if not dry_run:
        with transaction.atomic():
            calendar.save()
            if existing is not None:
                calendar.entries.all().delete()
            for row in rows:
                row.calendar = calendar
                row.save()
    return ImportedCalendar(name, existing is None, len(rows), parsed.skipped)


def _messages(exc: Exception) -> list[str]:
    if hasattr(exc, "message_dict"):
        return [f"{key}: {message}" for key, messages in exc.message_dict.items() for message in messages]
    return list(getattr(exc, "messages", [str(exc)]))
