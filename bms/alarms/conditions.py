"""Alarm conditions: is one point value "in alarm" right now? Pure Python (no Django, no clock).

:func:`evaluate` answers for one :class:`Condition` from the point's value,
quality and source time, the setpoint's value (deviation) and the previous
sample (rate of change), and whether the condition was in alarm before: that
last argument gives the deadband its hysteresis. A high alarm raises when the
value is above the limit and clears only when it is below ``limit -
deadband``; a low alarm raises below the limit and clears above ``limit +
deadband``; a value in between keeps the previous answer. Deviation (absolute
band around a setpoint) and rate of change (per minute, either direction)
work like a high alarm on ``|value - setpoint|`` and ``|rate|``.

A value whose quality is not usable (``bad``, ``comm_failure``, ``stale``,
``out_of_service``, or no value yet) says nothing about the process: value
conditions then keep their previous answer (the ``quality`` kind is there to
alarm on the quality itself). The quality kind is in alarm while the quality
is ``bad``, ``comm_failure`` or ``stale``; its delay is the alarm's on-delay
(:mod:`bms.alarms.states` runs the timers).

Delays, acknowledgement, shelving and the rest are not here: this module only
turns one sample into a raw boolean. Message templates (``{point} {value}
{unit} {limit}``) are checked and rendered here too, so the model, the
importer and the engine share one definition of them.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bms.engine.image import BAD, COMM_FAILURE, GOOD, STALE, UNCERTAIN


class Kind(StrEnum):
    """What an alarm definition watches."""

    HIGH = "high"
    LOW = "low"
    HIGH_HIGH = "high_high"
    LOW_LOW = "low_low"
    STATE_EQUAL = "state_equal"
    STATE_NOT_EQUAL = "state_not_equal"
    DEVIATION = "deviation"
    RATE_OF_CHANGE = "rate_of_change"
    QUALITY = "quality"


HIGH_KINDS = (Kind.HIGH, Kind.HIGH_HIGH)
LOW_KINDS = (Kind.LOW, Kind.LOW_LOW)
LIMIT_KINDS = (Kind.LOW_LOW, Kind.LOW, Kind.HIGH, Kind.HIGH_HIGH)  # in the order their limits must keep
STATE_KINDS = (Kind.STATE_EQUAL, Kind.STATE_NOT_EQUAL)
#: kinds that compare a number, so they make no sense on a bool point
NUMERIC_KINDS = (*LIMIT_KINDS, Kind.DEVIATION, Kind.RATE_OF_CHANGE)
#: a value with one of these qualities is evaluated; any other says nothing about the process
USABLE_QUALITIES = frozenset({GOOD, UNCERTAIN})
#: the quality kind is in alarm while the point has one of these
ALARM_QUALITIES = frozenset({BAD, COMM_FAILURE, STALE})

PLACEHOLDERS = ("point", "value", "unit", "limit")
DEFAULT_TEMPLATES = {
    Kind.HIGH: "{point} high: {value} {unit} (limit {limit} {unit})",
    Kind.HIGH_HIGH: "{point} high-high: {value} {unit} (limit {limit} {unit})",
    Kind.LOW: "{point} low: {value} {unit} (limit {limit} {unit})",
    Kind.LOW_LOW: "{point} low-low: {value} {unit} (limit {limit} {unit})",
    Kind.STATE_EQUAL: "{point} is {value}",
    Kind.STATE_NOT_EQUAL: "{point} is {value}, expected {limit}",
    Kind.DEVIATION: "{point} deviates from its setpoint: {value} {unit} (band {limit} {unit})",
    Kind.RATE_OF_CHANGE: "{point} changes too fast: {value} {unit} (limit {limit} {unit} per minute)",
    Kind.QUALITY: "{point} quality {value}",
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One alarm condition, as the evaluator needs it (built from an ``AlarmDefinition``).

    ``limit``: the limit (high/low kinds) or the band (deviation);
    ``rate_per_minute``: the largest allowed change per minute (either
    direction); ``alarm_value``: the value (state kinds; a bool point's is 1
    or 0); ``deadband``: the hysteresis, in the point's unit (per minute for
    rate of change).
    """

    kind: Kind
    limit: float | None = None
    deadband: float = 0.0
    alarm_value: float | None = None
    rate_per_minute: float | None = None


def usable(value: Any, quality: str) -> float | None:
    """``value`` as a number if its quality lets it be evaluated, else None (bools count as 1 and 0)."""
    if quality not in USABLE_QUALITIES or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def evaluate(
    condition: Condition,
    value: Any,
    quality: str,
    time: datetime | None = None,
    *,
    active: bool = False,
    setpoint: float | None = None,
    previous_value: Any = None,
    previous_time: datetime | None = None,
) -> bool:
    """Whether ``condition`` is in alarm for this sample; ``active``: whether it was at the previous sample.

    ``setpoint``: the setpoint point's value, already checked with
    :func:`usable` (None: unknown, the answer is held). ``previous_value`` and
    ``previous_time``: the last usable sample before this one (rate of
    change; ``time`` is this sample's source time). Whenever the answer cannot
    be known (unusable quality, no setpoint, no earlier sample) the previous
    answer ``active`` is returned unchanged.
    """
    kind = condition.kind
    if kind is Kind.QUALITY:
        return quality in ALARM_QUALITIES
    number = usable(value, quality)
    if number is None:
        return active
    if kind in STATE_KINDS:
        if condition.alarm_value is None:
            return active
        equal = number == condition.alarm_value
        return equal if kind is Kind.STATE_EQUAL else not equal
    deadband = condition.deadband
    if kind in HIGH_KINDS:
        return _above(number, condition.limit, deadband, active)
    if kind in LOW_KINDS:
        return _below(number, condition.limit, deadband, active)
    if kind is Kind.DEVIATION:
        if setpoint is None:
            return active
        return _above(abs(number - setpoint), condition.limit, deadband, active)
    if kind is Kind.RATE_OF_CHANGE:
        before = usable(previous_value, GOOD)
        if before is None or time is None or previous_time is None:
            return active
        minutes = (time - previous_time).total_seconds() / 60.0
        if minutes <= 0:
            return active
        return _above(abs(number - before) / minutes, condition.rate_per_minute, deadband, active)
    raise ValueError(f"unknown alarm kind {kind!r}")


def _above(number: float, limit: float | None, deadband: float, active: bool) -> bool:
    """High-limit hysteresis: raise above ``limit``, clear below ``limit - deadband``, hold in between."""
    if limit is None:
        return active
    if number > limit:
        return True
    if number < limit - deadband:
        return False
    return active


def _below(number: float, limit: float | None, deadband: float, active: bool) -> bool:
    """Low-limit hysteresis: raise below ``limit``, clear above ``limit + deadband``, hold in between."""
    if limit is None:
        return active
    if number < limit:
        return True
    if number > limit + deadband:
        return False
    return active


def reported_limit(condition: Condition) -> float | None:
    """The number a message calls ``{limit}``: the limit, the band, the rate or the alarm value."""
    if condition.kind is Kind.RATE_OF_CHANGE:
        return condition.rate_per_minute
    if condition.kind in STATE_KINDS:
        return condition.alarm_value
    return condition.limit


def template_problems(template: str) -> list[str]:
    """What is wrong with a message template (empty list: it is fine)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"the message template has unbalanced braces ({exc}); write {{{{ and }}}} for literal braces"]
    problems = []
    allowed = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    for _text, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            problems.append(f"the message template has a positional placeholder {{{field}}}; use {allowed}")
        elif field not in PLACEHOLDERS:
            problems.append(f"the message template has an unknown placeholder {{{field}}}; use {allowed}")
    if not problems:
        try:
            template.format(point="p", value=1.5, unit="u", limit=1.5)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            problems.append(f"the message template cannot be formatted: {exc}")
    return problems


def render_message(template: str, kind: Kind, *, point: str, value: Any, unit: str, limit: Any) -> str:
    """The alarm's text: ``template`` (or the kind's default) filled in; never raises for odd values."""
    template = template or DEFAULT_TEMPLATES[Kind(kind)]
    shown = {"point": point, "value": _shown(value), "unit": unit, "limit": _shown(limit)}
    numbers = {"point": point, "value": value, "unit": unit, "limit": limit}
    text = template
    # a number format such as {value:.1f} needs the numbers; given None or a bool it is dropped
    for attempt in (
        lambda: template.format(**shown),
        lambda: template.format(**numbers),
        lambda: _without_formats(template).format(**shown),
    ):
        try:
            text = attempt()
            break
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            continue
    return " ".join(text.split()).replace(" )", ")")  # an empty {unit} leaves no gap


def _without_formats(template: str) -> str:
    """``template`` with its format specifications and conversions dropped (``{value:.1f}`` -> ``{value}``).

    Raises ValueError for a template with unbalanced braces."""
    parts = []
    for text, field, _spec, _conversion in string.Formatter().parse(template):
        parts.append(text.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            parts.append(f"{{{field}}}" if field in PLACEHOLDERS else "")
    return "".join(parts)


def _shown(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # six significant digits: a float32 reading shows as 21.3, not 21.2999992
        return f"{value:.0f}" if abs(value) >= 1e6 and math.isfinite(value) else f"{value:.6g}"
    return str(value)
