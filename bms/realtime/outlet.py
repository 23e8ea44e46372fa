"""Where a live client's frames go: the websocket connection itself when Daphne serves it, else ASGI ``send``.

Under Daphne a frame is prepared once (:class:`Frame`: JSON text framed as a
WebSocket message by autobahn's ``PreparedMessage``) and the same bytes are
written to every connection that gets it, with no ASGI round trip; the
connection reports when its send buffer is full (a Twisted push producer) so
that the hub skips a slow client instead of queueing frames for it. Any other
server (or Channels' test communicator) gets plain ASGI sends, always
"writable".

Writing to the connection directly depends on Daphne passing
``functools.partial(server.handle_reply, protocol)`` as ``send``: the
outermost ASGI layer (:func:`expose_connection`, in ``bms/asgi.py``) puts
that protocol in the scope, because the middlewares inside wrap ``send``. If
a Daphne release stops doing that, :func:`outlet_for` finds no protocol and
falls back to ASGI sends: slower, still correct.

A frame for a connection with nothing queued is sent at once (one
``send()`` on the socket) instead of being queued for the reactor's next
write pass: Twisted's ``transport.write`` only buffers and registers the
socket for writing, so every live frame waited one more loop iteration
(with autobahn's and Twisted's bookkeeping, about 150 µs of the live path's
p50 on the development VM, bench/live_latency.py). Whatever the socket does
not take, and every frame while anything is still queued, goes through
``transport.write`` as before, so frames keep their order and a slow
client still pauses the producer.

A large message (a snapshot of 100,000 points is about 6.5 MB) goes out as
a fragmented WebSocket message (RFC 6455 §5.4) of :data:`FRAGMENT_BYTES`
pieces, built once and shared like every frame. The outlet hands a
connection's transport pieces only until it is backed up
(:data:`SLOW_CLIENT_BUFFER`) and keeps the rest as references to the shared
pieces, handing on more as the client reads. Written whole, every client
that could not take the message at once held a copy of its unsent part in
Twisted's buffer: 100 clients taking their snapshot together held about
500 MB (bench/scale.py). Control frames (autobahn's pings, a close) may
come between fragments, which the protocol allows; data frames written
around the outlet may not, so closing the outlet hands on what it still
holds first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

try:
    from autobahn.websocket.protocol import PreparedMessage
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet.tcp import Connection as TcpConnection
except ImportError:  # pragma: no cover - Daphne is a dependency; other ASGI servers take the fallback
    PreparedMessage = None  # type: ignore[assignment,misc]
    WebSocketProtocol = None  # type: ignore[assignment,misc]
    TcpConnection = None  # type: ignore[assignment,misc]

#: the FileDescriptor internals that tell whether anything is queued; a Twisted without them gets no direct sends
_QUEUE_ATTRIBUTES = ("dataBuffer", "offset", "_tempDataBuffer", "_writeDisconnected", "writeSomeData")
#: autobahn's: its own send queue and per-message compression; an autobahn without them gets no direct sends either
_PROTOCOL_ATTRIBUTES = ("send_queue", "_perMessageCompress")


#: bytes queued for a connection beyond which it counts as slow (skipped, then caught up with one frame)
SLOW_CLIENT_BUFFER = 1 << 20
#: payload bytes per fragment of a message larger than this (a fragment header is at most 10 bytes); the setting
#: BMS_LIVE_FRAGMENT_BYTES overrides it (0: always one frame)
FRAGMENT_BYTES = 128 << 10

_TEXT, _CONTINUATION, _FIN = 0x1, 0x0, 0x80


def frame_header(opcode: int, final: bool, length: int) -> bytes:
    """The header of an unmasked WebSocket frame (RFC 6455 §5.2): what a server sends."""
    first = opcode | (_FIN if final else 0)
    if length <= 125:
        return bytes((first, length))
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


@functools.cache
def fragment_bytes() -> int:
    """This process's fragment size (settings read once: it is asked for every frame)."""
    from django.conf import settings

    return int(getattr(settings, "BMS_LIVE_FRAGMENT_BYTES", FRAGMENT_BYTES))


def text_fragments(payload: bytes, size: int = FRAGMENT_BYTES) -> tuple[bytes, ...]:
    """``payload`` as one text message in frames of at most ``size`` payload bytes each (one frame if it fits or
    ``size`` is 0)."""
    if size <= 0 or len(payload) <= size:
        return (frame_header(_TEXT, True, len(payload)) + payload,)
    view = memoryview(payload)
    last = len(payload) - size
    return tuple(
        b"".join((frame_header(_CONTINUATION if at else _TEXT, at >= last, len(chunk)), chunk))
        for at in range(0, len(payload), size)
        for chunk in (view[at : at + size],)
    )


class Frame:
    """One encoded server message, shared by every client that receives it."""

    __slots__ = ("_pieces", "_prepared", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared: Any = None
        self._pieces: tuple[bytes, ...] | None = None

    def prepared(self) -> Any:
        """The WebSocket frame bytes, built at most once (server frames are not masked, so they are shareable)."""
        if self._prepared is None:
            self._prepared = PreparedMessage(self.text.encode(), False, False, True)
        return self._prepared

    def pieces(self) -> tuple[bytes, ...]:
        """The message as the bytes of its frames on the wire: one, or fragments of a large message (built once)."""
        if self._pieces is None:
            self._pieces = text_fragments(self.text.encode(), fragment_bytes())
        return self._pieces


class Outlet:
    """A client connection as the hub sees it."""

    writable = True
    #: True: frames go straight to the connection (Daphne); False: through ASGI send
    direct = False
    #: called (with no arguments) when a paused connection can take frames again
    on_resume: Callable[[], None] | None = None

    def send(self, frame: Frame) -> bool:
        """Queue ``frame`` for the client; False if the connection is gone."""
        raise NotImplementedError

    def close(self) -> None:
        """Forget the connection (it closed)."""


class DaphneOutlet(Outlet):
    """Writes shared frames straight to Daphne's protocol; not writable while its transport is backed up."""

    direct = True

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.open = True
        self._paused = False
        #: frames on the wire (shared bytes) not yet handed to the transport, because it was backed up
        self._backlog: deque[bytes] = deque()
        transport = protocol.transport
        try:
            if getattr(transport, "producer", None) is not None:
                # Twisted's HTTPChannel registered itself when the connection opened (to stop reading while its
                # responses back up) and Daphne's websocket upgrade leaves it there; a transport takes one producer,
                # and this connection now carries only our frames.
                transport.unregisterProducer()
            transport.registerProducer(self, True)
            # Paused only past a real backlog: Twisted's 64 KiB default is less than one delta of a large image,
            # so every client was "slow" on every frame and got a catch-up encoded for it alone (bench/scale.py).
            transport.bufferSize = SLOW_CLIENT_BUFFER
        except Exception:  # the transport is gone, or of a kind without producers: no flow control
            log.warning("live client: no flow control on %r", protocol, exc_info=True)
        #: the plain TCP transport, when frames may be sent on its socket at once (not TLS: that transport encrypts)
        self.socket_transport = (
            transport
            if TcpConnection is not None
            and isinstance(transport, TcpConnection)
            and not getattr(transport, "TLS", False)
            and all(hasattr(transport, name) for name in _QUEUE_ATTRIBUTES)
            and all(hasattr(protocol, name) for name in _PROTOCOL_ATTRIBUTES)
            else None
        )

    @property
    def writable(self) -> bool:  # type: ignore[override]
        """Whether a frame sent now goes out behind nothing of ours: the hub skips (then catches up) the others."""
        return self.open and not self._paused and not self._backlog

    # Twisted IPushProducer: the transport calls these when its buffer passes its high / low water mark.
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._hand_on()
        if self.writable and self.on_resume is not None:
            self.on_resume()

    def stopProducing(self) -> None:
        self._paused = True
        self.open = False
        self._backlog.clear()

    def send(self, frame: Frame) -> bool:
        protocol = self.protocol
        if not self.open or protocol.state != protocol.STATE_OPEN:
            # closing or closed: autobahn would raise "Attempt to send on a closed protocol"; the disconnect follows,
            # and until then the hub skips this connection (not writable) instead of catching it up on every frame
            self.open = False
            self._backlog.clear()
            return False
        transport = self.socket_transport
        if transport is None or protocol._perMessageCompress is not None or protocol.send_queue:
            # autobahn frames it (compressed per connection, or behind autobahn's own queue of chopped or
            # synchronous sends); never the case while a backlog of ours waits (a plain TCP connection without
            # compression stays one, and Daphne makes no chopped sends)
            protocol.sendPreparedMessage(frame.prepared())
            return True
        self._backlog.extend(frame.pieces())  # behind whatever of ours waits, in order
        self._hand_on()  # nothing while the transport is backed up: then something of ours waits
        return True

    def _hand_on(self, everything: bool = False) -> None:
        """Put waiting pieces on the socket while it takes them, then in the transport's buffer until that is
        backed up (it pauses us) or, with ``everything``, all of them."""
        backlog, transport, protocol = self._backlog, self.socket_transport, self.protocol
        while backlog and (everything or not self._paused):
            if transport is None or protocol.state != protocol.STATE_OPEN:
                backlog.clear()  # closing: a close frame may already be out, and no data frame may follow it
                return
            piece = backlog.popleft()
            if not (
                transport._tempDataBuffer
                or transport.offset != len(transport.dataBuffer)
                or not transport.connected
                or transport.disconnecting
                or transport._writeDisconnected
            ):
                # The socket first, as long as it takes whole pieces: through the buffer only, a client whose socket
                # would have taken a large delta at once counted as backed up and got a catch-up of its own.
                sent = transport.writeSomeData(piece)
                if not isinstance(sent, int):
                    # the connection is lost: queue the piece so that Twisted's next write pass finds that and closes it
                    sent = 0
                if sent == len(piece):
                    continue
                piece = piece[sent:]
            transport.write(piece)  # waits for the socket behind what Twisted holds

    def close(self) -> None:
        # What the client was sent goes out before anything written around the outlet after this (the consumer's
        # closing message): a message must never be cut by another data frame.
        self._hand_on(everything=True)
        self.open = False
        self.on_resume = None


class AsgiOutlet(Outlet):
    """Plain ASGI ``websocket.send`` messages, in order (tests, servers other than Daphne)."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self.open = True
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._writer = asyncio.ensure_future(self._write())

    def send(self, frame: Frame) -> bool:
        if not self.open:
            return False
        self._queue.put_nowait(frame.text)
        return True

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                await self._send({"type": "websocket.send", "text": text})
            except Exception:
                self.open = False  # the connection went away under us; the disconnect follows
                return

    def close(self) -> None:
        self.open = False
        self._writer.cancel()


SCOPE_KEY = "bms.websocket_protocol"


def expose_connection(application: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """ASGI middleware (outermost): put Daphne's websocket protocol object in the scope, if there is one."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "websocket"
            and WebSocketProtocol is not None
            and isinstance(send, functools.partial)
            and send.args
            and isinstance(send.args[0], WebSocketProtocol)
        ):
            scope = {**scope, SCOPE_KEY: send.args[0]}
        await application(scope, receive, send)

    return app


def outlet_for(scope: dict[str, Any], send: Callable[..., Any]) -> Outlet:
    """The fastest outlet that works for this connection: direct under Daphne, else the ASGI ``send``."""
    protocol = scope.get(SCOPE_KEY)
    if protocol is not None:
        return DaphneOutlet(protocol)
    return AsgiOutlet(send)
