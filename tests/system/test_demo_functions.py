"""The demo building runs itself (issue 12): ``loaddemo --functions`` as ``make demo`` loads it, on a real node.

One ``runbms`` process in the embedded shape (SQLite, as ``make demo``) runs the
demo against an in-process simulated building whose physics run (0.5 s steps).
Judged where it lands:

* the occupancy schedule's value in force (computed here from the shipped
  definition, independently of the node) sits in slot 12 of zone 1's and
  zone 2's priority arrays, written by the schedule, and the device holds it;
* the zone 1 loop: the handover rule puts zone 1's unit under BMS control,
  then the zone is pushed 7 K below its setpoint at the device and the PID
  (on the unit's reheat valve) brings it back within 0.3 K in bounded time
  and holds it there; the valve is seen to open to its limit and come back.
  (It used to settle first from the simulator's start, 1.5 K below: that
  slow approach, about 100 s at a small valve opening, proved nothing the
  7 K step does not, and was the suite's slowest step.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command

from bms.logic.models import Rule
from bms.points.management.commands import loaddemo
from bms.schedules import evaluate as ev
from bms.schedules.models import Calendar, ExceptionEvent, Schedule, ScheduleTarget
from drivers.simulator.building import SimulatedBuilding
from tests.support import databases
from tests.support.net import free_port, wait_for_port
from tests.support.processes import ROOT, HttpSession

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]  # typically 2-3 min: a node start and two approaches

STEP = 7.0  # K below the setpoint the zone is pushed: kp 20 x 7 K drives the valve to its limit, whatever the integral
NEAR = 0.3  # K: "at the setpoint"
BAND = 0.5  # K: where it must stay once there


def occupancy_definition() -> ev.ScheduleDef:
    """The shipped schedule, built here from loaddemo's constants (not read from the node)."""
    weekly, problems = ev.parse_weekly(loaddemo.OCCUPANCY["weekly"], "real")
    values, more = ev.parse_time_values(loaddemo.HOLIDAY_EXCEPTION["time_values"], "real")
    assert not problems and not more
    holidays = ev.CalendarDef("holidays", (), ev.Holidays(loaddemo.HOLIDAYS["holiday_country"]))
    return ev.ScheduleDef(
        key="sch0",
        time_zone=loaddemo.OCCUPANCY["time_zone"],
        weekly=weekly,
        exceptions=(ev.ExceptionDef("0", holidays, loaddemo.HOLIDAY_EXCEPTION["event_priority"], values),),
        default=loaddemo.OCCUPANCY["default_value"],
    )


def expected_occupancy(now: datetime) -> float:
    """The shipped schedule's value at ``now``."""
    return ev.value_at(occupancy_definition(), now).value


def transition_within(seconds: float) -> bool:
    """Whether the shipped schedule changes its value within ``seconds`` from now (07:00 and 19:00 in Berlin)."""
    now = datetime.now(UTC)
    upcoming = ev.next_transitions(occupancy_definition(), now, 1)
    return bool(upcoming) and (upcoming[0].at - now).total_seconds() < seconds


def test_loaddemo_loads_the_functions_only_when_asked_and_again_in_place(db):
    call_command("loaddemo", modbus_port=1, verbosity=0)
    assert not Schedule.objects.exists() and not Rule.objects.exists()  # what the other tests load stays bare

    call_command("loaddemo", modbus_port=1, functions=True, verbosity=0)
    schedule = Schedule.objects.get(name="occupancy")
    exception = ExceptionEvent.objects.get(schedule=schedule)
    ids = (schedule.pk, exception.pk, *Rule.objects.order_by("name").values_list("pk", flat=True))
    call_command("loaddemo", modbus_port=1, functions=True, verbosity=0)  # again: updated, same rows
    assert (Schedule.objects.get().pk, ExceptionEvent.objects.get().pk) == ids[:2]
    assert tuple(Rule.objects.order_by("name").values_list("pk", flat=True)) == ids[2:]
    assert sorted(ScheduleTarget.objects.values_list("point__name", "priority")) == [
        ("zone1_setpoint", 12),
        ("zone2_setpoint", 12),
    ]
    assert Calendar.objects.get().holiday_country == "DE"
    # the German public holidays are unoccupied, a working Thursday is not
    definition = Schedule.objects.get().definition()
    assert ev.value_at(definition, datetime(2026, 12, 3, 9, 0, tzinfo=UTC)).value == 21.0  # Thursday 10:00 CET
    assert ev.value_at(definition, datetime(2026, 12, 25, 9, 0, tzinfo=UTC)).value == 17.0  # Christmas, a Friday
    assert ev.value_at(definition, datetime(2026, 10, 3, 9, 0, tzinfo=UTC)).value == 17.0  # a Saturday anyway
    assert ev.value_at(definition, datetime(2026, 5, 14, 9, 0, tzinfo=UTC)).value == 17.0  # Ascension, Thursday
    assert ev.value_at(definition, datetime(2026, 12, 3, 18, 30, tzinfo=UTC)).value == 17.0  # 19:30 CET


@pytest.fixture
async def running_building():
    building = SimulatedBuilding(step_seconds=0.5, seed=12)
    await building.start()
    try:
        yield building
    finally:
        await building.stop()


@pytest.fixture
async def demo_node(running_building, tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bms.settings.embedded",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bms.sqlite3'}",
        "BMS_NODE_NAME": "demo",
    }
    # migrate, then loaddemo --functions as make demo loads it, in one process (on a thread: the building's
    # server and physics keep running on this loop meanwhile)
    await asyncio.to_thread(
        databases.load_demo, env, running_building.port, 0.5, migrate=True, functions=True, verbosity=0
    )
    log_path = tmp_path / "node.log"
    process = subprocess.Popen(  # noqa: ASYNC220 (it runs beside the test: starting it does not block the loop)
        [sys.executable, "manage.py", "runbms", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        await asyncio.to_thread(wait_for_port, port, 60)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: how long the loop's part of the test can take at most (step, hold)
PID_PHASE_SECONDS = 120 + 60 + 30


async def until(predicate, wait: float, what: str, every: float = 0.25):
    """Await ``predicate()`` (a coroutine function) until truthy; fail naming ``what`` after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {wait} s waiting for {what}")
        await asyncio.sleep(every)


async def test_the_schedule_writes_its_slot_and_the_pid_brings_zone1_to_its_setpoint(demo_node, running_building):
    base_url, log_path = demo_node
    building = running_building
    session = await asyncio.to_thread(HttpSession, base_url, "demo", "demo")

    async def scheduled(point: str):
        expected = expected_occupancy(datetime.now(UTC))
        status, array = await asyncio.to_thread(session.get_json, f"/api/v1/points/{point}/priority-array")
        slot = array["slots"][11] if status == 200 else {}
        if slot.get("value") != expected or slot.get("source") != "schedule" or array["effective_priority"] != 12:
            return None
        if await building.get(point) != expected:
            return None
        return expected, slot

    started = time.monotonic()
    for point in loaddemo.OCCUPANCY_TARGETS:
        value, slot = await until(lambda p=point: scheduled(p), 60, f"the schedule's value in slot 12 of {point}")
        assert slot["command_id"].startswith("sched:sch"), slot
    print(f"schedule: {value} degC in slot 12 of both zones and at the device {time.monotonic() - started:.1f} s")

    async def remote() -> bool:
        return bool(await building.get("zone1_remote"))

    await until(remote, 30, "zone 1's unit handed over to the BMS (rule zone1_handover)")
    setpoint = float(await building.get("zone1_setpoint"))
    assert setpoint == value
    if transition_within(PID_PHASE_SECONDS):
        # The schedule would move the setpoint in the middle of the loop's test: an operator holds it where it is
        # (manual, priority 8, over the schedule's 12), as one would, so the loop is judged against one setpoint.
        status, answer = await asyncio.to_thread(
            session.post_json,
            "/api/v1/points/zone1_setpoint/priority-array",
            {"value": setpoint, "priority": 8, "expires_in": 1800, "command_id": "demo-test-hold"},
        )
        assert status == 200, answer

    # the zone is pushed STEP below, as if a window had been left open in winter; the loop brings it back
    await building.set("zone1_temp", setpoint - STEP)
    pushed = time.monotonic()
    samples: list[tuple[float, float, float]] = []  # (seconds since the push, zone temperature, valve %)

    async def sample() -> None:
        temp = float(await building.get("zone1_temp"))
        valve = float(await building.get("zone1_valve")) / 10.0
        samples.append((time.monotonic() - pushed, temp, valve))

    async def near() -> bool:
        await sample()
        return abs(samples[-1][1] - setpoint) <= NEAR

    await until(near, 120, f"zone 1 back within {NEAR} K of {setpoint} degC")
    reached = samples[-1][0]
    assert samples[0][1] < setpoint - STEP + 1.0, samples[:3]  # the push took (the physics did not overwrite it)
    hold_until = time.monotonic() + 30

    async def held_long_enough() -> bool:
        await sample()
        return time.monotonic() >= hold_until

    await until(held_long_enough, 60, "30 s of holding", every=0.5)
    after = [(at, temp, valve) for at, temp, valve in samples if at >= reached]
    worst = max(abs(temp - setpoint) for _, temp, _ in after)
    overshoot = max(temp for _, temp, _ in samples) - setpoint
    opened = max(valve for _, _, valve in samples)
    settled_valve = after[-1][2]
    print(
        f"pid: zone1 from {setpoint - STEP:.2f} to within {NEAR} K of {setpoint} degC in {reached:.1f} s; "
        f"overshoot {overshoot:+.2f} K; worst |pv - sp| over the next {after[-1][0] - reached:.0f} s {worst:.2f} K; "
        f"valve up to {opened:.1f} %, settled at {settled_valve:.1f} %"
    )
    assert worst <= BAND
    assert opened == 100.0  # a 7 K error drives the valve to its output limit ...
    assert 0.0 < settled_valve < 100.0  # ... and the integrator did not wind up: it came back off the limit
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "cannot run" not in log, log[-3000:]  # every demo rule loaded
