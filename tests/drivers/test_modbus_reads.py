"""The driver's own register reads (drivers/modbus_reads.py) on pymodbus' connection, against real servers."""

import asyncio
import functools

import pytest

from drivers import modbus_reads
from drivers.base import CommunicationError, DeviceSpec, PointSpec
from drivers.modbus import ModbusDriver
from tests.support.raw_modbus import RawModbusServer

POINTS = [PointSpec("a", "hr:0", "uint16"), PointSpec("b", "ir:10", "int16")]


class FirstAnswerLate(RawModbusServer):
    """Answers the first request after ``late`` s, the others at once; register 0 holds the request's number, so
    an answer shows which request it belongs to."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    def _reply(self, pdu: bytes) -> bytes | None:
        self.delay = self.late if self.requests == 1 else 0.0
        self.registers[0] = self.requests
        return super()._reply(pdu)


class AnswersAsUnit9(RawModbusServer):
    """A gateway that answers for unit 9 whatever unit was asked."""

    async def _serve(self, reader, writer):
        write = writer.write
        writer.write = lambda data: write(data[:6] + bytes([9]) + data[7:])
        await super()._serve(reader, writer)


async def connected(port: int, **options) -> ModbusDriver:
    driver = ModbusDriver(DeviceSpec("raw", "127.0.0.1", port, timeout=0.3, options=options))
    await driver.connect()
    return driver


async def test_the_pinned_pymodbus_has_what_the_reads_use_and_the_driver_uses_them(device):
    driver = await connected(device.port)
    try:
        # fails after a pymodbus upgrade that renamed what modbus_reads relies on: the driver would then fall back
        # to pymodbus' own reads (correct, slower), and this says so
        assert modbus_reads.supported(driver._client)
        for table in ("hr", "ir"):
            reader = driver._readers[table]
            assert isinstance(reader, functools.partial)
            assert isinstance(reader.func.__self__, modbus_reads.RegisterReads)
        device.registers[0], device.registers[10] = 1234, 0xFFFE
        readings = await driver.read(POINTS)
        assert (readings["a"].value, readings["b"].value) == (1234, -2)
    finally:
        await driver.close()


async def test_a_late_answer_to_a_timed_out_attempt_is_not_taken_for_the_answer_to_the_retry():
    server = FirstAnswerLate(late=0.5)
    await server.start()
    driver = await connected(server.port, retries=1)
    try:
        readings = await driver.read([PointSpec("a", "hr:0", "uint16")])
        # the first answer (register 0 = 1) arrives after the retry was sent: it is dropped by its transaction id
        assert readings["a"].value == 2
        assert server.requests == 2
        assert driver.connected
        assert (await driver.read([PointSpec("a", "hr:0", "uint16")]))["a"].value == 3  # still in step
    finally:
        await driver.close()
        await server.stop()


async def test_reads_and_writes_on_one_connection_never_take_each_others_answers(device):
    driver = await connected(device.port)
    try:
        device.registers[10] = 77
        target = PointSpec("w", "hr:100", "uint16")
        for value in range(1, 31):
            readings, _ = await asyncio.gather(driver.read(POINTS), driver.write(target, value))
            assert readings["b"].value == 77
        assert [words for address, words in device.written] == [(value,) for value in range(1, 31)]
        assert device.registers[100] == 30
    finally:
        await driver.close()


async def test_an_exception_answer_is_the_devices_refusal_not_a_lost_link(device, monkeypatch):
    driver = await connected(device.port)
    try:
        monkeypatch.setattr(device, "_reply", lambda pdu: bytes([pdu[0] | 0x80, 2]))  # illegal data address
        readings = await driver.read([PointSpec("a", "hr:0", "uint16")])
        assert readings["a"].value is None and "device refused hr:0..0" in readings["a"].error
        assert driver.connected
    finally:
        await driver.close()


async def test_an_answer_from_another_unit_is_garbage():
    server = AnswersAsUnit9()
    await server.start()
    driver = ModbusDriver(DeviceSpec("raw", "127.0.0.1", server.port, unit_id=5, timeout=0.3))
    await driver.connect()
    try:
        with pytest.raises(CommunicationError, match="answer from unit 9 to a request to unit 5"):
            await driver.read([PointSpec("a", "hr:0", "uint16")])
        assert not driver.connected  # the stream is no longer trusted to be in step
    finally:
        await driver.close()
        await server.stop()


async def test_without_what_it_needs_the_driver_reads_through_pymodbus(device, monkeypatch):
    monkeypatch.setattr(modbus_reads, "supported", lambda client: False)  # a pymodbus that changed its internals
    driver = await connected(device.port)
    try:
        assert not isinstance(driver._readers["hr"], functools.partial)
        device.registers[0], device.registers[10] = 9, 3
        readings = await driver.read(POINTS)
        assert (readings["a"].value, readings["b"].value) == (9, 3)
    finally:
        await driver.close()
