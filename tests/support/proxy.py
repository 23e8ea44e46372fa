"""A TCP proxy the test controls, to put between the two nodes' sync links (loopback only).

Modes:

* ``pass``: bytes flow both ways (the default);
* ``cut``: every open connection is closed and new ones are refused (closed at once);
* ``blackhole``: connections are accepted and kept, but bytes in both directions are dropped;

:meth:`restore` goes back to ``pass``. The proxy can also record what the
client sent on each connection (``record=True``), so a test can replay a
captured frame on a new connection.

It runs an asyncio loop on its own thread, so tests drive it with plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

PASS, CUT, BLACKHOLE = "pass", "cut", "blackhole"


class Proxy:
    """Listens on an ephemeral loopback port and forwards to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int, record: bool = False) -> None:
        self.upstream_port = upstream_port
        self.record = record
        self.mode = PASS
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

    def restore(self) -> None:
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

    def _call(self, func, *args) -> None:
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
            self._pump(reader, up_writer, record), self._pump(up_reader, writer, None), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.mode == BLACKHOLE:
                    continue
                if self.mode == CUT:
                    break
                if record is not None:
                    record.extend(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
