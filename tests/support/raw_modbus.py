"""A hand-written Modbus TCP server for faults pymodbus' own server will not produce.

It is a real TCP server on loopback that speaks enough Modbus for the
driver (functions 1-6, 15, 16) and can be switched, while clients stay
connected, between behaviours of broken field devices:

- ``answer``: a correct device (65536 registers and bits, all zero);
- ``silent``: accepts the connection and reads requests, never answers;
- ``garbage``: answers every request with bytes that are not Modbus;
- ``short``: answers a register read with one register fewer than asked;
- ``odd``: answers a register read with one byte fewer (an odd byte count);
- ``overcount``: a register answer whose byte count claims more than it holds;
- ``ignore_writes``: acknowledges writes without storing them.

``delay`` (seconds) makes any answer late: a slow device or gateway.
``written`` lists the register writes stored, in order (the device's own log).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time

ANSWER, SILENT, GARBAGE, SHORT, IGNORE_WRITES = "answer", "silent", "garbage", "short", "ignore_writes"
ODD, OVERCOUNT = "odd", "overcount"


class RawModbusServer:
    """``await start()``, then point a driver at ``port``; ``mode`` may change at any time."""

    def __init__(self, mode: str = ANSWER) -> None:
        self.mode = mode
        self.registers = [0] * 65536  # holding and input registers share one map
        self.bits = [False] * 65536  # coils and discrete inputs too
        self.requests = 0  # complete request frames received
        self.arrivals: list[float] = []  # time.monotonic() of each complete request frame
        self.delay = 0.0
        self.written: list[tuple[int, tuple[int, ...]]] = []  # register writes stored, in order: (address, words)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                self.arrivals.append(time.monotonic())
                reply = self._reply(pdu)
                if reply is None:
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.mode != GARBAGE:
                    reply = struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _reply(self, pdu: bytes) -> bytes | None:
        if self.mode == SILENT:
            return None
        if self.mode == GARBAGE:
            return b"HTTP/1.1 400 Bad Request\r\n\r\n"
        function = pdu[0]
        address, count = struct.unpack(">HH", pdu[1:5])
        if function in (3, 4):
            if self.mode == SHORT:
                count -= 1
            words = self.registers[address : address + count]
            answer = struct.pack(f">BB{count}H", function, 2 * count, *words)
            if self.mode == ODD:
                return bytes([function, 2 * count - 1]) + answer[2:-1]
            if self.mode == OVERCOUNT:
                return bytes([function, 2 * count + 10]) + answer[2:]
            return answer
        if function in (1, 2):
            packed = bytearray((count + 7) // 8)
            for i in range(count):
                if self.bits[address + i]:
                    packed[i // 8] |= 1 << (i % 8)
            return bytes([function, len(packed)]) + bytes(packed)
        if function == 5:
            if self.mode != IGNORE_WRITES:
                self.bits[address] = count == 0xFF00
            return pdu[:5]
        if function == 6:
            if self.mode != IGNORE_WRITES:
                self.registers[address] = count
                self.written.append((address, (count,)))
            return pdu[:5]
        if function == 16:
            if self.mode != IGNORE_WRITES:
                words = struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count])
                self.registers[address : address + count] = words
                self.written.append((address, words))
            return pdu[:5]
        if function == 15:
            if self.mode != IGNORE_WRITES:
                for i in range(count):
                    self.bits[address + i] = bool(pdu[6 + i // 8] >> (i % 8) & 1)
            return pdu[:5]
        return bytes([function | 0x80, 1])  # illegal function
