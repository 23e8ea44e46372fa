"""Schedules run by a real engine against the simulated building (real pymodbus server, real PostgreSQL).

Each test builds a short schedule from ``now`` (transitions a few seconds
ahead, in a time zone where the local day does not end meanwhile) and checks
the writes at the device's own write log: which values, how many times, and
when. Takeovers are played in one process: the engine that "died" is stopped,
its image (what the standby would hold) is loaded into a successor engine
bound to a later epoch.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import call_command
from django.db import connections

from bms.control.models import Command
from bms.engine.runner import Engine
from bms.points.models import Device, Point
from bms.schedules import evaluate as ev
from bms.schedules.engine import command_id
from bms.schedules.models import Schedule, ScheduleTarget
from bms.schedules.spec import TargetSpec
from drivers.simulator.building import SimulatedBuilding
from drivers.simulator.writelog import WriteLog
from tests.support.pair import ZONE_REGISTER, read_writes
from tests.support.proxy import Proxy
from tests.support.roles import ActiveIn
from tests.support.schedules import identity, local, site_zone, today_only, whole_second
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

POINT = "zone1_setpoint"
#: exact in float32, so the device's registers give back the very value
MORNING, DAY, OTHER = 19.5, 23.5, 20.25
DEFAULT_OF_POINT = 21.0  # the point's relinquish default, also the simulated device's initial value
#: how late a write may reach the device after its transition on a loaded two-core machine (seconds)
LATE = 1.0


@pytest.fixture
async def logged(tmp_path: Path, transactional_db):
    """The demo building with physics frozen and a write log; yields ``(building, log path)``."""
    log = tmp_path / "writes.jsonl"
    building = SimulatedBuilding(step_seconds=None)
    WriteLog(log).attach(building.server)
    await building.start()
    await sync_to_async(call_command)("loaddemo", modbus_port=building.port, poll_interval=0.05, verbosity=0)
    await sync_to_async(Point.objects.filter(name=POINT).update)(relinquish_default=DEFAULT_OF_POINT)
    try:
        yield building, log
    finally:
        await building.stop()
        await sync_to_async(connections.close_all)()


def engine(epoch: int = 1) -> Engine:
    return Engine(
        InMemoryChannelLayer(capacity=10000),
        role=ActiveIn(epoch),
        publish_min_interval=0.0,
        config_check_interval=0.05,
        command_scan_interval=0.05,
    )


def create_schedule(name: str, zone: ZoneInfo, entries: list[tuple[str, float | None]], **fields) -> Schedule:
    weekly = today_only(zone, entries)
    schedule = Schedule.objects.create(name=name, value_type="real", time_zone=str(zone), weekly=weekly, **fields)
    ScheduleTarget.objects.create(schedule=schedule, point=Point.objects.get(name=POINT), priority=12)
    return schedule


def writes(log: Path, point: str = POINT) -> list[tuple[float, float]]:
    """``(time, value)`` of every write of ``point``'s register received by the device, in order."""
    return [
        (write.ts, round(write.float32, 3))
        for write in read_writes(log)
        if write.table == "hr" and write.address == ZONE_REGISTER[point] and len(write.values) == 2
    ]


def values(log: Path, point: str = POINT) -> list[float]:
    return [value for _ts, value in writes(log, point)]


def schedule_commands() -> list[tuple[str, object, str]]:
    return list(Command.objects.filter(source="schedule").order_by("pk").values_list("command_id", "value", "status"))


def entry(node: Engine, name: str) -> dict:
    state = node.image.points.get(f"schedule:{name}")
    return state.value if state is not None and isinstance(state.value, dict) else {}


async def test_the_value_in_force_then_each_transition_is_written_once_at_its_time(logged):
    _building, log = logged
    zone = site_zone()
    day, off = whole_second(4), whole_second(7)
    schedule = await sync_to_async(create_schedule)(
        "office", zone, [("00:00", MORNING), (local(day, zone), DAY), (local(off, zone), None)]
    )
    node = engine()
    await node.start()
    try:
        # At start: the value in force (set at midnight), written once.
        await eventually(lambda: values(log) == [MORNING], 10, "the value in force written at start")
        shown = entry(node, "office")
        assert shown["active"] and shown["value"] == MORNING and shown["done"].endswith("T000000:weekly")
        assert shown["next_us"] == int(day.timestamp() * 1_000_000) and shown["next_value"] == DAY

        await eventually(lambda: len(values(log)) >= 2, 15, "the day value written")
        await eventually(lambda: len(values(log)) >= 3, 15, "the relinquish: the point's default written")
        await eventually(lambda: {s for _c, _v, s in schedule_commands()} == {"succeeded"}, 10, "outcomes", db=True)
        shown = entry(node, "office")
        assert node.functions[0].stats()["transitions"] == 3
    finally:
        await node.stop()
    (_start_ts, first), (day_ts, second), (off_ts, third) = writes(log)
    print(f"day value {day_ts - day.timestamp():+.3f} s, relinquish {off_ts - off.timestamp():+.3f} s late")
    assert (first, second, third) == (MORNING, DAY, DEFAULT_OF_POINT)
    assert day.timestamp() <= day_ts <= day.timestamp() + LATE
    assert off.timestamp() <= off_ts <= off.timestamp() + LATE
    # The slot's story: schedule commands with stable ids, the last a relinquish (null) of slot 12.
    commands = await sync_to_async(schedule_commands)()
    assert [value for _cid, value, _status in commands] == [MORNING, DAY, None]
    off_identity = identity(schedule.pk, zone, local(off, zone), "default")
    assert commands[-1][0] == command_id(off_identity, None, 0, TargetSpec(POINT, 12))
    assert shown["done"] == off_identity and shown["value"] is None and shown["written"] is None


async def test_a_value_that_met_its_device_away_is_written_once_the_device_answers_again(logged):
    """The device is unreachable when the value in force is commanded: the schedule makes it again (back-off) and
    it reaches the device once, without waiting for the next transition."""
    building, log = logged
    proxy = Proxy(building.port)
    try:
        await sync_to_async(Device.objects.filter(name="plant").update)(port=proxy.port, timeout=0.3)
        proxy.cut()
        zone = site_zone()
        await sync_to_async(create_schedule)("office", zone, [("00:00", MORNING)])
        node = engine()
        await node.start()
        try:
            await eventually(
                lambda: any(status in ("failed", "unknown") for _c, _v, status in schedule_commands()),
                10,
                "the first command did not reach the device",
                db=True,
            )
            assert values(log) == []
            proxy.restore()
            await eventually(lambda: values(log) == [MORNING], 20, "the value in force written once the device answers")
            await eventually(lambda: schedule_commands()[-1][2] == "succeeded", 10, "recorded", db=True)
            retries = node.functions[0].stats()["retries"]
        finally:
            await node.stop()
    finally:
        proxy.close()
    commands = await sync_to_async(schedule_commands)()
    assert [value for _c, value, _s in commands] == [MORNING] * len(commands) and len(commands) >= 2, commands
    assert all(status in ("failed", "unknown") for _c, _v, status in commands[:-1]), commands
    first_id = commands[0][0]
    assert [cid for cid, _v, _s in commands[1:]] == [f"{first_id}:e1r{n}" for n in range(1, len(commands))]
    assert retries == len(commands) - 1
    assert values(log) == [MORNING]  # exactly once at the device


async def test_a_successor_does_the_next_transition_once_and_not_the_one_done_before(logged):
    _building, log = logged
    zone = site_zone()
    day = whole_second(5)
    await sync_to_async(create_schedule)("office", zone, [("00:00", MORNING), (local(day, zone), DAY)])
    old = engine(epoch=1)
    await old.start()
    try:
        await eventually(lambda: values(log) == [MORNING], 10, "the value in force written by the first node")
        await eventually(lambda: schedule_commands() and schedule_commands()[0][2] == "succeeded", 10, db=True)
    finally:
        await old.stop()  # the old node is gone before the transition
    replicated = old.image.snapshot_rows()
    new = engine(epoch=2)
    new.image.load_rows(replicated["seq"], replicated["points"])  # what the standby holds
    await new.start()
    try:
        await eventually(lambda: entry(new, "office").get("epoch") == 2, 10, "the successor publishes the entry")
        await eventually(lambda: len(values(log)) >= 2, 15, "the transition done by the successor")
        await eventually(lambda: new.sink.repeated >= 1 and new.sink.waiting == 0, 10, "the repeat answered")
        # the device answered before the outcome is on the row
        await eventually(lambda: [s for _c, _v, s in schedule_commands()] == ["succeeded"] * 2, 10, db=True)
    finally:
        await new.stop()
    (_ts, first), (day_ts, second) = writes(log)
    assert (first, second) == (MORNING, DAY)  # the morning value is not written again
    assert day.timestamp() <= day_ts <= day.timestamp() + LATE
    commands = await sync_to_async(schedule_commands)()
    assert [(value, status) for _cid, value, status in commands] == [(MORNING, "succeeded"), (DAY, "succeeded")]


async def test_an_occurrence_recorded_by_a_node_that_died_before_sending_it_is_done_once_by_the_successor(logged):
    """The old node recorded the command and published the entry, then died before its executor claimed it."""
    _building, log = logged
    zone = site_zone()
    schedule = await sync_to_async(create_schedule)("office", zone, [("00:00", MORNING)])
    spec = await sync_to_async(lambda: Schedule.objects.get(pk=schedule.pk).spec())()
    state = spec.value_at(datetime.now(UTC))
    done = state.occurrence.identity
    cid = command_id(done, MORNING, 0, TargetSpec(POINT, 12))

    def recorded_by_the_old_node() -> None:
        from bms.control.services import submit_write

        submit_write(
            user=None, point_name=POINT, value=MORNING, command_id=cid, priority=12, source="schedule", epoch=1
        )

    await sync_to_async(recorded_by_the_old_node)()
    new = engine(epoch=2)
    new.image.put(
        spec.entry, {"active": True, "value": MORNING, "done": done, "rev": 0, "written": MORNING}, "good", None
    )
    await new.start()
    try:
        await eventually(lambda: values(log) == [MORNING], 10, "the value written once by the successor")
        await eventually(
            lambda: len(schedule_commands()) == 2 and schedule_commands()[1][2] == "succeeded", 10, db=True
        )
    finally:
        await new.stop()
    commands = await sync_to_async(schedule_commands)()
    assert commands == [(cid, MORNING, "expired"), (f"{cid}:e2", MORNING, "succeeded")]
    assert values(log) == [MORNING]


async def test_transitions_missed_while_no_node_ran_are_not_replayed_only_the_one_in_force_is_done(logged):
    _building, log = logged
    zone = site_zone()
    first, second = whole_second(-20), whole_second(-10)
    schedule = await sync_to_async(create_schedule)(
        "office", zone, [("00:00", MORNING), (local(first, zone), DAY), (local(second, zone), OTHER)]
    )
    morning = identity(schedule.pk, zone, "00:00:00")
    new = engine(epoch=3)
    # The last node in control did the morning occurrence; then both were down over two transitions.
    new.image.put(
        f"schedule:{schedule.name}",
        {"active": True, "value": MORNING, "done": morning, "rev": 0, "written": MORNING},
        "good",
        None,
    )
    await new.start()
    try:
        await eventually(lambda: values(log) == [OTHER], 10, "the value in force written")
        await eventually(lambda: schedule_commands() and schedule_commands()[-1][2] == "succeeded", 10, db=True)
    finally:
        await new.stop()
    assert values(log) == [OTHER]
    assert [value for _cid, value, _status in await sync_to_async(schedule_commands)()] == [OTHER]


async def test_a_configuration_change_writes_a_changed_value_and_new_targets_only(logged):
    _building, log = logged
    zone = site_zone()
    schedule = await sync_to_async(create_schedule)("office", zone, [("00:00", MORNING)])
    node = engine()
    await node.start()
    try:
        await eventually(lambda: values(log) == [MORNING], 10, "the value in force written")

        def describe() -> None:
            row = Schedule.objects.get(pk=schedule.pk)
            row.description = "offices, second floor"
            row.save()

        revision = node.config.revision
        await sync_to_async(describe)()
        await eventually(lambda: node.config.revision > revision, 10, "the description change loaded")

        def change_value() -> None:
            row = Schedule.objects.get(pk=schedule.pk)
            row.weekly = {day: [{"time": "00:00", "value": OTHER}] for day in row.weekly}
            row.save()

        await sync_to_async(change_value)()
        await eventually(lambda: values(log) == [MORNING, OTHER], 10, "the changed value written")

        def add_target() -> None:
            ScheduleTarget.objects.create(
                schedule=Schedule.objects.get(pk=schedule.pk), point=Point.objects.get(name="zone2_setpoint")
            )

        await sync_to_async(add_target)()
        await eventually(lambda: values(log, "zone2_setpoint") == [OTHER], 10, "the new target written")
        await eventually(lambda: {s for _c, _v, s in schedule_commands()} == {"succeeded"}, 10, db=True)
    finally:
        await node.stop()
    assert values(log) == [MORNING, OTHER]  # the first target is not written again
    assert len(await sync_to_async(schedule_commands)()) == 3


def test_timers_are_utc_instants_after_the_spring_forward_gap_and_command_ids_are_stable_and_bounded():
    """Europe/Berlin, 29 March 2026: an entry at 02:30 (inside the gap) takes effect at 03:00 CEST = 01:00 UTC."""
    definition = ev.ScheduleDef(
        key="sch7",
        time_zone="Europe/Berlin",
        weekly=tuple((ev.TimeValue(ev.parse_time("02:30"), 1.0),) if day == 6 else () for day in range(7)),
    )
    from bms.schedules.spec import ScheduleSpec

    spec = ScheduleSpec(7, "dst", "real", definition, (TargetSpec(POINT, 16),))
    before = datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)
    upcoming = spec.next_transitions(before, 1)[0]
    assert upcoming.at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC) and upcoming.at.tzinfo is UTC
    assert upcoming.identity == "sch7:20260329T023000:weekly"
    assert spec.value_at(upcoming.at).occurrence == upcoming
    assert date(2026, 3, 29).weekday() == 6
    assert command_id(upcoming.identity, 1.0, 0, TargetSpec(POINT, 16)).startswith("sched:sch7:20260329T023000:")
    assert command_id(upcoming.identity, 1.0, 0, TargetSpec(POINT, 16)) != command_id(
        upcoming.identity, 1.0, 1, TargetSpec(POINT, 16)
    )
    long_identity = "sch1234567890:20260329T023000:ex1234567890123456789"
    assert len(command_id(long_identity, 1.0, 0, TargetSpec("p" * 128, 16))) <= 64
