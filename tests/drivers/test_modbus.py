"""The Modbus driver against a real pymodbus server (the simulated building's datastore)."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import AddressError, CommunicationError, DeviceSpec, PointError, PointSpec
from drivers.modbus import ModbusDriver, decode_registers, encode_registers, parse_address, plan_reads
from drivers.simulator.building import SimulatedBuilding


@pytest.fixture
async def connected(building):
    """Connected drivers to the simulated building, closed after the test."""
    drivers: list[ModbusDriver] = []

    async def connect(**options) -> ModbusDriver:
        driver = driver_for(building.port, **options)
        await driver.connect()
        drivers.append(driver)
        return driver

    yield connect
    for driver in drivers:
        await driver.close()


def driver_for(port: int, **options) -> ModbusDriver:
    return ModbusDriver(DeviceSpec("plant", "127.0.0.1", port, timeout=0.5, options=options))


@pytest.mark.parametrize(
    ("data_type", "values"),
    [
        ("int16", [-32768, -1, 0, 1, 32767]),
        ("uint16", [0, 1, 40000, 65535]),
        ("int32", [-(2**31), -70000, 0, 70000, 2**31 - 1]),
        ("uint32", [0, 70000, 2**32 - 1]),
        ("float32", [-1.5, 0.0, 21.25, 3.0e38]),
        ("int64", [-(2**63), -(2**40), 0, 2**53 + 1, 2**63 - 1]),
        ("uint64", [0, 2**40, 2**64 - 1]),
        ("float64", [-1.0e300, 0.1, 21.123456789012, 1.7e308]),
    ],
)
@pytest.mark.parametrize(
    ("word_order", "byte_order"), [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]
)
async def test_register_types_round_trip_through_a_real_server(connected, data_type, values, word_order, byte_order):
    driver = await connected(word_order=word_order, byte_order=byte_order)
    point = PointSpec("p", "hr:40", data_type)
    for value in values:
        await driver.write(point, value)
        readings = await driver.read([point])
        assert readings["p"].ok
        if data_type == "float32":
            assert readings["p"].value == pytest.approx(value, rel=1e-7)
        else:
            assert readings["p"].value == value


async def test_word_order_is_applied_on_the_wire(connected):
    big, little = await connected(), await connected(word_order="little")
    await big.write(PointSpec("p", "hr:50", "uint32"), 0x00010002)
    raw = await big.read([PointSpec("hi", "hr:50", "uint16"), PointSpec("lo", "hr:51", "uint16")])
    assert (raw["hi"].value, raw["lo"].value) == (1, 2)
    assert (await little.read([PointSpec("p", "hr:50", "uint32")]))["p"].value == 0x00020001


async def test_byte_order_swaps_the_bytes_inside_each_register(building, connected):
    swapped = await connected(byte_order="little")
    await swapped.write(PointSpec("p", "hr:60", "uint16"), 0x1234)
    assert (await building.server.context.async_getValues(0, 3, 60, 1)) == [0x3412]
    await swapped.write(PointSpec("q", "hr:61", "uint32"), 0x11223344)
    assert (await building.server.context.async_getValues(0, 3, 61, 2)) == [0x2211, 0x4433]


async def test_bits_and_all_four_tables(building, connected):
    driver = await connected()
    await driver.write(PointSpec("fan", "co:0", "bool"), False)
    await building.set("ahu1_fan_status", True)
    await building.set("outside_temp", -53)
    await building.set("zone1_temp", 22.5)
    readings = await driver.read(
        [
            PointSpec("fan", "co:0", "bool"),
            PointSpec("status", "di:0", "bool"),
            PointSpec("oat", "ir:0", "int16"),
            PointSpec("zone", "ir:10", "float32"),
        ]
    )
    assert {name: reading.value for name, reading in readings.items()} == {
        "fan": False,
        "status": True,
        "oat": -53,
        "zone": 22.5,
    }
    assert await building.get("ahu1_fan_cmd") is False


def test_planner_merges_neighbours_within_limits():
    points = [PointSpec(f"r{i}", f"hr:{i}", "uint16") for i in range(200)]
    points += [PointSpec("far", "hr:1000", "float32"), PointSpec("c1", "co:0", "bool"), PointSpec("c2", "co:5", "bool")]
    blocks = plan_reads(points)
    assert [(b.table, b.start, b.count) for b in blocks] == [
        ("co", 0, 6),
        ("hr", 0, 125),
        ("hr", 125, 75),
        ("hr", 1000, 2),
    ]
    assert len(plan_reads(points, max_gap=0)) == 5  # the two coils split too
    gapped = [PointSpec("a", "hr:0", "uint16"), PointSpec("b", "hr:20", "uint16")]
    assert len(plan_reads(gapped, max_gap=8)) == 2
    assert len(plan_reads(gapped, max_gap=19)) == 1


async def test_driver_sends_one_request_per_planned_block(connected):
    driver = await connected()
    points = [PointSpec(f"r{i}", f"hr:{i}", "uint16") for i in range(60)]
    readings = await driver.read(points)
    assert len(readings) == 60
    assert driver.requests_last_read == 1


async def test_refused_block_marks_only_its_points(connected):
    driver = await connected()
    readings = await driver.read([PointSpec("ok", "hr:0", "float32"), PointSpec("bad", "hr:150", "uint16")])
    assert readings["ok"].ok
    assert not readings["bad"].ok
    assert "refused" in readings["bad"].error


async def test_unreachable_device_is_a_communication_error():
    plant = SimulatedBuilding(step_seconds=None)
    await plant.start()
    port = plant.port
    await plant.stop()
    driver = driver_for(port)
    with pytest.raises(CommunicationError, match=f"127.0.0.1:{port}"):
        await driver.connect()


async def test_server_going_away_mid_session_is_a_communication_error(building):
    driver = driver_for(building.port)
    await driver.connect()
    await building.stop()
    with pytest.raises(CommunicationError):
        await asyncio.wait_for(driver.read([PointSpec("p", "hr:0", "float32")]), 5)
    assert not driver.connected


async def test_writes_to_read_only_tables_are_refused(connected):
    driver = await connected()
    with pytest.raises(PointError, match="read-only"):
        await driver.write(PointSpec("t", "ir:10", "float32"), 1.0)
    with pytest.raises(PointError, match="does not fit"):
        await driver.write(PointSpec("t", "hr:10", "int16"), 40000)


@pytest.mark.parametrize(
    ("address", "data_type", "message"),
    [
        ("40001", "uint16", "must look like"),
        ("xx:1", "uint16", "must look like"),
        ("hr:abc", "uint16", "not a whole number"),
        ("hr:-1", "uint16", "between 0"),
        ("hr:65535", "float32", "between 0"),
        ("co:1", "float32", "must be bool"),
        ("hr:1", "bool", "not one of"),
        ("hr:1", "float16", "not one of"),
        ("hr:65533", "uint64", "between 0"),
    ],
)
def test_bad_addresses_are_explained(address, data_type, message):
    with pytest.raises(AddressError, match=message):
        parse_address(address, data_type)


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["big", "little"]))
def test_int32_codec_round_trips(value, word_order):
    assert decode_registers(encode_registers(value, "int32", word_order), "int32", word_order) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_codec_round_trips(value, word_order):
    assert decode_registers(encode_registers(value, "float32", word_order), "float32", word_order) == value


async def test_a_hole_in_the_device_map_marks_only_the_missing_points(building, connected):
    """The simulator has 100 holding registers: hr:95 exists, hr:104 does not; the planner merges them."""
    driver = await connected()
    points = [PointSpec("inside", "hr:95", "uint16"), PointSpec("outside", "hr:104", "uint16")]
    assert len(plan_reads(points)) == 1
    await building.server.context.async_setValues(0, 3, 95, [4711])
    readings = await driver.read(points)
    assert readings["inside"].value == 4711
    assert not readings["outside"].ok
    assert "refused" in readings["outside"].error
    assert driver.requests_last_read == 3  # the merged request, then one per point
    readings = await driver.read(points)
    assert readings["inside"].value == 4711
    assert driver.requests_last_read == 2  # the split is remembered
