"""Modbus TCP driver on pymodbus 3.x.

Point addresses are ``<table>:<offset>`` with the table one of ``co`` (coils),
``di`` (discrete inputs), ``hr`` (holding registers) and ``ir`` (input
registers), and a zero-based protocol offset, e.g. ``hr:100``.

Reads are planned per table: nearby addresses are merged into one request
up to the protocol limits, so a device with 200 contiguous registers costs
two requests per poll, not 200. When a device refuses a merged request with
"illegal data address" (a hole in its map), that request is split into one
request per point, so only the points that really do not exist go bad; the
split is kept for later polls.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.base import (
    AddressError,
    CommunicationError,
    DeviceSpec,
    Driver,
    PointError,
    PointSpec,
    RawValue,
    Reading,
)

BIT_TABLES = ("co", "di")
REGISTER_TABLES = ("hr", "ir")
WRITABLE_TABLES = ("co", "hr")
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
DEFAULT_MAX_GAP = 8

# data type -> (struct format of one big-endian value, number of 16-bit registers)
REGISTER_TYPES: dict[str, tuple[str, int]] = {
    "int16": (">h", 1),
    "uint16": (">H", 1),
    "int32": (">i", 2),
    "uint32": (">I", 2),
    "int64": (">q", 4),
    "uint64": (">Q", 4),
    "float32": (">f", 2),
    "float64": (">d", 4),
}
RAW_RANGES: dict[str, tuple[float, float]] = {
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "float32": (-3.4028234e38, 3.4028234e38),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "float64": (-1.7976931348623157e308, 1.7976931348623157e308),
}


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    """A parsed point address: table, first offset and how many units it spans."""

    table: str
    offset: int
    width: int

    @property
    def end(self) -> int:
        return self.offset + self.width


@dataclass(slots=True)
class ReadBlock:
    """One planned read request covering several points of one table."""

    table: str
    start: int
    end: int
    points: list[tuple[PointSpec, ModbusAddress]]

    @property
    def count(self) -> int:
        return self.end - self.start


def parse_address(address: str, data_type: str) -> ModbusAddress:
    """Parse and validate ``address`` for ``data_type``; raise AddressError on anything wrong."""
    table, sep, offset_text = address.strip().partition(":")
    table = table.lower()
    if not sep or table not in BIT_TABLES + REGISTER_TABLES:
        raise AddressError(f"Modbus address {address!r} must look like 'hr:100' with a table of co, di, hr or ir")
    try:
        offset = int(offset_text)
    except ValueError:
        raise AddressError(f"Modbus address {address!r}: offset {offset_text!r} is not a whole number") from None
    if table in BIT_TABLES:
        if data_type != "bool":
            raise AddressError(f"Modbus address {address!r}: table {table} holds bits, so the data type must be bool")
        width = 1
    else:
        if data_type not in REGISTER_TYPES:
            raise AddressError(
                f"Modbus address {address!r}: data type {data_type!r} is not one of {', '.join(REGISTER_TYPES)}"
            )
        width = REGISTER_TYPES[data_type][1]
    if offset < 0 or offset + width > 65536:
        raise AddressError(f"Modbus address {address!r}: offset must be between 0 and {65536 - width}")
    return ModbusAddress(table, offset, width)


def plan_reads(points: Sequence[PointSpec], max_gap: int = DEFAULT_MAX_GAP) -> list[ReadBlock]:
    """Merge the points into as few read requests as the protocol limits allow.

    Two neighbours share a request when the hole between them is at most
    ``max_gap`` units and the merged request stays within 125 registers or
    2000 bits.
    """
    by_table: dict[str, list[tuple[PointSpec, ModbusAddress]]] = {}
    for point in points:
        parsed = parse_address(point.address, point.data_type)
        by_table.setdefault(parsed.table, []).append((point, parsed))
    blocks: list[ReadBlock] = []
    for table, entries in sorted(by_table.items()):
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else MAX_REGISTERS_PER_READ
        entries.sort(key=lambda entry: entry[1].offset)
        current: ReadBlock | None = None
        for point, parsed in entries:
            fits = (
                current is not None
                and parsed.offset - current.end <= max_gap
                and max(current.end, parsed.end) - current.start <= limit
            )
            if fits:
                assert current is not None
                current.end = max(current.end, parsed.end)
                current.points.append((point, parsed))
            else:
                current = ReadBlock(table, parsed.offset, parsed.end, [(point, parsed)])
                blocks.append(current)
    return blocks


def _reorder(words: list[int], word_order: str, byte_order: str) -> list[int]:
    """Map between the device's register order and big-endian; the mapping is its own inverse."""
    if byte_order == "little":
        words = [((word & 0xFF) << 8) | (word >> 8) for word in words]
    if word_order == "little":
        words = words[::-1]
    return words


def decode_registers(
    registers: Sequence[int], data_type: str, word_order: str = "big", byte_order: str = "big"
) -> int | float:
    """Decode a register slice to a value.

    ``word_order='little'``: the device sends the least significant 16-bit word
    first; ``byte_order='little'``: it swaps the two bytes inside each word.
    """
    fmt, width = REGISTER_TYPES[data_type]
    words = _reorder(list(registers[:width]), word_order, byte_order)
    return struct.unpack(fmt, struct.pack(f">{width}H", *words))[0]


def encode_registers(value: RawValue, data_type: str, word_order: str = "big", byte_order: str = "big") -> list[int]:
    """Encode a value into registers exactly the way :func:`decode_registers` reads them."""
    fmt, width = REGISTER_TYPES[data_type]
    number = float(value) if data_type.startswith("float") else int(value)
    try:
        words = list(struct.unpack(f">{width}H", struct.pack(fmt, number)))
    except struct.error as exc:
        raise PointError(f"value {value!r} does not fit in {data_type}") from exc
    return _reorder(words, word_order, byte_order)


class ModbusDriver(Driver):
    """Modbus TCP client for one device (one TCP connection, one request in flight)."""

    name = "modbus"
    data_types = ("bool", *REGISTER_TYPES)

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        self.word_order = str(device.options.get("word_order", "big"))
        self.byte_order = str(device.options.get("byte_order", "big"))
        self.max_gap = int(device.options.get("max_gap", DEFAULT_MAX_GAP))
        self._client: AsyncModbusTcpClient | None = None
        self._plan_key: tuple[PointSpec, ...] | None = None
        self._plan_points: Sequence[PointSpec] | None = None
        self._plan: list[ReadBlock] = []
        #: requests sent by the last read(); the planner's effect, visible to tests and benchmarks
        self.requests_last_read = 0

    @classmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        parse_address(address, data_type)

    @classmethod
    def value_range(cls, data_type: str) -> tuple[float, float] | None:
        return RAW_RANGES.get(data_type)

    async def connect(self) -> None:
        await self.close()
        # pymodbus' own reconnect loop is switched off: the engine owns retry
        # timing, so a dead device costs one attempt per poll cycle, no more.
        client = AsyncModbusTcpClient(
            self.device.host,
            port=self.device.port,
            timeout=self.device.timeout,
            retries=0,
            reconnect_delay=0,
        )
        try:
            connected = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise CommunicationError(f"cannot connect to {self._where}: {exc}") from exc
        if not connected:
            client.close()
            raise CommunicationError(f"cannot connect to {self._where}")
        self._client = client

    @property
    def _where(self) -> str:
        return f"{self.device.host}:{self.device.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _plan_for(self, points: Sequence[PointSpec]) -> list[ReadBlock]:
        # The engine passes the same list every poll: compare identity first, so
        # 10,000 points are not compared field by field on every cycle.
        if points is not self._plan_points and tuple(points) != self._plan_key:
            self._plan = plan_reads(points, self.max_gap)
            self._plan_key = tuple(points)
        self._plan_points = points
        return self._plan

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Reading]:
        readings: dict[str, Reading] = {}
        async for batch in self.read_iter(points):
            readings.update(batch)
        return readings

    async def read_iter(self, points: Sequence[PointSpec]) -> AsyncIterator[dict[str, Reading]]:
        client = self._require_client()
        self.requests_last_read = 0
        plan = self._plan_for(points)
        for block in list(plan):
            response = await self._request(client, block)
            if _illegal_address(response) and len(block.points) > 1:
                yield await self._split(client, plan, block)
            else:
                yield self._decode_block(block, response)

    async def _request(self, client: AsyncModbusTcpClient, block: ReadBlock) -> ModbusPDU:
        self.requests_last_read += 1
        return await self._call(self._reader(client, block.table), block.start, count=block.count)

    async def _split(self, client: AsyncModbusTcpClient, plan: list[ReadBlock], block: ReadBlock) -> dict[str, Reading]:
        """Replace a refused merged request by one request per point, now and in later polls."""
        singles = [
            ReadBlock(block.table, parsed.offset, parsed.end, [(point, parsed)]) for point, parsed in block.points
        ]
        position = plan.index(block)
        plan[position : position + 1] = singles
        readings: dict[str, Reading] = {}
        for single in singles:
            readings.update(self._decode_block(single, await self._request(client, single)))
        return readings

    def _decode_block(self, block: ReadBlock, response: ModbusPDU) -> dict[str, Reading]:
        readings: dict[str, Reading] = {}
        if response.isError():
            error = f"device refused {block.table}:{block.start}..{block.end - 1}: {response}"
            return {point.name: Reading(None, error) for point, _ in block.points}
        for point, parsed in block.points:
            index = parsed.offset - block.start
            if block.table in BIT_TABLES:
                value: RawValue = bool(response.bits[index])
            else:
                value = decode_registers(
                    response.registers[index : index + parsed.width], point.data_type, self.word_order, self.byte_order
                )
            readings[point.name] = Reading(value)
        return readings

    async def write(self, point: PointSpec, value: RawValue, priority: int | None = None) -> None:
        parsed = parse_address(point.address, point.data_type)
        if parsed.table not in WRITABLE_TABLES:
            raise PointError(f"{point.name}: table {parsed.table} is read-only in Modbus")
        client = self._require_client()
        if parsed.table == "co":
            response = await self._call(client.write_coil, parsed.offset, bool(value))
        else:
            words = encode_registers(value, point.data_type, self.word_order, self.byte_order)
            if len(words) == 1:
                response = await self._call(client.write_register, parsed.offset, words[0])
            else:
                response = await self._call(client.write_registers, parsed.offset, words)
        if response.isError():
            raise PointError(f"{point.name}: device refused the write: {response}")

    def _require_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise CommunicationError(f"not connected to {self._where}")
        return self._client

    @staticmethod
    def _reader(client: AsyncModbusTcpClient, table: str) -> Callable[..., Awaitable[ModbusPDU]]:
        return {
            "co": client.read_coils,
            "di": client.read_discrete_inputs,
            "hr": client.read_holding_registers,
            "ir": client.read_input_registers,
        }[table]

    async def _call(self, method: Callable[..., Awaitable[ModbusPDU]], *args: Any, **kwargs: Any) -> ModbusPDU:
        try:
            return await method(*args, device_id=self.device.unit_id, **kwargs)
        except ModbusException as exc:
            # A timeout or a dropped link: the connection state is unknown, so drop it.
            await self.close()
            raise CommunicationError(f"{self._where}: {exc}") from exc


def _illegal_address(response: ModbusPDU) -> bool:
    return response.isError() and getattr(response, "exception_code", None) == ExcCodes.ILLEGAL_ADDRESS
