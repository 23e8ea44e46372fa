"""A schedule as the engine runs it: immutable, plain Python, loaded with the configuration.

:class:`ScheduleSpec` is built from a ``Schedule`` (with its targets,
exceptions and calendars) on the engine's database thread, once per
configuration revision (:func:`bms.schedules.store.read_schedule_specs`), so
the engine loop never touches the ORM. The evaluation itself is
:mod:`bms.schedules.evaluate`. A schedule's state (its value in force and the
last occurrence done) is the process-image entry ``schedule:<name>``; schedule
names cannot contain ``:``, so it never clashes with a point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bms.schedules.evaluate import InForce, Occurrence, ScheduleDef, next_transitions, transitions_between, value_at

SCHEDULE_PREFIX = "schedule:"


def entry_name(schedule: str) -> str:
    """The process-image entry that holds ``schedule``'s state."""
    return SCHEDULE_PREFIX + schedule


def is_schedule_entry(name: str) -> bool:
    return name.startswith(SCHEDULE_PREFIX)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A point the schedule writes and the slot (1 highest .. 16 lowest) of its priority array it writes into."""

    point: str
    priority: int


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """One enabled schedule with its definition and the enabled points it writes."""

    id: int
    name: str
    value_type: str
    definition: ScheduleDef
    targets: tuple[TargetSpec, ...] = ()

    @property
    def entry(self) -> str:
        return entry_name(self.name)

    def value_at(self, now: datetime) -> InForce:
        """The value in force at ``now`` (aware), since when and the occurrence that set it."""
        return value_at(self.definition, now)

    def next_transitions(self, now: datetime, count: int = 1) -> list[Occurrence]:
        """The next ``count`` transitions after ``now``: the engine's next timer is the first one's ``at``."""
        return next_transitions(self.definition, now, count)

    def transitions_between(self, start: datetime, end: datetime) -> list[Occurrence]:
        """The transitions in ``(start, end]``."""
        return transitions_between(self.definition, start, end)
