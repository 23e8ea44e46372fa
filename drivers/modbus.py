"""Modbus TCP driver on pymodbus 3.x.

Point addresses are ``<table>:<offset>`` with the table one of ``co`` (coils),
``di`` (discrete inputs), ``hr`` (holding registers) and ``ir`` (input
registers), and a zero-based protocol offset, e.g. ``hr:100``. A bool point
may also be one bit of a register: ``hr:100.3`` (bit 0 is the least
significant).

Reads are planned per table: nearby addresses are merged into one request
up to the protocol limits, so a device with 200 contiguous registers costs
two requests per poll, not 200. When a device refuses a merged request with
"illegal data address" (a hole in its map), that request is split into one
request per point, so only the points that really do not exist go bad; the
split is kept for later polls.

Word and byte order are device options (``word_order``, ``byte_order``:
``big`` or ``little``) that a point may override in its own options; a
merged request is decoded point by point in each point's own order, and
writes encode with exactly the order reads decode with. Each planned request
compiles once into a few :class:`struct.Struct` calls over the answer's own
bytes (:mod:`drivers.modbus_wire`), so decoding a 125 register answer costs
a handful of C calls, not 125 Python ones. The poll's register reads are
sent and answered by :mod:`drivers.modbus_reads` on the pymodbus client's
connection and lock (ADR 0022); connecting, bits, writes and read-backs go
through pymodbus.

Device options: ``word_order``, ``byte_order``, ``max_gap`` (largest hole,
in registers or bits, that the planner reads through; default 8),
``retries`` (times a timed-out *read* is sent again before the device is
declared unreachable; default 1; a write is never sent again: the device may
have applied it and only the answer was lost), ``read_back`` and ``write_multiple`` (see
below). Point options: ``word_order``, ``byte_order``, ``read_back``,
``write_multiple``.

Writes: a coil with function 5, a one-register value with function 6 and a
wider value with function 16; ``write_multiple: true`` uses 15 and 16 for
every write (devices that implement only those). A bit of a holding register
is written by reading the register and writing it back with the bit changed
(another master writing the same register in between would be
overwritten). ``read_back: true`` reads the point after the write and fails
the write if the device does not hold what was written.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers import modbus_reads, modbus_wire
from drivers.base import (
    AddressError,
    Batch,
    CommunicationError,
    DeviceSpec,
    Driver,
    PointConflict,
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
DEFAULT_RETRIES = 1
ORDERS = ("big", "little")
FUNCTION_CODES = {"co": 1, "di": 2, "hr": 3, "ir": 4}

# data type -> (struct format of one value without byte order, number of 16-bit registers)
REGISTER_TYPES: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
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
# option -> allowed values (None: true or false)
POINT_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "word_order": ORDERS,
    "byte_order": ORDERS,
    "read_back": None,
    "write_multiple": None,
}


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    """A parsed point address: table, first offset, how many units it spans, and the bit of a register."""

    table: str
    offset: int
    width: int
    bit: int | None = None

    @property
    def end(self) -> int:
        return self.offset + self.width


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one point's registers map to its value: word order and byte order, ``big`` or ``little``."""

    word_order: str = "big"
    byte_order: str = "big"


@dataclass(slots=True)
class ReadBlock:
    """One planned read request covering several points of one table."""

    table: str
    start: int
    end: int
    points: list[tuple[PointSpec, ModbusAddress]]
    decoder: BlockDecoder | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return self.end - self.start


def parse_address(address: str, data_type: str) -> ModbusAddress:
    """Parse and validate ``address`` for ``data_type``; raise AddressError on anything wrong."""
    table, sep, offset_text = address.strip().partition(":")
    table = table.lower()
    if not sep or table not in BIT_TABLES + REGISTER_TABLES:
        raise AddressError(f"Modbus address {address!r} must look like 'hr:100' with a table of co, di, hr or ir")
    offset_text, dot, bit_text = offset_text.partition(".")
    try:
        offset = int(offset_text)
    except ValueError:
        raise AddressError(f"Modbus address {address!r}: offset {offset_text!r} is not a whole number") from None
    bit = None
    if table in BIT_TABLES:
        if data_type != "bool":
            raise AddressError(f"Modbus address {address!r}: table {table} holds bits, so the data type must be bool")
        if dot:
            raise AddressError(f"Modbus address {address!r}: a coil or discrete input has no bits to choose from")
        width = 1
    elif dot or data_type == "bool":
        if data_type != "bool" or not dot:
            raise AddressError(
                f"Modbus address {address!r}: one bit of a register is a bool point addressed like "
                f"'{table}:{offset_text}.3'; a whole register takes one of {', '.join(REGISTER_TYPES)}"
            )
        if not bit_text.isdigit() or not 0 <= int(bit_text) <= 15:
            raise AddressError(f"Modbus address {address!r}: the bit must be a number from 0 to 15")
        bit = int(bit_text)
        width = 1
    else:
        if data_type not in REGISTER_TYPES:
            raise AddressError(
                f"Modbus address {address!r}: data type {data_type!r} is not one of {', '.join(REGISTER_TYPES)}"
            )
        width = REGISTER_TYPES[data_type][1]
    if offset < 0 or offset + width > 65536:
        raise AddressError(f"Modbus address {address!r}: offset must be between 0 and {65536 - width}")
    return ModbusAddress(table, offset, width, bit)


def plan_reads(points: Sequence[PointSpec], max_gap: int = DEFAULT_MAX_GAP) -> list[ReadBlock]:
    """Merge the points into as few read requests as the protocol limits allow.

    Two neighbours share a request when the hole between them is at most
    ``max_gap`` units and the merged request stays within 125 registers or
    2000 bits. Points with different word or byte orders may share a
    request: each is decoded in its own order.
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
    return struct.unpack(">" + fmt, struct.pack(f">{width}H", *words))[0]


def encode_registers(value: RawValue, data_type: str, word_order: str = "big", byte_order: str = "big") -> list[int]:
    """Encode a value into registers exactly the way :func:`decode_registers` reads them."""
    fmt, width = REGISTER_TYPES[data_type]
    number = float(value) if data_type.startswith("float") else int(value)
    try:
        words = list(struct.unpack(f">{width}H", struct.pack(">" + fmt, number)))
    except struct.error as exc:
        raise PointError(f"value {value!r} does not fit in {data_type}") from exc
    return _reorder(words, word_order, byte_order)


class BlockDecoder:
    """Decodes the answer to one planned request into a :class:`Batch`, with a few C calls.

    The answer's payload is used as it came (big-endian registers), and
    byte-swapped once if a point needs that; each group of points read the same way is then one precompiled
    ``Struct.unpack_from`` over it, with pad bytes for holes. The four
    encodings map to (stream, format): big/big reads the big-endian stream
    with ``>``, little/little the same stream with ``<``, big word order with
    swapped bytes reads the byte-swapped stream with ``>``, and little word
    order with normal bytes the byte-swapped stream with ``<``. Points that
    overlap an earlier point of their group (a register read as two types)
    get a layer of their own.

    It also remembers the previous answer and says which values may have
    changed since (the registers that differ, found with one XOR of the two
    answers as integers), so the engine does not look at the others.
    """

    __slots__ = (
        "_bit_getter",
        "_bits",
        "_by_register",
        "_last",
        "_layers",
        "_swaps",
        "count",
        "names",
        "table",
    )

    def __init__(self, block: ReadBlock, encodings: Mapping[str, Encoding]) -> None:
        self.table = block.table
        self.count = block.count
        names: list[str] = []
        self._bits: list[tuple[int, int]] = []  # (register index, bit) of bool points inside registers
        self._bit_getter: Callable[[Sequence[bool]], Any] | None = None
        # (stream is byte-swapped, struct over it)
        self._layers: list[tuple[bool, struct.Struct]] = []
        if block.table in BIT_TABLES:
            names = [point.name for point, _ in block.points]
            self._bit_getter = itemgetter(*(parsed.offset - block.start for _, parsed in block.points))
        else:
            # (swapped stream, little-endian format) -> layers of [(byte offset, format char, name)]
            groups: dict[tuple[bool, bool], list[list[tuple[int, str, str]]]] = {}
            bit_names: list[str] = []
            for point, parsed in block.points:
                index = parsed.offset - block.start
                if parsed.bit is not None:
                    self._bits.append((index, parsed.bit))
                    bit_names.append(point.name)
                    continue
                encoding = encodings[point.name]
                swapped = encoding.byte_order == "little"
                # one register has no word order; the struct then reads it big-endian
                little = encoding.word_order == "little" and REGISTER_TYPES[point.data_type][1] > 1
                key = (swapped != little, little)
                layers = groups.setdefault(key, [])
                fmt = REGISTER_TYPES[point.data_type][0]
                for layer in layers:
                    last_offset, last_fmt, _ = layer[-1]
                    if last_offset + struct.calcsize("<" + last_fmt) <= 2 * index:
                        layer.append((2 * index, fmt, point.name))
                        break
                else:
                    layers.append([(2 * index, fmt, point.name)])
            for (swapped_stream, little), layers in groups.items():
                for layer in layers:
                    self._layers.append((swapped_stream, _layer_struct(layer, little)))
                    names.extend(name for _, _, name in layer)
            names.extend(bit_names)
        self.names: tuple[str, ...] = tuple(names)
        # register index -> indices of the values that read it
        by_register: list[list[int]] = [[] for _ in range(self.count)]
        if block.table in REGISTER_TABLES:
            where = {point.name: parsed for point, parsed in block.points}
            for value_index, name in enumerate(self.names):
                parsed = where[name]
                for register in range(parsed.offset - block.start, parsed.end - block.start):
                    by_register[register].append(value_index)
        self._by_register = [tuple(indices) for indices in by_register]
        self._swaps = any(swapped for swapped, _ in self._layers)
        self._last: bytes | tuple[RawValue, ...] | None = None

    def decode(self, response: ModbusPDU) -> tuple[tuple[RawValue, ...], tuple[int, ...] | None]:
        """The values of ``names`` from a successful answer, and the indices of those that may have changed
        since the previous answer (None for the first). _Garbage if the answer is malformed."""
        if self._bit_getter is not None:
            bits = response.bits
            if len(bits) < self.count:
                raise _Garbage(f"{len(bits)} bit(s) for {self.count} requested")
            values = self._bit_getter(bits)
            if len(self.names) == 1:
                values = (values,)
            last, self._last = self._last, values
            if last is None:
                return values, None
            return values, tuple(i for i, (new, old) in enumerate(zip(values, last, strict=True)) if new != old)
        big = modbus_wire.payload(response)  # the registers as sent: big-endian; also the form answers compare in
        if len(big) != 2 * self.count:
            raise _Garbage(f"{len(big) / 2:g} register(s) for {self.count} requested")
        swapped = _swap_bytes(big) if self._swaps else b""
        values = ()
        for is_swapped, layer in self._layers:
            values += layer.unpack_from(swapped if is_swapped else big)
        if self._bits:
            # bit 0 is the least significant: in the register's second (low) byte
            values += tuple(bool(big[2 * index + (bit < 8)] >> (bit & 7) & 1) for index, bit in self._bits)
        last, self._last = self._last, big
        if last is None:
            return values, None
        if last == big:
            return values, ()
        return values, self._changed(big, last)

    def _changed(self, new: bytes, old: bytes) -> tuple[int, ...]:
        diff = int.from_bytes(new, "big") ^ int.from_bytes(old, "big")
        changed: set[int] = set()
        while diff:
            shift = (diff.bit_length() - 1) & ~15  # the lowest bit of the leftmost register that differs
            changed.update(self._by_register[self.count - 1 - (shift >> 4)])
            diff &= (1 << shift) - 1
        return tuple(sorted(changed))


def _swap_bytes(big: bytes) -> bytes:
    words = array("H", big)
    words.byteswap()
    return words.tobytes()


def _layer_struct(layer: list[tuple[int, str, str]], little: bool) -> struct.Struct:
    parts = ["<" if little else ">"]
    position = 0
    for byte_offset, fmt, _ in layer:
        if byte_offset > position:
            parts.append(f"{byte_offset - position}x")
        parts.append(fmt)
        position = byte_offset + struct.calcsize("<" + fmt)
    return struct.Struct("".join(parts))


class _Garbage(Exception):
    """An answer that is not what was asked for; turned into a CommunicationError naming the request."""


def _flag(value: Any) -> bool:
    return value is True


class ModbusDriver(Driver):
    """Modbus TCP client for one device (one TCP connection, one request in flight)."""

    name = "modbus"
    data_types = ("bool", *REGISTER_TYPES)

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        options = device.options
        self.encoding = Encoding(str(options.get("word_order", "big")), str(options.get("byte_order", "big")))
        self.max_gap = int(options.get("max_gap", DEFAULT_MAX_GAP))
        self.retries = int(options.get("retries", DEFAULT_RETRIES))
        self.read_back = _flag(options.get("read_back", False))
        self.write_multiple = _flag(options.get("write_multiple", False))
        self._client: AsyncModbusTcpClient | None = None
        self._readers: dict[str, Callable[..., Awaitable[ModbusPDU]]] = {}
        self._plan_key: tuple[PointSpec, ...] | None = None
        self._plan_points: Sequence[PointSpec] | None = None
        self._plan: list[ReadBlock] = []
        #: requests sent by the last read(); the planner's effect, visible to tests and benchmarks
        self.requests_last_read = 0

    # -- configuration -------------------------------------------------------------------------------------------

    @classmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        parse_address(address, data_type)

    @classmethod
    def value_range(cls, data_type: str) -> tuple[float, float] | None:
        return RAW_RANGES.get(data_type)

    @classmethod
    def validate_point_options(cls, data_type: str, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(POINT_OPTIONS))
        if unknown:
            raise AddressError(
                f"unknown Modbus point option(s) {', '.join(unknown)}; known: {', '.join(POINT_OPTIONS)}"
            )
        for option, allowed in POINT_OPTIONS.items():
            if option not in options:
                continue
            value = options[option]
            if allowed is None and not isinstance(value, bool):
                raise AddressError(f"{option} must be true or false, not {value!r}")
            if allowed is not None and value not in allowed:
                raise AddressError(f"{option} must be {' or '.join(repr(a) for a in allowed)}, not {value!r}")
        width = REGISTER_TYPES.get(data_type, ("", 1))[1]
        if "word_order" in options and width == 1:
            raise AddressError(f"word_order has no effect on a one-register {data_type} point; remove it")
        if "byte_order" in options and data_type == "bool":
            raise AddressError("byte_order has no effect on a bool point; remove it")

    @classmethod
    def check_point_list(cls, points: Sequence[PointSpec]) -> list[PointConflict]:
        """Registers shared by two points in different ways (a float32 at 10 and an int16 at 11).

        Two points covering exactly the same registers are allowed (one
        register read as int16 and as uint16), and so are bits of a register
        and repeated coils: they are readings of the same data, not clashes.
        """
        conflicts: list[PointConflict] = []
        by_table: dict[str, list[tuple[ModbusAddress, PointSpec]]] = {}
        for point in points:
            try:
                parsed = parse_address(point.address, point.data_type)
            except AddressError:
                continue  # reported by validate_point
            if parsed.table in REGISTER_TABLES and parsed.bit is None:
                by_table.setdefault(parsed.table, []).append((parsed, point))
        for entries in by_table.values():
            entries.sort(key=lambda entry: (entry[0].offset, entry[0].width))
            active: list[tuple[ModbusAddress, PointSpec]] = []
            for parsed, point in entries:
                active = [(a, p) for a, p in active if a.end > parsed.offset]
                for other_address, other in active:
                    if (other_address.offset, other_address.width) != (parsed.offset, parsed.width):
                        conflicts.append(
                            PointConflict(
                                point.name,
                                other.name,
                                f"{point.name} at {point.address} ({point.data_type}, {_registers(parsed)}) overlaps "
                                f"{other.name} at {other.address} ({other.data_type}, {_registers(other_address)})",
                            )
                        )
                active.append((parsed, point))
        return conflicts

    def _encoding(self, point: PointSpec) -> Encoding:
        options = point.options
        if not options:
            return self.encoding
        return Encoding(
            str(options.get("word_order", self.encoding.word_order)),
            str(options.get("byte_order", self.encoding.byte_order)),
        )

    def _option(self, point: PointSpec, option: str, default: bool) -> bool:
        return _flag(point.options.get(option, default))

    # -- connection ----------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.close()
        # pymodbus' own reconnect loop is switched off: the engine owns retry
        # timing, so a dead device costs one attempt per poll cycle, no more.
        # Its request retries are ours: a timed-out request is sent again on
        # the same connection ``retries`` times before the device counts as lost.
        client = AsyncModbusTcpClient(
            self.device.host,
            port=self.device.port,
            timeout=self.device.timeout,
            retries=self.retries,
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
        modbus_wire.install(client)
        self._client = client
        self._readers = {
            "co": client.read_coils,
            "di": client.read_discrete_inputs,
            "hr": client.read_holding_registers,
            "ir": client.read_input_registers,
        }
        if modbus_reads.supported(client):
            # the poll's register reads without pymodbus' per-request machinery (ADR 0022); writes and
            # read-backs stay on pymodbus, on the same connection and under the same lock
            reads = modbus_reads.RegisterReads(client, self.device.timeout, self.retries)
            self._readers["hr"], self._readers["ir"] = reads.reader(3), reads.reader(4)

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

    # -- reading -------------------------------------------------------------------------------------------------

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
        async for batch in self.read_batches(points):
            readings.update(batch.readings())
        return readings

    async def read_iter(self, points: Sequence[PointSpec]) -> AsyncIterator[dict[str, Reading]]:
        async for batch in self.read_batches(points):
            yield batch.readings()

    async def read_batches(self, points: Sequence[PointSpec]) -> AsyncIterator[Batch]:
        client = self._require_client()
        self.requests_last_read = 0
        plan = self._plan_for(points)
        for block in list(plan):
            response = await self._request(client, block)
            if _illegal_address(response) and len(block.points) > 1:
                for single in self._split(plan, block):
                    yield self._decode(single, await self._request(client, single))
            else:
                yield self._decode(block, response)

    async def _request(self, client: AsyncModbusTcpClient, block: ReadBlock) -> ModbusPDU:
        # _call inlined, and the reader looked up in a table made at connect: this runs for every request
        self.requests_last_read += 1
        try:
            return await self._readers[block.table](block.start, count=block.count, device_id=self.device.unit_id)
        except ModbusException as exc:
            self._drop()
            raise CommunicationError(f"{self._where}: {exc}") from exc

    def _split(self, plan: list[ReadBlock], block: ReadBlock) -> list[ReadBlock]:
        """Replace a refused merged request by one request per point, now and in later polls."""
        singles = [
            ReadBlock(block.table, parsed.offset, parsed.end, [(point, parsed)]) for point, parsed in block.points
        ]
        position = plan.index(block)
        plan[position : position + 1] = singles
        return singles

    def _decode(self, block: ReadBlock, response: ModbusPDU) -> Batch:
        decoder = block.decoder
        if decoder is None:
            decoder = block.decoder = BlockDecoder(block, {p.name: self._encoding(p) for p, _ in block.points})
        if response.isError():
            error = f"device refused {block.table}:{block.start}..{block.end - 1}: {response}"
            return Batch(decoder.names, [None] * len(decoder.names), {n: Reading(None, error) for n in decoder.names})
        if response.function_code != FUNCTION_CODES[block.table]:
            raise self._garbage_error(block, f"function {response.function_code} in answer to a read of {block.table}")
        try:
            values, changed = decoder.decode(response)
        except _Garbage as exc:
            raise self._garbage_error(block, str(exc)) from None
        return Batch(decoder.names, values, changed=changed)

    def _garbage_error(self, block: ReadBlock, detail: str) -> CommunicationError:
        # The byte stream can no longer be trusted to be in step with our
        # requests, so the link is dropped and rebuilt like after a timeout.
        self._drop()
        return CommunicationError(
            f"{self._where} answered garbage to a read of {block.table}:{block.start}..{block.end - 1}: {detail}"
        )

    # -- writing -------------------------------------------------------------------------------------------------

    async def write(self, point: PointSpec, value: RawValue, priority: int | None = None) -> None:
        parsed = parse_address(point.address, point.data_type)
        if parsed.table not in WRITABLE_TABLES:
            raise PointError(f"{point.name}: table {parsed.table} is read-only in Modbus")
        client = self._require_client()
        # One request in flight per connection (the poller's lock), so switching the
        # transaction manager's retries off for this write affects no other request.
        client.ctx.retries = 0
        try:
            await self._write(client, point, parsed, value)
        finally:
            client.ctx.retries = self.retries

    async def _write(
        self, client: AsyncModbusTcpClient, point: PointSpec, parsed: ModbusAddress, value: RawValue
    ) -> None:
        multiple = self._option(point, "write_multiple", self.write_multiple)
        encoding = self._encoding(point)
        if parsed.table == "co":
            expected: list[int] | bool = bool(value)
            if multiple:
                response = await self._call(client.write_coils, parsed.offset, [bool(value)])
            else:
                response = await self._call(client.write_coil, parsed.offset, bool(value))
        elif parsed.bit is not None:
            expected = bool(value)
            current = await self._read_registers(client, point, parsed)
            mask = 1 << parsed.bit
            word = (current[0] | mask) if value else (current[0] & ~mask & 0xFFFF)
            response = await self._write_words(client, parsed.offset, [word], multiple)
        else:
            expected = encode_registers(value, point.data_type, encoding.word_order, encoding.byte_order)
            response = await self._write_words(client, parsed.offset, expected, multiple)
        if response.isError():
            raise PointError(f"{point.name}: device refused the write: {response}")
        if self._option(point, "read_back", self.read_back):
            await self._check_read_back(client, point, parsed, value, expected, encoding)

    async def _write_words(
        self, client: AsyncModbusTcpClient, offset: int, words: list[int], multiple: bool
    ) -> ModbusPDU:
        if len(words) == 1 and not multiple:
            return await self._call(client.write_register, offset, words[0])
        return await self._call(client.write_registers, offset, words)

    async def _read_registers(self, client: AsyncModbusTcpClient, point: PointSpec, parsed: ModbusAddress) -> list[int]:
        response = await self._call(client.read_holding_registers, parsed.offset, count=parsed.width)
        if response.isError():
            raise PointError(f"{point.name}: device refused to read {point.address}: {response}")
        if len(response.registers) != parsed.width:
            self._drop()
            raise CommunicationError(f"{self._where} answered garbage to a read of {point.address}")
        return list(response.registers)

    async def _check_read_back(
        self,
        client: AsyncModbusTcpClient,
        point: PointSpec,
        parsed: ModbusAddress,
        value: RawValue,
        expected: list[int] | bool,
        encoding: Encoding,
    ) -> None:
        """Compare what the device holds now with what was written: the words, or the bit."""
        if parsed.table == "co":
            response = await self._call(client.read_coils, parsed.offset, count=1)
            if response.isError():
                raise PointError(f"{point.name}: the write was sent but reading it back was refused: {response}")
            actual: RawValue = bool(response.bits[0])
            matches = actual == expected
        else:
            words = await self._read_registers(client, point, parsed)
            if parsed.bit is not None:
                actual = bool(words[0] >> parsed.bit & 1)
                matches = actual == expected
            else:
                actual = decode_registers(words, point.data_type, encoding.word_order, encoding.byte_order)
                matches = words == expected
        if not matches:
            raise PointError(f"{point.name}: wrote {value!r} but the device reads back {actual!r}")

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _require_client(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            raise CommunicationError(f"not connected to {self._where}")
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(self, method: Callable[..., Awaitable[ModbusPDU]], *args: Any, **kwargs: Any) -> ModbusPDU:
        try:
            return await method(*args, device_id=self.device.unit_id, **kwargs)
        except ModbusException as exc:
            # No answer after the retries, or a dropped link: the connection state is unknown, so drop it.
            self._drop()
            raise CommunicationError(f"{self._where}: {exc}") from exc


def _illegal_address(response: ModbusPDU) -> bool:
    return response.isError() and getattr(response, "exception_code", None) == ExcCodes.ILLEGAL_ADDRESS


def _registers(parsed: ModbusAddress) -> str:
    if parsed.width == 1:
        return f"register {parsed.offset}"
    return f"registers {parsed.offset}..{parsed.end - 1}"
