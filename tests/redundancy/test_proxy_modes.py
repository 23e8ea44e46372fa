"""The test proxy's fault modes with real sockets: pass, cut, blackhole, one-way loss each way, added delay.

An in-process peer on an ephemeral loopback port stands for the upstream
(the partner's sync port): it keeps the accepted connection, records what it
receives and sends when told, so each direction can be checked on its own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.proxy import Proxy

MakeProxy = Callable[[int], Proxy]
QUIET = 0.3  # s a dropped direction is watched for bytes that must not arrive


class Peer:
    """A loopback TCP server that accepts connections, records their bytes and can send on the latest one."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.received = bytearray()
        self.connections: list[socket.socket] = []
        self.changed = threading.Condition()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.changed:
                self.connections.append(conn)
                self.changed.notify_all()
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.echo:
                conn.sendall(data)
            with self.changed:
                self.received.extend(data)
                self.changed.notify_all()

    def wait_received(self, size: int, timeout: float = 5.0) -> bytes:
        with self.changed:
            self.changed.wait_for(lambda: len(self.received) >= size, timeout)
            return bytes(self.received)

    def connection(self, timeout: float = 5.0) -> socket.socket:
        with self.changed:
            assert self.changed.wait_for(lambda: self.connections, timeout), "the proxy did not connect upstream"
            return self.connections[-1]

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


def receive(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    """Read until ``size`` bytes arrived, the peer closed, or ``timeout`` passed."""
    sock.settimeout(0.05)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < size and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data.extend(chunk)
    return bytes(data)


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.close()


@pytest.fixture
def echo() -> Iterator[Peer]:
    server = Peer(echo=True)
    yield server
    server.close()


def connect(proxy: Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


@pytest.fixture
def proxy_to() -> Iterator[MakeProxy]:
    """``proxy_to(port)``: a Proxy in front of ``127.0.0.1:port``, closed after the test."""
    proxies: list[Proxy] = []

    def make(port: int) -> Proxy:
        proxies.append(Proxy(port))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def test_pass_carries_both_directions(peer: Peer, proxy_to: MakeProxy) -> None:
    proxy = proxy_to(peer.port)
    with connect(proxy) as client:
        client.sendall(b"up")
        assert peer.wait_received(2) == b"up"
        peer.connection().sendall(b"down")
        assert receive(client, 4) == b"down"


def test_client_to_upstream_dropped_while_the_other_direction_flows(peer: Peer, proxy_to: MakeProxy) -> None:
    proxy = proxy_to(peer.port)
    with connect(proxy) as client:
        client.sendall(b"a")
        assert peer.wait_received(1) == b"a"
        proxy.drop_client_to_upstream()
        client.sendall(b"lost")
        peer.connection().sendall(b"still")
        assert receive(client, 5) == b"still"
        time.sleep(QUIET)
        assert peer.wait_received(2, timeout=0) == b"a"
        proxy.restore()
        client.sendall(b"b")
        assert peer.wait_received(2) == b"ab"


def test_upstream_to_client_dropped_while_the_other_direction_flows(peer: Peer, proxy_to: MakeProxy) -> None:
    proxy = proxy_to(peer.port)
    with connect(proxy) as client:
        client.sendall(b"a")
        upstream = peer.connection()
        proxy.drop_upstream_to_client()
        upstream.sendall(b"lost")
        client.sendall(b"still")
        assert peer.wait_received(6) == b"astill"
        assert receive(client, 1, timeout=QUIET) == b""
        proxy.restore()
        upstream.sendall(b"back")
        assert receive(client, 4) == b"back"


def test_delay_holds_each_direction_and_keeps_the_order(echo: Peer, proxy_to: MakeProxy) -> None:
    delay = 0.2
    proxy = proxy_to(echo.port)
    with connect(proxy) as client:
        client.sendall(b"warm")
        assert receive(client, 4) == b"warm"
        proxy.delay(delay)
        started = time.monotonic()
        client.sendall(b"x")
        assert receive(client, 1) == b"x"
        round_trip = time.monotonic() - started
        assert round_trip >= 2 * delay - 0.01, round_trip  # held once on the way up, once on the way back
        assert echo.wait_received(5) == b"warmx"

        # Many separate chunks while delayed: all arrive, in order, none before its delay.
        chunks = [f"<{index}>".encode() for index in range(20)]
        sent_at = time.monotonic()
        for chunk in chunks:
            client.sendall(chunk)
            time.sleep(0.005)
        expected = b"".join(chunks)
        first = receive(client, 1)
        assert time.monotonic() - sent_at >= 2 * delay - 0.01
        assert first + receive(client, len(expected) - len(first)) == expected

        # Back to no delay while chunks may still wait: order is still kept, and the delay is gone.
        proxy.restore()
        client.sendall(b"fast")
        started = time.monotonic()
        assert receive(client, 4) == b"fast"
        assert time.monotonic() - started < delay


def test_cut_closes_and_refuses_until_restored(peer: Peer, proxy_to: MakeProxy) -> None:
    proxy = proxy_to(peer.port)
    with connect(proxy) as client:
        client.sendall(b"a")
        assert peer.wait_received(1) == b"a"
        proxy.cut()
        assert receive(client, 1, timeout=2) == b""  # closed by the proxy
    with connect(proxy) as refused:
        assert receive(refused, 1, timeout=2) == b""
    assert proxy.refused >= 1
    proxy.restore()
    with connect(proxy) as client:
        client.sendall(b"b")
        assert peer.wait_received(2) == b"ab"


def test_blackhole_keeps_the_connection_and_drops_both_directions(peer: Peer, proxy_to: MakeProxy) -> None:
    proxy = proxy_to(peer.port)
    with connect(proxy) as client:
        client.sendall(b"a")
        upstream = peer.connection()
        assert peer.wait_received(1) == b"a"
        proxy.blackhole()
        client.sendall(b"lost")
        upstream.sendall(b"lost")
        assert receive(client, 1, timeout=QUIET) == b""
        assert peer.wait_received(2, timeout=0) == b"a"
        proxy.restore()
        client.sendall(b"b")
        assert peer.wait_received(2) == b"ab"
