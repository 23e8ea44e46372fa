"""Schedule configuration: calendars, schedules, their targets and exceptions (BACnet Schedule and Calendar).

Everything here is configuration: every save or delete bumps the
configuration revision (:mod:`bms.schedules.signals`) so a running engine
reloads it, and the whole of it is replicated to the standby with the rest of
the configuration (:mod:`bms.schedules.replication`). Every model checks
itself whole on save (``full_clean``), so the admin, the iCalendar import and
code all get the same clear refusals. What the values mean in time is
:mod:`bms.schedules.evaluate`; what the engine runs is
:class:`bms.schedules.spec.ScheduleSpec`.
"""

from __future__ import annotations

import calendar as pycalendar
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from bms.engine.scaling import Scaling, ValueRejected, validate_value
from bms.points.models import POINT_NAME_VALIDATOR, Point
from bms.schedules import evaluate as ev
from bms.schedules.spec import ScheduleSpec, TargetSpec
from bms.sites.models import site_owner
from drivers.registry import driver_class

PRIORITY_MESSAGE = "A priority is from 1 (highest) to 16 (lowest), as BACnet's command priorities."
PRIORITY_VALIDATORS = [MinValueValidator(1, PRIORITY_MESSAGE), MaxValueValidator(16, PRIORITY_MESSAGE)]
UNKNOWN_POINT = "There is no point with id %(value)r."
UNKNOWN_CALENDAR = "There is no calendar with id %(value)r."
_CALENDAR_RULE = "a schedule uses only calendars of its own site or shared ones (no site)"

MONTHS = [(number, name) for number, name in enumerate(pycalendar.month_name) if number] + [
    (ev.ODD_MONTHS, "odd months"),
    (ev.EVEN_MONTHS, "even months"),
]
DAYS = [(number, str(number)) for number in range(1, 32)] + [
    (ev.LAST_DAY, "last day"),
    (ev.ODD_DAYS, "odd days"),
    (ev.EVEN_DAYS, "even days"),
]
WEEKS = [
    (1, "days 1-7"),
    (2, "days 8-14"),
    (3, "days 15-21"),
    (4, "days 22-28"),
    (5, "days 29-31"),
    (6, "last 7 days"),
    (7, "7 days before the last 7"),
    (8, "7 days before the last 14"),
    (9, "7 days before the last 21"),
]
WEEKDAY_CHOICES = [(number, name.capitalize()) for number, name in enumerate(ev.WEEKDAYS, 1)]
VALUE_TYPES = [("bool", "bool (on/off)"), ("integer", "integer (multistate)"), ("real", "real (analog)")]

DATE, RANGE, WEEK_AND_DAY, PATTERN, CALENDAR = "date", "range", "week_and_day", "date_pattern", "calendar"
ENTRY_KINDS = [
    (DATE, "date"),
    (RANGE, "date range"),
    (WEEK_AND_DAY, "week and day"),
    (PATTERN, "date pattern (wildcards)"),
]
#: per kind, the fields it uses (the others must stay empty)
ENTRY_FIELDS = {
    DATE: ("date",),
    RANGE: ("start_date", "end_date"),
    WEEK_AND_DAY: ("month", "week_of_month", "day_of_week"),
    PATTERN: ("year", "month", "day", "day_of_week"),
    CALENDAR: ("calendar",),
}
ALL_ENTRY_FIELDS = ("date", "start_date", "end_date", "year", "month", "day", "week_of_month", "day_of_week")


def site_time_zone() -> str:
    """The time zone new schedules get: ``BMS_SITE_TIME_ZONE``, else Django's ``TIME_ZONE``."""
    return getattr(settings, "BMS_SITE_TIME_ZONE", "") or settings.TIME_ZONE


def _time_zone(value: str) -> None:
    try:
        ev.zone(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


#: the fields that say which days a date entry (a calendar entry, an exception) covers, in the order forms show them
DATE_ENTRY_FIELDS = (
    "kind",
    "description",
    "date",
    "start_date",
    "end_date",
    "year",
    "month",
    "day",
    "week_of_month",
    "day_of_week",
)


class DateEntry(models.Model):
    """Abstract: the day(s) a calendar entry or an exception applies to, as BACnet's CalendarEntry.

    ``date``: one date. ``range``: ``start_date`` to ``end_date``, both
    included. ``week_and_day``: month (or any / odd / even), week of month and
    weekday, each blank for "any" (e.g. the 4th Thursday of November).
    ``date_pattern``: a date with wildcards, each part blank for "any" (e.g.
    every 25 December; every last day of the month).
    """

    kind = models.CharField(max_length=16, choices=ENTRY_KINDS)
    date = models.DateField(null=True, blank=True, help_text="date: the day")
    start_date = models.DateField(null=True, blank=True, help_text="date range: the first day")
    end_date = models.DateField(null=True, blank=True, help_text="date range: the last day (included)")
    year = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1900), MaxValueValidator(2154)],
        help_text="date pattern: the year; blank: every year",
    )
    month = models.PositiveSmallIntegerField(null=True, blank=True, choices=MONTHS, help_text="blank: every month")
    day = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=DAYS, help_text="date pattern: the day of the month; blank: every day"
    )
    week_of_month = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=WEEKS, help_text="week and day: the week; blank: every week"
    )
    day_of_week = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=WEEKDAY_CHOICES, help_text="blank: every day of the week"
    )
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        abstract = True

    def entry(self) -> ev.Entry:
        """The entry as :mod:`bms.schedules.evaluate` matches it (not for ``calendar`` exceptions)."""
        if self.kind == DATE:
            return self.date
        if self.kind == RANGE:
            return ev.DateRange(self.start_date, self.end_date)
        if self.kind == WEEK_AND_DAY:
            return ev.WeekNDay(self.month, self.week_of_month, self.day_of_week)
        if self.kind == PATTERN:
            return ev.DatePattern(self.year, self.month, self.day, self.day_of_week)
        raise ValueError(f"{self.kind!r} is not a calendar entry")

    def describe_days(self) -> str:
        """The days in words, for lists and messages."""
        if self.kind == DATE:
            return f"{self.date}"
        if self.kind == RANGE:
            return f"{self.start_date} to {self.end_date}"
        if self.kind == CALENDAR:
            calendar = _related(self, "calendar")
            return f"calendar {calendar}" if calendar else "calendar ?"
        labels = dict(MONTHS), dict(WEEKS), dict(DAYS), dict(WEEKDAY_CHOICES)
        parts = []
        if self.kind == PATTERN:
            parts.append(f"year {self.year}" if self.year else "every year")
        parts.append(labels[0].get(self.month, "every month"))
        if self.kind == WEEK_AND_DAY:
            parts.append(labels[1].get(self.week_of_month, "every week"))
        else:
            parts.append(f"day {labels[2][self.day]}" if self.day else "every day")
        parts.append(labels[3].get(self.day_of_week, "any weekday"))
        return ", ".join(parts)

    def clean_entry(self, refuse: Callable[[str, str], None]) -> None:
        """Check that the fields fit the kind (the others empty, the needed ones given, the dates possible)."""
        kind = self.kind
        if kind not in ENTRY_FIELDS:
            return  # the field's own choice check names it
        uses = ENTRY_FIELDS[kind]
        for name in ALL_ENTRY_FIELDS:
            if name not in uses and getattr(self, name) is not None:
                refuse(name, f"a {kind.replace('_', ' ')} entry does not use {name.replace('_', ' ')}; leave it empty")
        if kind == DATE and self.date is None:
            refuse("date", "a date entry needs the date")
        if kind == RANGE:
            if self.start_date is None:
                refuse("start_date", "a date range needs its first day")
            if self.end_date is None:
                refuse("end_date", "a date range needs its last day")
            if self.start_date and self.end_date and self.start_date > self.end_date:
                refuse("end_date", f"the range ends ({self.end_date}) before it starts ({self.start_date})")
        if kind == WEEK_AND_DAY and self.month is None and self.week_of_month is None and self.day_of_week is None:
            refuse("day_of_week", "a week-and-day entry with every part blank matches every day; give at least one")
        if kind == PATTERN:
            if self.year is None and self.month is None and self.day is None and self.day_of_week is None:
                refuse("day", "a date pattern with every part blank matches every day; give at least one")
            if self.day is not None and self.day <= 31 and self.month is not None and self.month <= 12:
                longest = 29 if self.month == 2 else pycalendar.monthrange(2001, self.month)[1]
                if self.day > longest:
                    refuse("day", f"{pycalendar.month_name[self.month]} has no day {self.day}")
                elif (self.month, self.day) == (2, 29) and self.year is not None and not pycalendar.isleap(self.year):
                    refuse("day", f"{self.year} is not a leap year: there is no 29 February")


def _related(obj: models.Model, field: str) -> Any:
    """The related object if it is set (an unsaved parent of an admin inline too) and exists, else None (the
    field's own check reports it)."""
    try:
        return getattr(obj, field)
    except models.ObjectDoesNotExist:
        return None


def _errors() -> tuple[dict[str, list[str]], Callable[[str, str], None]]:
    errors: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    return errors, refuse


class Calendar(models.Model):
    """A calendar shared by schedules (BACnet Calendar): true on the days its entries or its public holidays match.

    Public holidays come from the ``holidays`` package: ``holiday_country`` is
    an ISO 3166 code (``DE``, ``US``), ``holiday_subdivision`` optionally a
    state or province of it (``BY``, ``NY``).
    """

    name = models.CharField(max_length=64, unique=True, validators=[POINT_NAME_VALIDATOR])
    description = models.CharField(max_length=255, blank=True)
    holiday_country = models.CharField(
        max_length=8, blank=True, help_text="public holidays of this country (ISO 3166 code, e.g. DE); blank: none"
    )
    holiday_subdivision = models.CharField(
        max_length=16, blank=True, help_text="and of this subdivision (e.g. BY for Bavaria); blank: national only"
    )
    site = models.ForeignKey(
        "sites.Site",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="calendars",
        help_text="the building whose schedules may use it; blank: shared by every site (e.g. public holidays)",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an invalid calendar here too, not only in forms."""
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors, refuse = _errors()
        self.holiday_country = (self.holiday_country or "").strip().upper()
        self.holiday_subdivision = (self.holiday_subdivision or "").strip().upper()
        for problem in holiday_problems(self.holiday_country, self.holiday_subdivision):
            refuse("holiday_subdivision" if "subdivision" in problem else "holiday_country", problem)
        if self.pk is not None and self.site_id is not None:
            # a calendar of one site serves that site's schedules only: one of another site must not keep it
            others = Schedule.objects.filter(exceptions__calendar_id=self.pk).exclude(site_id=self.site_id)
            for schedule in others.select_related("site").distinct():
                refuse("site", f"schedule {schedule} of site {schedule.site.name} uses this calendar; {_CALENDAR_RULE}")
        if errors:
            raise ValidationError(errors)

    def holidays(self) -> ev.Holidays | None:
        return ev.Holidays(self.holiday_country, self.holiday_subdivision) if self.holiday_country else None

    def definition(self, entries: list[CalendarEntry] | None = None) -> ev.CalendarDef:
        """The calendar as evaluation matches it (``entries``: already fetched, else read)."""
        entries = list(self.entries.all()) if entries is None else entries
        return ev.CalendarDef(self.name, tuple(entry.entry() for entry in entries), self.holidays())


def holiday_problems(country: str, subdivision: str) -> list[str]:
    """What is wrong with a holiday country and subdivision (empty: nothing)."""
    if not country:
        return ["a holiday subdivision needs the holiday country"] if subdivision else []
    import holidays

    supported = holidays.list_supported_countries()
    if country not in supported:
        return [f"the holidays package knows no country {country!r}; use an ISO 3166 code such as DE, AT, US"]
    if subdivision and subdivision not in supported[country]:
        known = ", ".join(supported[country]) or "none"
        return [f"{country} has no subdivision {subdivision!r} in the holidays package (known: {known})"]
    return []


class CalendarEntry(DateEntry):
    """One entry of a calendar's date list: a date, a date range, a week-and-day pattern or a date pattern."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="entries")

    class Meta:
        ordering = ["calendar", "id"]
        verbose_name_plural = "calendar entries"

    def __str__(self) -> str:
        return f"{self.calendar_id and self.calendar}: {self.description or self.describe_days()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors, refuse = _errors()
        self.clean_entry(refuse)
        if errors:
            raise ValidationError(errors)


class Schedule(models.Model):
    """A weekly schedule with exceptions, an effective period and a default, writing its value to target points.

    ``weekly`` is a JSON object with a list of time/values per day, e.g.
    ``{"monday": [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": null}]}``
    (days left out have no entries). A ``null`` value, and the default left
    null, mean "no value": the schedule then relinquishes its slot in its
    targets' priority arrays. Times are local to ``time_zone``. Outside the
    effective period (either end blank: open) the schedule writes nothing.
    See :mod:`bms.schedules.evaluate` for the rules.
    """

    name = models.CharField(max_length=64, unique=True, validators=[POINT_NAME_VALIDATOR])
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    value_type = models.CharField(max_length=8, choices=VALUE_TYPES, default="bool")
    default_value = models.JSONField(
        null=True, blank=True, help_text="the value when no entry has one; null (empty): relinquish"
    )
    weekly = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"monday": [{"time": "07:00", "value": true}, {"time": "18:00", "value": false}]}',
    )
    effective_from = models.DateField(null=True, blank=True, help_text="first day it runs; blank: always has")
    effective_to = models.DateField(null=True, blank=True, help_text="last day it runs (included); blank: no end")
    time_zone = models.CharField(
        max_length=64,
        default=site_time_zone,
        validators=[_time_zone],
        help_text="IANA time zone its times are in, e.g. Europe/Berlin",
    )
    site = site_owner(
        "schedules", "the building it belongs to: it writes only points of this site and uses its calendars"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an invalid schedule here too, not only in forms."""
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors, refuse = _errors()
        if self.value_type not in dict(VALUE_TYPES):
            return  # the field's own check names it
        weekly, problems = ev.parse_weekly(self.weekly, self.value_type)
        for problem in problems:
            refuse("weekly", problem)
        if not problems:
            self.weekly = ev.weekly_to_json(weekly)  # times written the one way, values in the schedule's type
        problem = ev.value_problem(self.default_value, self.value_type)
        if problem:
            refuse("default_value", problem)
        else:
            self.default_value = ev.normalise_value(self.default_value, self.value_type)
        if self.effective_from and self.effective_to and self.effective_from > self.effective_to:
            refuse("effective_to", f"the effective period ends ({self.effective_to}) before it starts")
        if self.pk is not None and not errors:
            for exception in self.exceptions.all():
                for problem in ev.parse_time_values(exception.time_values, self.value_type)[1]:
                    refuse("value_type", f"exception {exception}: {problem}")
            values = self._own_values()
            for target in self.targets.select_related("point__device__site"):
                for problem in target_problems(target.point, self.value_type, values):
                    refuse("value_type", problem)
                problem = site_problem(self, target.point)
                if problem:
                    refuse("site", problem)
            for event in self.exceptions.filter(calendar__isnull=False).select_related("calendar__site"):
                problem = calendar_problem(self, event.calendar)
                if problem:
                    refuse("site", problem)
            if self.enabled:
                for target in self.targets.select_related("point"):
                    for problem in slot_conflicts(self, target.point, target.priority, target.pk):
                        refuse("enabled", problem)
        if errors:
            raise ValidationError(errors)

    def _own_values(self) -> list[ev.Value]:
        """The values of the weekly schedule, the default and the saved exceptions."""
        weekly, _ = ev.parse_weekly(self.weekly, self.value_type)
        values = [self.default_value, *(entry.value for day in weekly for entry in day)]
        if self.pk is not None:
            for time_values in self.exceptions.values_list("time_values", flat=True):
                values += [item.get("value") for item in time_values if isinstance(item, dict)]
        return values

    def effective(self) -> ev.DateRange | None:
        if self.effective_from is None and self.effective_to is None:
            return None
        return ev.DateRange(self.effective_from, self.effective_to)

    def definition(self, calendars: dict[int, ev.CalendarDef] | None = None) -> ev.ScheduleDef:
        """The schedule as :mod:`bms.schedules.evaluate` runs it (``calendars``: by id, already built)."""
        weekly, problems = ev.parse_weekly(self.weekly, self.value_type)
        if problems:
            raise ValueError(f"schedule {self.name}: " + "; ".join(problems))
        exceptions = tuple(event.definition(self.value_type, calendars) for event in self.exceptions.all())
        return ev.ScheduleDef(
            key=f"sch{self.pk}",
            time_zone=self.time_zone,
            weekly=weekly,
            exceptions=exceptions,
            default=ev.normalise_value(self.default_value, self.value_type),
            effective=self.effective(),
        )

    def spec(self, calendars: dict[int, ev.CalendarDef] | None = None, enabled_only: bool = True) -> ScheduleSpec:
        """The schedule as the engine runs it; targets on disabled points or devices are left out."""
        targets = [
            TargetSpec(target.point.name, target.priority)
            for target in self.targets.all()  # prefetched with point__device by the loader
            if not enabled_only or (target.point.enabled and target.point.device.enabled)
        ]
        return ScheduleSpec(
            id=self.pk,
            name=self.name,
            value_type=self.value_type,
            definition=self.definition(calendars),
            targets=tuple(sorted(targets, key=lambda target: (target.priority, target.point))),
        )


def target_problems(point: Point, value_type: str, values: list[ev.Value]) -> list[str]:
    """Why ``point`` cannot be a target of a ``value_type`` schedule with ``values`` (empty: it can)."""
    if not point.writable:
        return [f"{point} is read-only: a schedule can only write writable points"]
    kind = point.value_kind
    if value_type == "bool" and kind != "bool":
        return [f"{point} holds numbers ({point.data_type}); a bool schedule can only write bool points"]
    if value_type != "bool" and kind == "bool":
        return [
            f"{point} is a bool point; a{'n' if value_type == 'integer' else ''} {value_type} schedule cannot write it"
        ]
    if value_type == "real" and kind == "integer":
        return [f"{point} holds whole numbers ({point.data_type}); use an integer schedule for it"]
    problems = []
    try:
        scaling = Scaling(point.data_type, point.scale, point.offset)
        raw_range = driver_class(point.device.driver).value_range(point.data_type)
    except (KeyError, ValueError, models.ObjectDoesNotExist):
        return problems
    for value in _distinct(value for value in values if value is not None):
        try:
            validate_value(value, scaling, point.min_value, point.max_value, raw_range)
        except ValueRejected as exc:
            problems.append(f"{point} cannot take {value!r}: {exc.message}")
    return problems


def site_problem(schedule: Schedule, point: Point) -> str:
    """Why ``schedule`` cannot write ``point`` for its site (empty: it can: the point is of the schedule's site)."""
    device = _related(point, "device")
    if device is None or schedule.site_id is None or device.site_id == schedule.site_id:
        return ""
    return (
        f"{point} is a point of site {_site_name(device)}; schedule {schedule.name or '(new)'} is of site "
        f"{_site_name(schedule)}: a schedule writes only points of its own site"
    )


def calendar_problem(schedule: Schedule, calendar: Calendar) -> str:
    """Why ``schedule`` cannot use ``calendar`` (empty: it can: shared, or of the schedule's site)."""
    if calendar.site_id is None or schedule.site_id is None or calendar.site_id == schedule.site_id:
        return ""
    return (
        f"calendar {calendar} is of site {_site_name(calendar)}; schedule {schedule.name or '(new)'} is of site "
        f"{_site_name(schedule)}: {_CALENDAR_RULE}"
    )


def _site_name(obj: models.Model) -> str:
    site = _related(obj, "site")
    return site.name if site is not None else "?"


def _distinct(values: Iterable[Any]) -> list[Any]:
    """``values`` without repeats, in order (unhashable ones kept: the value check reports them)."""
    seen: list[Any] = []
    for value in values:
        if not any(type(value) is type(other) and value == other for other in seen):
            seen.append(value)
    return seen


def _overlap(a: Schedule, b: Schedule) -> bool:
    """Whether the effective periods of two schedules share a day."""
    start = max(a.effective_from or date.min, b.effective_from or date.min)
    end = min(a.effective_to or date.max, b.effective_to or date.max)
    return start <= end


def slot_conflicts(schedule: Schedule, point: Point, priority: int | None, target_pk: int | None) -> list[str]:
    """Another enabled schedule writing ``point`` at ``priority`` in an overlapping effective period: one slot of
    the priority array cannot follow two schedules."""
    if priority is None or not schedule.enabled:
        return []
    others = (
        ScheduleTarget.objects.filter(point=point, priority=priority, schedule__enabled=True)
        .exclude(pk=target_pk)
        .select_related("schedule")
    )
    if schedule.pk is not None:
        others = others.exclude(schedule_id=schedule.pk)
    return [
        f"schedule {other.schedule} already writes {point} at priority {priority} in an overlapping effective "
        "period; give one of them another priority or periods that do not overlap"
        for other in others
        if _overlap(schedule, other.schedule)
    ]


class ScheduleTarget(models.Model):
    """A point a schedule writes, and the priority (1-16) of its slot in the point's priority array."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="targets")
    point = models.ForeignKey(
        Point, on_delete=models.CASCADE, related_name="schedule_targets", error_messages={"invalid": UNKNOWN_POINT}
    )
    priority = models.PositiveSmallIntegerField(
        default=16, validators=PRIORITY_VALIDATORS, help_text="1 (highest) to 16 (lowest); BACnet schedules often 16"
    )

    class Meta:
        ordering = ["schedule", "priority", "id"]

    def __str__(self) -> str:
        return f"{self.point_id and self.point} @ {self.priority}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors, refuse = _errors()
        point = _related(self, "point")
        schedule = _related(self, "schedule")
        if point is None or schedule is None:
            return
        if schedule.value_type in dict(VALUE_TYPES):
            for problem in target_problems(point, schedule.value_type, schedule._own_values()):
                refuse("point", problem)
        problem = site_problem(schedule, point)
        if problem:
            refuse("point", problem)
        if schedule.pk is not None:
            twin = ScheduleTarget.objects.filter(schedule_id=schedule.pk, point=point).exclude(pk=self.pk)
            if twin.exists():
                refuse("point", f"schedule {schedule} already writes {point}; one target per point")
        if schedule.enabled and isinstance(self.priority, int) and 1 <= self.priority <= 16:
            for problem in slot_conflicts(schedule, point, self.priority, self.pk):
                refuse("priority", problem)
        if errors:
            raise ValidationError(errors)


class ExceptionEvent(DateEntry):
    """An exception of a schedule (BACnet special event): on its days, its time/values override the weekly day.

    Its days are a date, a date range, a week-and-day pattern, a date pattern
    or a calendar. ``event_priority`` 1 (highest) to 16 decides between
    exceptions on the same day; at equal priority the one created first wins.
    An exception only overrides from its first entry to an entry with a null
    value (BACnet): ``[{"time": "00:00", "value": false}]`` takes the whole day.
    """

    KINDS = [*ENTRY_KINDS, (CALENDAR, "calendar")]

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="exceptions")
    kind = models.CharField(max_length=16, choices=KINDS)
    calendar = models.ForeignKey(
        Calendar,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exception_events",
        error_messages={"invalid": UNKNOWN_CALENDAR},
        help_text="calendar: the calendar whose days this exception takes",
    )
    event_priority = models.PositiveSmallIntegerField(
        default=16, validators=PRIORITY_VALIDATORS, help_text="1 (highest) to 16 (lowest) among exceptions"
    )
    time_values = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"time": "00:00", "value": false}]; a null value hands control back',
    )

    class Meta:
        ordering = ["schedule", "event_priority", "id"]

    def __str__(self) -> str:
        return f"{self.description or self.describe_days()} (priority {self.event_priority})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors, refuse = _errors()
        self.clean_entry(refuse)
        if self.kind == CALENDAR and self.calendar_id is None:
            refuse("calendar", "a calendar exception needs the calendar")
        elif self.kind != CALENDAR and self.calendar_id is not None:
            refuse("calendar", f"a {self.kind.replace('_', ' ')} exception does not use a calendar; leave it empty")
        schedule = _related(self, "schedule")
        calendar = _related(self, "calendar") if self.kind == CALENDAR else None
        if schedule is not None and calendar is not None:
            problem = calendar_problem(schedule, calendar)
            if problem:
                refuse("calendar", problem)
        if schedule is not None and schedule.value_type in dict(VALUE_TYPES):
            values, problems = ev.parse_time_values(self.time_values, schedule.value_type)
            for problem in problems:
                refuse("time_values", problem)
            if not problems:
                self.time_values = ev.time_values_to_json(values)
                if schedule.pk is not None:
                    own = [entry.value for entry in values]
                    for target in schedule.targets.select_related("point__device"):
                        for problem in target_problems(target.point, schedule.value_type, own):
                            refuse("time_values", problem)
        if errors:
            raise ValidationError(errors)

    def definition(self, value_type: str, calendars: dict[int, ev.CalendarDef] | None = None) -> ev.ExceptionDef:
        """The exception as evaluation runs it (``calendars``: by id, already built; else read)."""
        values, problems = ev.parse_time_values(self.time_values, value_type)
        if problems:
            raise ValueError(f"exception {self.pk}: " + "; ".join(problems))
        if self.kind == CALENDAR:
            period: ev.Entry | ev.CalendarDef = (
                calendars[self.calendar_id] if calendars is not None else self.calendar.definition()
            )
        else:
            period = self.entry()
        return ev.ExceptionDef(str(self.pk), period, self.event_priority, values)
