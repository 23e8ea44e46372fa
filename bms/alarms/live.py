"""The current alarm states for pages and the API, read from the live process image (not the database).

A caller restricted to some sites (:mod:`bms.sites.scope`) sees the alarms of those sites only: an
alarm's site is its point's site. The live states carry their point's name, and so do the journal's
rows (names, not keys: rows outlive definitions), so both are narrowed by the names of the points of
the caller's sites; a row of a point since deleted belongs to no site and only unrestricted callers see it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import QuerySet

from bms.alarms.spec import ALARM_PREFIX, SUMMARY_ENTRY
from bms.realtime.snapshot import fetch_snapshot
from bms.sites import scope as sites

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(micros: Any) -> str | None:
    if micros is None:
        return None
    return (_EPOCH + timedelta(microseconds=int(micros))).isoformat()


def alarm_view(name: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """One alarm as pages and the API show it, from its image entry in keyed form (None if it holds no state)."""
    value = entry.get("value")
    if not isinstance(value, dict):
        return None
    # the entry leaves out fields at their default (docs/live-protocol.md); pages and the API show every field
    return {
        "name": name,
        "point": value.get("point"),
        "state": value.get("state"),
        "alarm_state": value.get("alarm_state", value.get("state")),
        "priority": value.get("priority"),
        "class": value.get("class"),
        "colour": value.get("colour"),
        "area": value.get("area", ""),
        "message": value.get("message", ""),
        "value": value.get("value"),
        "since": entry.get("time"),
        "ack_required": bool(value.get("ack_required", True)),
        "shelved_until": _iso(value.get("shelved_until")),
        "shelved_by": value.get("shelved_by", ""),
        "chattering": bool(value.get("chattering")),
        "annunciated": bool(value.get("annunciated", True)),
        "seq": entry.get("seq"),
    }


async def acurrent_alarms(wait_seconds: float = 3.0) -> list[dict[str, Any]]:
    """Every alarm's current state (normal ones too), by priority then newest first; raises EngineUnavailable."""
    snapshot = await fetch_snapshot(wait_seconds)
    alarms = []
    for name, entry in snapshot["points"].items():
        if name.startswith(ALARM_PREFIX):
            view = alarm_view(name[len(ALARM_PREFIX) :], entry)
            if view is not None:
                alarms.append(view)
    alarms.sort(key=lambda alarm: alarm["since"] or "", reverse=True)
    alarms.sort(key=lambda alarm: alarm["priority"] if alarm["priority"] is not None else 1001)
    return alarms


def current_alarms(wait_seconds: float = 3.0) -> list[dict[str, Any]]:
    """:func:`acurrent_alarms` for synchronous views."""
    return async_to_sync(acurrent_alarms)(wait_seconds)


async def asummary(wait_seconds: float = 3.0) -> dict[str, Any] | None:
    """The node's unacknowledged and active counts per class (None: no alarms are defined).

    Every site's alarms: not for a caller restricted to some sites (the live websocket counts theirs apart,
    :class:`bms.realtime.sitescope.SummaryTally`)."""
    snapshot = await fetch_snapshot(wait_seconds)
    entry = snapshot["points"].get(SUMMARY_ENTRY)
    return entry.get("value") if entry else None


def alarms_in_sites(alarms: list[dict[str, Any]], ids: sites.SiteIds) -> list[dict[str, Any]]:
    """The alarms (as :func:`alarm_view` shows them) of the sites ``ids``; all of them for :data:`~sites.ALL`."""
    names = sites.visible_point_names(ids)
    if names is None:
        return alarms
    return [alarm for alarm in alarms if alarm.get("point") in names]


def definitions_in_sites(rows: QuerySet, ids: sites.SiteIds) -> QuerySet:
    """Alarm definitions of the sites ``ids``: a definition's site is its point's."""
    return sites.in_sites(rows, ids, "point__device__site")
