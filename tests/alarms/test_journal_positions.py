"""What a cold start or a takeover reads from the alarm journal: each alarm's last numbered row, by index probes.

The answers are pinned against the journal itself on a real PostgreSQL, and the plan shows one probe of the
``alarms_journal_one_per_seq`` index per alarm instead of a pass over every row of the alarms (a plan, not a
timing: ``bench/journal_positions.py`` measures the cost).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bms.alarms import store
from bms.alarms.models import AlarmJournal
from tests.support.explain import plan_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def journal(rows: list[tuple[str, int]]) -> None:
    """Journal rows (alarm, number) in the given order; number 0 is an unnumbered row."""
    for n, (alarm, number) in enumerate(rows):
        AlarmJournal(
            time=T0 + timedelta(seconds=n),
            alarm=alarm,
            point_name=alarm.split(".")[0],
            transition="raised",
            state="active_unacked",
            alarm_seq=number,
        ).save()


def expected(rows: list[tuple[str, int]], wanted: list[str]) -> dict[str, int]:
    tops: dict[str, int] = {}
    for alarm, number in rows:
        if alarm in wanted and number > 0:
            tops[alarm] = max(tops.get(alarm, 0), number)
    return tops


def test_each_alarm_resumes_from_its_highest_numbered_row(monkeypatch):
    monkeypatch.setattr(store, "_NAMES_PER_QUERY", 3)  # several queries, as with thousands of alarms
    shuffled = random.Random(7)
    rows = [(f"a{n % 7}.high", 1 + n // 7) for n in range(70)]
    rows += [("a1.high", 0), ("a2.high", 0), ("only_unnumbered.high", 0)]  # not numbered: never a position
    shuffled.shuffle(rows)  # stored out of order: a late replicated row, a recovered copy
    journal(rows)
    wanted = [f"a{n}.high" for n in range(7)] + ["only_unnumbered.high", "never.high", "a3.high"]
    positions = store.journal_positions(wanted)
    assert positions == expected(rows, wanted) and len(positions) == 7
    last = store.last_journal_rows(wanted)
    assert {name: row.alarm_seq for name, row in last.items()} == positions
    assert store.journal_positions(["a0.high"]) == {"a0.high": 10}
    assert store.journal_positions([]) == {} and store.last_journal_rows([]) == {}


def test_the_last_row_is_found_by_one_index_probe_per_alarm():
    journal([("a.high", 1), ("a.high", 2), ("b.high", 1)])
    queries = list(store._last_rows(["a.high", "b.high"]))
    sql, params = queries[0].query.sql_with_params()
    plan = plan_of(sql, list(params))
    assert "alarms_journal_one_per_seq" in plan and "Backward" in plan, plan
    assert "Aggregate" not in plan, plan
