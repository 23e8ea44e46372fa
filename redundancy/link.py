"""The sync link's transport: authenticated, encrypted TCP connections between the two nodes (and to the witness).

Each node listens (:class:`LinkServer`) and also dials its partner
(:class:`LinkDialer`), so there are normally two connections, one each way.
Either carries messages in both directions; a node sends on its own
outgoing connection when it is up and on the incoming one otherwise (see
:class:`Peer`). A connection is usable only after the handshake:

1. dialer → listener: HELLO ``{node, nonce}`` authenticated with the hello key (secret only);
2. listener → dialer: HELLO ``{node, nonce}``, likewise;
3. both derive the session key from the secret and both nonces, and from it
   one key per direction; every further frame is encrypted with it and
   numbered (see :mod:`redundancy.framing`, ADR 0009).

Before the handshake is complete a peer is a stranger, and what it can make
the listener hold is bounded: the HELLO body is limited to a few KB (checked
from the header), the whole handshake has a deadline, and at most
:data:`MAX_PENDING_PER_SOURCE` connections per source address and
:data:`MAX_PENDING` in all may be handshaking at once; any further one is
closed at once and counted as ``busy``.

Anything wrong (wrong secret, garbage, oversize, replayed or reordered
frames, an unknown node name) is counted, logged (rate-limited) and ends
*that* connection only: an attacker or a confused peer cannot disturb an
established partner connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from bms.engine.tasks import cancel_and_wait
from redundancy.framing import (
    DEFAULT_MAX_BODY,
    HEADER,
    HELLO,
    HELLO_MAX_BODY,
    VERSION,
    FrameError,
    Opener,
    Sealer,
    SessionOpener,
    SessionSealer,
    hello_key,
    session_key,
)

log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT = 2.0  # for the whole handshake, both sides
NONCE_SIZE = 16
# Connections still handshaking: a partner needs one (two while it reconnects), the witness setup one per node.
MAX_PENDING_PER_SOURCE = 4
MAX_PENDING = 16

MessageHandler = Callable[["Connection", dict[str, Any]], Awaitable[None] | None]


class RejectLog:
    """Counts rejected frames by reason and logs at most one line per reason and source every few seconds."""

    def __init__(self, interval: float = 5.0) -> None:
        self.counts: Counter[str] = Counter()
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}

    def reject(self, source: str, error: FrameError | Exception) -> None:
        reason = error.reason if isinstance(error, FrameError) else "protocol"
        self.counts[reason] += 1
        now = time.monotonic()
        # Rate-limited per address, not per address:port: a flood of connections comes from ever new ports.
        key = (reason, source.rpartition(":")[0] or source)
        if now - self._last.get(key, -1e9) >= self.interval:
            self._last[key] = now
            log.warning("sync link: rejected a connection from %s: %s (%s)", source, error, reason)


class Connection:
    """One authenticated connection; ``peer`` is the node name the other side proved it holds the secret for."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        sealer: SessionSealer,
        opener: SessionOpener,
        outgoing: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.sealer = sealer
        self.opener = opener
        self.outgoing = outgoing
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.last_heard = time.monotonic()
        self._closed = False

    @property
    def address(self) -> str:
        info = self.writer.get_extra_info("peername")
        return f"{info[0]}:{info[1]}" if info else "?"

    @property
    def open(self) -> bool:
        return not self._closed and not self.writer.is_closing()

    async def send(self, body: dict[str, Any]) -> None:
        frame = self.sealer.seal(body)
        self.writer.write(frame)
        self.frames_out += 1
        self.bytes_out += len(frame)
        await self.writer.drain()

    def send_nowait(self, body: dict[str, Any]) -> None:
        """Queue a frame without waiting for the socket (small control messages from synchronous code)."""
        frame = self.sealer.seal(body)
        self.writer.write(frame)
        self.frames_out += 1
        self.bytes_out += len(frame)

    async def receive(self) -> dict[str, Any]:
        header = await self.reader.readexactly(HEADER.size)
        _, _, length = self.opener.parse_header(header)  # the size is checked before the body is read
        body = self.opener.open_frame(header, await self.reader.readexactly(length))
        self.frames_in += 1
        self.last_heard = time.monotonic()
        return body

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self.writer.close()


async def _read_hello(reader: asyncio.StreamReader, opener: Opener) -> dict[str, Any]:
    header = await reader.readexactly(HEADER.size)
    _, _, length = opener.parse_header(header)  # HELLO_MAX_BODY: a stranger cannot make us read more
    return opener.open_frame(header, await reader.readexactly(length + opener.trailer), expected_kind=HELLO)


def _hello_body(node: str, nonce: bytes) -> dict[str, Any]:
    return {"t": "hello", "node": node, "nonce": nonce, "version": VERSION}


def _check_hello(body: dict[str, Any], accept: Callable[[str], bool]) -> tuple[str, bytes]:
    node, nonce = body.get("node"), body.get("nonce")
    if (
        body.get("t") != "hello"
        or not isinstance(node, str)
        or not isinstance(nonce, bytes)
        or len(nonce) != NONCE_SIZE
    ):
        raise FrameError("protocol", "malformed hello")
    if not accept(node):
        raise FrameError("unknown_node", f"node {node!r} is not a configured partner")
    return node, nonce


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    node: str,
    secret: bytes,
    accept: Callable[[str], bool],
    max_body: int,
    outgoing: bool,
) -> Connection:
    """Exchange HELLOs (the dialer speaks first) within the deadline; return the connection with its session keys.

    ``max_body`` is the limit of session frames, granted only after the
    peer proved it holds the secret; its HELLO is held to HELLO_MAX_BODY.
    """
    mine, theirs = (b"c>s", b"s>c") if outgoing else (b"s>c", b"c>s")
    key = hello_key(secret)
    nonce = os.urandom(NONCE_SIZE)

    async def say_hello() -> None:
        writer.write(Sealer(key, mine).seal(_hello_body(node, nonce), kind=HELLO))
        await writer.drain()

    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        if outgoing:
            await say_hello()
        hello = await _read_hello(reader, Opener(key, theirs, HELLO_MAX_BODY))
        peer, peer_nonce = _check_hello(hello, accept)
        if not outgoing:
            await say_hello()
    session = session_key(secret, *((nonce, peer_nonce) if outgoing else (peer_nonce, nonce)))
    return Connection(
        reader, writer, peer, SessionSealer(session, mine), SessionOpener(session, theirs, max_body), outgoing
    )


def _handshake_error(exc: BaseException) -> FrameError:
    if isinstance(exc, FrameError):
        return exc
    if isinstance(exc, TimeoutError):
        return FrameError("handshake", f"no handshake within {HANDSHAKE_TIMEOUT:g} s")
    return FrameError("handshake", str(exc) or type(exc).__name__)


class LinkEndpoint:
    """What the listener and the dialer share: identity, secret, the handler and the reject log."""

    def __init__(
        self,
        node: str,
        secret: bytes,
        accept: Callable[[str], bool],
        on_message: MessageHandler,
        on_connection: Callable[[Connection, bool], None] | None = None,
        rejects: RejectLog | None = None,
        max_body: int | None = None,
    ) -> None:
        self.node = node
        self.secret = secret
        self.accept = accept
        self.on_message = on_message
        self.on_connection = on_connection or (lambda connection, up: None)
        self.rejects = rejects or RejectLog()
        self.max_body = max_body or DEFAULT_MAX_BODY

    async def serve_connection(self, connection: Connection) -> None:
        """Deliver messages until the connection ends or misbehaves."""
        self.on_connection(connection, True)
        try:
            while True:
                body = await connection.receive()
                try:
                    result = self.on_message(connection, body)
                    if asyncio.iscoroutine(result):
                        await result
                except (ConnectionError, OSError, FrameError, asyncio.CancelledError):
                    raise
                except Exception:
                    # A message we could not handle (a bug, or a well-signed but
                    # malformed body) must not end the link: log it and read on.
                    self.rejects.counts["unhandled"] += 1
                    log.exception("sync link: handling a %r message from %s failed", body.get("t"), connection.peer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except FrameError as exc:
            self.rejects.reject(f"{connection.peer}@{connection.address}", exc)
        finally:
            connection.close()
            self.on_connection(connection, False)


class LinkServer(LinkEndpoint):
    """Accepts connections on the sync port; each must complete the handshake within a deadline.

    At most ``max_pending_per_source`` connections from one address and
    ``max_pending`` in all may be handshaking at once; any further one is
    closed as soon as it is accepted (reason ``busy``). Authenticated
    connections do not count: only the partner can make them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *args: Any,
        max_pending_per_source: int = MAX_PENDING_PER_SOURCE,
        max_pending: int = MAX_PENDING,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.host = host
        self.port = port
        self.max_pending_per_source = max_pending_per_source
        self.max_pending = max_pending
        self.pending: Counter[str] = Counter()  # handshaking connections per source address
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # cancel_and_wait cancels again until the task ends: Python 3.11's wait_for (the handshake's deadline)
        # can swallow a cancellation that comes as the awaited call completes
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._handlers)))
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        info = writer.get_extra_info("peername")
        address = str(info[0]) if info else "?"
        source = f"{address}:{info[1]}" if info else "?"
        try:
            in_all = sum(self.pending.values())
            if self.pending[address] >= self.max_pending_per_source or in_all >= self.max_pending:
                self.rejects.reject(
                    source,
                    FrameError(
                        "busy",
                        f"too many connections still handshaking ({self.pending[address]} from {address}, "
                        f"{in_all} in all; limits {self.max_pending_per_source} and {self.max_pending})",
                    ),
                )
                writer.transport.abort()  # at once: nothing of this one is read or kept
                return
            self.pending[address] += 1
            try:
                connection = await handshake(
                    reader, writer, self.node, self.secret, self.accept, self.max_body, outgoing=False
                )
            except (FrameError, TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                self.rejects.reject(source, _handshake_error(exc))
                writer.close()
                return
            finally:
                self.pending[address] -= 1
                if self.pending[address] <= 0:
                    del self.pending[address]
            await self.serve_connection(connection)
        except asyncio.CancelledError:
            # The server is stopping. Ending normally matters: asyncio's stream
            # callback reads this task's exception and would log a traceback.
            writer.close()
        finally:
            self._handlers.discard(task)


class LinkDialer(LinkEndpoint):
    """Keeps one outgoing connection to ``host:port`` up, re-dialling every ``retry_interval`` seconds."""

    def __init__(self, host: str, port: int, retry_interval: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host
        self.port = port
        self.retry_interval = retry_interval
        self.connection: Connection | None = None
        self.failed_attempts = 0
        self.last_error = ""
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dial:{self.host}:{self.port}")

    async def stop(self) -> None:
        # Cancelled again until it ends: a cancellation that came as the dial's wait_for completed was swallowed
        # (Python 3.11's wait_for returns the result then), the task dialled on and the node never stopped
        # (6 of the suite's pair teardowns waited 10 s for the kill, 1 December 2026).
        await cancel_and_wait(self._task)
        if self.connection is not None:
            self.connection.close()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), max(self.retry_interval, HANDSHAKE_TIMEOUT)
                )
                try:
                    connection = await handshake(
                        reader, writer, self.node, self.secret, self.accept, self.max_body, outgoing=True
                    )
                except BaseException:
                    writer.close()
                    raise
            except FrameError as exc:
                self._failed(exc)
                self.rejects.reject(f"{self.host}:{self.port}", exc)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                self._failed(exc)
            else:
                self.failed_attempts = 0
                self.last_error = ""
                self.connection = connection
                try:
                    await self.serve_connection(connection)
                finally:
                    self.connection = None
            # Never faster than the retry interval, so a refusing peer costs no busy loop.
            await asyncio.sleep(max(0.0, self.retry_interval - (time.monotonic() - started)))

    def _failed(self, exc: BaseException) -> None:
        self.failed_attempts += 1
        self.last_error = str(exc) or type(exc).__name__
