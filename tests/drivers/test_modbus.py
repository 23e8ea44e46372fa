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
        ("hr:1", "bool", "one bit of a register"),
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


async def test_a_point_overrides_the_device_word_and_byte_order(building, connected):
    driver = await connected(word_order="little")
    device_order = PointSpec("d", "hr:70", "uint32")
    big = PointSpec("b", "hr:72", "uint32", {"word_order": "big"})
    swapped = PointSpec("s", "hr:74", "uint32", {"byte_order": "little"})  # word order still the device's
    for point in (device_order, big, swapped):
        await driver.write(point, 0x11223344)
    on_the_wire = await building.server.context.async_getValues(0, 3, 70, 6)
    assert on_the_wire == [0x3344, 0x1122, 0x1122, 0x3344, 0x4433, 0x2211]
    readings = await driver.read([device_order, big, swapped])  # one merged request, decoded per point
    assert driver.requests_last_read == 1
    assert {name: r.value for name, r in readings.items()} == {"d": 0x11223344, "b": 0x11223344, "s": 0x11223344}


async def test_a_bit_of_a_register_reads_and_writes_alone(building, connected):
    driver = await connected()
    await building.server.context.async_setValues(0, 3, 80, [0b1000_0000_0000_0101])
    bits = [PointSpec(f"b{bit}", f"hr:80.{bit}", "bool") for bit in (0, 1, 2, 15)]
    word = PointSpec("word", "hr:80", "uint16")
    readings = await driver.read([*bits, word])
    assert [readings[p.name].value for p in bits] == [True, False, True, True]
    await driver.write(PointSpec("b1", "hr:80.1", "bool"), True)
    await driver.write(PointSpec("b15", "hr:80.15", "bool"), False)
    assert await building.server.context.async_getValues(0, 3, 80, 1) == [0b0000_0000_0000_0111]
    with pytest.raises(PointError, match="read-only"):
        await driver.write(PointSpec("x", "ir:0.1", "bool"), True)


async def test_write_multiple_uses_functions_15_and_16_for_single_values():
    functions: list[int] = []

    def trace(sending: bool, packet: bytes) -> bytes:
        if not sending and len(packet) > 7:  # requests as the server receives them
            functions.append(packet[7])
        return packet

    plant = SimulatedBuilding(step_seconds=None, trace_packet=trace)
    await plant.start()
    try:
        plain, multiple = driver_for(plant.port), driver_for(plant.port, write_multiple=True)
        for driver in (plain, multiple):
            await driver.connect()
            functions.clear()
            await driver.write(PointSpec("c", "co:4", "bool"), True)
            await driver.write(PointSpec("r", "hr:4", "int16"), -2)
            await driver.write(PointSpec("f", "hr:5", "float32"), 1.5)
            await driver.write(PointSpec("one", "hr:8", "int16", {"write_multiple": True}), 3)
            assert functions == ([5, 6, 16, 16] if driver is plain else [15, 16, 16, 16])
            readings = await driver.read([PointSpec("c", "co:4", "bool"), PointSpec("r", "hr:4", "int16")])
            assert (readings["c"].value, readings["r"].value) == (True, -2)
            await driver.close()
    finally:
        await plant.stop()


ENCODINGS = [{}, {"word_order": "little"}, {"byte_order": "little"}, {"word_order": "little", "byte_order": "little"}]


@st.composite
def register_points(draw):
    """Points on random, possibly overlapping, offsets of one block, each with a random type and order."""
    points = []
    for index in range(draw(st.integers(1, 12))):
        data_type = draw(st.sampled_from(["int16", "uint16", "int32", "uint32", "float32", "int64", "float64", "bool"]))
        offset = draw(st.integers(0, 40))
        if data_type == "bool":
            points.append(PointSpec(f"p{index}", f"hr:{offset}.{draw(st.integers(0, 15))}", "bool"))
            continue
        options = draw(st.sampled_from(ENCODINGS))
        if data_type.endswith("16"):
            options = {key: value for key, value in options.items() if key != "word_order"}
        points.append(PointSpec(f"p{index}", f"hr:{offset}", data_type, options))
    return points


@given(register_points(), st.lists(st.integers(0, 65535), min_size=44, max_size=44), st.sampled_from(ENCODINGS))
def test_block_decoding_equals_decoding_each_point_alone(points, registers, device_options):
    """The compiled decoder of a merged request gives every point what it would read alone."""

    class Answer:
        def __init__(self, block):
            self.registers = registers[block.start : block.end]

    driver = ModbusDriver(DeviceSpec("d", "127.0.0.1", 1, options=device_options))
    for block in plan_reads(points, max_gap=125):
        batch = driver._decode(block, _ok(Answer(block)))
        for name, value in zip(batch.names, batch.values, strict=True):
            point = next(p for p in points if p.name == name)
            parsed = parse_address(point.address, point.data_type)
            if parsed.bit is not None:
                expected = bool(registers[parsed.offset] >> parsed.bit & 1)
            else:
                encoding = driver._encoding(point)
                expected = decode_registers(
                    registers[parsed.offset : parsed.end], point.data_type, encoding.word_order, encoding.byte_order
                )
            assert value == expected or (value != value and expected != expected), (point, value, expected)
        assert sorted(batch.names) == sorted(p.name for p, _ in block.points)


def _ok(answer):
    answer.function_code = 3
    answer.isError = lambda: False
    return answer


def test_overlapping_registers_are_conflicts_unless_they_cover_the_same_registers():
    points = [
        PointSpec("f", "hr:10", "float32"),
        PointSpec("i", "hr:11", "int16"),  # the second half of f: a conflict
        PointSpec("same", "hr:10", "int32"),  # exactly f's registers read another way: fine
        PointSpec("bit", "hr:11.2", "bool"),  # a bit of a register: fine
        PointSpec("w", "hr:20", "float64"),
        PointSpec("x", "hr:23", "uint32"),  # 23-24 overlaps w (20-23)
        PointSpec("ir", "ir:11", "int16"),  # another table
        PointSpec("c1", "co:1", "bool"),
        PointSpec("c2", "co:1", "bool"),
    ]
    conflicts = ModbusDriver.check_point_list(points)
    assert {(c.point, c.other) for c in conflicts} == {("i", "f"), ("i", "same"), ("x", "w")}
    message = next(c.message for c in conflicts if c.other == "f")
    assert message == "i at hr:11 (int16, register 11) overlaps f at hr:10 (float32, registers 10..11)"


@pytest.mark.parametrize(
    ("data_type", "options", "message"),
    [
        ("float32", {"colour": "red"}, "unknown Modbus point option"),
        ("float32", {"word_order": "middle"}, "word_order must be 'big' or 'little'"),
        ("float32", {"read_back": "yes"}, "read_back must be true or false"),
        ("uint16", {"word_order": "little"}, "no effect on a one-register uint16"),
        ("bool", {"byte_order": "little"}, "no effect on a bool"),
    ],
)
def test_bad_point_options_are_explained(data_type, options, message):
    with pytest.raises(AddressError, match=message):
        ModbusDriver.validate_point_options(data_type, options)
    ModbusDriver.validate_point_options("float32", {"word_order": "little", "byte_order": "big", "read_back": True})


@pytest.mark.parametrize(
    ("address", "message"),
    [("hr:1.16", "from 0 to 15"), ("hr:1.x", "from 0 to 15"), ("co:1.2", "no bits"), ("hr:70000", "between 0")],
)
def test_bad_bit_and_large_addresses_are_explained(address, message):
    with pytest.raises(AddressError, match=message):
        parse_address(address, "bool" if "." in address or address.startswith("co") else "uint16")


async def test_each_answer_says_which_values_changed_since_the_previous_one(building, connected):
    driver = await connected()
    await building.server.context.async_setValues(0, 3, 0, [0x41A8, 0, 7, 0, 9])
    points = [
        PointSpec("a", "hr:0", "float32"),
        PointSpec("b", "hr:2", "uint16"),
        PointSpec("c", "hr:3", "uint32"),
        PointSpec("bit", "hr:2.1", "bool"),
    ]

    async def read_once():
        (batch,) = [batch async for batch in driver.read_batches(points)]
        return batch

    first = await read_once()
    assert first.changed is None  # nothing to compare with yet
    assert (await read_once()).changed == ()
    await building.server.context.async_setValues(0, 3, 2, [5])  # b and bit read register 2
    moved = await read_once()
    assert sorted(moved.names[i] for i in moved.changed) == ["b", "bit"]
    await building.server.context.async_setValues(0, 3, 4, [10])  # the low word of c
    moved = await read_once()
    assert [moved.names[i] for i in moved.changed] == ["c"]
    assert dict(zip(moved.names, moved.values, strict=True)) == {"a": 21.0, "b": 5, "c": 10, "bit": False}
