"""The schedules' database door for the engine: load every enabled schedule as a :class:`ScheduleSpec`.

Blocking; call it on the engine's database thread, inside the transaction
that reads the rest of the configuration (``bms.engine.store.read_config``).
"""

from __future__ import annotations

import logging

from django.db.models import Prefetch
from django.utils import timezone

from bms.schedules import evaluate as ev
from bms.schedules.models import Calendar, ExceptionEvent, Schedule, ScheduleTarget
from bms.schedules.spec import ScheduleSpec

log = logging.getLogger(__name__)


def read_schedule_specs() -> tuple[ScheduleSpec, ...]:
    """Every enabled schedule, with its exceptions, the calendars they use and its targets on enabled points.

    Calendars are read once and shared by every schedule that refers to them. A schedule whose stored definition
    cannot be read (written behind the models' back) is logged and left out; the others still run.
    """
    calendars = {calendar.pk: calendar.definition() for calendar in Calendar.objects.prefetch_related("entries")}
    this_year = timezone.now().year
    for calendar in calendars.values():
        if calendar.holidays is not None:  # the package's first answer per year costs tens of ms: not on the loop
            for year in range(this_year - 1, this_year + 2):
                ev.holiday_dates(calendar.holidays.country, calendar.holidays.subdivision, year)
    schedules = Schedule.objects.filter(enabled=True).prefetch_related(
        Prefetch("exceptions", queryset=ExceptionEvent.objects.order_by("event_priority", "id")),
        Prefetch("targets", queryset=ScheduleTarget.objects.select_related("point__device")),
    )
    specs = []
    for schedule in schedules.order_by("name"):
        try:
            specs.append(schedule.spec(calendars))
        except (ValueError, KeyError) as exc:  # a row written behind the models' back: the others still run
            log.error("schedule %s cannot be loaded and does not run: %s", schedule.name, exc)
    return tuple(specs)
