"""The node's health points and the trend spool alarm: created by migrate, read by the node driver, raised
on the real engine before the spool is full."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import call_command
from django.db import OperationalError, connections

from bms.alarms.models import AlarmDefinition
from bms.alarms.spec import entry_name
from bms.engine.image import GOOD
from bms.engine.runner import Engine
from bms.points.models import Device, Point
from bms.trends.provision import SPOOL_POINT, ensure_node_health_points
from drivers.base import AddressError, PointError, PointSpec
from drivers.node import NodeDriver, register_gauge, unregister_gauge
from tests.support.waiting import eventually

SPOOL_ALARM = f"{SPOOL_POINT}.high"


@pytest.fixture
def provisioning(settings):
    settings.BMS_NODE_HEALTH_POINTS = True


@pytest.mark.django_db
def test_migrate_creates_the_node_points_and_the_spool_alarm_once(provisioning, settings):
    settings.BMS_TREND_SPOOL_WARN_PERCENT = 40.0
    ensure_node_health_points()
    ensure_node_health_points()
    device = Device.objects.get(name="node")
    assert device.driver == "node"
    assert sorted(device.points.values_list("address", flat=True)) == [
        "trend_samples_lost",
        "trend_samples_waiting",
        "trend_spool_percent",
    ]
    alarm = AlarmDefinition.objects.get(name=SPOOL_ALARM)
    assert (alarm.kind, alarm.limit, alarm.alarm_class.name) == ("high", 40.0, "high")
    # An engineer's deletion stands: the next migrate does not bring the alarm back.
    alarm.delete()
    ensure_node_health_points()
    assert not AlarmDefinition.objects.filter(name=SPOOL_ALARM).exists()


@pytest.mark.django_db
def test_a_device_already_called_node_is_left_alone(provisioning, caplog):
    Device.objects.create(name="node", driver="modbus", host="127.0.0.1", port=502)
    ensure_node_health_points()
    assert not Point.objects.filter(device__name="node").exists()
    assert "a device named 'node' with driver modbus exists" in caplog.text


@pytest.mark.django_db
def test_the_test_settings_create_nothing():
    ensure_node_health_points()
    assert not Device.objects.filter(name="node").exists()


async def test_the_node_driver_reads_registered_gauges_and_says_when_one_is_missing_or_fails():
    driver = NodeDriver(None)
    points = [PointSpec("a", "trend_spool_percent", "float32"), PointSpec("b", "trend_samples_lost", "int32")]

    def failing() -> int:
        raise RuntimeError("broken counter")

    def percent() -> float:
        return 12.5

    register_gauge("trend_spool_percent", percent)
    register_gauge("trend_samples_lost", failing)
    try:
        readings = await driver.read(points)
        assert readings["a"].value == 12.5 and readings["a"].ok
        assert "broken counter" in readings["b"].error
    finally:
        unregister_gauge("trend_spool_percent", percent)
        unregister_gauge("trend_samples_lost", failing)
    readings = await driver.read(points)
    assert "not measured on this node" in readings["a"].error
    with pytest.raises(PointError, match="cannot be written"):
        await driver.write(points[0], 1.0)
    with pytest.raises(AddressError, match="unknown node gauge"):
        NodeDriver.validate_point("cpu_temperature", "float32")
    with pytest.raises(ValueError, match="unknown node gauge"):
        register_gauge("cpu_temperature", percent)


def trend_database_away(rows):
    # The trend writer's own connection failing while the engine's works: a real PostgreSQL cannot fail one
    # connection of a process on demand, so this fault is injected at the writer's storage function.
    raise OperationalError("connection refused (trend database away for this test)")


@pytest.fixture
async def plant(building, transactional_db, settings, tmp_path, provisioning):
    settings.BMS_TREND_SPOOL_DIR = str(tmp_path / "spool")
    settings.BMS_TREND_SPOOL_MB = 0.02  # about 20 kB: the demo building's samples fill half of it in seconds
    settings.BMS_TREND_FLUSH_SECONDS = 0.1
    settings.BMS_TREND_STALL_SECONDS = 0.2
    await sync_to_async(call_command)("loaddemo", modbus_port=building.port, poll_interval=0.05, verbosity=0)
    await sync_to_async(ensure_node_health_points)()
    await sync_to_async(Device.objects.filter(name="node").update)(poll_interval=0.2)
    await sync_to_async(Point.objects.exclude(device__name="node").update)(trend_mode="change", trend_deadband=0.0)
    yield building
    await sync_to_async(connections.close_all)()


async def test_the_spool_alarm_is_raised_on_the_engine_before_the_spool_is_full(plant):
    engine = Engine(InMemoryChannelLayer(capacity=10000), publish_min_interval=0.0, config_check_interval=0.05)
    engine.trends.writer.store = trend_database_away
    await engine.start()
    try:
        await eventually(
            lambda: engine.image.points[SPOOL_POINT].quality == GOOD, message="the node device polled", wait=20
        )
        assert engine.image.points[entry_name(SPOOL_ALARM)].value["state"] == "normal"
        value = 20.0
        while engine.trends.writer.spool_percent < 50:
            value += 0.5  # every change is a sample (deadband 0) that cannot reach the database
            await plant.set("zone1_temp", value)
            await eventually(lambda wanted=value: engine.image.points["zone1_temp"].value == wanted, wait=10)
        await eventually(
            lambda: engine.image.points[entry_name(SPOOL_ALARM)].value["state"] == "active_unacked",
            message="the spool alarm raised",
            wait=20,
        )
        assert engine.trends.writer.lost == 0, "raised before anything was dropped"
        assert engine.image.points[SPOOL_POINT].value >= 40.0
    finally:
        await engine.stop()
