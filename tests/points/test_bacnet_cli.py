"""``manage.py bacnet``: directed discovery, import of a discovered device, priority arrays, against the simulator."""

import asyncio
import io
import json
import socket

import pytest
from django.core.management import CommandError, call_command

from bms.points.models import Device, Point
from drivers.bacnet import BacnetDriver
from drivers.base import DeviceSpec, PointSpec
from drivers.simulator.bacnet_device import OBJECTS


def bacnet(*args: str) -> str:
    out = io.StringIO()
    call_command("bacnet", *args, stdout=out)
    return out.getvalue()


def test_directed_discovery_lists_the_device_and_its_objects(db, simulator):
    output = bacnet("discover", "--address", f"127.0.0.1:{simulator.bacnet_port}", "--wait", "1")
    assert f"device 1001 at 127.0.0.1:{simulator.bacnet_port} (vendor 999): 11 objects" in output
    for sim in OBJECTS:
        assert sim.address in output and sim.name in output
    assert not Device.objects.exists()  # listing changes nothing


def test_import_of_a_discovered_device(db, simulator):
    target = f"127.0.0.1:{simulator.bacnet_port}"
    dry = bacnet("discover", "--address", target, "--wait", "1", "--import", "chiller", "--dry-run")
    assert "would import device chiller: 11 new, 0 updated point(s)" in dry
    assert not Device.objects.exists() and not Point.objects.exists()
    bacnet("discover", "--address", target, "--wait", "1", "--import", "chiller")
    device = Device.objects.get(name="chiller")
    assert (device.driver, device.host, device.port) == ("bacnet", "127.0.0.1", simulator.bacnet_port)
    assert device.options == {"device_instance": 1001}
    points = {p.name: p for p in Point.objects.filter(device=device)}
    assert set(points) == {f"chiller.{sim.name}" for sim in OBJECTS}
    for sim in OBJECTS:
        point = points[f"chiller.{sim.name}"]
        assert point.address == sim.address
        assert point.writable == sim.commandable, sim.name
        assert point.unit == sim.unit
    assert points["chiller.chw_setpoint"].data_type == "float32"
    assert points["chiller.plant_mode"].data_type == "uint32"
    out = io.StringIO()
    call_command("poll", "--once", "--format", "json", "--device", "chiller", stdout=out)
    assert {row["quality"] for row in json.loads(out.getvalue())} == {"good"}
    again = bacnet("discover", "--address", target, "--wait", "1", "--import", "chiller")
    assert "0 new, 11 updated" in again


def test_the_point_list_can_be_written_for_editing(db, simulator, tmp_path):
    target = f"127.0.0.1:{simulator.bacnet_port}"
    path = tmp_path / "points.csv"
    bacnet("discover", "--address", target, "--wait", "1", "--csv", str(path))
    Device.objects.create(name="bacnet-1001", driver="bacnet", host="127.0.0.1", port=simulator.bacnet_port)
    call_command("importpoints", str(path), stdout=io.StringIO())
    assert Point.objects.filter(device__name="bacnet-1001").count() == len(OBJECTS)


def test_nothing_answering_is_a_clear_error(db):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(CommandError, match=f"no BACnet device answered Who-Is to 127.0.0.1:{port} within 0.3 s"):
            bacnet("discover", "--address", f"127.0.0.1:{port}", "--wait", "0.3")


def test_priority_array_of_a_point(db, simulator):
    bacnet("discover", "--address", f"127.0.0.1:{simulator.bacnet_port}", "--wait", "1", "--import", "chiller")
    driver = BacnetDriver(DeviceSpec("chiller", "127.0.0.1", simulator.bacnet_port))
    point = PointSpec("chiller.tower_fan_speed", "multi-state-output:1", "uint32")

    async def command(value, priority):
        await driver.connect()
        try:
            await driver.write(point, value, priority)
        finally:
            await driver.close()

    asyncio.run(command(3, 9))
    try:
        state = json.loads(bacnet("priority", "chiller.tower_fan_speed", "--format", "json"))
        assert state["priority_array"]["9"] == 3
        assert state["active_priority"] == 9
        assert state["relinquish_default"] == 1
        table = bacnet("priority", "chiller.tower_fan_speed")
        assert " 9: 3  <- in control" in table
    finally:
        asyncio.run(command(None, 9))
    assert json.loads(bacnet("priority", "chiller.tower_fan_speed", "--format", "json"))["active_priority"] is None
    with pytest.raises(CommandError, match="has no priority array"):
        bacnet("priority", "chiller.chw_supply_temp")
    with pytest.raises(CommandError, match="no point named 'nope'"):
        bacnet("priority", "nope")
