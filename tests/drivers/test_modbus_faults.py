"""The Modbus driver against devices that misbehave: silence, garbage, malformed answers, retries."""

import pytest

from drivers.base import CommunicationError, DeviceSpec, PointError, PointSpec
from drivers.modbus import ModbusDriver
from tests.support.raw_modbus import GARBAGE, IGNORE_WRITES, ODD, OVERCOUNT, SHORT, SILENT


@pytest.fixture
async def driver_to(device):
    drivers: list[ModbusDriver] = []

    async def connect(**options) -> ModbusDriver:
        driver = ModbusDriver(DeviceSpec("raw", "127.0.0.1", device.port, timeout=0.2, options=options))
        await driver.connect()
        drivers.append(driver)
        return driver

    yield connect
    for driver in drivers:
        await driver.close()


POINTS = [PointSpec("a", "hr:0", "uint16"), PointSpec("b", "hr:1", "float32")]


async def test_a_correct_raw_device_reads(device, driver_to):
    device.registers[0:3] = [7, 0x41A8, 0x0000]  # 7 and 21.0
    readings = await (await driver_to()).read(POINTS)
    assert (readings["a"].value, readings["b"].value) == (7, 21.0)


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_a_silent_device_is_asked_retries_plus_one_times_then_lost(device, driver_to, retries):
    driver = await driver_to(retries=retries)
    device.mode = SILENT
    with pytest.raises(CommunicationError, match=r"127\.0\.0\.1:\d+: .*No response"):
        await driver.read(POINTS)
    assert device.requests == retries + 1
    assert not driver.connected  # the link is rebuilt on the next poll, never reused half-synchronised


@pytest.mark.parametrize("retries", [1, 2])
async def test_a_write_is_sent_once_even_with_retries_since_only_its_answer_may_be_lost(device, driver_to, retries):
    driver = await driver_to(retries=retries)
    device.mode = SILENT  # the device may apply the write and lose the answer: sending it again could double it
    with pytest.raises(CommunicationError):
        await driver.write(PointSpec("a", "hr:0", "uint16"), 5)
    assert device.requests == 1
    device.mode = "answer"
    await driver.connect()
    requests = device.requests
    with pytest.raises(CommunicationError):  # reads keep their retries after a write
        device.mode = SILENT
        await driver.read(POINTS)
    assert device.requests - requests == retries + 1


async def test_a_device_answering_garbage_is_a_communication_error(device, driver_to):
    driver = await driver_to(retries=0)
    device.mode = GARBAGE
    with pytest.raises(CommunicationError):
        await driver.read(POINTS)
    assert not driver.connected


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        (SHORT, r"2 register\(s\) for 3"),
        # The driver decodes the answer's own bytes (drivers/modbus_wire.py): half a register must not slip through.
        (ODD, r"2\.5 register\(s\) for 3"),
    ],
)
async def test_an_answer_of_the_wrong_length_is_named_garbage(device, driver_to, mode, detail):
    driver = await driver_to()
    device.mode = mode
    with pytest.raises(CommunicationError, match=r"answered garbage to a read of hr:0\.\.2: " + detail):
        await driver.read(POINTS)
    assert not driver.connected


async def test_an_answer_claiming_more_bytes_than_it_holds_is_a_communication_error(device, driver_to):
    driver = await driver_to(retries=0)
    device.mode = OVERCOUNT
    with pytest.raises(CommunicationError):
        await driver.read(POINTS)
    assert not driver.connected
    device.mode = "answer"
    device.registers[0] = 5
    await driver.connect()
    assert (await driver.read(POINTS))["a"].value == 5


async def test_the_driver_recovers_when_the_device_is_fixed(device, driver_to):
    driver = await driver_to(retries=0)
    device.mode = GARBAGE
    with pytest.raises(CommunicationError):
        await driver.read(POINTS)
    device.mode = "answer"
    device.registers[0] = 42
    await driver.connect()
    assert (await driver.read(POINTS))["a"].value == 42


async def test_read_back_fails_a_write_the_device_did_not_keep(device, driver_to):
    driver = await driver_to(read_back=True)
    await driver.write(PointSpec("sp", "hr:10", "float32"), 21.5)  # a device that keeps it: no error
    await driver.write(PointSpec("fan", "co:3", "bool"), True)
    device.mode = IGNORE_WRITES
    with pytest.raises(PointError, match=r"sp: wrote 23\.0 but the device reads back 21\.5"):
        await driver.write(PointSpec("sp", "hr:10", "float32"), 23.0)
    with pytest.raises(PointError, match="fan: wrote False but the device reads back True"):
        await driver.write(PointSpec("fan", "co:3", "bool"), False)
    with pytest.raises(PointError, match="reads back False"):
        await driver.write(PointSpec("bit", "hr:20.4", "bool"), True)
    # without read-back the same write "succeeds": that is what the option is for
    await (await driver_to()).write(PointSpec("sp", "hr:10", "float32"), 23.0)


async def test_read_back_can_be_asked_for_one_point(device, driver_to):
    driver = await driver_to()
    device.mode = IGNORE_WRITES
    await driver.write(PointSpec("sp", "hr:10", "uint16"), 5)
    with pytest.raises(PointError, match="reads back 0"):
        await driver.write(PointSpec("sp", "hr:10", "uint16", {"read_back": True}), 5)
