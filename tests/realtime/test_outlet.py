"""The Daphne outlet's writes, on a real Twisted TCP transport over a real socket pair.

No reactor runs here: what the peer can read right after ``send`` is what
went out without waiting for the reactor's next write pass, and the tests
call the transport's ``doWrite`` themselves where the reactor would.
"""

from __future__ import annotations

import collections
import socket

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactor
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from bms.realtime.outlet import FRAGMENT_BYTES, SLOW_CLIENT_BUFFER, DaphneOutlet, Frame, text_fragments


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
        self.protocol.trackedTimings = None
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

    def frames(self) -> list[tuple[Opcode, bool, bytes]]:
        """The WebSocket frames read so far, parsed as a client does (websockets' own parser, which refuses a data
        frame inside a fragmented message): (opcode, final, payload)."""
        parser = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        parser.receive_data(self.read())
        assert parser.parser_exc is None, f"the client would fail the connection: {parser.parser_exc!r}"
        return [(frame.opcode, frame.fin, bytes(frame.data)) for frame in parser.events_received()]

    def texts(self) -> list[str]:
        """The complete text messages read so far (fragments joined; control frames between them skipped)."""
        texts, parts = [], []
        for opcode, final, data in self.frames():
            if opcode in (Opcode.TEXT, Opcode.CONT):
                parts.append(data)
                if final:
                    texts.append(b"".join(parts).decode())
                    parts = []
        return texts

    def queued(self) -> int:
        """Bytes in the transport's buffer, waiting for the socket."""
        return len(self.transport.dataBuffer) - self.transport.offset + self.transport._tempDataLen

    def drain(self) -> None:
        """The client reads while the reactor's write passes (done here by hand) send what is queued."""
        for _ in range(10_000):
            self.read()
            if self.transport not in self.reactor.getWriters():
                return
            self.transport.doWrite()
        raise AssertionError("the connection never drained")

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
    connection.drain()
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


def big_message(size: int = 5_000_000) -> str:
    return '{"type":"snapshot","pad":"' + "y" * size + '"}'


def test_a_large_message_goes_out_in_fragments_and_backed_up_clients_hold_no_copy_of_it():
    # 100 clients taking a 6.5 MB snapshot together each held a copy of its unsent part in Twisted's buffer
    # (about 500 MB, bench/scale.py). Now each transport holds at most about its buffer limit; the rest waits as
    # references to the frame's shared pieces.
    connections = [Connection() for _ in range(20)]
    try:
        frame = Frame(big_message())
        pieces = frame.pieces()
        assert len(pieces) == -(-len(frame.text) // FRAGMENT_BYTES) > 1
        for connection in connections:  # nobody reads
            assert connection.outlet.send(frame)
        for connection in connections:
            assert connection.queued() <= SLOW_CLIENT_BUFFER + FRAGMENT_BYTES + 10
            assert not connection.outlet.writable, "a client with part of a message still to take is not writable"
            assert all(any(held is piece for piece in pieces) for held in connection.outlet._backlog)
        resumed = []
        first = connections[0]
        first.outlet.on_resume = lambda: resumed.append(True)
        first.drain()
        assert first.texts() == [frame.text]
        kinds = [(opcode, final) for opcode, final, _ in first.frames()]
        assert kinds == [(Opcode.TEXT, False)] + [(Opcode.CONT, False)] * (len(pieces) - 2) + [(Opcode.CONT, True)]
        assert first.outlet.writable and resumed == [True], "drained: writable again, and the hub told so"
    finally:
        for connection in connections:
            connection.close()


def test_frames_sent_behind_a_large_message_follow_it_and_pings_may_come_between_its_fragments(connection):
    big = big_message(2_000_000)
    connection.outlet.send(Frame(big))
    connection.outlet.send(Frame('{"type":"delta","seq":2}'))
    connection.protocol.sendPing(b"keepalive")  # autobahn's own ping, written while the message is half out
    connection.drain()
    frames = connection.frames()
    assert connection.texts() == [big, '{"type":"delta","seq":2}']
    ping = [index for index, (opcode, _, _) in enumerate(frames) if opcode is Opcode.PING]
    assert len(ping) == 1 and 0 < ping[0] < len(frames) - 2, "the ping went out between two fragments"


def test_closing_the_outlet_hands_on_the_whole_message_before_anything_written_around_it(connection):
    # The consumer's last words (an error message through ASGI, then the close) must not cut the message.
    big = big_message(3_000_000)
    connection.outlet.send(Frame(big))
    assert connection.outlet._backlog, "part of the message waits in the outlet"
    connection.outlet.close()
    connection.protocol.sendMessage(b'{"type":"error","code":"logged_out"}')
    connection.protocol.sendClose(4401)
    connection.drain()
    assert connection.texts() == [big, '{"type":"error","code":"logged_out"}']
    assert connection.frames()[-1][0] is Opcode.CLOSE
    assert not connection.outlet.send(Frame('{"late":true}')), "a closed outlet takes nothing more"


def test_fragments_follow_the_size_and_size_zero_keeps_every_message_whole():
    payload = b"z" * 300_000
    assert len(text_fragments(payload, 100_000)) == 3
    assert text_fragments(payload, 0) == (b"\x81\x7f" + (300_000).to_bytes(8, "big") + payload,)
    assert text_fragments(b"short", 100_000) == (b"\x81\x05short",)
