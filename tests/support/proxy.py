"""A TCP proxy the test controls, to put between the two nodes' sync links (loopback only).

Modes:

* ``pass``: bytes flow both ways (the default);
* ``cut``: every open connection is closed and new ones are refused (closed at once);
* ``blackhole``: connections are accepted and kept, but bytes in both directions are dropped;
* ``drop_c2u``: bytes from the client to the upstream are dropped, the other direction flows
  (:meth:`drop_client_to_upstream`);
* ``drop_u2c``: bytes from the upstream to the client are dropped, the other direction flows
  (:meth:`drop_upstream_to_client`).

Independently of the mode, :meth:`delay` holds every chunk for a number of
seconds before passing it on, in both directions, in order. :meth:`restore`
goes back to ``pass`` without delay. The proxy can also record what the
client sent on each connection (``record=True``), so a test can replay a
captured frame on a new connection.

It runs an asyncio loop on its own thread, so tests drive it with plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

PASS, CUT, BLACKHOLE = "pass", "cut", "blackhole"
DROP_C2U, DROP_U2C = "drop_c2u", "drop_u2c"
#: per direction, the modes that drop its bytes
DROPPED = {True: (BLACKHOLE, DROP_C2U), False: (BLACKHOLE, DROP_U2C)}


class Proxy:
    """Listens on an ephemeral loopback port and forwards to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int, record: bool = False) -> None:
        self.upstream_port = upstream_port
        self.record = record
        self.mode = PASS
        self.delay_s = 0.0
        self.accepted = 0
        self.refused = 0
        self.recorded: list[bytearray] = []  # client -> upstream bytes, one buffer per connection
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name=f"proxy->{upstream_port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")

    # -- control (from the test thread) ----------------------------------------------------------------------------

    def cut(self) -> None:
        self._call(self._set_mode, CUT)

    def blackhole(self) -> None:
        self._call(self._set_mode, BLACKHOLE)

    def drop_client_to_upstream(self) -> None:
        """One-way loss: what the client sends is dropped; the upstream's bytes still reach the client."""
        self._call(self._set_mode, DROP_C2U)

    def drop_upstream_to_client(self) -> None:
        """One-way loss: what the upstream sends is dropped; the client's bytes still reach the upstream."""
        self._call(self._set_mode, DROP_U2C)

    def delay(self, seconds: float) -> None:
        """Deliver every chunk ``seconds`` after it arrived, both directions, order kept (0: no delay)."""
        self._call(self._set_delay, max(0.0, seconds))

    def restore(self) -> None:
        self._call(self._set_delay, 0.0)
        self._call(self._set_mode, PASS)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._loop.close()

    def _call(self, func: Callable[..., Any], *args: Any) -> None:
        async def run() -> None:
            result = func(*args)
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- the loop --------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == CUT:
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

    def _set_delay(self, seconds: float) -> None:
        self.delay_s = seconds

    async def _shutdown(self) -> None:
        self._set_mode(CUT)
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == CUT:
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        record = bytearray() if self.record else None
        if record is not None:
            self.recorded.append(record)
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer, record, True),
            self._pump(up_reader, writer, None, False),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None, to_upstream: bool
    ) -> None:
        """Carry one direction; chunks that must wait (a delay, or earlier chunks still waiting) go through a queue."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        waiting = [0]  # chunks queued and not yet written: a later chunk never overtakes them
        sender = loop.create_task(self._deliver(queue, writer, waiting))
        try:
            while True:
                data = await reader.read(65536)
                if not data or self.mode == CUT:
                    break
                if self.mode in DROPPED[to_upstream]:
                    continue
                if record is not None:
                    record.extend(data)
                if self.delay_s <= 0 and not waiting[0]:
                    writer.write(data)
                    await writer.drain()
                else:
                    waiting[0] += 1
                    queue.put_nowait((loop.time() + self.delay_s, data))
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender  # what is already delayed still arrives (unless the connection is cut)
            writer.transport.abort()

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter, waiting: list[int]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if self.mode == CUT or writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
                waiting[0] -= 1
        finally:
            if waiting[0]:
                writer.transport.abort()
