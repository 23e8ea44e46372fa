"""An alarm definition as the engine runs it, and the form of its process-image entry.

:class:`AlarmSpec` is built from an ``AlarmDefinition`` (with its point,
class and related points) on the engine's database thread, once per
configuration revision, so the engine loop never touches the ORM. The
process-image entry names of alarms live here too: an alarm's state is the
image entry ``alarm:<name>``, and ``alarms:summary`` holds the counts the
web manager's header shows. Point names cannot contain ``:``, so these never
clash with a point.

The value of an ``alarm:`` entry (:func:`entry_value`, read back by
:func:`entry_state`) is one **flat** dict of strings, numbers, booleans and
None (``docs/live-protocol.md``): what a console shows, with fields at their
default left out, and the replicated state machine packed into one string
(:data:`MACHINE`) that clients ignore. Flat and small because every alarm of
a flood travels as one: the engine encodes it for the channel layer and the
sync link, each web process decodes it and renders it per view, and a dict
holding no container is never tracked by the garbage collector, so a flood
adds nothing for full collections to walk (ADR 0014).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bms.alarms.conditions import Condition, render_message, reported_limit
from bms.alarms.states import AlarmConfig, AlarmState, State

ALARM_PREFIX = "alarm:"
SUMMARY_ENTRY = "alarms:summary"
#: the field of an alarm entry that carries the replicated state machine (a JSON array as text, see machine_text)
MACHINE = "m"
#: the layout of MACHINE's array (its first item): a node that reads another layout starts the alarm afresh
MACHINE_LAYOUT = 1
#: AlarmState's booleans that the entry's display fields do not carry, as bits of MACHINE's flags
_FLAGS = ("condition", "active", "shelved_until_normal", "suppressed", "out_of_service")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: ``default=str``: a value of an odd type (none is expected) is kept as text rather than failing the evaluation
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


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


def fixed_fields(spec: AlarmSpec) -> dict[str, Any]:
    """The part of ``spec``'s entry that only a new definition changes (built once per definition)."""
    fixed: dict[str, Any] = {
        "point": spec.point,
        "priority": spec.priority,
        "class": spec.alarm_class,
        "colour": spec.colour,
    }
    if spec.area:
        fixed["area"] = spec.area
    if not spec.config.ack_required:
        fixed["ack_required"] = False
    if not spec.annunciated:
        fixed["annunciated"] = False
    return fixed


def _us(when: datetime | None) -> int | None:
    return None if when is None else (when - _EPOCH) // _MICROSECOND


def _offset(when: datetime | None, base: int) -> int | None:
    micros = _us(when)
    return None if micros is None else micros - base


def _when(micros: Any) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=int(micros))


def entry_value(
    fixed: dict[str, Any], state: AlarmState, display: str, value: Any, message: str, last: dict[str, Any] | None
) -> dict[str, Any]:
    """An alarm entry's value: ``fixed`` (:func:`fixed_fields`), the display state and the packed state machine.

    ``value`` is ``state.value`` made plain (no NaN); ``last`` the alarm's last transition (see
    :func:`machine_text`). Only atoms go in: the dict stays untracked by the garbage collector."""
    entry = fixed.copy()
    entry["state"] = display
    alarm_state = state.state.value
    if alarm_state != display:
        entry["alarm_state"] = alarm_state  # an inhibit hides it
    entry["message"] = message
    entry["value"] = value
    if state.shelved_until is not None:
        entry["shelved_until"] = _us(state.shelved_until)
    if state.shelved_by:
        entry["shelved_by"] = state.shelved_by
    if state.chattering:
        entry["chattering"] = True
    entry[MACHINE] = machine_text(state, last)
    return entry


def machine_text(state: AlarmState, last: dict[str, Any] | None) -> str:
    """What of ``state`` (and its last transition) the entry's display fields do not carry, as JSON array text:

    ``[layout, since, pending_since, notified_at, flags, summarised, journal_seq, [changes], last]``, ``since``
    in epoch microseconds and the other times in microseconds after it (most are equal to it: a few digits
    instead of sixteen), flags the bits of ``condition``, ``active``, ``shelved_until_normal``, ``suppressed``
    and ``out_of_service`` (1, 2, 4, ...), ``last`` null or ``[kind, state, time, value, user, comment, count,
    number]``. One string: the wire forms copy it as it is."""
    flags = 0
    for bit, name in enumerate(_FLAGS):
        if getattr(state, name):
            flags |= 1 << bit
    since = _us(state.since)
    base = since or 0
    last_time = None if last is None else last.get("time")
    machine = [
        MACHINE_LAYOUT,
        since,
        _offset(state.pending_since, base),
        _offset(state.notified_at, base),
        flags,
        state.summarised,
        state.journal_seq,
        [_offset(when, base) for when in state.changes],
        None
        if last is None
        else [
            last.get("kind"),
            last.get("state"),
            None if last_time is None else last_time - base,
            last.get("value"),
            last.get("user", ""),
            last.get("comment", ""),
            last.get("count", 0),
            last.get("number", 0),
        ],
    ]
    return _dumps(machine)


def entry_state(value: Any) -> tuple[AlarmState, dict[str, Any] | None] | None:
    """The state machine (and the last transition, as a dict) an alarm entry's value carries; None if it holds none.

    Raises ValueError or TypeError for an entry that claims a state but cannot be read. Also reads the form of
    nodes before the flat entry (a dict ``"s"`` and ``"last"``), so a pair can be upgraded one node at a time."""
    if not isinstance(value, dict):
        return None
    old = value.get("s")
    if isinstance(old, dict):
        last = value.get("last")
        return AlarmState.from_dict(old), last if isinstance(last, dict) else None
    text = value.get(MACHINE)
    if not isinstance(text, str):
        return None
    machine = json.loads(text)
    if not isinstance(machine, list) or not machine or machine[0] != MACHINE_LAYOUT:
        raise ValueError(f"unknown state machine layout {machine[:1] if isinstance(machine, list) else machine!r}")
    _layout, since, pending_since, notified_at, flags, summarised, journal_seq, changes, last_row = machine[:9]
    base = int(since or 0)
    state = AlarmState(
        state=State(value.get("alarm_state", value.get("state"))),
        since=_when(since),
        pending_since=None if pending_since is None else _when(base + int(pending_since)),
        value=value.get("value"),
        notified_at=None if notified_at is None else _when(base + int(notified_at)),
        shelved_until=_when(value.get("shelved_until")),
        shelved_by=str(value.get("shelved_by", "")),
        chattering=bool(value.get("chattering", False)),
        changes=tuple(_EPOCH + timedelta(microseconds=base + int(us)) for us in changes),
        summarised=int(summarised),
        journal_seq=int(journal_seq),
    )
    for bit, name in enumerate(_FLAGS):
        setattr(state, name, bool(int(flags) >> bit & 1))
    last = None
    if last_row is not None:
        kind, shown, time, last_value, user, comment, count, number = last_row
        last = {
            "kind": kind,
            "state": shown,
            "time": None if time is None else base + int(time),
            "value": last_value,
            "user": user,
            "comment": comment,
            "count": count,
            "number": number,
        }
    return state, last
