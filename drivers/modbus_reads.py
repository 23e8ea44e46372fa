"""Register reads (functions 3 and 4) sent and answered beside pymodbus' transaction manager, on its connection.

pymodbus spends most of a register read's client-side CPU around the
request, not in it: a request object, a frame built through the framer, an
``asyncio.wait_for`` per attempt, the framer's and decoder's look-ups for
the answer, and a response object (ADR 0022). The engine sends the same
few hundred reads every poll cycle, so :class:`RegisterReads` sends each
as one packed frame and takes its answer off the connection itself:

* on the client's own connection and under the client's own lock
  (``client.ctx._lock``), so a write or read-back made through pymodbus
  never interleaves with a read, and the device sees one request at a time
  as before;
* while a read of ours waits, the bytes the connection receives come here
  (the protocol's ``data_received`` is wrapped for this client only); at any
  other time they go to pymodbus as before;
* the answer is checked as pymodbus checks it: an MBAP header with protocol
  0 and a length the frame can have, the transaction id of the request (an
  answer to an earlier attempt that timed out is dropped), the unit id when
  one was asked, a byte count that matches the frame. Anything else is
  garbage: :class:`~pymodbus.exceptions.ModbusIOException`, which the
  driver turns into a lost link, as for pymodbus' own errors;
* a request not answered within the client's timeout (one timer per
  connection, moved on lazily) is sent again (new transaction id) ``retries`` times, then ``No response ...`` is raised,
  as pymodbus does;
* an exception answer is a pymodbus :class:`~pymodbus.pdu.ExceptionResponse`,
  a register answer a :class:`RegisterAnswer` holding the payload as sent
  (``wire``, as :mod:`drivers.modbus_wire`'s classes do).

It relies on four attributes of pymodbus' client protocol (``transport``,
``_lock``, ``data_received``, ``getNextTID``); :func:`supported` checks them
and the driver falls back to pymodbus' own reads when one is missing
(tests/drivers/test_modbus_reads.py fails then, so an upgrade is noticed).
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse

from drivers import modbus_wire

#: MBAP header (transaction, protocol, length, unit) + function, start, count: a whole read request
_REQUEST = struct.Struct(">HHHBBHH")
_HEADER = struct.Struct(">HHHB")
#: the MBAP length field (unit id + PDU): at least a function code and one byte, at most the longest PDU (253) + 1
_MIN_LENGTH, _MAX_LENGTH = 3, 254
#: the attributes of pymodbus' protocol object this module uses
_NEEDED = ("transport", "_lock", "data_received", "getNextTID")


class RegisterAnswer:
    """A register read's answer: ``wire`` is the payload as sent (big-endian registers)."""

    __slots__ = ("dev_id", "function_code", "transaction_id", "wire")

    def __init__(self, function_code: int, wire: bytes, dev_id: int, transaction_id: int) -> None:
        self.function_code = function_code
        self.wire = wire
        self.dev_id = dev_id
        self.transaction_id = transaction_id

    def isError(self) -> bool:  # pymodbus' name: the driver calls it on every answer
        return False

    @property
    def registers(self) -> list[int]:
        return modbus_wire.unpack_registers(self.wire)

    def __str__(self) -> str:
        return f"RegisterAnswer(function_code={self.function_code}, {len(self.wire) // 2} registers)"


def supported(client: AsyncModbusTcpClient) -> bool:
    """Whether this pymodbus client has what :class:`RegisterReads` uses."""
    ctx = getattr(client, "ctx", None)
    return ctx is not None and all(hasattr(ctx, name) for name in _NEEDED)


class RegisterReads:
    """Functions 3 and 4 on ``client``'s connection (see the module docstring); one per connected client."""

    __slots__ = (
        "_buffer",
        "_ctx",
        "_deadline",
        "_expected",
        "_future",
        "_loop",
        "_pymodbus_received",
        "_watchdog",
        "retries",
        "timeout",
    )

    def __init__(self, client: AsyncModbusTcpClient, timeout: float, retries: int) -> None:
        self._ctx: Any = client.ctx
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.retries = retries
        self._buffer = b""
        #: (transaction id, unit id or 0) of the request waiting for its answer; None: pymodbus owns the bytes
        self._expected: tuple[int, int] | None = None
        self._future: asyncio.Future[Any] | None = None
        #: when the waiting request's answer is due (loop time), and the timer that checks it
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._pymodbus_received: Callable[[bytes], None] = self._ctx.data_received
        # an attribute of this protocol object: asyncio looks the method up on the instance
        self._ctx.data_received = self._received

    def reader(self, function: int) -> Callable[..., Any]:
        """``read(start, count=, device_id=)`` for function 3 or 4, as the client's own read methods are called."""
        return functools.partial(self.read, function)

    async def read(self, function: int, start: int, count: int = 1, device_id: int = 1) -> Any:
        """The answer to one read: a :class:`RegisterAnswer` or an ``ExceptionResponse``. ModbusIOException when
        the device did not answer (after the retries), the link is gone, or the answer is garbage."""
        ctx = self._ctx
        unit = device_id
        async with ctx._lock:
            for _attempt in range(self.retries + 1):
                transport = ctx.transport
                if transport is None:
                    raise ModbusIOException("not connected", function_code=function)
                tid = ctx.getNextTID()
                loop = self._loop
                future = self._future = loop.create_future()
                self._expected = (tid, unit)
                # one timer per connection, moved on lazily, instead of a timer made and cancelled per request
                self._deadline = loop.time() + self.timeout
                if self._watchdog is None:
                    self._watchdog = loop.call_at(self._deadline, self._watch)
                try:
                    transport.write(_REQUEST.pack(tid, 0, 6, unit, function, start, count))
                    answer = await future
                finally:
                    self._expected = self._future = None
                    self._buffer = b""
                if answer is not None:
                    return answer
            raise ModbusIOException(
                f"No response to a read of {start}..{start + count - 1} (function {function}) "
                f"within {self.timeout:g} s, {self.retries} retries",
                function_code=function,
            )

    def _watch(self) -> None:
        """The timer: ends the waiting request with no answer (``None``) if its deadline has passed, otherwise
        waits for that deadline; with no request waiting it stops (the next request starts it again)."""
        self._watchdog = None
        future = self._future
        if future is None or future.done():
            return
        if self._loop.time() < self._deadline:
            self._watchdog = self._loop.call_at(self._deadline, self._watch)
        else:
            future.set_result(None)  # no answer in time: read() sends the request again or gives up

    def _received(self, data: bytes) -> None:
        expected = self._expected
        if expected is None:
            self._pymodbus_received(data)
            return
        buffer = self._buffer + data if self._buffer else data
        while len(buffer) >= 7:
            tid, protocol, length, unit = _HEADER.unpack_from(buffer)
            if protocol != 0 or not _MIN_LENGTH <= length <= _MAX_LENGTH:
                self._fail(f"not a Modbus TCP frame (header {buffer[:7].hex(' ')})")
                return
            end = 6 + length
            if len(buffer) < end:
                break
            frame, buffer = buffer[7:end], buffer[end:]
            if tid != expected[0]:
                continue  # the answer to an attempt that timed out: its request was sent again
            if expected[1] and unit != expected[1]:
                self._fail(f"answer from unit {unit} to a request to unit {expected[1]}")
                return
            self._answered(frame, unit, tid)
            return
        self._buffer = buffer

    def _answered(self, pdu: bytes, unit: int, tid: int) -> None:
        future = self._future
        if future is None or future.done():
            return
        function = pdu[0]
        if function & 0x80:
            future.set_result(ExceptionResponse(function & 0x7F, pdu[1], device_id=unit, transaction=tid))
            return
        size = pdu[1]
        if size != len(pdu) - 2:
            self._fail(f"byte count {size} in an answer of {len(pdu) - 2} byte(s)")
            return
        future.set_result(RegisterAnswer(function, pdu[2:], unit, tid))

    def _fail(self, detail: str) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_exception(ModbusIOException(f"garbage from the device: {detail}"))
