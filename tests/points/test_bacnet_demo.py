"""The demo building's BACnet device: simulator process, point list, loaddemo and the commissioning read."""

import asyncio
import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from bms.points.importer import ImportFailed, import_points
from bms.points.management.commands.loaddemo import DEMO_BACNET_CSV
from bms.points.models import Device, Point
from drivers.bacnet import BacnetDriver
from drivers.bacnet_address import ABBREVIATIONS, OBJECT_TYPES
from drivers.base import DeviceSpec, PointSpec
from drivers.simulator.bacnet_device import OBJECTS_BY_NAME

SUPPORTED = f"supported: {', '.join(OBJECT_TYPES)} (or {', '.join(ABBREVIATIONS)})"


def test_the_demo_point_list_describes_the_simulated_device():
    rows = list(csv.DictReader(io.StringIO(DEMO_BACNET_CSV.read_text(encoding="utf-8"))))
    assert {row["name"] for row in rows} == set(OBJECTS_BY_NAME)
    for row in rows:
        sim = OBJECTS_BY_NAME[row["name"]]
        assert row["address"] == sim.address
        assert (row["writable"] == "yes") == sim.commandable, row["name"]
        assert row["unit"] == sim.unit
        BacnetDriver.validate_point(row["address"], row["data_type"])


def test_loaddemo_adds_the_bacnet_device_and_poll_reads_it(db, simulator):
    call_command("loaddemo", modbus_port=simulator.modbus_port, bacnet_port=simulator.bacnet_port, verbosity=0)
    device = Device.objects.get(name="plant-bacnet")
    assert (device.driver, device.port) == ("bacnet", simulator.bacnet_port)
    assert device.options["device_instance"] == simulator.bacnet_instance
    assert Point.objects.filter(device=device).count() == len(OBJECTS_BY_NAME)
    out = io.StringIO()
    call_command("poll", "--once", "--format", "json", "--device", "plant-bacnet", stdout=out)
    rows = {row["point"]: row for row in json.loads(out.getvalue())}
    assert {row["quality"] for row in rows.values()} == {"good"}
    assert rows["chw_setpoint"]["value"] == 7.0
    assert rows["plant_mode"]["value"] == 2


def test_loaddemo_without_a_bacnet_port_loads_modbus_only(db):
    call_command("loaddemo", modbus_port=15020, verbosity=0)
    assert list(Device.objects.values_list("name", flat=True)) == ["plant"]


def test_a_wrong_bacnet_port_fails_the_commissioning_read(db, simulator):
    call_command("loaddemo", modbus_port=simulator.modbus_port, bacnet_port=simulator.modbus_port, verbosity=0)
    Device.objects.filter(name="plant-bacnet").update(timeout=0.2, options={"retries": 0})
    with pytest.raises(CommandError, match="11 of 11 point"):
        call_command("poll", "--once", "--device", "plant-bacnet", stdout=io.StringIO())


async def test_the_simulators_bacnet_values_move(simulator):
    driver = BacnetDriver(DeviceSpec("sim", "127.0.0.1", simulator.bacnet_port, timeout=1.0))
    points = [PointSpec(name, OBJECTS_BY_NAME[name].address, "float32") for name in ("chw_supply_temp", "chiller_load")]
    await driver.connect()
    try:
        first = {name: r.value for name, r in (await driver.read(points)).items()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while {name: r.value for name, r in (await driver.read(points)).items()} == first:
            assert loop.time() < deadline, "the simulated BACnet values did not change within 5 s"
            await asyncio.sleep(0.1)
    finally:
        await driver.close()


def test_a_bacnet_point_list_with_unknown_object_types_is_refused_with_line_numbers(db):
    Device.objects.create(name="ahu7", driver="bacnet", host="192.0.2.7", port=47808)
    text = (
        "device,name,address,data_type\n"
        "ahu7,good_one,analog-input:1,float32\n"
        "ahu7,trend,trend-log:3,float32\n"
        "ahu7,typo,analog-inptu:1,float32\n"
        "ahu7,fan,binary-output:1,float32\n"
        "ahu7,mode,msv:1,uint32\n"
    )
    with pytest.raises(ImportFailed) as failure:
        import_points(text)
    assert failure.value.errors == [
        "line 3: trend: address: BACnet address 'trend-log:3': unknown or unsupported object type 'trend-log'; "
        + SUPPORTED,
        "line 4: typo: address: BACnet address 'analog-inptu:1': unknown or unsupported object type 'analog-inptu'; "
        + SUPPORTED,
        "line 5: fan: address: BACnet address 'binary-output:1': data type 'float32' does not fit present-value of "
        "binary-output; use bool",
    ]
    assert not Point.objects.exists()  # all rows or none
