"""The sync link over real loopback TCP: handshake, framing, and every kind of bad input."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime

import pytest

from redundancy.framing import HEADER, MAGIC, SESSION, VERSION, FrameError, Opener, Sealer, hello_key
from redundancy.link import Connection, LinkDialer, LinkServer, RejectLog
from tests.support.waiting import eventually

SECRET = b"0123456789abcdef-test"


class Endpoint:
    """A listening node 'main' that records every message and connection."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.connections: list[Connection] = []
        self.rejects = RejectLog()
        self.server = LinkServer(
            "127.0.0.1", 0, "main", SECRET, lambda n: n == "backup", self.on_message, self.on_connection, self.rejects
        )

    def on_message(self, connection, body):
        self.messages.append(body)

    def on_connection(self, connection, up):
        if up:
            self.connections.append(connection)


@pytest.fixture
async def main_node():
    endpoint = Endpoint()
    await endpoint.server.start()
    yield endpoint
    await endpoint.server.stop()


async def dial(port, secret=SECRET, node="backup"):
    received: list[dict] = []
    dialer = LinkDialer("127.0.0.1", port, 0.05, node, secret, lambda n: n == "main", lambda c, b: received.append(b))
    dialer.start()
    return dialer, received


async def test_messages_cross_both_ways_with_datetimes_intact(main_node):
    dialer, received = await dial(main_node.server.port)
    try:
        await eventually(lambda: dialer.connection is not None and main_node.connections)
        when = datetime(2026, 11, 22, 12, 0, 0, 123000, tzinfo=UTC)
        await dialer.connection.send({"t": "hb", "e": 3, "s": 9, "time": when, "rows": {"p": [1.5, "good", when]}})
        await eventually(lambda: main_node.messages)
        assert main_node.messages[0]["time"] == when and main_node.messages[0]["time"].tzinfo is not None
        assert main_node.messages[0]["rows"] == {"p": [1.5, "good", when]}
        await main_node.connections[0].send({"t": "ack", "e": 3, "s": 9})
        await eventually(lambda: received)
        assert received[0]["t"] == "ack"
    finally:
        await dialer.stop()


async def test_wrong_secret_is_rejected_and_never_connects(main_node):
    dialer, _ = await dial(main_node.server.port, secret=b"another-secret-of-16+")
    try:
        # Both ends see each refused attempt, each in its own time: wait for both counts.
        await eventually(lambda: main_node.rejects.counts["auth"] >= 2 and dialer.failed_attempts >= 2)
        assert dialer.connection is None and not main_node.connections
    finally:
        await dialer.stop()


async def test_unknown_node_name_is_rejected(main_node):
    dialer, _ = await dial(main_node.server.port, node="intruder")
    try:
        await eventually(lambda: main_node.rejects.counts["unknown_node"] >= 1)
        assert not main_node.connections
    finally:
        await dialer.stop()


async def raw_send(port, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 3)  # the server closes the connection
    finally:
        writer.close()


async def test_garbage_oversize_and_silence_are_rejected_while_the_partner_link_keeps_working(main_node):
    dialer, _ = await dial(main_node.server.port)
    try:
        await eventually(lambda: dialer.connection is not None)
        partner = dialer.connection
        assert await raw_send(main_node.server.port, b"GET / HTTP/1.1\r\n\r\n" + b"x" * 64) == b""
        oversize = HEADER.pack(MAGIC, VERSION, 1, 1, 1 << 30)
        assert await raw_send(main_node.server.port, oversize) == b""
        await eventually(lambda: main_node.rejects.counts["garbage"] >= 1 and main_node.rejects.counts["oversize"] >= 1)
        # The established partner connection was not disturbed.
        for n in range(20):
            await partner.send({"t": "hb", "e": 1, "s": n})
        await eventually(lambda: len(main_node.messages) == 20)
        assert [m["s"] for m in main_node.messages] == list(range(20))
        assert partner.open and len(main_node.connections) == 1
    finally:
        await dialer.stop()


async def test_replayed_frame_on_a_new_connection_fails_authentication(main_node):
    dialer, _ = await dial(main_node.server.port)
    try:
        await eventually(lambda: dialer.connection is not None)
        # Record a genuine session frame as the partner would send it, then replay it elsewhere.
        connection = dialer.connection
        recorded = Sealer(connection.sealer.key, b"c>s", connection.sealer.counter).seal({"t": "hb", "e": 1, "s": 1})
        hello = Sealer(hello_key(SECRET), b"c>s").seal(
            {"t": "hello", "node": "backup", "nonce": b"n" * 16, "version": 1}, kind=1
        )
        answer = await raw_send(main_node.server.port, hello + recorded)
        assert answer.startswith(MAGIC)  # the listener answered the hello, then dropped the replayed frame
        await eventually(lambda: main_node.rejects.counts["auth"] >= 1)
        assert main_node.messages == []
    finally:
        await dialer.stop()


def test_opener_rejects_replay_and_gap_within_a_connection():
    key = b"k" * 32
    sealer, opener = Sealer(key, b"c>s"), Opener(key, b"c>s")
    first = sealer.seal({"t": "a"})
    sealer.seal({"t": "b"})  # sealed but never delivered: the next frame leaves a gap

    def open_frame(frame):
        header, rest = frame[: HEADER.size], frame[HEADER.size :]
        return opener.open(header, rest[:-32], rest[-32:])

    assert open_frame(first)["t"] == "a"
    with pytest.raises(FrameError) as replay:
        open_frame(first)
    assert replay.value.reason == "replay"
    third = sealer.seal({"t": "c"})
    with pytest.raises(FrameError) as gap:
        open_frame(third)
    assert gap.value.reason == "gap"


def test_opener_rejects_reflection_and_tampering():
    key = b"k" * 32
    frame = Sealer(key, b"c>s").seal({"t": "a", "e": 1, "s": 1})
    header, rest = frame[: HEADER.size], frame[HEADER.size :]
    with pytest.raises(FrameError) as reflected:
        Opener(key, b"s>c").open(header, rest[:-32], rest[-32:])
    assert reflected.value.reason == "auth"
    tampered = bytearray(rest)
    tampered[0] ^= 1
    with pytest.raises(FrameError) as altered:
        Opener(key, b"c>s").open(header, bytes(tampered[:-32]), bytes(tampered[-32:]))
    assert altered.value.reason == "auth"


def test_header_checks_name_the_problem():
    opener = Opener(b"k" * 32, b"c>s", max_body=1000)
    with pytest.raises(FrameError, match="exceeds the limit"):
        opener.parse_header(HEADER.pack(MAGIC, VERSION, SESSION, 1, 1001))
    with pytest.raises(FrameError, match="version"):
        opener.parse_header(HEADER.pack(MAGIC, 9, SESSION, 1, 10))
    with pytest.raises(FrameError, match="not a sync-link frame"):
        opener.parse_header(struct.pack("!2sBBQI", b"XX", VERSION, SESSION, 1, 10))


async def test_a_message_the_handler_fails_on_does_not_end_the_link():
    seen: list[int] = []

    def on_message(connection, body):
        if body["s"] == 1:
            raise KeyError("field the handler expected")
        seen.append(body["s"])

    server = LinkServer("127.0.0.1", 0, "main", SECRET, lambda n: n == "backup", on_message)
    await server.start()
    dialer, _ = await dial(server.port)
    try:
        await eventually(lambda: dialer.connection is not None)
        for n in range(3):
            await dialer.connection.send({"t": "x", "e": 1, "s": n})
        await eventually(lambda: seen == [0, 2])
        assert server.rejects.counts["unhandled"] == 1 and dialer.connection.open
    finally:
        await dialer.stop()
        await server.stop()
