"""The Daphne outlet's writes, on a real Twisted TCP transport over a real socket pair.

No reactor runs here: what the peer can read right after ``send`` is what
went out without waiting for the reactor's next write pass, and the tests
call the transport's ``doWrite`` themselves where the reactor would.
"""

from __future__ import annotations

import collections
import socket
import struct

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactor

from bms.realtime.outlet import DaphneOutlet, Frame


class Connection:
    """A live client's connection as Daphne holds it: autobahn's protocol on a TCP transport, and the peer's socket."""

    def __init__(self) -> None:
        self.server_socket, self.peer = socket.socketpair()
        self.server_socket.setblocking(False)
        self.peer.setblocking(False)
        self.reactor = MemoryReactor()
        self.protocol = WebSocketServerProtocol()
        self.protocol.factory = WebSocketServerFactory()
        for option in self.protocol.CONFIG_ATTRS:  # as _connectionMade copies them from the factory
            setattr(self.protocol, option, getattr(self.protocol.factory, option))
        self.transport = tcp.Connection(self.server_socket, self.protocol, self.reactor)
        self.transport.connected = 1
        # what autobahn's _connectionMade and the opening handshake leave on an open connection
        self.protocol.transport = self.transport
        self.protocol.state = WebSocketServerProtocol.STATE_OPEN
        self.protocol.send_queue = collections.deque()
        self.protocol._perMessageCompress = None
        self.protocol.trafficStats = TrafficStats()
        self.outlet = DaphneOutlet(self.protocol)
        self.received = b""

    def read(self) -> bytes:
        """Everything the peer can read now, without waiting."""
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.received += chunk
        return self.received

    def texts(self) -> list[str]:
        """The WebSocket text messages read so far (server frames: unmasked, final)."""
        data, texts = self.read(), []
        while len(data) >= 2:
            length, start = data[1] & 0x7F, 2
            if length == 126:
                (length,), start = struct.unpack("!H", data[2:4]), 4
            elif length == 127:
                (length,), start = struct.unpack("!Q", data[2:10]), 10
            if len(data) < start + length:
                break
            assert data[0] == 0x81, f"not a final text frame: {data[0]:#x}"
            texts.append(data[start : start + length].decode())
            data = data[start + length :]
        return texts

    def close(self) -> None:
        self.server_socket.close()
        self.peer.close()


@pytest.fixture
def connection():
    made = Connection()
    yield made
    made.close()


def test_a_frame_for_an_idle_connection_is_on_the_socket_when_send_returns(connection):
    assert connection.outlet.send(Frame('{"type":"delta","seq":1}'))
    assert connection.texts() == ['{"type":"delta","seq":1}']
    # nothing left for a later write pass: the socket is not registered for writing
    assert connection.transport not in connection.reactor.getWriters()
    assert connection.transport.dataBuffer == b"" and not connection.transport._tempDataBuffer


def test_frames_keep_their_order_when_the_socket_is_full_and_the_client_is_paused(connection):
    # The peer reads nothing: the socket takes what fits, the rest waits in Twisted's buffer, later frames queue
    # behind it (never on the socket before it), and past the outlet's limit the connection reports it is backed up.
    big = "x" * 200_000
    texts = [f'{{"n":{n},"pad":"{big}"}}' for n in range(12)]
    for text in texts:
        assert connection.outlet.send(Frame(text))
    assert connection.transport in connection.reactor.getWriters()
    assert not connection.outlet.writable, "2.4 MB queued: the connection should count as slow"
    # The client reads again; the reactor's write passes (done by hand here) drain the queue.
    for _ in range(1000):
        connection.read()
        if connection.transport not in connection.reactor.getWriters():
            break
        connection.transport.doWrite()
    assert connection.outlet.writable
    connection.outlet.send(Frame('{"n":"last"}'))
    assert connection.texts() == [*texts, '{"n":"last"}']


def test_a_frame_behind_autobahns_own_queue_waits_for_it(connection):
    # autobahn queues chopped or synchronous sends (send_queue) and writes them from the reactor: a frame sent
    # meanwhile must not overtake them on the socket.
    connection.protocol.send_queue.append((b"\x81\x05first", False))
    connection.protocol.triggered = True  # autobahn's send from its queue is pending (on the reactor)
    connection.outlet.send(Frame("second"))
    assert connection.read() == b""
    assert [data for data, _ in connection.protocol.send_queue] == [b"\x81\x05first", b"\x81\x06second"]


def test_a_frame_for_a_connection_the_client_closed_is_not_an_error(connection):
    connection.peer.close()
    for n in range(3):  # the first send may still be accepted by the kernel; the next ones meet the reset
        assert connection.outlet.send(Frame(f'{{"n":{n}}}')) is True
    # the frame the socket refused is queued, so that Twisted's next write pass finds the lost connection
    assert connection.transport in connection.reactor.getWriters()
    assert connection.transport.doWrite() is not None
