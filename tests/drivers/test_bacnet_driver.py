"""The BACnet driver against a real bacpypes3 device on its own loopback UDP port: reads, writes, errors."""

import asyncio
import socket

import pytest
from bacpypes3.basetypes import StatusFlags

from drivers.bacnet import BacnetDriver, quality_of
from drivers.base import AddressError, CommunicationError, DeviceSpec, PointError, PointSpec
from drivers.registry import driver_class
from drivers.simulator.bacnet_device import EXTRA_VALUES_FROM, OBJECTS, OBJECTS_BY_NAME, SimulatedBacnetDevice
from tests.support.bacnet import ALL_POINTS, point_of

COMMANDABLE = [sim for sim in OBJECTS if sim.commandable]
WRITE_VALUES = {"float32": (55.5, 42.25), "bool": (True, False), "uint32": (3, 2)}


async def test_every_object_type_is_read_in_one_request(bacnet_device, bacnet_connected):
    driver = await bacnet_connected()
    bacnet_device.set("chw_supply_temp", 6.75)
    bacnet_device.set("pump1_status", True)
    bacnet_device.set("chiller_state", 3)
    before = bacnet_device.requests["ReadPropertyMultipleRequest"]
    readings = await driver.read(ALL_POINTS)
    assert {sim.object_type for sim in OBJECTS} == {
        f"{kind}-{role}" for kind in ("analog", "binary", "multi-state") for role in ("input", "output", "value")
    }
    assert {name: reading.value for name, reading in readings.items()} == {
        sim.name: bacnet_device.get(sim.name) for sim in OBJECTS
    }
    assert readings["chw_supply_temp"].value == 6.75
    assert readings["pump1_status"].value is True
    assert readings["chiller_state"].value == 3
    assert all(reading.ok and reading.quality is None for reading in readings.values())
    assert driver.requests_last_read == 1
    assert bacnet_device.requests["ReadPropertyMultipleRequest"] - before == 1


async def test_reads_are_batched_by_object_count(bacnet_device, bacnet_connected):
    driver = await bacnet_connected(max_objects_per_request=4)
    before = bacnet_device.requests["ReadPropertyMultipleRequest"]
    # two points on one object share its slot in the request
    points = [*ALL_POINTS, PointSpec("setpoint_default", "analog-value:1/relinquish-default", "float32")]
    readings = await driver.read(points)
    assert len(OBJECTS) == 11  # 11 objects / 4 per request = 3 requests
    assert driver.requests_last_read == 3
    assert bacnet_device.requests["ReadPropertyMultipleRequest"] - before == 3
    assert readings["setpoint_default"].value == 7.0
    batches = [batch async for batch in driver.read_iter(points)]
    assert [len(batch) for batch in batches] == [5, 4, 3]  # per request; the first holds analog-value:1 twice


async def test_a_device_without_read_property_multiple_is_read_point_by_point():
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None, rpm=False)
    await device.start()
    driver = BacnetDriver(DeviceSpec("old", "127.0.0.1", device.port, timeout=0.5, options={"retries": 0}))
    try:
        await driver.connect()
        points = [point_of(OBJECTS_BY_NAME["chw_setpoint"]), point_of(OBJECTS_BY_NAME["pump1_cmd"])]
        first = await driver.read(points)
        assert {name: r.value for name, r in first.items()} == {"chw_setpoint": 7.0, "pump1_cmd": False}
        assert device.requests["ReadPropertyMultipleRequest"] == 1  # asked once, rejected, never again
        device.set_flags("chw_setpoint", out_of_service=True)
        second = await driver.read(points)
        assert device.requests["ReadPropertyMultipleRequest"] == 1
        assert driver.requests_last_read == 4  # value and status flags per point
        assert second["chw_setpoint"].quality == "out_of_service"
    finally:
        await driver.close()
        await device.stop()


async def test_status_flags_become_quality(bacnet_device, bacnet_connected):
    driver = await bacnet_connected()
    bacnet_device.set_flags("chw_supply_temp", fault=True)
    bacnet_device.set_flags("chiller_load", out_of_service=True)
    bacnet_device.set_flags("pump1_status", fault=True, out_of_service=True)
    readings = await driver.read(ALL_POINTS)
    assert readings["chw_supply_temp"].quality == "bad"
    assert readings["chiller_load"].quality == "out_of_service"
    assert readings["pump1_status"].quality == "out_of_service"  # the operator's choice explains the value
    assert readings["chw_supply_temp"].value == 7.5  # the device's value is kept, its quality says what it is worth
    assert readings["chw_return_temp"].quality is None
    bacnet_device.set_flags("chw_supply_temp")
    assert (await driver.read(ALL_POINTS))["chw_supply_temp"].quality is None


def test_overridden_is_uncertain_and_alarm_is_not_a_quality():
    # bacpypes3's local objects never set "overridden", so the mapping is checked on the real type
    assert quality_of(StatusFlags([0, 0, 1, 0])) == "uncertain"
    assert quality_of(StatusFlags([1, 0, 0, 0])) is None
    assert quality_of(StatusFlags([0, 1, 1, 0])) == "bad"
    assert quality_of(None) is None


@pytest.mark.parametrize("sim", COMMANDABLE, ids=lambda sim: sim.name)
async def test_write_at_a_priority_and_relinquish(bacnet_device, bacnet_connected, sim):
    driver = await bacnet_connected()
    point = point_of(sim)
    high, low = WRITE_VALUES[point.data_type]
    default = bacnet_device.get(sim.name)
    await driver.write(point, high, priority=8)
    await driver.write(point, low, priority=10)
    slots = bacnet_device.priority_array(sim.name)
    assert (slots[7], slots[9]) == (high, low)
    assert bacnet_device.get(sim.name) == high  # priority 8 wins over 10
    seen = await driver.read_priority_array(point)
    assert list(seen.slots) == slots
    assert seen.active_priority == 8
    assert seen.relinquish_default == default
    await driver.write(point, None, priority=8)
    assert bacnet_device.priority_array(sim.name)[7] is None
    assert (await driver.read([point]))[point.name].value == low
    await driver.write(point, None, priority=10)
    assert bacnet_device.get(sim.name) == default
    assert (await driver.read_priority_array(point)).active_priority is None


async def test_a_write_without_priority_uses_the_configured_one(bacnet_device, bacnet_connected):
    point = point_of(OBJECTS_BY_NAME["chw_valve"])
    await (await bacnet_connected()).write(point, 20.0)
    assert bacnet_device.priority_array("chw_valve")[15] == 20.0  # BACnet's default, 16
    await (await bacnet_connected(write_priority=12)).write(point, 30.0)
    assert bacnet_device.priority_array("chw_valve")[11] == 30.0
    with pytest.raises(PointError, match=r"1\.\.16"):
        await (await bacnet_connected()).write(point, 1.0, priority=17)


async def test_refusals_are_point_errors_and_the_rest_keeps_reading(bacnet_device, bacnet_connected):
    driver = await bacnet_connected()
    missing = PointSpec("missing", "analog-value:99", "float32")
    readings = await driver.read([missing, *ALL_POINTS])
    assert not readings["missing"].ok
    assert "unknown-object" in readings["missing"].error
    assert all(readings[point.name].ok for point in ALL_POINTS)
    with pytest.raises(PointError, match="unknown-object"):
        await driver.write(missing, 1.0, priority=8)
    with pytest.raises(PointError, match=r"chiller_load.*priority array"):
        await driver.read_priority_array(point_of(OBJECTS_BY_NAME["chiller_load"]))  # not commandable
    assert driver.connected  # a refusal is not a communication failure


@pytest.mark.parametrize(
    ("address", "data_type", "message"),
    [
        ("analog-value", "float32", "must look like"),
        ("analog-valve:1", "float32", "unknown or unsupported object type 'analog-valve'"),
        ("trend-log:1", "float32", "unsupported object type 'trend-log'"),
        ("analog-value:x", "float32", "instance 'x' is not a whole number"),
        ("analog-value:4194303", "float32", "instance must be between 0 and 4194302"),
        ("analog-value:1/present-vlaue", "float32", "unknown property 'present-vlaue'"),
        ("binary-output:1", "float32", "use bool"),
        ("analog-input:1", "bool", "use float32 or float64"),
        ("multi-state-value:1", "int16", "use uint16 or uint32"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(address, data_type, message):
    with pytest.raises(AddressError, match=message):
        driver_class("bacnet").validate_point(address, data_type)


@pytest.mark.parametrize(
    "address", ["analog-value:1", "AV:1", "analogValue,1", "av:1/present-value", "analog-value:1/high-limit"]
)
def test_address_spellings(address):
    BacnetDriver.validate_point(address, "float32")


async def test_a_silent_device_is_a_communication_failure():
    # a bound socket that never answers: the request times out (no ICMP shortcut)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        driver = BacnetDriver(DeviceSpec("mute", "127.0.0.1", port, timeout=0.2, options={"retries": 0}))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CommunicationError, match="did not answer: no response"):
            await driver.connect()
        assert loop.time() - started < 2.0  # the device timeout applies, not bacpypes3's 3 s x 3 retries
        assert not driver.connected
        await driver.close()
        await driver.close()  # safe twice


async def test_a_device_that_goes_away_mid_run_fails_the_read(bacnet_device, bacnet_connected):
    driver = await bacnet_connected()
    assert (await driver.read(ALL_POINTS))["chw_setpoint"].ok
    await bacnet_device.stop()
    with pytest.raises(CommunicationError, match=str(bacnet_device.port)):
        await driver.read(ALL_POINTS)
    assert not driver.connected
    with pytest.raises(CommunicationError, match="not connected"):
        await driver.write(ALL_POINTS[0], 1.0)
    await bacnet_device.start()  # same port, as a restarted controller
    await driver.connect()
    assert (await driver.read(ALL_POINTS))["chw_setpoint"].value == 7.0


async def test_a_request_too_big_for_the_device_is_halved_and_remembered():
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None, segmentation=False, extra_values=60)
    await device.start()
    driver = BacnetDriver(
        DeviceSpec("small", "127.0.0.1", device.port, timeout=0.5, options={"max_objects_per_request": 60})
    )
    points = [PointSpec(f"av{i}", f"analog-value:{EXTRA_VALUES_FROM + i}", "float32") for i in range(60)]
    try:
        await driver.connect()
        readings = await driver.read(points)
        assert [readings[f"av{i}"].value for i in range(60)] == [float(i) for i in range(60)]
        assert driver.requests_last_read == 3  # refused, then two halves
        await driver.read(points)
        assert driver.requests_last_read == 2
        assert device.requests["ReadPropertyMultipleRequest"] == 5
    finally:
        await driver.close()
        await device.stop()
