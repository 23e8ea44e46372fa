"""The engine against a real pymodbus server: image, quality, events, live reconfiguration, snapshots."""

import asyncio
from datetime import UTC

from asgiref.sync import sync_to_async

from bms.engine import bus
from bms.engine.image import COMM_FAILURE, GOOD
from bms.engine.runner import Engine
from bms.events.models import Event
from bms.points.models import Device, Point
from drivers.simulator.building import SIGNALS, SimulatedBuilding
from tests.engine.conftest import eventually


async def test_values_enter_the_image_with_seq_and_quality(engine, plant):
    await eventually(lambda: engine.image.points["zone1_temp"].quality == GOOD, message="first poll")
    before = engine.image.seq
    await plant.set("zone1_temp", 23.5)
    state = await eventually(
        lambda: engine.image.points["zone1_temp"].value == 23.5 and engine.image.points["zone1_temp"],
        message="zone1_temp = 23.5",
    )
    assert state.seq > before
    assert state.quality == GOOD
    assert state.change_time.tzinfo is UTC
    assert engine.image.points["outside_temp"].value == 8.0  # 80 tenths, scaled by 0.1
    assert engine.image.points["meter_energy"].value == 1250.0  # Wh scaled to kWh


async def test_deadband_suppresses_small_changes(engine, plant):
    await eventually(lambda: engine.image.points["zone2_temp"].quality == GOOD)
    await plant.set("zone2_temp", 20.0)
    await eventually(lambda: engine.image.points["zone2_temp"].value == 20.0)
    seq = engine.image.points["zone2_temp"].seq
    await plant.set("zone2_temp", 20.005)  # deadband of zone temperatures is 0.01
    await plant.set("zone1_setpoint", 25.0)  # a marker change polled in the same cycle
    await eventually(lambda: engine.image.points["zone1_setpoint"].value == 25.0)
    assert engine.image.points["zone2_temp"].seq == seq
    assert engine.image.points["zone2_temp"].value == 20.0


async def test_communication_loss_and_recovery_are_logged_once(engine, plant):
    names = [name for name in engine.image.points if ":" not in name]  # points, not alarm entries
    await eventually(lambda: all(engine.image.points[n].quality == GOOD for n in names), message="all good")
    port = plant.port
    await plant.stop()
    await eventually(
        lambda: all(engine.image.points[n].quality == COMM_FAILURE for n in names), message="all comm_failure"
    )
    value_during_outage = engine.image.points["zone1_setpoint"].value
    assert value_during_outage == 21.0  # the last known value stays, marked by its quality
    cycles = engine.pollers["plant"].cycles
    await eventually(lambda: engine.pollers["plant"].cycles >= cycles + 5, message="polls during the outage")
    revived = SimulatedBuilding(port=port, step_seconds=None)
    await revived.start()
    try:
        await eventually(lambda: all(engine.image.points[n].quality == GOOD for n in names), message="recovery")
        # Only the communication events: on a starved machine a poll may also overrun stale_after, and
        # values_stale is then correct too; what matters here is one loss and one recovery, in that order.
        comm = Event.objects.filter(source="plant", kind__startswith="comm_").order_by("id")
        kinds = await eventually(
            lambda: (kinds := list(comm.values_list("kind", flat=True)))[-1:] == ["comm_restored"] and kinds,
            message="events",
            db=True,
        )
        assert kinds == ["comm_lost", "comm_restored"]
    finally:
        await revived.stop()


async def test_configuration_changes_reach_the_running_engine(engine, plant):
    await eventually(lambda: engine.image.points["zone1_temp"].quality == GOOD)
    device = await Device.objects.aget(name="plant")
    await Point.objects.acreate(device=device, name="extra_register", address="hr:30", data_type="uint16")
    await plant.server.context.async_setValues(0, 3, 30, [4242])
    await eventually(
        lambda: "extra_register" in engine.image.points and engine.image.points["extra_register"].value == 4242,
        message="new point polled",
    )
    await Point.objects.filter(name="extra_register").adelete()
    await eventually(lambda: "extra_register" not in engine.image.points, message="point removed")
    poller = engine.pollers["plant"]
    device.poll_interval = 0.1
    await sync_to_async(device.save)()
    await eventually(lambda: engine.pollers.get("plant") not in (None, poller), message="poller restarted")
    assert engine.pollers["plant"].config.poll_interval == 0.1
    device.enabled = False
    await sync_to_async(device.save)()
    await eventually(lambda: not engine.pollers and not engine.image.points, message="device disabled")


async def test_snapshot_requests_are_answered_over_the_channel_layer(engine, layer):
    await eventually(lambda: engine.image.points["zone1_temp"].quality == GOOD)
    reply_to = await layer.new_channel()
    await layer.send(bus.engine_channel(), {"type": bus.SNAPSHOT_REQUEST, "reply_to": reply_to})
    reply = await asyncio.wait_for(layer.receive(reply_to), 5)
    assert reply["type"] == bus.LIVE_SNAPSHOT
    assert reply["seq"] >= engine.image.points["zone1_temp"].seq
    assert reply["points"]["zone1_temp"][bus.ROW_QUALITY] == GOOD
    assert len([name for name in reply["points"] if ":" not in name]) == len(SIGNALS)  # and the demo's alarm entries


async def test_published_deltas_are_continuous_and_coalesced(engine, plant, layer):
    listener = await layer.new_channel()
    await layer.group_add(bus.LIVE_GROUP, listener)
    await eventually(lambda: engine.image.points["zone1_temp"].quality == GOOD)
    setpoints = [f"zone{z}_setpoint" for z in range(1, 5)] + ["ahu1_supply_setpoint", "ahu2_supply_setpoint"]
    wanted = {name: 25.25 + index for index, name in enumerate(setpoints)}
    for name, value in wanted.items():
        await plant.set(name, value)
    seen: dict[str, float] = {}
    messages = 0
    last = None
    while seen != wanted:
        delta = await asyncio.wait_for(layer.receive(listener), 5)
        if last is not None:
            assert delta["from"] == last, "deltas must chain without gaps"
        last = delta["seq"]
        carried = {n: s[0] for n, s in delta["points"].items() if n in wanted and s[bus.ROW_VALUE] == wanted[n]}
        if carried:
            messages += 1
            seen.update(carried)
    assert messages <= 2, f"{len(setpoints)} changes polled together went out in {messages} messages"


async def test_a_dead_device_is_retried_with_backoff_not_every_cycle(engine, plant):
    poller = engine.pollers["plant"]
    await eventually(lambda: poller.online is True, message="online")
    await plant.stop()
    await eventually(lambda: poller.online is False, message="offline")
    cycles, attempts = poller.cycles, poller.connect_attempts
    await eventually(lambda: poller.cycles >= cycles + 30, message="30 poll cycles")  # ~1.5 s at 50 ms
    # Backoff 0.5 s, 1 s, ...: a handful of attempts where the cycles alone would have made 30.
    assert poller.connect_attempts - attempts <= 4


async def test_writes_faster_than_the_poll_interval_keep_polling_on_schedule(engine, plant):
    device = await Device.objects.aget(name="plant")
    device.poll_interval = 0.5
    await sync_to_async(device.save)()
    await eventually(lambda: engine.pollers["plant"].config.poll_interval == 0.5, message="0.5 s interval")
    poller = engine.pollers["plant"]
    for _ in range(20):  # an early poll asked for every 50 ms for a second, as writes do
        poller.poll_soon()
        await asyncio.sleep(0.05)
    burst_end = poller.cycles
    # On the old schedule each early poll pushed the next regular one 0.5 s further: 10 s without a read.
    await eventually(lambda: poller.cycles >= burst_end + 3, wait=3.0, message="regular polls after the burst")


async def test_an_engine_sharing_its_process_with_the_web_side_warns_above_its_point_limit(engine, caplog):
    points = sum(len(device.points) for device in engine.config.devices)
    caplog.set_level("WARNING", logger="bms.engine.runner")
    await engine.reload()  # an engine of its own (one_process_points None): no limit
    engine.one_process_points = points
    await engine.reload()  # at the limit: still fine
    assert not [record for record in caplog.records if "BMS_ONE_PROCESS_POINTS" in record.getMessage()]
    engine.one_process_points = points - 1
    await engine.reload()
    (warning,) = [record for record in caplog.records if "BMS_ONE_PROCESS_POINTS" in record.getMessage()]
    assert f"{points} points" in warning.getMessage() and "--web-workers" in warning.getMessage()


def test_runbms_without_web_workers_gives_its_engine_the_one_process_limit(settings):
    from bms.node import Node

    settings.BMS_ONE_PROCESS_POINTS = 1234
    assert Node(with_web=True).engine.one_process_points == 1234
    assert Node().engine.one_process_points is None
    settings.BMS_ONE_PROCESS_POINTS = 0
    assert Node(with_web=True).engine.one_process_points is None


async def test_the_engine_spreads_its_devices_polls_over_the_interval(plant, layer):
    # Each poller gets its place in the interval (index / devices), so a hundred devices started together do
    # not answer in the same instant of every interval (bench/alarms.py: loop lag p99 29 -> 4 ms at 100 devices).
    # A device added later keeps the phase it started with: only pollers started together need to differ.
    for name in ("extra1", "extra2", "extra3"):
        await Device.objects.acreate(name=name, host="127.0.0.1", port=plant.port, poll_interval=1.0)
    engine = Engine(layer, publish_min_interval=0.0, config_check_interval=0.05)
    engine.spread_polls = True  # BMS_POLL_SPREAD=1
    await engine.start()
    try:
        phases = [engine.pollers[device.name].phase for device in engine.config.devices]
    finally:
        await engine.stop()
    assert phases == [0.0, 0.25, 0.5, 0.75]


def test_bms_poll_spread_is_off_unless_asked_for(settings):
    from bms.node import Node

    assert Node().engine.spread_polls is False  # every device on one grid, as before the setting
    settings.BMS_POLL_SPREAD = True
    assert Node().engine.spread_polls is True
