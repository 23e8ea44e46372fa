"""The schedule tables in the configuration dump that ``redundancy.configsync`` replicates to the standby.

:func:`dump_schedules` gives the rows as plain data (dates as ISO strings:
the dump travels as msgpack, which has no date type; Django reads the strings
back on insert). :data:`SCHEDULE_TABLES` lists the tables in the order in
which ``apply_config`` must replace them: **children first**. An exception
holds its calendar with ``PROTECT`` (a calendar in use cannot be deleted by
accident), so a calendar the dump no longer has can only be deleted once the
exceptions that used it are gone; the foreign keys of the rows inserted before
their parents are checked at commit (Django's constraints are deferred).
The ``site_id`` of schedules and calendars travels like any column; the sites
are replaced after these tables (``apply_config``), for the same reason.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import models

from bms.schedules.models import Calendar, CalendarEntry, ExceptionEvent, Schedule, ScheduleTarget
from redundancy.configrows import plain_fields

#: (dump key, model, unique fields to free before the upsert), in the order apply_config replaces them
SCHEDULE_TABLES: tuple[tuple[str, type[models.Model], tuple[str, ...]], ...] = (
    ("schedule_exceptions", ExceptionEvent, ()),
    ("schedule_targets", ScheduleTarget, ()),
    ("calendar_entries", CalendarEntry, ()),
    ("schedules", Schedule, ("name",)),
    ("calendars", Calendar, ("name",)),
)
SCHEDULE_MODELS = [model for _key, model, _unique in SCHEDULE_TABLES]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def dump_schedules() -> dict[str, list[dict[str, Any]]]:
    """The schedule configuration as plain data by dump key, rows in primary-key order (call in a transaction)."""
    return {
        key: [
            {name: _plain(value) for name, value in row.items()}
            for row in model.objects.order_by("pk").values("id", *plain_fields(model))
        ]
        for key, model, _unique in SCHEDULE_TABLES
    }
