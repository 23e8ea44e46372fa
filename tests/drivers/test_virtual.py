"""Virtual points (driver ``virtual``): the driver, admin and CSV import, and a real engine writing them.

The engine tests run the real engine on the test PostgreSQL with a virtual
device only: values written through the command path, kept by a successor
engine (a takeover played in one process: the successor starts from the
replicated image, in a later epoch), kept across a reconfiguration, and
restored from the server's priority array on a cold start.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from bms.control.models import Command
from bms.control.services import submit_write
from bms.engine.image import BAD, GOOD
from bms.engine.runner import Engine
from bms.points.importer import import_points
from bms.points.models import Device, Point
from drivers.base import AddressError, DeviceSpec, DriverError, PointSpec
from drivers.registry import driver_class
from drivers.virtual import VirtualDriver
from tests.support.roles import ActiveIn
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(120)


SETPOINT = PointSpec("office_sp", "sp1", "float32")
MODE = PointSpec("ahu_mode", "mode.ahu1", "uint16")
ENABLE = PointSpec("night_purge", "purge", "bool")


# -- the driver alone ------------------------------------------------------------------------------------------------


async def test_a_virtual_point_reads_what_was_last_written_and_bad_before_anything_was():
    driver = driver_class("virtual")(DeviceSpec("virtual1", "", 0))
    assert isinstance(driver, VirtualDriver) and not driver.relinquish  # the server keeps its priority arrays
    await driver.connect()
    assert driver.connected
    first = await driver.read([SETPOINT, MODE])
    assert not first["office_sp"].ok and "no value yet" in first["office_sp"].error
    await driver.write(SETPOINT, 21.5)
    await driver.write(MODE, 2.0)
    await driver.write(ENABLE, 1)
    readings = await driver.read([SETPOINT, MODE, ENABLE])
    assert {name: reading.value for name, reading in readings.items()} == {
        "office_sp": 21.5,
        "ahu_mode": 2,
        "night_purge": True,
    }
    assert isinstance(readings["ahu_mode"].value, int) and readings["night_purge"].value is True
    with pytest.raises(DriverError, match="priority array on the server"):
        await driver.write(SETPOINT, None, 8)
    await driver.close()
    await driver.close()  # safe twice


async def test_seeded_values_fill_only_points_not_written_since():
    driver = VirtualDriver(DeviceSpec("virtual1", "", 0))
    await driver.write(SETPOINT, 22.0)
    driver.seed({"office_sp": 19.0, "ahu_mode": 3})
    readings = await driver.read([SETPOINT, MODE])
    assert (readings["office_sp"].value, readings["ahu_mode"].value) == (22.0, 3)


def test_addresses_are_labels_and_types_those_of_register_points():
    VirtualDriver.validate_point("mode.ahu-1:a", "uint16")
    for address in ("", "has space", "x" * 65):
        with pytest.raises(AddressError, match="label"):
            VirtualDriver.validate_point(address, "float32")
    with pytest.raises(AddressError, match="holds one of"):
        VirtualDriver.validate_point("sp1", "string")
    assert VirtualDriver.value_range("int16") == (-32768, 32767)


# -- configuration: admin and CSV import -----------------------------------------------------------------------------


def test_a_virtual_device_is_created_in_admin_without_a_host_and_a_modbus_one_is_not(admin_client):
    form = {
        "name": "virtual1",
        "driver": "virtual",
        "host": "",
        "port": "502",
        "unit_id": "1",
        "poll_interval": "1.0",
        "timeout": "2.0",
        "options": "{}",
        "enabled": "on",
        "points-TOTAL_FORMS": "1",
        "points-INITIAL_FORMS": "0",
        "points-0-name": "office_sp",
        "points-0-address": "sp1",
        "points-0-data_type": "float32",
        "points-0-scale": "1",
        "points-0-offset": "0",
        "points-0-writable": "on",
        "points-0-deadband": "0",
        "points-0-trend_mode": "both",
        "points-0-trend_interval": "900",
        "points-0-enabled": "on",
    }
    page = admin_client.post("/admin/points/device/add/", form)
    assert page.status_code == 302, page.content.decode()[:3000]
    assert Point.objects.get(name="office_sp").device.driver == "virtual"
    page = admin_client.post(
        "/admin/points/device/add/",
        form | {"name": "plc", "driver": "modbus", "points-TOTAL_FORMS": "0"},
    )
    assert page.status_code == 200 and "A device needs its IP address or host name." in page.content.decode()


@pytest.mark.django_db
def test_the_point_list_import_takes_virtual_points():
    Device.objects.create(name="virtual1", driver="virtual", host="")
    header = "device,name,address,data_type,writable,min_value,max_value,unit\n"
    result = import_points(
        header + "virtual1,office_sp,sp1,float32,yes,15,28,degC\nvirtual1,ahu_mode,mode,uint16,yes,1,4,\n"
    )
    assert sorted(result.created) == ["ahu_mode", "office_sp"]
    with pytest.raises(Exception, match="label"):
        import_points(header + "virtual1,bad_one,has space,float32,yes,,,\n")


# -- a real engine ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def virtual_points(transactional_db):
    def create() -> None:
        device = Device.objects.create(name="virtual1", driver="virtual", host="", poll_interval=0.05)
        Point.objects.create(
            device=device,
            name="office_sp",
            address="sp1",
            data_type="float32",
            writable=True,
            min_value=15,
            max_value=28,
        )
        Point.objects.create(
            device=device, name="ahu_mode", address="mode", data_type="uint16", writable=True, relinquish_default=1
        )

    await sync_to_async(create)()
    yield
    await sync_to_async(connections.close_all)()


def engine(epoch: int) -> Engine:
    return Engine(
        InMemoryChannelLayer(capacity=10000),
        role=ActiveIn(epoch),
        publish_min_interval=0.0,
        config_check_interval=0.05,
        command_scan_interval=0.05,
    )


def state(node: Engine, name: str) -> tuple[object, str]:
    point = node.image.points[name]
    return point.value, point.quality


def write(value: float, command_id: str, epoch: int, priority: int = 8) -> str:
    submission = submit_write(
        user=None,
        point_name="office_sp",
        value=value,
        command_id=command_id,
        priority=priority,
        source="code",
        epoch=epoch,
    )
    return submission.command.command_id


def status(command_id: str) -> str:
    return Command.objects.get(command_id=command_id).status


def engine_writes() -> int:
    return Command.objects.filter(source="engine").count()


async def test_a_written_virtual_value_survives_a_takeover_and_a_reconfiguration(virtual_points):
    old = engine(epoch=1)
    await old.start()
    try:
        # Never written, no relinquish default: bad, not a made-up value. ahu_mode gets its relinquish default.
        await eventually(lambda: state(old, "office_sp")[1] == BAD, 5, "office_sp bad before any write")
        await eventually(lambda: state(old, "ahu_mode") == (1, GOOD), 10, "ahu_mode at its relinquish default")
        await sync_to_async(write)(22.5, "op-1", 1)
        await eventually(lambda: state(old, "office_sp") == (22.5, GOOD), 5, "the written value read back")
        # the device answered before the outcome is on the row
        await eventually(lambda: status("op-1") == "succeeded", 10, "the outcome recorded", db=True)
    finally:
        await old.stop()
    asserted = await sync_to_async(engine_writes)()

    replicated = old.image.snapshot_rows()
    new = engine(epoch=2)
    new.image.load_rows(replicated["seq"], replicated["points"])
    await new.start()
    try:
        poller = new.pollers["virtual1"]
        await eventually(lambda: poller.cycles >= 3, 5, "the successor polls")
        assert state(new, "office_sp") == (22.5, GOOD) and state(new, "ahu_mode") == (1, GOOD)
        # It read the value the array asks for: nothing to re-assert (waited out: the re-assert's read wait).
        await eventually(lambda: new.commands.asserted_epoch == 2 and not new.commands._reassert, 10, "re-assert done")
        assert await sync_to_async(engine_writes)() == asserted

        def slower() -> None:
            Device.objects.filter(name="virtual1").update(poll_interval=0.1)
            from bms.points.models import ConfigRevision

            ConfigRevision.bump()

        revision = new.config.revision
        await sync_to_async(slower)()
        await eventually(lambda: new.config.revision > revision and new.pollers["virtual1"] is not poller, 10)
        await eventually(lambda: new.pollers["virtual1"].cycles >= 3, 5, "the new poller polls")
        assert state(new, "office_sp") == (22.5, GOOD)  # the new driver instance was seeded from the image
    finally:
        await new.stop()


async def test_a_cold_start_restores_virtual_values_from_the_priority_array(virtual_points):
    first = engine(epoch=1)
    await first.start()
    try:
        await sync_to_async(write)(23.0, "op-1", 1, priority=12)
        await eventually(lambda: state(first, "office_sp") == (23.0, GOOD), 5, "the written value read back")
    finally:
        await first.stop()
    cold = engine(epoch=1)  # a node alone restarting: nothing in its image, the command log in its database
    await cold.start()
    try:
        await eventually(lambda: state(cold, "office_sp") == (23.0, GOOD), 15, "the array's value written again")
        assert state(cold, "ahu_mode") == (1, GOOD)
    finally:
        await cold.stop()
