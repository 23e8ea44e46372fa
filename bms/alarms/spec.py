"""An alarm definition as the engine runs it: immutable, plain Python, loaded with the configuration.

:class:`AlarmSpec` is built from an ``AlarmDefinition`` (with its point,
class and related points) on the engine's database thread, once per
configuration revision, so the engine loop never touches the ORM. The
process-image entry names of alarms live here too: an alarm's state is the
image entry ``alarm:<name>``, and ``alarms:summary`` holds the counts the
web manager's header shows. Point names cannot contain ``:``, so these never
clash with a point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bms.alarms.conditions import Condition, render_message, reported_limit
from bms.alarms.states import AlarmConfig

ALARM_PREFIX = "alarm:"
SUMMARY_ENTRY = "alarms:summary"


def entry_name(alarm: str) -> str:
    """The process-image entry that holds ``alarm``'s state."""
    return ALARM_PREFIX + alarm


def is_alarm_entry(name: str) -> bool:
    return name.startswith(ALARM_PREFIX)


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """One enabled alarm definition with everything evaluation, display and the journal need."""

    name: str
    point: str
    condition: Condition
    config: AlarmConfig
    priority: int
    alarm_class: str
    colour: str
    annunciated: bool
    area: str = ""
    template: str = ""
    unit: str = ""
    setpoint_point: str | None = None
    suppression_point: str | None = None
    out_of_service: bool = False
    out_of_service_by: str = ""

    @property
    def entry(self) -> str:
        return entry_name(self.name)

    def message(self, value: Any) -> str:
        """The alarm text for ``value``: the template (or the kind's default) filled in."""
        return render_message(
            self.template,
            self.condition.kind,
            point=self.point,
            value=value,
            unit=self.unit,
            limit=reported_limit(self.condition),
        )
