"""The one write path: permission, validation, idempotency, audit; and execution by a real engine."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.management import call_command

from bms.control.models import AuditEntry, Command
from bms.control.services import CommandRejected, submit_write
from bms.engine import store
from bms.engine.role import RoleGate
from bms.engine.runner import Engine
from tests.engine.conftest import eventually
from tests.support.roles import ActiveIn


async def settled(pk: int) -> Command:
    """The command once it is final (the engine runs on; the row is polled on a thread)."""
    return await eventually(
        lambda: (c := Command.objects.get(pk=pk)).status in Command.FINAL and c, db=True, message="final"
    )


@pytest.fixture
def demo(db):
    call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)
    return User.objects.get(username="demo")


def test_valid_write_is_recorded_with_an_audit_entry(demo):
    submission = submit_write(user=demo, point_name="zone1_setpoint", value=22.5, command_id="c-1", source="web")
    command = submission.command
    assert submission.created
    assert (command.status, command.value, command.username, command.source) == ("pending", 22.5, "demo", "web")
    audit = AuditEntry.objects.get(action="write.requested")
    assert audit.detail["command_id"] == "c-1"


def test_same_id_and_payload_is_one_command(demo):
    first = submit_write(user=demo, point_name="zone1_setpoint", value=22.5, command_id="same")
    again = submit_write(user=demo, point_name="zone1_setpoint", value=22.5, command_id="same")
    assert not again.created
    assert again.command.pk == first.command.pk
    assert Command.objects.count() == 1


def test_same_id_with_another_payload_is_refused(demo):
    submit_write(user=demo, point_name="zone1_setpoint", value=22.5, command_id="same")
    with pytest.raises(CommandRejected) as refused:
        submit_write(user=demo, point_name="zone1_setpoint", value=23.0, command_id="same")
    assert refused.value.code == "conflict"
    assert refused.value.status == 409
    with pytest.raises(CommandRejected):
        submit_write(user=demo, point_name="zone2_setpoint", value=22.5, command_id="same")
    assert Command.objects.get().value == 22.5


@pytest.mark.parametrize(
    ("point", "value", "code"),
    [
        ("zone1_setpoint", 28.5, "out_of_range"),
        ("zone1_setpoint", 14.9, "out_of_range"),
        ("zone1_setpoint", "21", "wrong_type"),
        ("zone1_setpoint", None, "wrong_type"),
        ("zone1_setpoint", float("nan"), "wrong_type"),
        ("zone1_setpoint", False, "wrong_type"),
        ("ahu1_damper", 101, "out_of_range"),
        ("ahu1_damper", 10.5, "wrong_type"),
        ("ahu1_fan_cmd", 2, "wrong_type"),
        ("ahu1_fan_cmd", "true", "wrong_type"),
        ("zone1_temp", 20, "read_only"),
        ("meter_energy", 1, "read_only"),
        ("nope", 1, "unknown_point"),
        (["zone1_setpoint"], 21, "invalid"),
    ],
)
def test_bad_writes_are_refused_and_record_no_command(demo, point, value, code):
    with pytest.raises(CommandRejected) as refused:
        submit_write(user=demo, point_name=point, value=value)
    assert refused.value.code == code
    assert refused.value.message
    assert not Command.objects.exists()
    assert list(AuditEntry.objects.filter(action__startswith="write.").values_list("action", flat=True)) == [
        "write.rejected"
    ]


def test_bad_command_ids_and_priorities_are_refused(demo):
    for kwargs in (
        {"command_id": "has space"},
        {"command_id": "x" * 65},
        {"command_id": 5},
        {"priority": 0},
        {"priority": 17},
    ):
        with pytest.raises(CommandRejected) as refused:
            submit_write(user=demo, point_name="zone1_setpoint", value=21.0, **kwargs)
        assert refused.value.code == "invalid", kwargs
    assert not Command.objects.exists()


def test_writes_need_the_permission(demo):
    viewer = User.objects.create_user("viewer", password="x")
    with pytest.raises(CommandRejected) as refused:
        submit_write(user=viewer, point_name="zone1_setpoint", value=21.0)
    assert refused.value.code == "forbidden"
    assert refused.value.status == 403
    assert not Command.objects.exists()


def test_a_bool_accepts_true_false_and_0_1(demo):
    assert submit_write(user=demo, point_name="ahu1_fan_cmd", value=0).command.value is False
    assert submit_write(user=demo, point_name="ahu2_fan_cmd", value=True).command.value is True


# --- execution by a real engine against the simulated building ------------------------------


async def test_engine_executes_a_command_once(engine, plant):
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone3_setpoint", value=26.5, command_id="exec-1", source="code"
    )
    await eventually(
        lambda: Command.objects.get(pk=submission.command.pk).status == Command.SUCCEEDED, db=True, message="done"
    )
    assert await plant.get("zone3_setpoint") == 26.5
    await plant.set("zone3_setpoint", 19.0)  # changed at the panel afterwards
    executed = engine.commands.executed
    await engine.commands.execute(submission.command.pk)  # a duplicated wake-up
    again = await sync_to_async(submit_write)(
        user=None, point_name="zone3_setpoint", value=26.5, command_id="exec-1", source="code"
    )
    assert not again.created
    assert engine.commands.executed == executed
    assert await plant.get("zone3_setpoint") == 19.0


async def test_a_command_to_an_unreachable_device_fails_with_a_reason(engine, plant):
    await plant.stop()
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone1_setpoint", value=24.0, command_id="down-1", source="code"
    )
    command = await settled(submission.command.pk)
    assert command.status == Command.FAILED
    assert "127.0.0.1" in command.error


class Standby(RoleGate):
    """A role provider for a node that is not active (what the redundancy layer will hand in)."""

    @property
    def active(self) -> bool:
        return False

    @property
    def epoch(self) -> int:
        return 7


async def test_an_inactive_node_executes_nothing(plant, layer):
    node = Engine(layer, role=Standby(), config_check_interval=0.05, command_scan_interval=0.05)
    await node.start()
    try:
        submission = await sync_to_async(submit_write)(
            user=None, point_name="zone1_setpoint", value=24.0, command_id="standby-1", source="code"
        )
        await eventually(lambda: node.commands.scans >= 5, message="five command scans")
        assert not node.pollers["plant"]._task  # no field I/O either
        assert (await Command.objects.aget(pk=submission.command.pk)).status == Command.PENDING
        assert await plant.get("zone1_setpoint") == 21.0
    finally:
        await node.stop()


async def test_a_command_interrupted_by_a_crash_is_marked_unknown_not_resent(plant, layer):
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone1_setpoint", value=24.0, command_id="crash-1", source="code"
    )
    claimed = await sync_to_async(store.claim_command)(submission.command.pk, "main", 0)  # the engine died after this
    assert claimed.status == Command.EXECUTING
    node = Engine(layer, config_check_interval=0.05, command_scan_interval=0.05)
    await node.start()
    try:
        command = await Command.objects.aget(pk=submission.command.pk)
        assert command.status == Command.UNKNOWN
        assert "check the device" in command.error
        assert await plant.get("zone1_setpoint") == 21.0
    finally:
        await node.stop()


async def test_a_command_the_standby_did_not_confirm_is_not_sent(engine, plant):
    # The pair's barrier answers False when a connected standby did not store the
    # claimed command in time (a real standby cannot be made that slow on demand).
    async def unconfirmed(command):
        return False

    engine.commands.barrier = unconfirmed
    before = await plant.get("zone3_setpoint")
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone3_setpoint", value=before + 1, command_id="unconfirmed-1", source="code"
    )
    command = await settled(submission.command.pk)
    assert command.status == Command.FAILED and "not sent" in command.error
    assert await plant.get("zone3_setpoint") == before


async def test_a_command_bound_to_an_earlier_epoch_is_never_sent_and_ends_expired(plant, layer):
    # Accepted by this node while it was active in epoch 4; control moved since (now epoch 5).
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone1_setpoint", value=24.0, command_id="old-epoch-1", source="code", epoch=4
    )
    node = Engine(layer, role=ActiveIn(5), config_check_interval=0.05, command_scan_interval=0.05)
    await node.start()
    try:
        command = await settled(submission.command.pk)
        assert (command.status, command.observed) == (Command.EXPIRED, False)
        assert "not sent by main" in command.error and "epoch 4" in command.error
        await eventually(lambda: node.commands.scans >= 3, message="more scans")
        assert await plant.get("zone1_setpoint") == 21.0
    finally:
        await node.stop()


async def test_a_command_not_started_within_its_lifetime_is_expired_and_never_sent(plant, layer):
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone2_setpoint", value=24.0, command_id="late-1", source="code", lifetime=0.1
    )
    assert (submission.command.expires_at - submission.command.created_at).total_seconds() < 0.2
    await asyncio.sleep(0.3)  # the engine is not running yet: a paused node
    node = Engine(layer, config_check_interval=0.05, command_scan_interval=0.05)
    await node.start()
    try:
        command = await settled(submission.command.pk)
        assert (command.status, command.observed) == (Command.EXPIRED, True)
        assert "lifetime" in command.error
        assert await plant.get("zone2_setpoint") == 21.0
    finally:
        await node.stop()


def test_a_lifetime_out_of_bounds_is_refused(demo):
    for lifetime in (0, -1, 1e9, "5", True):
        with pytest.raises(CommandRejected) as refused:
            submit_write(user=demo, point_name="zone1_setpoint", value=22.5, lifetime=lifetime)
        assert refused.value.code == "invalid" and "lifetime" in refused.value.message
    assert not Command.objects.exists()


def test_the_answer_shows_the_lifetime_and_binding(demo):
    command = submit_write(user=demo, point_name="zone1_setpoint", value=22.5, epoch=3, lifetime=7).command
    shown = command.as_dict()
    assert (shown["lifetime_seconds"], shown["accepted_epoch"], shown["accepted_by"]) == (7.0, 3, "main")
    assert shown["expires_at"] == command.expires_at.isoformat()


def test_the_claim_settles_unsendable_rows_once_per_scan_interval_not_at_every_wake(settings, monkeypatch):
    """A scan runs at every submitted command; settling rows that are never sendable on each of them cost
    three database trips a scan (bench/logic.py). A targeted claim and the first claim of an epoch always do."""
    from bms.engine import commands

    clock = [1000.0]
    monkeypatch.setattr(commands.time, "monotonic", lambda: clock[0])
    executor = commands.CommandExecutor(None, dict, ActiveIn(5), scan_interval=0.5, node="main")  # type: ignore[arg-type]
    assert executor._settle_now(5, None)  # the first of the epoch
    assert not executor._settle_now(5, None)  # woken again at once
    clock[0] += 0.3
    assert not executor._settle_now(5, None)
    assert executor._settle_now(5, [42])  # an operator's command claimed now: its own row may need settling
    assert executor._settle_now(6, None)  # control taken again: the old epoch's rows at once
    clock[0] += 0.49
    assert not executor._settle_now(6, None)
    clock[0] += 0.02
    assert executor._settle_now(6, None)  # a scan interval since the last


async def test_a_row_of_an_earlier_epoch_is_settled_while_commands_keep_waking_the_executor(plant, layer):
    """The settling of unsendable rows is throttled, not starved: with a wake every 20 ms it still comes."""
    node = Engine(layer, role=ActiveIn(5), config_check_interval=0.05, command_scan_interval=0.2)
    await node.start()
    waking = True

    async def keep_waking() -> None:
        while waking:
            node.commands.wake()
            await asyncio.sleep(0.02)

    waker = asyncio.create_task(keep_waking())
    try:
        await eventually(lambda: node.commands.scans >= 5, message="scans")
        # replication delivers a row the former active node accepted in epoch 4
        submission = await sync_to_async(submit_write)(
            user=None, point_name="zone1_setpoint", value=24.0, command_id="late-old-epoch", source="code", epoch=4
        )
        command = await settled(submission.command.pk)
        assert (command.status, command.observed) == (Command.EXPIRED, False)
        assert await plant.get("zone1_setpoint") == 21.0
    finally:
        waking = False
        await waker
        await node.stop()
