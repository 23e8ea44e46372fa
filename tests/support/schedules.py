"""Short schedules built from ``now`` for tests: a time zone away from midnight, whole-second instants."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bms.schedules.evaluate import WEEKDAYS


def site_zone() -> ZoneInfo:
    """A time zone in which the local day neither just began nor ends within the next minutes."""
    for name in ("UTC", "Asia/Tokyo", "America/New_York", "Australia/Sydney", "Europe/Berlin"):
        if 1 <= datetime.now(ZoneInfo(name)).hour < 23:
            return ZoneInfo(name)
    raise AssertionError("no candidate time zone is away from midnight")


def whole_second(seconds_ahead: float) -> datetime:
    """An aware UTC instant on a whole second, at least ``seconds_ahead`` from now (schedule times have seconds)."""
    return datetime.fromtimestamp(math.ceil(datetime.now(UTC).timestamp() + seconds_ahead), UTC)


def local(at: datetime, zone: ZoneInfo) -> str:
    """``at`` as the ``HH:MM:SS`` of a schedule entry in ``zone``."""
    return at.astimezone(zone).strftime("%H:%M:%S")


def today_only(zone: ZoneInfo, entries: list[tuple[str, float | None]]) -> dict:
    """A weekly table with ``entries`` (time, value) on today's weekday in ``zone`` only."""
    weekday = WEEKDAYS[datetime.now(zone).weekday()]
    return {weekday: [{"time": at, "value": value} for at, value in entries]}


def identity(schedule_pk: int, zone: ZoneInfo, at: str, source: str = "weekly") -> str:
    """The occurrence identity of today's entry at local ``at`` (``HH:MM:SS``)."""
    return f"sch{schedule_pk}:{datetime.now(zone).date():%Y%m%d}T{at.replace(':', '')}:{source}"
