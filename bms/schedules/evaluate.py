"""Schedule evaluation with the semantics of the BACnet Schedule and Calendar objects. Pure Python.

No Django and no clock: every function takes ``now`` (an aware datetime, UTC
by convention) and a definition (:class:`ScheduleDef`), so the active node,
the standby, a test or the admin's preview compute the same answer for the
same instant.

What is implemented (ASHRAE 135, Schedule object, Present_Value; Calendar object)
----------------------------------------------------------------------------------

* A **time/value list** (a weekday of the weekly schedule, or an exception's
  list) has, at a local time ``t`` of a day, the *current value* of its latest
  entry whose time is at or before ``t``. Before its first entry, or when that
  entry's value is ``None`` (BACnet NULL), the list has **no** current value.
  Lists never carry over midnight: every day starts with all lists empty.
* The schedule's value at ``t`` of local day ``D`` is the first of:

  1. the current value of the **exceptions in effect on D** (their period, a
     date, a date range, a week-and-day pattern or a calendar, matches ``D``),
     taken in order of event priority (1 wins over 16; equal priorities: the
     one earlier in :attr:`ScheduleDef.exceptions`, BACnet's lower array
     index), skipping those whose current value is none;
  2. the current value of D's weekday in the **weekly schedule**;
  3. the schedule's **default** (which may itself be ``None``).

  So an exception overrides the weekly day only from its first entry to its
  last entry with a value (a ``None`` entry hands control back), a NULL in the
  weekly day hands control to the default, and a value of ``None`` in the end
  means "none": the engine relinquishes the schedule's slot in its targets'
  priority arrays.
* **Effective period** (inclusive dates, either end open): outside it the
  schedule is *inactive*: it has no value and writes nothing (BACnet: the
  object does not evaluate, what it last wrote stays). Entering it is always a
  transition (the value in force is written even if it did not change).
* **Calendar**: a day matches if any entry matches (a date, a
  :class:`DateRange`, a :class:`WeekNDay`, a :class:`DatePattern` with BACnet
  wildcards) or it is a public holiday of the calendar's :class:`Holidays`.

Time zone and daylight saving
-----------------------------

Schedules are written in local wall time of the schedule's IANA time zone.
Each entry of day ``D`` becomes an instant with :func:`local_instant`:

* a local time that **does not exist** (the spring-forward gap, e.g. 02:30 in
  Europe/Berlin on the last Sunday of March) takes effect at the **first
  instant after the gap** (03:00 CEST); several entries in one gap take
  effect together and the latest of them wins;
* a local time that **occurs twice** (fall back, e.g. 02:30 on the last
  Sunday of October) takes effect **once, at its first occurrence** (CEST);
  during the repeated hour the value stays what it became then (evaluation is
  by instant, never by reading the wall clock again).

Transitions and occurrences
---------------------------

A *transition* is an instant at which the schedule's value changes, or at
which the schedule becomes active. Each is an :class:`Occurrence` with an
identity ``<schedule key>:<local date>T<local time>:<source>``, e.g.
``sch42:20260329T023000:weekly``: the nominal local time of the entry (not
the shifted instant), and where the new value comes from (``weekly``,
``default``, ``ex<exception key>``). The identity depends only on the
definition and the day, never on when, where or in which process time zone it
is computed, so a node that takes over with the last occurrence done (see
:meth:`Occurrence.to_dict`) knows whether the current one has fired.
"""

from __future__ import annotations

import calendar as _calendar
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: what a schedule writes: a bool, an integer (multistate), a real, or None (relinquish)
Value = bool | int | float | None

VALUE_TYPES = ("bool", "integer", "real")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: BACnet wildcards: month 13 odd, 14 even; day 32 last, 33 odd, 34 even
ODD_MONTHS, EVEN_MONTHS = 13, 14
LAST_DAY, ODD_DAYS, EVEN_DAYS = 32, 33, 34
#: week of month (BACnetWeekNDay): 1..5 days 1-7 .. 29-31; 6 the last 7 days; 7, 8, 9 the 7 days before those
WEEKS_OF_MONTH = range(1, 10)
#: how far back :func:`value_at` looks for the transition that set the value in force
LOOKBACK_DAYS = 400
#: how far ahead :func:`next_transitions` looks (a yearly exception must be found)
HORIZON_DAYS = 800
EVENT_PRIORITIES = range(1, 17)

_MIDNIGHT = time(0, 0)
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class _Inactive:
    """Marks "the schedule was inactive" where a value is expected (unlike None, which is a value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INACTIVE"


INACTIVE: Any = _Inactive()


# ---- dates: the BACnet calendar entries ---------------------------------------------------------------------------


def _month_matches(month: int | None, day: date) -> bool:
    if month is None:
        return True
    if month == ODD_MONTHS:
        return day.month % 2 == 1
    if month == EVEN_MONTHS:
        return day.month % 2 == 0
    return day.month == month


def _last_day(day: date) -> int:
    return _calendar.monthrange(day.year, day.month)[1]


@dataclass(frozen=True, slots=True)
class DatePattern:
    """A BACnet Date with wildcards (``None``: any): e.g. every 25 December, every last day of the month.

    ``month``: 1-12, 13 odd months, 14 even months; ``day``: 1-31, 32 the last
    day of the month, 33 odd days, 34 even days; ``weekday``: 1 Monday .. 7 Sunday.
    """

    year: int | None = None
    month: int | None = None
    day: int | None = None
    weekday: int | None = None

    def matches(self, day: date) -> bool:
        if self.year is not None and day.year != self.year:
            return False
        if not _month_matches(self.month, day):
            return False
        if self.day is not None:
            if self.day == LAST_DAY:
                if day.day != _last_day(day):
                    return False
            elif self.day == ODD_DAYS:
                if day.day % 2 == 0:
                    return False
            elif self.day == EVEN_DAYS:
                if day.day % 2 == 1:
                    return False
            elif day.day != self.day:
                return False
        return self.weekday is None or day.isoweekday() == self.weekday


@dataclass(frozen=True, slots=True)
class DateRange:
    """Every day from ``start`` to ``end``, both included; ``None``: open on that side."""

    start: date | None = None
    end: date | None = None

    def matches(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class WeekNDay:
    """A BACnetWeekNDay: month (1-12, 13 odd, 14 even), week of month (1-9) and weekday (1 Monday), ``None``: any.

    Weeks: 1 days 1-7, 2 days 8-14, 3 days 15-21, 4 days 22-28, 5 days 29-31,
    6 the last 7 days of the month, 7 the 7 days before those, 8 and 9 the
    7 days before those in turn. The fourth Thursday of November is
    ``WeekNDay(11, 4, 4)``, the last Monday of May ``WeekNDay(5, 6, 1)``,
    every Saturday ``WeekNDay(None, None, 6)``.
    """

    month: int | None = None
    week: int | None = None
    weekday: int | None = None

    def matches(self, day: date) -> bool:
        if not _month_matches(self.month, day):
            return False
        if self.weekday is not None and day.isoweekday() != self.weekday:
            return False
        week = self.week
        if week is None:
            return True
        if week <= 5:
            return (day.day - 1) // 7 + 1 == week
        from_end = _last_day(day) - day.day  # 0 on the last day
        return from_end // 7 == week - 6


#: one entry of a calendar's date list, or an exception's own period
Entry = date | DateRange | WeekNDay | DatePattern


def entry_matches(entry: Entry, day: date) -> bool:
    """Whether ``day`` (a local date) matches one calendar entry."""
    if isinstance(entry, date):
        return entry == day
    return entry.matches(day)


@dataclass(frozen=True, slots=True)
class Holidays:
    """The public holidays of a country (ISO 3166 code) and optionally a subdivision, from the ``holidays`` package.

    Both nodes must run the same (pinned) version of the package: its data
    decides which days match.
    """

    country: str
    subdivision: str = ""

    def matches(self, day: date) -> bool:
        return day in holiday_dates(self.country, self.subdivision, day.year)


@lru_cache(maxsize=256)
def holiday_dates(country: str, subdivision: str, year: int) -> frozenset[date]:
    """The public holidays of one year (cached: the package computes them on first use)."""
    import holidays  # a dependency of this module only where calendars use holidays

    found = holidays.country_holidays(country, subdiv=subdivision or None, years=year)
    return frozenset(day for day in found if day.year == year)


@dataclass(frozen=True, slots=True)
class CalendarDef:
    """A calendar shared by schedules: its date list and public holidays. True on a day any of them matches."""

    name: str
    entries: tuple[Entry, ...] = ()
    holidays: Holidays | None = None

    def matches(self, day: date) -> bool:
        if any(entry_matches(entry, day) for entry in self.entries):
            return True
        return self.holidays is not None and self.holidays.matches(day)


# ---- schedules ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeValue:
    """One entry of a time/value list: from local ``time`` on, ``value`` (``None``: no value from here)."""

    time: time
    value: Value


@dataclass(frozen=True, slots=True)
class ExceptionDef:
    """A BACnet special event: on the days ``period`` matches, its list overrides the weekly day (see module doc).

    ``key`` names it in occurrence identities (the database id); ``period`` is
    a calendar entry or a :class:`CalendarDef` (a calendar reference).
    """

    key: str
    period: Entry | CalendarDef
    priority: int
    time_values: tuple[TimeValue, ...] = ()

    def in_effect(self, day: date) -> bool:
        if isinstance(self.period, CalendarDef):
            return self.period.matches(day)
        return entry_matches(self.period, day)

    @property
    def source(self) -> str:
        return f"ex{self.key}"


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """Everything evaluation needs of one schedule.

    ``key`` starts every occurrence identity (``sch<id>``); ``weekly`` has
    seven lists, Monday first; ``exceptions`` are in BACnet array order (ties
    of event priority go to the earlier one); ``effective``: ``None`` always.
    """

    key: str
    time_zone: str
    weekly: tuple[tuple[TimeValue, ...], ...] = ((),) * 7
    exceptions: tuple[ExceptionDef, ...] = ()
    default: Value = None
    effective: DateRange | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _ranked: tuple[ExceptionDef, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError(f"a weekly schedule has 7 days, not {len(self.weekly)}")
        object.__setattr__(self, "_zone", zone(self.time_zone))
        ranked = sorted(enumerate(self.exceptions), key=lambda item: (item[1].priority, item[0]))
        object.__setattr__(self, "_ranked", tuple(exception for _index, exception in ranked))

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def active_on(self, day: date) -> bool:
        return self.effective is None or self.effective.matches(day)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it if it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from exc


@dataclass(frozen=True, slots=True)
class Step:
    """One moment of a day's plan: from ``at`` (UTC) the schedule's value is ``value``, from ``source``."""

    local_time: time
    at: datetime
    value: Value
    source: str


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One transition of one schedule: on local ``local_date`` at nominal ``local_time``, ``value`` from ``source``.

    ``at`` is the UTC instant it takes effect (after the DST rules).
    """

    schedule: str
    local_date: date
    local_time: time
    source: str
    value: Value
    at: datetime

    @property
    def identity(self) -> str:
        """Stable, and usable in a command id (letters, digits, ``:``; at most 64 characters for keys up to 20)."""
        return f"{self.schedule}:{self.local_date:%Y%m%d}T{self.local_time:%H%M%S}:{self.source}"

    def to_dict(self) -> dict[str, Any]:
        """JSON- and msgpack-safe form for the process image (the instant in epoch microseconds)."""
        return {
            "identity": self.identity,
            "schedule": self.schedule,
            "date": self.local_date.isoformat(),
            "time": self.local_time.isoformat(),
            "source": self.source,
            "value": self.value,
            "at_us": (self.at - _EPOCH) // _MICROSECOND,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Occurrence:
        """The inverse of :meth:`to_dict`."""
        return cls(
            schedule=data["schedule"],
            local_date=date.fromisoformat(data["date"]),
            local_time=time.fromisoformat(data["time"]),
            source=data["source"],
            value=data.get("value"),
            at=_EPOCH + timedelta(microseconds=int(data["at_us"])),
        )


@dataclass(frozen=True, slots=True)
class InForce:
    """The answer of :func:`value_at`.

    ``active`` False: outside the effective period (no value; nothing is
    written). ``occurrence``: the transition that set ``value``, ``since`` its
    instant; both None when no transition was found within the look-back (the
    value has then held for at least that long).
    """

    active: bool
    value: Value = None
    since: datetime | None = None
    occurrence: Occurrence | None = None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"schedule times must be timezone-aware (UTC), not {now!r}")


# ---- DST ----------------------------------------------------------------------------------------------------------


def local_instant(tz: ZoneInfo, day: date, at: time) -> datetime:
    """The UTC instant of local ``day`` ``at`` in ``tz``, by the DST rules of this module.

    An ambiguous time (it occurs twice when the clocks go back) is its first
    occurrence; a time that does not exist (the clocks went forward over it) is
    the first instant after the gap.
    """
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # In a gap: fold=0 reads the time with the offset before the transition (an instant after the gap), fold=1 with
    # the one after (an instant before it). The gap ends where the offset changes: find that second.
    low = int(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    high = int(first.timestamp())
    after = datetime.fromtimestamp(high, UTC).astimezone(tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def local_date(schedule: ScheduleDef, now: datetime) -> date:
    """The local date of ``now`` in the schedule's zone."""
    return now.astimezone(schedule.zone).date()


# ---- evaluation ---------------------------------------------------------------------------------------------------


def _current(time_values: tuple[TimeValue, ...], at: time) -> Value:
    """The list's current value at local ``at``: its latest entry at or before ``at`` (None: none)."""
    current: Value = None
    for entry in time_values:
        if entry.time > at:
            break
        current = entry.value
    return current


def day_plan(schedule: ScheduleDef, day: date) -> tuple[Step, ...]:
    """The steps of local ``day``, in time order, the first at the day's start; empty if the schedule is inactive.

    Every step is a moment the value is decided again (midnight and each entry
    of the lists in effect), with the value and its source; consecutive steps
    may carry the same value. Entries that fall on one instant (a DST gap) make
    one step, valued as at the latest of their local times.
    """
    if not schedule.active_on(day):
        return ()
    lists: list[tuple[str, tuple[TimeValue, ...]]] = [
        (exception.source, exception.time_values) for exception in schedule._ranked if exception.in_effect(day)
    ]
    lists.append(("weekly", schedule.weekly[day.weekday()]))
    times = sorted({_MIDNIGHT, *(entry.time for _source, values in lists for entry in values)})
    steps: list[Step] = []
    for at in times:
        value: Value = schedule.default
        source = "default"
        for name, values in lists:
            current = _current(values, at)
            if current is not None:
                value, source = current, name
                break
        instant = local_instant(schedule.zone, day, at)
        step = Step(at, instant, value, source)
        if steps and steps[-1].at == instant:
            steps[-1] = step  # the same instant (a DST gap): the later local time decides
        else:
            steps.append(step)
    return tuple(steps)


def _same(a: Value, b: Value) -> bool:
    if a is INACTIVE or b is INACTIVE:
        return a is b
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def _occurrence(schedule: ScheduleDef, day: date, step: Step) -> Occurrence:
    return Occurrence(schedule.key, day, step.local_time, step.source, step.value, step.at)


def _last_value(schedule: ScheduleDef, day: date) -> Value:
    """The value at the end of local ``day`` (INACTIVE if the schedule is inactive that day)."""
    plan = day_plan(schedule, day)
    return plan[-1].value if plan else INACTIVE


def value_at(schedule: ScheduleDef, now: datetime, *, lookback_days: int = LOOKBACK_DAYS) -> InForce:
    """The value in force at ``now``, since when, and the occurrence that set it (see :class:`InForce`)."""
    _check_now(now)
    day = local_date(schedule, now)
    plan = day_plan(schedule, day)
    if not plan:
        return InForce(active=False)
    index = max(i for i, step in enumerate(plan) if step.at <= now)
    value = plan[index].value
    for _back in range(lookback_days + 1):
        previous = day_plan(schedule, day - timedelta(days=1))  # walking back, each day's plan is made once
        while index >= 0:
            step = plan[index]
            if index:
                before = plan[index - 1].value
            else:  # an inactive day before: the value was set when the schedule became active
                before = previous[-1].value if previous else INACTIVE
            if not _same(before, step.value):
                occurrence = _occurrence(schedule, day, step)
                return InForce(True, value, occurrence.at, occurrence)
            index -= 1
        day -= timedelta(days=1)
        plan = previous
        index = len(plan) - 1
    return InForce(True, value)


def _transitions(schedule: ScheduleDef, first: date, last: date) -> Iterator[Occurrence]:
    """Every transition on the local days ``first`` to ``last``, in order."""
    before = _last_value(schedule, first - timedelta(days=1))
    day = first
    while day <= last:
        for step in day_plan(schedule, day) or ():
            if not _same(before, step.value):
                yield _occurrence(schedule, day, step)
            before = step.value
        if not schedule.active_on(day):
            before = INACTIVE
        day += timedelta(days=1)


def next_transitions(
    schedule: ScheduleDef, now: datetime, count: int = 1, *, horizon_days: int = HORIZON_DAYS
) -> list[Occurrence]:
    """The next ``count`` transitions strictly after ``now`` (fewer if none come within ``horizon_days``)."""
    _check_now(now)
    if count <= 0:
        return []
    first = local_date(schedule, now)
    last = first + timedelta(days=horizon_days)
    if schedule.effective is not None and schedule.effective.end is not None:
        last = min(last, schedule.effective.end)
    found: list[Occurrence] = []
    for occurrence in _transitions(schedule, first, last):
        if occurrence.at > now:
            found.append(occurrence)
            if len(found) == count:
                break
    return found


def transitions_between(schedule: ScheduleDef, start: datetime, end: datetime) -> list[Occurrence]:
    """Every transition with ``start < at <= end`` (e.g. what fell into an outage), in order."""
    _check_now(start)
    _check_now(end)
    if end <= start:
        return []
    first = local_date(schedule, start)
    last = local_date(schedule, end)
    return [occurrence for occurrence in _transitions(schedule, first, last) if start < occurrence.at <= end]


# ---- definitions from JSON: shared by the models, the admin and the importers ------------------------------------


def parse_time(text: object) -> time:
    """``"HH:MM"`` or ``"HH:MM:SS"`` (00:00 to 23:59:59) as a time; ValueError with a clear message otherwise."""
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a time of day; write HH:MM or HH:MM:SS, from 00:00 to 23:59:59")
    hours, minutes, seconds = match.groups()
    return time(int(hours), int(minutes), int(seconds or 0))


def format_time(at: time) -> str:
    """``HH:MM``, or ``HH:MM:SS`` when there are seconds."""
    return at.strftime("%H:%M:%S" if at.second else "%H:%M")


def value_problem(value: object, value_type: str) -> str | None:
    """What is wrong with ``value`` as a value of a ``value_type`` schedule (None: nothing; None is allowed)."""
    if value is None:
        return None
    if value_type == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not true or false (a bool schedule)"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number (a{'n' if value_type == 'integer' else ''} {value_type} schedule)"
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if value_type == "integer" and not isinstance(value, int):
        if value != int(value):
            return f"{value!r} is not a whole number (an integer schedule)"
    return None


def normalise_value(value: Value, value_type: str) -> Value:
    """``value`` in the schedule's type: a real as float, an integer as int (after :func:`value_problem`)."""
    if value is None or value_type == "bool":
        return value
    return int(value) if value_type == "integer" else float(value)


def parse_time_values(data: object, value_type: str, where: str = "") -> tuple[tuple[TimeValue, ...], list[str]]:
    """A JSON list ``[{"time": "08:00", "value": 21.5}, ...]`` as time/values, and its problems (empty: none).

    Times must be strictly increasing; values of ``value_type`` or null.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(data, list):
        return (), [f'{prefix}give a list of {{"time": "HH:MM", "value": ...}} entries, not {type(data).__name__}']
    problems: list[str] = []
    entries: list[TimeValue] = []
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict) or set(item) != {"time", "value"}:
            problems.append(f'{prefix}entry {number} must be {{"time": "HH:MM", "value": ...}}, not {item!r}')
            continue
        try:
            at = parse_time(item["time"])
        except ValueError as exc:
            problems.append(f"{prefix}entry {number}: {exc}")
            continue
        problem = value_problem(item["value"], value_type)
        if problem:
            problems.append(f"{prefix}{format_time(at)}: {problem}")
            continue
        if entries and at == entries[-1].time:
            problems.append(f"{prefix}{format_time(at)} appears twice")
            continue
        if entries and at < entries[-1].time:
            problems.append(
                f"{prefix}{format_time(at)} comes after {format_time(entries[-1].time)}: list the times in order"
            )
            continue
        entries.append(TimeValue(at, normalise_value(item["value"], value_type)))
    return tuple(entries), problems


def parse_weekly(data: object, value_type: str) -> tuple[tuple[tuple[TimeValue, ...], ...], list[str]]:
    """A JSON object ``{"monday": [...], ...}`` (days left out are empty) as seven lists, and its problems."""
    if data in (None, ""):
        data = {}
    if not isinstance(data, dict):
        return ((),) * 7, [f"give the weekly schedule as an object with the days {', '.join(WEEKDAYS)}"]
    problems = [
        f"unknown day {key!r}; the days are {', '.join(WEEKDAYS)} (in lower case)"
        for key in data
        if key not in WEEKDAYS
    ]
    days = []
    for name in WEEKDAYS:
        values, found = parse_time_values(data.get(name, []), value_type, name)
        days.append(values)
        problems += found
    return tuple(days), problems


def time_values_to_json(values: tuple[TimeValue, ...]) -> list[dict[str, Any]]:
    return [{"time": format_time(entry.time), "value": entry.value} for entry in values]


def weekly_to_json(weekly: tuple[tuple[TimeValue, ...], ...]) -> dict[str, list[dict[str, Any]]]:
    return {name: time_values_to_json(values) for name, values in zip(WEEKDAYS, weekly, strict=True) if values}


def values_of(schedule: ScheduleDef) -> list[Value]:
    """Every value the schedule can write (weekly, exceptions, default), for checks against its targets."""
    found = [schedule.default]
    for day in schedule.weekly:
        found += [entry.value for entry in day]
    for exception in schedule.exceptions:
        found += [entry.value for entry in exception.time_values]
    return found
