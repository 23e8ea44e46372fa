"""Server-kept priority arrays (issue 12 item 1, ADR 0016): arbitration by a real engine, down to a real device.

The simulated Modbus building logs every write request it receives, so each
test counts what reached the device, not what the server believes it sent.
Priority arbitration: an override takes control, a lower write only sets its
slot (``held``), a relinquish hands control down (to a lower slot, the
relinquish default, or nothing), an override ends by itself; a new epoch
re-asserts the effective value once and never re-sends an old command.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connections

from bms.control import priority as arrays
from bms.control.models import Command
from bms.control.services import CommandRejected, submit_write
from bms.engine import store
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.runner import Engine
from bms.points.models import Point
from drivers.simulator.building import SimulatedBuilding
from drivers.simulator.writelog import WriteLog
from tests.support.pair import ZONE_REGISTER, setpoint_writes
from tests.support.roles import ActiveIn
from tests.support.waiting import eventually

POINT = "zone1_setpoint"
REGISTER = ZONE_REGISTER[POINT]


@pytest.fixture
async def logged(tmp_path: Path, transactional_db):
    """The demo building with physics frozen and a write log; yields ``(building, log path)``."""
    log = tmp_path / "writes.jsonl"
    building = SimulatedBuilding(step_seconds=None)
    WriteLog(log).attach(building.server)
    await building.start()
    await sync_to_async(call_command)("loaddemo", modbus_port=building.port, poll_interval=0.05, verbosity=0)
    try:
        yield building, log
    finally:
        await building.stop()
        await sync_to_async(connections.close_all)()


def start_engine(epoch: int = 0) -> Engine:
    role = ActiveIn(epoch) if epoch else None
    return Engine(
        InMemoryChannelLayer(),
        role=role,
        publish_min_interval=0.0,
        config_check_interval=0.05,
        command_scan_interval=0.05,
    )


@pytest.fixture
async def engine(logged):
    node = start_engine()
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def write(value, priority=None, command_id=None, epoch=0, **extra) -> Command:
    """Submit through the one write path (as code) and wait for the outcome."""
    submission = await sync_to_async(submit_write)(
        user=None,
        point_name=POINT,
        value=value,
        priority=priority,
        command_id=command_id,
        source="code",
        epoch=epoch,
        **extra,
    )
    pk = submission.command.pk
    return await eventually(
        lambda: (c := Command.objects.get(pk=pk)).status in Command.FINAL and c, wait=10, db=True, message="final"
    )


def writes_of(log: Path, value: float) -> int:
    return setpoint_writes(log)[(REGISTER, value)]


async def array() -> dict:
    point = await sync_to_async(Point.objects.select_related("device").get)(name=POINT)
    return await sync_to_async(arrays.describe)(point)


async def test_an_override_takes_control_and_a_lower_write_only_sets_its_slot(engine, logged):
    building, log = logged
    base = await write(21.5)  # no priority: the default slot 16
    assert (base.status, base.priority) == (Command.SUCCEEDED, 16), base.error
    assert await building.get(POINT) == 21.5
    manual = await write(23.0, priority=8)
    assert manual.status == Command.SUCCEEDED and "slot 8 set and in control" in manual.error
    assert await building.get(POINT) == 23.0
    lower = await write(22.0, priority=16)
    assert (lower.status, lower.observed) == (Command.HELD, True)
    assert "priority 8 (23.0) is in control" in lower.error and "not written" in lower.error
    assert await building.get(POINT) == 23.0
    assert writes_of(log, 22.0) == 0  # nothing reached the device
    shown = await array()
    assert (shown["effective_value"], shown["effective_priority"]) == (23.0, 8)
    slots = {slot["priority"]: slot for slot in shown["slots"]}
    assert len(slots) == 16 and slots[16]["value"] == 22.0 and slots[8]["command_id"] == manual.command_id
    assert slots[1]["value"] is None
    higher = await write(24.0, priority=3)  # code may write any priority; it overrides the operator
    assert higher.status == Command.SUCCEEDED and await building.get(POINT) == 24.0


async def test_a_relinquish_hands_control_to_the_next_slot(engine, logged):
    building, log = logged
    await write(21.5, priority=16)
    await write(23.0, priority=8)
    released = await write(None, priority=8)
    assert released.status == Command.SUCCEEDED
    assert "slot 8 cleared; 21.5 from priority 16 written" in released.error
    assert await building.get(POINT) == 21.5
    assert writes_of(log, 21.5) == 2  # its own write, then the hand-down; nothing else
    shown = await array()
    assert (shown["effective_value"], shown["effective_priority"]) == (21.5, 16)
    # Releasing a slot below control changes the slot, not the device.
    await write(25.0, priority=4)
    below = await write(None, priority=16)
    assert below.status == Command.HELD and "slot 16 cleared; priority 4" in below.error
    assert await building.get(POINT) == 25.0


async def test_an_empty_array_writes_the_relinquish_default_or_leaves_the_device(engine, logged):
    building, log = logged
    await write(22.5, priority=8)
    left = await write(None, priority=8)
    assert left.status == Command.SUCCEEDED and "left as it is" in left.error
    assert await building.get(POINT) == 22.5 and writes_of(log, 22.5) == 1
    await Point.objects.filter(name=POINT).aupdate(relinquish_default=20.0)
    await write(22.75, priority=8)
    released = await write(None, priority=8)
    assert released.status == Command.SUCCEEDED and "20.0 from the relinquish default written" in released.error
    assert await building.get(POINT) == 20.0 and writes_of(log, 20.0) == 1
    shown = await array()
    assert (shown["effective_value"], shown["effective_priority"], shown["relinquish_default"]) == (20.0, None, 20.0)


async def test_an_override_ends_by_itself_and_the_engine_writes_the_next_value(engine, logged):
    building, log = logged
    await write(21.25, priority=16)
    override = await write(23.5, priority=8, expires_in=1)
    assert override.status == Command.SUCCEEDED and override.hold_until is not None
    assert await building.get(POINT) == 23.5
    await device_reaches(building, 21.25)
    # The device holds the value a moment before the engine records the outcome: wait for the final row.
    final = Command.objects.filter(source=Command.ENGINE, status__in=Command.FINAL)
    await eventually(lambda: final.exists(), message="the engine's write recorded", db=True)
    engine_rows = [c async for c in Command.objects.filter(source=Command.ENGINE)]
    assert len(engine_rows) == 1, engine_rows
    row = engine_rows[0]
    assert (row.status, row.value, row.priority, row.observed) == (Command.SUCCEEDED, 21.25, 16, True)
    assert row.started_at >= override.hold_until
    await asyncio.sleep(0.5)  # scans go on: the expiry is handled once
    assert writes_of(log, 21.25) == 2 and writes_of(log, 23.5) == 1
    assert await Command.objects.filter(source=Command.ENGINE).acount() == 1
    shown = await array()
    assert (shown["effective_value"], shown["effective_priority"]) == (21.25, 16)
    assert shown["slots"][7]["value"] is None  # slot 8


async def test_an_override_end_handled_again_after_a_lost_answer_writes_the_device_once(logged):
    # The trip that records the engine's write for an override's end commits, and the connection breaks before
    # its answer (injected: no real part does it on demand): the engine handles the same end again, which must
    # not record (and send) a second write.
    _, log = logged
    node = start_engine()
    to_database = node.commands.run_in_db
    lost: list[list[int]] = []

    async def losing(func, *args):
        result = await to_database(func, *args)
        if func is store.expire_holds and result and not lost:
            lost.append(result)
            raise DatabaseUnavailable("consuming input failed: server closed the connection unexpectedly")
        return result

    node.commands.run_in_db = losing
    await node.start()
    try:
        await write(21.25, priority=16)
        await write(23.5, priority=8, expires_in=1)
        final = Command.objects.filter(source=Command.ENGINE, status__in=Command.FINAL)
        await eventually(lambda: final.exists(), wait=10, message="the engine's write recorded", db=True)
        await asyncio.sleep(0.5)  # scans go on: the end is handled again after the lost answer, once
    finally:
        await node.stop()
    assert len(lost) == 1
    assert await Command.objects.filter(source=Command.ENGINE).acount() == 1
    assert writes_of(log, 21.25) == 2 and writes_of(log, 23.5) == 1


async def test_an_override_that_ends_below_control_changes_nothing_on_the_device(engine, logged):
    building, log = logged
    await write(21.0, priority=16)
    await write(22.0, priority=10, expires_in=1)
    await write(26.0, priority=2)
    await asyncio.sleep(1.6)
    assert await building.get(POINT) == 26.0
    assert not await Command.objects.filter(source=Command.ENGINE).aexists()
    assert writes_of(log, 21.0) == 1


async def device_reaches(building: SimulatedBuilding, value: float, wait: float = 5.0) -> None:
    """Wait until the device's register holds ``value`` (what clients wrote, read from its datastore)."""
    deadline = asyncio.get_running_loop().time() + wait
    while await building.get(POINT) != value:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the device never held {value} (it holds {await building.get(POINT)})")
        await asyncio.sleep(0.01)


async def test_a_new_epoch_reasserts_the_effective_value_once_and_resends_no_command(logged):
    building, log = logged
    first = start_engine(epoch=4)
    await first.start()
    try:
        await write(21.5, priority=16, epoch=4)
        held_hold = await write(23.25, priority=8, epoch=4, expires_in=1)  # ends while no engine runs
        await write(22.5, priority=12, epoch=4)
    finally:
        await first.stop()
    assert held_hold.status == Command.SUCCEEDED
    await building.set(POINT, 19.0)  # changed at the panel meanwhile
    await asyncio.sleep(1.2)  # the override's end passes while no node is in control
    before = {c.command_id: (c.status, c.origin_seq) async for c in Command.objects.all()}
    second = start_engine(epoch=5)
    await second.start()
    try:
        await device_reaches(building, 22.5)
        await asyncio.sleep(0.5)
        rows = [c async for c in Command.objects.filter(source=Command.ENGINE)]
        assert len(rows) == 1 and (rows[0].status, rows[0].accepted_epoch, rows[0].priority) == (
            Command.SUCCEEDED,
            5,
            12,
        )
        # No old command was touched, let alone sent again.
        after = {c.command_id: (c.status, c.origin_seq) async for c in Command.objects.exclude(source=Command.ENGINE)}
        assert after == before
        assert writes_of(log, 22.5) == 1 and writes_of(log, 23.25) == 1
    finally:
        await second.stop()


async def test_a_new_epoch_writes_nothing_where_the_device_already_holds_the_effective_value(logged):
    _, log = logged
    first = start_engine(epoch=4)
    await first.start()
    try:
        await write(22.25, priority=8, epoch=4)
    finally:
        await first.stop()
    second = start_engine(epoch=5)
    await second.start()
    try:
        await eventually(lambda: second.commands.asserted_epoch == 5, message="the new epoch's arrays looked at")
        await eventually(lambda: not second.commands._reassert, message="the device read and compared")
        await asyncio.sleep(0.3)
        assert not await Command.objects.filter(source=Command.ENGINE).aexists()
        assert writes_of(log, 22.25) == 1
    finally:
        await second.stop()


def test_operators_write_priority_8_or_the_default_and_engineers_any(logged_db):
    otto = User.objects.create_user("otto", password="x")
    otto.groups.add(Group.objects.get(name="operator"))
    erin = User.objects.create_user("erin", password="x")
    erin.groups.add(Group.objects.get(name="engineer"))
    for priority in (1, 7, 16):
        with pytest.raises(CommandRejected) as refused:
            submit_write(user=otto, point_name=POINT, value=22.0, priority=priority, source="api")
        assert refused.value.code == "forbidden" and "priority 8" in refused.value.message
    assert submit_write(user=otto, point_name=POINT, value=22.0, priority=8, source="api").created
    assert submit_write(user=otto, point_name=POINT, value=None, priority=8, source="api").created
    assert submit_write(user=otto, point_name=POINT, value=22.0, source="api").command.priority == 16
    assert submit_write(user=erin, point_name=POINT, value=22.0, priority=2, source="api").created


def test_override_ends_are_checked(logged_db):
    for expires_in in (0, 0.5, -1, 1e9, "60", True):
        with pytest.raises(CommandRejected) as refused:
            submit_write(user=None, point_name=POINT, value=22.0, priority=8, source="code", expires_in=expires_in)
        assert refused.value.code == "invalid" and "expires_in" in refused.value.message
    with pytest.raises(CommandRejected, match="relinquish cannot have expires_in"):
        submit_write(user=None, point_name=POINT, value=None, priority=8, source="code", expires_in=60)
    with pytest.raises(CommandRejected, match="keeps its own array"):
        submit_write(user=None, point_name="chw_setpoint", value=9.0, priority=8, source="code", expires_in=60)
    command = submit_write(user=None, point_name=POINT, value=22.0, priority=8, source="code", expires_in=60).command
    assert 59 < (command.hold_until - command.created_at).total_seconds() <= 60.1
    # The end is part of the payload: the same id with another end is another write.
    with pytest.raises(CommandRejected) as refused:
        submit_write(
            user=None,
            point_name=POINT,
            value=22.0,
            priority=8,
            source="code",
            expires_in=61,
            command_id=command.command_id,
        )
    assert refused.value.code == "conflict"


@pytest.fixture
def logged_db(db):
    call_command("loaddemo", modbus_port=15999, bacnet_port=47999, verbosity=0)
