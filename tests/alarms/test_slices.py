"""A flood of alarms, and of due timers, is worked off in slices with the engine loop free in between."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bms.alarms import engine as alarm_engine
from bms.alarms.conditions import Condition, Kind
from bms.alarms.engine import AlarmEngine
from bms.alarms.spec import AlarmSpec, entry_state
from bms.alarms.states import AlarmConfig
from bms.engine.image import GOOD, ProcessImage
from bms.engine.role import StandaloneRole

ALARMS = 50


class Journal:
    """The outbox's side the engine uses: rows are only collected."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.waiting = self.dropped = 0

    def put(self, row: Any) -> None:
        self.rows.append(row)


async def no_rows(*_args: Any) -> dict:
    return {}  # an empty journal: nothing to resume, no positions


@pytest.fixture
async def flood(monkeypatch):
    """ALARMS high alarms on as many points, in control, every slice cut after 3 alarms or timers."""
    monkeypatch.setattr(alarm_engine, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(alarm_engine, "CLOCK_EVERY", 3)
    image = ProcessImage()
    points = [f"p{i}" for i in range(ALARMS)]
    image.define(points)
    image.update_many(points, [20.0] * ALARMS, [0.0] * ALARMS, GOOD, datetime.now(UTC))
    config = AlarmConfig(on_delay=1.0)
    specs = [
        AlarmSpec(f"a{i}", f"p{i}", Condition(Kind.HIGH, limit=30.0), config, 100, "high", "#f00", True)
        for i in range(ALARMS)
    ]
    image.define(points + AlarmEngine.entry_names(specs))
    engine = AlarmEngine(image, StandaloneRole(), Journal(), lambda: None, no_rows)
    await engine.configure(specs)
    await engine.take_control()
    return engine


def slices(engine: AlarmEngine, now: datetime) -> list[int]:
    """Run ``run_once`` until it says nothing is left; the evaluations and transitions of each call."""
    counts = []
    while True:
        before = engine.evaluations + engine.transitions
        more = engine.run_once(now)
        counts.append(engine.evaluations + engine.transitions - before)
        if not more:
            return counts


async def test_a_flood_of_changes_and_then_of_due_timers_is_worked_off_in_slices(flood):
    engine = flood
    crossed = datetime.now(UTC)
    engine.image.update_many([f"p{i}" for i in range(ALARMS)], [35.0] * ALARMS, [0.0] * ALARMS, GOOD, crossed)
    evaluated = slices(engine, crossed)
    assert len(evaluated) > ALARMS // 3 and max(evaluated) <= 3
    assert engine.evaluations >= ALARMS and not engine.journal.rows  # on-delays running, nothing raised yet
    assert all(entry_state(engine.image.points[f"alarm:a{i}"].value)[0].pending_since for i in range(ALARMS))

    fired = slices(engine, crossed + timedelta(seconds=2))  # every on-delay is due at once
    assert len(fired) > ALARMS // 3 and max(fired) <= 3
    raised = [row[0] for row in engine.journal.rows]
    assert sorted(transition.alarm for transition in raised) == sorted(f"a{i}" for i in range(ALARMS))
    assert {transition.time for transition in raised} == {crossed + timedelta(seconds=1)}  # at their due time
    assert engine.image.points["alarms:summary"].value["unacked_total"] == ALARMS


async def test_an_alarm_whose_point_changes_again_while_it_waits_is_evaluated_once(flood):
    engine = flood
    now = datetime.now(UTC)
    names = [f"p{i}" for i in range(10)]
    engine.image.update_many(names, [25.0] * 10, [0.0] * 10, GOOD, now)
    before = engine.evaluations
    assert engine.run_once(now)  # 3 evaluated, 7 wait
    engine.image.update_many(["p9"], [26.0], [0.0], GOOD, now)  # p9's alarm is still waiting
    slices(engine, now)
    assert engine.evaluations - before == 10
