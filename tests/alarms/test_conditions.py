"""Alarm conditions, pure: limits with deadband hysteresis, states, deviation, rate, quality, message templates."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from bms.alarms.conditions import Condition, Kind, evaluate, render_message, template_problems, usable

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def run(condition: Condition, values, quality: str = "good", active: bool = False) -> list[bool]:
    """Evaluate a series of values, each time with the previous answer (as the engine does)."""
    answers = []
    for value in values:
        active = evaluate(condition, value, quality, T0, active=active)
        answers.append(active)
    return answers


def test_high_raises_above_the_limit_and_clears_only_below_limit_minus_deadband():
    high = Condition(Kind.HIGH, limit=25.0, deadband=1.0)
    assert run(high, [24.0, 25.0, 25.1, 24.5, 24.0, 23.9, 24.5, 25.0]) == [
        False,  # below
        False,  # at the limit: not above it
        True,  # above: raised
        True,  # inside the deadband: held
        True,  # at limit - deadband: still held
        False,  # below limit - deadband: cleared
        False,  # inside the deadband from below: stays clear
        False,
    ]


def test_high_without_deadband_clears_as_soon_as_it_is_below_the_limit():
    high = Condition(Kind.HIGH_HIGH, limit=30.0)
    assert run(high, [30.5, 30.0, 29.99]) == [True, True, False]


@pytest.mark.parametrize("kind", [Kind.LOW, Kind.LOW_LOW])
def test_low_raises_below_the_limit_and_clears_only_above_limit_plus_deadband(kind):
    low = Condition(kind, limit=10.0, deadband=2.0)
    assert run(low, [11.0, 10.0, 9.9, 11.0, 12.0, 12.1, 11.0]) == [False, False, True, True, True, False, False]


def test_a_value_that_cannot_be_trusted_keeps_the_previous_answer():
    high = Condition(Kind.HIGH, limit=25.0)
    for quality in ("bad", "comm_failure", "stale", "out_of_service"):
        assert evaluate(high, 10.0, quality, active=True) is True
        assert evaluate(high, 99.0, quality, active=False) is False
    assert evaluate(high, None, "uncertain", active=True) is True  # no value yet
    assert evaluate(high, math.nan, "good", active=False) is False
    assert evaluate(high, 99.0, "uncertain", active=False) is True  # a real value, e.g. a hand override
    assert usable(True, "good") == 1.0
    assert usable("x", "good") is None


def test_state_alarms_on_bool_and_multistate_values():
    running = Condition(Kind.STATE_EQUAL, alarm_value=1.0)
    assert evaluate(running, True, "good") is True
    assert evaluate(running, False, "good", active=True) is False
    mode = Condition(Kind.STATE_NOT_EQUAL, alarm_value=2.0)  # alarm unless the mode is 2 (auto)
    assert evaluate(mode, 2, "good", active=True) is False
    assert evaluate(mode, 3, "good") is True
    assert evaluate(mode, 3, "bad") is False  # held


def test_deviation_is_an_absolute_band_around_the_setpoint_with_hysteresis():
    band = Condition(Kind.DEVIATION, limit=2.0, deadband=0.5)
    assert evaluate(band, 23.5, "good", setpoint=21.0) is True
    assert evaluate(band, 18.5, "good", setpoint=21.0) is True  # below as well as above
    assert evaluate(band, 22.8, "good", setpoint=21.0, active=True) is True  # 1.8: inside the deadband
    assert evaluate(band, 22.4, "good", setpoint=21.0, active=True) is False  # 1.4 < 2.0 - 0.5
    assert evaluate(band, 30.0, "good", setpoint=None, active=False) is False  # setpoint unknown: held
    assert evaluate(band, 21.0, "good", setpoint=None, active=True) is True


def test_rate_of_change_per_minute_in_either_direction():
    rate = Condition(Kind.RATE_OF_CHANGE, rate_per_minute=6.0, deadband=1.0)
    later = T0 + timedelta(seconds=5)
    assert evaluate(rate, 21.0, "good", later, previous_value=20.0, previous_time=T0) is True  # 12 per minute
    assert evaluate(rate, 19.0, "good", later, previous_value=20.0, previous_time=T0) is True  # falling
    assert evaluate(rate, 20.4, "good", later, previous_value=20.0, previous_time=T0) is False  # 4.8 per minute
    assert evaluate(rate, 20.45, "good", later, previous_value=20.0, previous_time=T0, active=True) is True  # 5.4
    assert evaluate(rate, 25.0, "good", later, active=False) is False  # no earlier sample: held
    assert evaluate(rate, 25.0, "good", T0, previous_value=20.0, previous_time=T0, active=True) is True  # no time


def test_quality_alarms_on_bad_comm_failure_and_stale():
    quality = Condition(Kind.QUALITY)
    assert [evaluate(quality, 1.0, q) for q in ("bad", "comm_failure", "stale")] == [True, True, True]
    assert [evaluate(quality, 1.0, q, active=True) for q in ("good", "uncertain", "out_of_service")] == [
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{point} {value} {unit} {limit}", None),
        ("{point} at {value:.1f} {unit}", None),
        ("{point} is {temp}", "unknown placeholder {temp}"),
        ("{point.name} high", "unknown placeholder {point.name}"),
        ("{} is high", "positional placeholder {}"),
        ("{0} is high", "positional placeholder {0}"),
        ("{point is high", "unbalanced braces"),
        ("{point} is high}", "unbalanced braces"),
        ("{value:xyz}", "cannot be formatted"),
    ],
)
def test_message_templates_are_checked(template, problem):
    problems = template_problems(template)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_messages_are_rendered_with_defaults_and_never_fail_on_odd_values():
    assert (
        render_message("", Kind.HIGH, point="zone1_temp", value=26.299999237, unit="degC", limit=25.0)
        == "zone1_temp high: 26.3 degC (limit 25 degC)"
    )
    assert render_message("", Kind.HIGH, point="p", value=2.0, unit="", limit=1.0) == "p high: 2 (limit 1)"
    assert render_message("{point} at {value:.1f}", Kind.HIGH, point="p", value=21.25, unit="", limit=1) == "p at 21.2"
    assert render_message("{point} at {value:.1f}", Kind.HIGH, point="p", value=None, unit="", limit=1) == "p at ?"
    assert render_message("", Kind.STATE_EQUAL, point="fan", value=True, unit="", limit=1.0) == "fan is true"
    assert render_message("{point} {{literal}}", Kind.HIGH, point="p", value=1, unit="", limit=1) == "p {literal}"
