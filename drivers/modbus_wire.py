"""Register answers kept as the bytes on the wire.

pymodbus decodes a read-registers answer into a list with one
``struct.unpack`` per register, and then formats the whole answer as a
string for a debug log line whether debug logging is on or not. For a
125-register answer that is most of the client-side cost of a request, and
the block decoder of :mod:`drivers.modbus` then packs the list back into
bytes to decode the points from. These response classes keep the payload as
``wire`` (big-endian registers, as sent) and build the ``registers`` list
only if someone asks for it, so the decoder reads the answer's own bytes.

They are registered per client (:func:`install`); a pymodbus client that
does not have them still works with the decoder, through ``registers``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse


class _WireRegisters:
    """Mixin for the read-registers responses: ``wire`` holds the payload, ``registers`` is derived on demand."""

    wire: bytes | None
    _registers: list[int] | None

    @property
    def registers(self) -> list[int]:
        if self._registers is None:
            self._registers = unpack_registers(self.wire or b"")
        return self._registers

    @registers.setter
    def registers(self, value: Sequence[int]) -> None:
        # pymodbus' constructor assigns the (empty) list before decode() runs
        self._registers = list(value)
        self.wire = None

    def decode(self, data: bytes) -> None:
        size = data[0]
        if size >= len(data):
            raise ModbusIOException(
                f"byte_count {size} > length of packet {len(data)}", function_code=self.function_code
            )
        self.wire = bytes(data[1 : 1 + size])
        self._registers = None

    def __str__(self) -> str:
        size = len(self.wire) // 2 if self.wire is not None else len(self._registers or ())
        return f"{type(self).__name__}(dev_id={self.dev_id}, transaction_id={self.transaction_id}, {size} registers)"


class HoldingRegistersAnswer(_WireRegisters, ReadHoldingRegistersResponse):
    """Answer to function 3, payload kept as bytes."""


class InputRegistersAnswer(_WireRegisters, ReadInputRegistersResponse):
    """Answer to function 4, payload kept as bytes."""


def unpack_registers(wire: bytes) -> list[int]:
    """The registers of a big-endian payload (a trailing odd byte is left out)."""
    return list(struct.unpack(f">{len(wire) // 2}H", wire[: len(wire) & ~1]))


def install(client: AsyncModbusTcpClient) -> None:
    """Make this client decode read-registers answers into the wire-keeping classes (this client only)."""
    client.register(HoldingRegistersAnswer)
    client.register(InputRegistersAnswer)


def payload(response: object) -> bytes:
    """The big-endian register bytes of a read-registers answer, whichever class decoded it."""
    wire = getattr(response, "wire", None)
    if wire is not None:
        return wire
    registers = response.registers  # type: ignore[attr-defined]
    return struct.pack(f">{len(registers)}H", *registers)
