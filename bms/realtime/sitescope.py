"""What a live client restricted to some sites may see, and the alarm summary of only those sites.

A restricted client (:mod:`bms.sites.scope`) gets the entries of its sites
only: their points, the ``alarm:<name>`` entries of the alarms defined on
them, and the ``schedule:`` and ``logic:`` entries of their schedules and
rules. Everything else (other sites' entries, and any kind of entry added
later) is left out: the set is a whitelist, so it fails closed. ``alarms:summary``
counts every alarm of the node, so a restricted client gets its own summary
instead, counted from its alarms only (:class:`SummaryTally`, the engine's
rules: annunciated alarms that are not shelved, suppressed or out of
service).

The names are worked out once per connection (:func:`client_sites`, at
connect); the hub filters with them in memory, so a delta costs a set lookup
per entry, never a query. The hub works them out again (one query per set of
sites) when entries come or go and every ``SCOPE_REFRESH`` seconds, so a new
point of a client's site reaches it and a device moved away leaves it. An
unrestricted client has no scope (``None``) and takes the hub's path of before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from channels.db import database_sync_to_async

from bms.alarms.spec import ALARM_PREFIX, SUMMARY_ENTRY, entry_name
from bms.alarms.states import State
from bms.engine import bus
from bms.sites import scope as sites

_UNACKED = frozenset({State.ACTIVE_UNACKED.value, State.RTN_UNACKED.value})
_ACTIVE = frozenset({State.ACTIVE_UNACKED.value, State.ACTIVE_ACKED.value})
#: an alarm's part of the counts: class, unacknowledged, active, priority (None: counts for nothing)
Part = tuple[str, bool, bool, int] | None


def visible_entries(ids: sites.SiteIds) -> frozenset[str] | None:
    """The image entries of the sites ``ids`` (points, their alarms, schedules and rules); ``None`` for every entry
    (no query)."""
    if sites.sees_all(ids):
        return None
    from bms.alarms.live import definitions_in_sites  # imports the hub, which imports this module
    from bms.alarms.models import AlarmDefinition
    from bms.logic.models import Rule
    from bms.logic.spec import entry_name as rule_entry
    from bms.schedules.models import Schedule
    from bms.schedules.spec import entry_name as schedule_entry

    alarms = definitions_in_sites(AlarmDefinition.objects.all(), ids).values_list("name", flat=True)
    schedules = sites.in_sites(Schedule.objects.all(), ids).values_list("name", flat=True)
    rules = sites.in_sites(Rule.objects.all(), ids).values_list("name", flat=True)
    return (
        sites.visible_point_names(ids)
        | frozenset(map(entry_name, alarms))
        | frozenset(map(schedule_entry, schedules))
        | frozenset(map(rule_entry, rules))
    )


def _sites_of(user: Any) -> tuple[sites.SiteIds, frozenset[str] | None]:
    ids = sites.site_ids(user)
    return ids, visible_entries(ids)


#: a websocket user's site ids and :func:`visible_entries`, off the event loop (one thread hop)
client_sites = database_sync_to_async(_sites_of)
#: :func:`visible_entries` off the event loop (the hub's refresh)
site_entries = database_sync_to_async(visible_entries)


def _part(value: Any) -> Part:
    """What one alarm entry's value adds to the counts (the engine's ``_contribution``, read from the entry)."""
    if not isinstance(value, dict) or not value.get("annunciated", True):
        return None
    state = value.get("state")  # the display state: shelved, suppressed and out of service count for nothing
    unacked, active = state in _UNACKED, state in _ACTIVE
    if not (unacked or active):
        return None
    return str(value.get("class")), unacked, active, int(value.get("priority") or 1000)


class SummaryTally:
    """The ``alarms:summary`` value of some alarm entries, kept up to date one changed entry at a time."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self.fixed: dict[str, tuple[Any, ...]] = {}
        self.unacked: Counter[str] = Counter()
        self.active: Counter[str] = Counter()
        self.priorities: Counter[int] = Counter()
        self.classes: list[dict[str, Any]] = []

    def reset(self, values: Iterable[tuple[str, Any]]) -> None:
        """Count ``(entry name, value)`` afresh."""
        self.__init__()  # type: ignore[misc]
        for name, value in values:
            self.update(name, value, recount_classes=False)
        self._count_classes()

    def update(self, name: str, value: Any, recount_classes: bool = True) -> None:
        """Entry ``name`` now holds ``value`` (``None``: it is gone)."""
        new = _part(value)
        old = self.parts.get(name)
        if new != old:
            for part, sign in ((old, -1), (new, 1)):
                if part is not None:
                    alarm_class, unacked, active, priority = part
                    if unacked:
                        self.unacked[alarm_class] += sign
                        self.priorities[priority] += sign
                    if active:
                        self.active[alarm_class] += sign
            self.parts[name] = new
        fixed = _fixed(value)
        if self.fixed.get(name) != fixed:
            self.fixed[name] = fixed  # a definition changed (class, priority, colour): rare
            if recount_classes:
                self._count_classes()

    def _count_classes(self) -> None:
        ranks: dict[str, tuple[int, Any]] = {}
        for alarm_class, priority, colour, annunciated in filter(None, self.fixed.values()):
            if annunciated:
                rank = ranks.get(alarm_class)
                if rank is None or priority < rank[0]:
                    ranks[alarm_class] = (priority, colour)
        self.classes = [
            {"name": name, "colour": colour, "priority": priority}
            for name, (priority, colour) in sorted(ranks.items(), key=lambda item: (item[1][0], item[0]))
        ]

    def summary(self) -> dict[str, Any]:
        """The value, in the engine's form (``docs/live-protocol.md``)."""
        unacked = {name: count for name, count in self.unacked.items() if count > 0}
        priorities = [priority for priority, count in self.priorities.items() if count > 0]
        return {
            "unacked": unacked,
            "active": {name: count for name, count in self.active.items() if count > 0},
            "unacked_total": sum(unacked.values()),
            "highest_unacked_priority": min(priorities) if priorities else None,
            "classes": self.classes,
        }


def _fixed(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, dict):
        return ()
    annunciated = value.get("annunciated", True)
    return str(value.get("class")), int(value.get("priority") or 1000), value.get("colour"), annunciated


class LiveScope:
    """The entries one set of restricted clients may see, and their own ``alarms:summary`` row.

    Shared by every client with the same visible names (the hub keeps one per set), so a view of them is
    encoded once, like any other view.
    """

    __slots__ = ("alarms", "names", "summary_row", "tally")

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.alarms = frozenset(name for name in names if name.startswith(ALARM_PREFIX))
        self.tally = SummaryTally()
        self.summary_row: list[Any] | None = None  # None: none of its alarms is in the image (no summary)

    def __contains__(self, name: object) -> bool:
        return name in self.names or (name == SUMMARY_ENTRY and self.summary_row is not None)

    def recount(self, rows: Mapping[str, list[Any]]) -> None:
        """Count the scope's alarms in ``rows`` afresh (a new image, or entries added or removed)."""
        present = [name for name in self.alarms if name in rows]
        if not present:
            self.summary_row = None
            return
        self.tally.reset((name, rows[name][0]) for name in present)
        last = max(rows[name][bus.ROW_SEQ] for name in present)
        self.summary_row = self._row(rows.get(SUMMARY_ENTRY), last)

    def changed(self, points: Mapping[str, Any], rows: Mapping[str, list[Any]], seq: int) -> bool:
        """Apply a delta's alarm changes (``points``); True if the scope's summary changed with it (at ``seq``)."""
        if self.summary_row is None:
            return False
        touched = False
        for name in self.alarms.intersection(points):
            row = points[name]
            self.tally.update(name, None if row is None else row[0])
            touched = True
        if not touched:
            return False
        before = self.summary_row[0]
        row = self._row(rows.get(SUMMARY_ENTRY), seq)
        if row[0] == before:
            return False
        self.summary_row = row
        return True

    def _row(self, template: list[Any] | None, seq: int) -> list[Any]:
        quality, time_us = (template[1], template[2]) if template is not None else ("good", None)
        return [self.tally.summary(), quality, time_us, time_us, seq]


class ScopedRows(Mapping[str, list[Any]]):
    """The hub's rows as a scope sees them: its own summary row in place of the node's."""

    __slots__ = ("rows", "scope")

    def __init__(self, rows: Mapping[str, list[Any]], scope: LiveScope) -> None:
        self.rows, self.scope = rows, scope

    def __getitem__(self, name: str) -> list[Any]:
        if name == SUMMARY_ENTRY:
            if self.scope.summary_row is None:
                raise KeyError(name)
            return self.scope.summary_row
        return self.rows[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in self.rows if name in self.scope)

    def __len__(self) -> int:
        return sum(1 for _ in self)
