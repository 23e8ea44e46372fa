"""The pure schedule evaluator: BACnet rules, exceptions and calendars, DST in Berlin and New York, occurrences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bms.schedules.evaluate import (
    CalendarDef,
    DatePattern,
    DateRange,
    ExceptionDef,
    Holidays,
    Occurrence,
    ScheduleDef,
    TimeValue,
    WeekNDay,
    day_plan,
    entry_matches,
    local_instant,
    next_transitions,
    parse_time_values,
    parse_weekly,
    transitions_between,
    value_at,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
ROOT = Path(__file__).resolve().parents[2]


def tv(*pairs: tuple[str, object]) -> tuple[TimeValue, ...]:
    return tuple(TimeValue(time.fromisoformat(at), value) for at, value in pairs)


def every_day(*pairs: tuple[str, object]) -> tuple[tuple[TimeValue, ...], ...]:
    return (tv(*pairs),) * 7


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def office(zone: str = BERLIN, **fields) -> ScheduleDef:
    """On 07:00-18:00 on weekdays, off otherwise (default off)."""
    weekday = tv(("07:00", True), ("18:00", False))
    return ScheduleDef("sch1", zone, weekly=(weekday,) * 5 + ((), ()), default=False, **fields)


# ---- BACnet rules -------------------------------------------------------------------------------------------------


def test_the_latest_entry_at_or_before_the_local_time_wins_and_before_the_first_the_default_applies():
    schedule = ScheduleDef(
        "sch1", BERLIN, weekly=every_day(("06:00", 18.0), ("08:00", 21.0), ("22:00", 17.0)), default=15.0
    )
    monday = date(2026, 6, 1)  # CEST, UTC+2
    assert value_at(schedule, local(BERLIN, 2026, 6, 1, 5, 59)).value == 15.0
    assert value_at(schedule, local(BERLIN, 2026, 6, 1, 6, 0)).value == 18.0
    assert value_at(schedule, local(BERLIN, 2026, 6, 1, 7, 59, 59)).value == 18.0
    assert value_at(schedule, local(BERLIN, 2026, 6, 1, 8, 0)).value == 21.0
    state = value_at(schedule, local(BERLIN, 2026, 6, 1, 23, 0))
    assert (state.value, state.since) == (17.0, local(BERLIN, 2026, 6, 1, 22, 0))
    # lists never carry over midnight: the next day starts with the default
    state = value_at(schedule, local(BERLIN, 2026, 6, 2, 0, 30))
    assert (state.value, state.since, state.occurrence.source) == (15.0, local(BERLIN, 2026, 6, 2), "default")
    assert [step.local_time for step in day_plan(schedule, monday)] == [time(0), time(6), time(8), time(22)]


def test_a_null_entry_hands_over_to_the_default_and_a_null_default_relinquishes():
    weekly = every_day(("08:00", 21.0), ("12:00", None), ("13:00", 22.0), ("17:00", None))
    with_default = ScheduleDef("sch1", BERLIN, weekly=weekly, default=16.0)
    relinquish = ScheduleDef("sch2", BERLIN, weekly=weekly)  # default None
    at_noon = local(BERLIN, 2026, 6, 1, 12, 30)
    assert value_at(with_default, at_noon).value == 16.0
    state = value_at(relinquish, at_noon)
    assert state.active and state.value is None and state.since == local(BERLIN, 2026, 6, 1, 12, 0)
    assert state.occurrence.source == "default"
    values = [(o.local_time, o.value) for o in next_transitions(relinquish, local(BERLIN, 2026, 6, 1, 7), 4)]
    assert values == [(time(8), 21.0), (time(12), None), (time(13), 22.0), (time(17), None)]


def test_exceptions_override_only_over_their_own_entries_and_the_lowest_event_priority_wins():
    weekly = every_day(("07:00", 1), ("19:00", 2))
    low = ExceptionDef("10", date(2026, 6, 1), 10, tv(("09:00", 3), ("15:00", None)))
    high = ExceptionDef("11", date(2026, 6, 1), 5, tv(("11:00", 4), ("12:00", None)))
    schedule = ScheduleDef("sch1", BERLIN, weekly=weekly, exceptions=(low, high), default=0)
    plan = [(step.local_time.hour, step.value, step.source) for step in day_plan(schedule, date(2026, 6, 1))]
    assert plan == [
        (0, 0, "default"),
        (7, 1, "weekly"),
        (9, 3, "ex10"),
        (11, 4, "ex11"),  # priority 5 beats 10
        (12, 3, "ex10"),  # 11's null hands back to the next exception, not to the weekly day
        (15, 1, "weekly"),  # and 10's null to the weekly day's current value
        (19, 2, "weekly"),
    ]
    # the day after, no exception is in effect
    assert [step.value for step in day_plan(schedule, date(2026, 6, 2))] == [0, 1, 2]


def test_equal_event_priorities_go_to_the_earlier_exception():
    first = ExceptionDef("7", date(2026, 6, 1), 8, tv(("00:00", "first")))
    second = ExceptionDef("3", date(2026, 6, 1), 8, tv(("00:00", "second")))
    assert value_at(ScheduleDef("s", BERLIN, exceptions=(first, second)), utc(2026, 6, 1, 12)).value == "first"
    assert value_at(ScheduleDef("s", BERLIN, exceptions=(second, first)), utc(2026, 6, 1, 12)).value == "second"


def test_an_exception_from_midnight_takes_the_whole_day_even_over_a_weekly_entry_at_midnight():
    holiday = ExceptionDef("1", date(2026, 12, 25), 16, tv(("00:00", False)))
    schedule = ScheduleDef("sch1", BERLIN, weekly=every_day(("00:00", True)), exceptions=(holiday,))
    assert [step.value for step in day_plan(schedule, date(2026, 12, 25))] == [False]
    (occurrence,) = next_transitions(schedule, local(BERLIN, 2026, 12, 24, 12), 1)
    assert (occurrence.at, occurrence.value, occurrence.source) == (local(BERLIN, 2026, 12, 25), False, "ex1")


def test_an_exception_on_a_calendar_with_holidays_applies_on_those_days_only():
    bavaria = CalendarDef("holidays-by", (date(2026, 12, 24),), Holidays("DE", "BY"))
    closed = ExceptionDef("5", bavaria, 10, tv(("00:00", False)))
    schedule = office(exceptions=(closed,))
    corpus_christi = date(2026, 6, 4)  # a Thursday, a holiday in Bavaria, not in Berlin
    assert not any(step.value for step in day_plan(schedule, corpus_christi))
    assert any(step.value for step in day_plan(schedule, date(2026, 6, 3)))
    assert not any(step.value for step in day_plan(schedule, date(2026, 12, 24)))  # the calendar's own date
    berlin = office(
        exceptions=(ExceptionDef("6", CalendarDef("berlin", (), Holidays("DE", "BE")), 10, tv(("00:00", False))),)
    )
    assert any(step.value for step in day_plan(berlin, corpus_christi))
    assert not any(step.value for step in day_plan(berlin, date(2026, 10, 3)))  # German Unity Day, national


# ---- calendar entries ---------------------------------------------------------------------------------------------


def days_matching(entry, year: int = 2026) -> list[date]:
    day, found = date(year, 1, 1), []
    while day.year == year:
        if entry_matches(entry, day):
            found.append(day)
        day += timedelta(days=1)
    return found


def test_week_and_day_patterns_follow_bacnet_weeks_of_the_month():
    assert days_matching(WeekNDay(11, 4, 4)) == [date(2026, 11, 26)]  # US Thanksgiving: 4th Thursday of November
    assert days_matching(WeekNDay(5, 6, 1)) == [date(2026, 5, 25)]  # Memorial Day: last Monday of May
    assert days_matching(WeekNDay(1, 5, None)) == [date(2026, 1, 29), date(2026, 1, 30), date(2026, 1, 31)]
    assert days_matching(WeekNDay(2, 5, None)) == []  # February 2026 has no day 29
    assert days_matching(WeekNDay(3, 7, None))[0] == date(2026, 3, 18)  # 7 days before the last 7 (25-31)
    assert days_matching(WeekNDay(3, 9, None)) == [date(2026, 3, day) for day in range(4, 11)]
    assert len(days_matching(WeekNDay(None, None, 6))) == 52  # every Saturday
    odd_mondays = days_matching(WeekNDay(13, 1, 1))  # first Monday of odd months
    assert [day.month for day in odd_mondays] == [1, 3, 5, 7, 9, 11] and all(day.day <= 7 for day in odd_mondays)
    assert [day.month for day in days_matching(WeekNDay(14, 2, 5))] == [2, 4, 6, 8, 10, 12]


def test_date_patterns_take_bacnet_wildcards():
    assert days_matching(DatePattern(None, 12, 25)) == [date(2026, 12, 25)]
    assert days_matching(DatePattern(2027, 12, 25)) == []
    last_days = days_matching(DatePattern(None, None, 32))
    assert len(last_days) == 12 and date(2026, 2, 28) in last_days
    assert days_matching(DatePattern(None, 2, 33))[:3] == [date(2026, 2, 1), date(2026, 2, 3), date(2026, 2, 5)]
    assert days_matching(DatePattern(None, 14, 34))[0] == date(2026, 2, 2)
    assert days_matching(DatePattern(None, None, 13, 5)) == [date(2026, 2, 13), date(2026, 3, 13), date(2026, 11, 13)]
    assert days_matching(DateRange(date(2026, 12, 24), date(2027, 1, 6)))[-1] == date(2026, 12, 31)
    assert days_matching(DateRange(None, date(2026, 1, 2))) == [date(2026, 1, 1), date(2026, 1, 2)]


def test_public_holidays_come_from_the_holidays_package():
    thanksgiving = CalendarDef("us", (), Holidays("US"))
    assert thanksgiving.matches(date(2026, 11, 26)) and thanksgiving.matches(date(2026, 7, 3))  # July 4 observed
    assert not thanksgiving.matches(date(2026, 11, 27))


# ---- daylight saving: both transitions, both zones ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "gap_start_utc"),
    [(BERLIN, date(2026, 3, 29), utc(2026, 3, 29, 1)), (NEW_YORK, date(2026, 3, 8), utc(2026, 3, 8, 7))],
)
def test_spring_forward_an_entry_in_the_gap_fires_at_the_first_instant_after_it(zone, day, gap_start_utc):
    # 02:00-03:00 local does not exist on that day: 02:30 takes effect at 03:00 local, the end of the gap
    schedule = ScheduleDef("sch1", zone, weekly=every_day(("01:30", 1), ("02:30", 2), ("04:00", 3)), default=0)
    assert local_instant(ZoneInfo(zone), day, time(2, 30)) == gap_start_utc
    plan = day_plan(schedule, day)
    assert [(step.local_time, step.at, step.value) for step in plan] == [
        (time(0), local(zone, day.year, day.month, day.day), 0),
        (time(1, 30), gap_start_utc - timedelta(minutes=30), 1),
        (time(2, 30), gap_start_utc, 2),
        (time(4), gap_start_utc + timedelta(hours=1), 3),
    ]
    assert value_at(schedule, gap_start_utc - timedelta(seconds=1)).value == 1
    state = value_at(schedule, gap_start_utc)
    assert (state.value, state.since) == (2, gap_start_utc)
    assert state.occurrence.identity == f"sch1:{day:%Y%m%d}T023000:weekly"  # the nominal local time
    # the 23-hour day: 04:00 is 3 hours after midnight in elapsed time, the next day's entries are at their usual hour
    following = next_transitions(schedule, gap_start_utc, 4)
    assert [(o.local_date, o.local_time) for o in following] == [
        (day, time(4)),
        (day + timedelta(days=1), time(0)),
        (day + timedelta(days=1), time(1, 30)),
        (day + timedelta(days=1), time(2, 30)),
    ]
    assert following[3].at.astimezone(ZoneInfo(zone)).time() == time(2, 30)


@pytest.mark.parametrize(("zone", "day"), [(BERLIN, date(2026, 3, 29)), (NEW_YORK, date(2026, 3, 8))])
def test_spring_forward_entries_sharing_the_gap_fire_once_and_the_latest_wins(zone, day):
    schedule = ScheduleDef("sch1", zone, weekly=every_day(("02:10", "a"), ("02:40", "b"), ("03:00", "c")), default="-")
    steps = day_plan(schedule, day)
    assert [(step.local_time, step.value) for step in steps] == [(time(0), "-"), (time(3), "c")]
    no_three = ScheduleDef("sch1", zone, weekly=every_day(("02:10", "a"), ("02:40", "b")), default="-")
    (occurrence,) = next_transitions(no_three, local(zone, day.year, day.month, day.day, 1), 1)
    assert (occurrence.local_time, occurrence.value) == (time(2, 40), "b")
    assert occurrence.at == local_instant(ZoneInfo(zone), day, time(3))


@pytest.mark.parametrize(
    ("zone", "day", "repeated", "first_utc"),
    [
        (BERLIN, date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),  # 02:30 CEST, then again CET
        (NEW_YORK, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT, then again EST
    ],
)
def test_fall_back_an_entry_in_the_repeated_hour_fires_once_at_its_first_occurrence(zone, day, repeated, first_utc):
    before = (datetime.combine(day, repeated) - timedelta(minutes=20)).time()
    schedule = ScheduleDef(
        "sch1", zone, weekly=every_day((before.isoformat(), 1), (repeated.isoformat(), 2)), default=0
    )
    assert local_instant(ZoneInfo(zone), day, repeated) == first_utc
    changes = transitions_between(schedule, local(zone, day.year, day.month, day.day), first_utc + timedelta(hours=3))
    assert [(o.local_time, o.at, o.value) for o in changes] == [
        (before, first_utc - timedelta(minutes=20), 1),
        (repeated, first_utc, 2),
    ]
    # an hour later the wall clock shows the same local times again: the value stays what it became
    for minutes in (40, 60, 75, 119):
        state = value_at(schedule, first_utc + timedelta(minutes=minutes))
        assert (state.value, state.since, state.occurrence.identity) == (
            2,
            first_utc,
            f"sch1:{day:%Y%m%d}T{repeated:%H%M%S}:weekly",
        )
    second_pass = first_utc + timedelta(hours=1) - timedelta(minutes=10)
    assert second_pass.astimezone(ZoneInfo(zone)).fold == 1
    assert next_transitions(schedule, second_pass, 1)[0].local_date == day + timedelta(days=1)


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK])
def test_a_year_of_an_office_schedule_keeps_local_hours_through_both_transitions(zone):
    schedule = office(zone)
    start = local(zone, 2026, 1, 1)
    changes = transitions_between(schedule, start, local(zone, 2027, 1, 1))
    assert len(changes) == 2 * 261  # every weekday of 2026 switches on and off once
    for occurrence in changes:
        wall = occurrence.at.astimezone(ZoneInfo(zone))
        assert (wall.date(), wall.time()) == (occurrence.local_date, occurrence.local_time)
        assert wall.hour in (7, 18) and wall.isoweekday() <= 5
    assert len({occurrence.identity for occurrence in changes}) == len(changes)


def test_a_day_whose_midnight_does_not_exist_starts_at_the_end_of_the_gap():
    # Chile springs forward at midnight: 2026-09-06 00:00 does not exist, the day starts at 01:00 (-03)
    zone = "America/Santiago"
    schedule = ScheduleDef("sch1", zone, weekly=every_day(("00:00", "night"), ("06:00", "day")), default="-")
    first = day_plan(schedule, date(2026, 9, 6))[0]
    assert first.at == local_instant(ZoneInfo(zone), date(2026, 9, 6), time(1)) == utc(2026, 9, 6, 4)
    assert value_at(schedule, first.at - timedelta(seconds=1)).value == "day"  # still the 5th
    assert value_at(schedule, first.at).value == "night"


# ---- effective period ---------------------------------------------------------------------------------------------


def test_outside_the_effective_period_the_schedule_is_inactive_and_entering_it_is_a_transition():
    period = DateRange(date(2026, 6, 1), date(2026, 6, 30))
    schedule = ScheduleDef("sch1", BERLIN, weekly=every_day(("08:00", 21.0)), default=21.0, effective=period)
    assert value_at(schedule, local(BERLIN, 2026, 5, 31, 12)).active is False
    assert value_at(schedule, local(BERLIN, 2026, 7, 1, 0)).active is False
    (start,) = next_transitions(schedule, local(BERLIN, 2026, 5, 20), 2)  # the value never changes inside
    assert (start.at, start.value, start.identity) == (local(BERLIN, 2026, 6, 1), 21.0, "sch1:20260601T000000:default")
    state = value_at(schedule, local(BERLIN, 2026, 6, 30, 23, 59))
    assert (state.active, state.value, state.occurrence) == (True, 21.0, start)
    assert next_transitions(schedule, local(BERLIN, 2026, 6, 15), 5) == []


# ---- occurrences --------------------------------------------------------------------------------------------------


def identities(schedule: ScheduleDef, now: datetime, count: int) -> list[str]:
    return [occurrence.identity for occurrence in next_transitions(schedule, now, count)]


def test_an_occurrence_has_the_same_identity_whenever_it_is_computed():
    from bms.control.services import COMMAND_ID_PATTERN  # here: the subprocess test imports this module without Django

    holiday = ExceptionDef("9", WeekNDay(None, None, 6), 16, tv(("10:00", True), ("14:00", None)))
    schedule = office(exceptions=(holiday,))
    from_monday = identities(schedule, local(BERLIN, 2026, 3, 23), 14)
    from_wednesday = identities(schedule, local(BERLIN, 2026, 3, 25, 12), 8)
    assert from_wednesday == from_monday[5:13]
    assert "sch1:20260328T100000:ex9" in from_monday and "sch1:20260328T140000:default" in from_monday
    for occurrence in next_transitions(schedule, local(BERLIN, 2026, 3, 23), 14):
        state = value_at(schedule, occurrence.at + timedelta(hours=1, minutes=7))
        assert state.occurrence == occurrence  # what value_at reports is the same occurrence, identity and all
        assert Occurrence.from_dict(json.loads(json.dumps(occurrence.to_dict()))) == occurrence
        assert COMMAND_ID_PATTERN.match(occurrence.identity)


def test_an_occurrence_has_the_same_identity_wherever_it_is_computed():
    """Another process, with another local time zone and another TZ environment, finds the same identities."""
    code = (
        "import json, sys\n"
        "from datetime import datetime, UTC\n"
        "from tests.schedules.test_evaluate import office, identities\n"
        "print(json.dumps(identities(office(), datetime(2026, 3, 27, tzinfo=UTC), 6)))\n"
    )
    here = identities(office(), utc(2026, 3, 27), 6)
    for tz in ("Asia/Tokyo", "America/Los_Angeles"):
        env = {**os.environ, "TZ": tz, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here
    assert here[0] == "sch1:20260327T070000:weekly" and here[-1] == "sch1:20260331T180000:weekly"


def test_next_transitions_lists_changes_only_in_order_and_stops_at_the_horizon():
    schedule = office()
    friday_noon = local(BERLIN, 2026, 6, 5, 12)
    following = next_transitions(schedule, friday_noon, 3)
    assert [(o.local_date, o.local_time, o.value) for o in following] == [
        (date(2026, 6, 5), time(18), False),
        (date(2026, 6, 8), time(7), True),  # the weekend's midnights change nothing
        (date(2026, 6, 8), time(18), False),
    ]
    assert next_transitions(schedule, friday_noon, 0) == []
    constant = ScheduleDef("sch2", BERLIN, default=True)
    assert next_transitions(constant, friday_noon, 3) == []
    state = value_at(constant, friday_noon)
    assert (state.value, state.since, state.occurrence) == (True, None, None)  # unchanged for the whole look-back
    yearly = ScheduleDef(
        "sch3", BERLIN, exceptions=(ExceptionDef("1", DatePattern(None, 12, 25), 1, tv(("00:00", 1))),), default=0
    )
    assert [o.local_date for o in next_transitions(yearly, friday_noon, 2)] == [date(2026, 12, 25), date(2026, 12, 26)]


def test_times_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        value_at(office(), datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        ScheduleDef("s", "Mars/Olympus")


# ---- definitions from JSON ----------------------------------------------------------------------------------------


def test_time_value_lists_are_checked_with_clear_messages():
    values, problems = parse_time_values([{"time": "08:00", "value": 1}, {"time": "07:00:30", "value": 2.5}], "real")
    assert problems == ["07:00:30 comes after 08:00: list the times in order"]
    assert parse_time_values([{"time": "08:00", "value": 1}, {"time": "08:00", "value": 2}], "integer")[1] == [
        "08:00 appears twice"
    ]
    assert "is not a time of day" in parse_time_values([{"time": "24:00", "value": 1}], "real")[1][0]
    assert parse_time_values([{"time": "8", "value": True}], "bool")[1] == [
        "entry 1: '8' is not a time of day; write HH:MM or HH:MM:SS, from 00:00 to 23:59:59"
    ]
    assert parse_time_values([{"time": "08:00", "value": 21.5}], "bool")[1] == [
        "08:00: 21.5 is not true or false (a bool schedule)"
    ]
    assert parse_time_values([{"time": "08:00", "value": 2.5}], "integer")[1] == [
        "08:00: 2.5 is not a whole number (an integer schedule)"
    ]
    assert parse_time_values([{"time": "08:00", "value": True}], "real")[1] == [
        "08:00: True is not a number (a real schedule)"
    ]
    values, problems = parse_time_values([{"time": "08:00", "value": 2.0}, {"time": "09:00", "value": None}], "integer")
    assert problems == [] and values == tv(("08:00", 2), ("09:00", None)) and isinstance(values[0].value, int)
    weekly, problems = parse_weekly({"Monday": [], "sunday": [{"time": "10:00", "value": 1}]}, "integer")
    assert problems == [
        "unknown day 'Monday'; the days are monday, tuesday, wednesday, thursday, friday, saturday, sunday "
        "(in lower case)"
    ]
    assert weekly[6] == tv(("10:00", 1))
