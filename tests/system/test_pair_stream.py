"""A websocket client on the standby across a kill -9 of the active node: the stream goes on without a gap.

The client is connected to the backup while it is standby (it serves the
replicated image). A raw Modbus client writes a counter into a register of
the simulated building every 20 ms, before, during and after the takeover.
Checked with sequence numbers, not sleeps: every delta continues exactly
where the client is (snapshots only on connect and with a role change), the
client is told that its node became active, values read by the new active
node arrive, and the last value written is the last value the client sees.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import websockets
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus import encode_registers

pytestmark = [pytest.mark.system, pytest.mark.pair]

POINT, REGISTER = "ahu2_supply_setpoint", 12  # hr:12, float32, written by no other pair test


class CounterWriter:
    """Writes 12.00, 12.01, ... into the register every ``interval`` seconds; remembers the last value."""

    def __init__(self, port: int, interval: float = 0.02) -> None:
        self.port, self.interval = port, interval
        self.count = 0
        self.last: float | None = None
        self.running = True

    async def run(self) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=self.port)
        await client.connect()
        try:
            while self.running:
                value = round(12 + (self.count % 900) * 0.01, 2)
                response = await client.write_registers(REGISTER, encode_registers(value, "float32"), device_id=1)
                assert not response.isError(), response
                self.count += 1
                self.last = value
                await asyncio.sleep(self.interval)
        finally:
            client.close()


class StreamReader:
    """Reads the live stream as a client must; asserts that every delta continues where the client is."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.seq: int | None = None
        self.snapshots = 0
        self.deltas = 0
        self.roles: list[dict] = []
        self.values: list[tuple[float, datetime]] = []  # (value, source time) of POINT, in stream order

    async def run(self) -> None:
        async for text in self.ws:
            message = json.loads(text)
            kind = message["type"]
            if kind == "role":
                self.roles.append(message)
                continue
            assert kind in ("snapshot", "delta"), message
            if kind == "snapshot":
                self.snapshots += 1
            else:
                assert message["from"] == self.seq, f"gap: client at {self.seq}, delta from {message['from']}"
                assert message["seq"] > self.seq
                self.deltas += 1
            self.seq = message["seq"]
            state = message["points"].get(POINT)
            if state and state["value"] is not None:
                self.values.append((round(state["value"], 2), datetime.fromisoformat(state["time"])))


async def until(predicate, wait: float, message: str, reading: asyncio.Task | None = None) -> None:
    """Wait for ``predicate``; a reader that stopped (a gap it asserted, a closed socket) fails at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not predicate():
        if reading is not None and reading.done():
            reading.result()  # raises the reader's assertion
            raise AssertionError(f"the stream ended while waiting for {message}")
        assert loop.time() < deadline, f"timed out waiting for {message}"
        await asyncio.sleep(0.02)


async def test_a_client_on_the_standby_sees_a_gapless_stream_across_a_kill_9(make_pair, pair_device):
    pair = make_pair(period_ms=100)
    await asyncio.to_thread(pair.up)
    backup = pair.backup
    cookie = (await asyncio.to_thread(backup.session)).cookie_header
    url = f"ws://127.0.0.1:{backup.web_port}/ws/live/"
    writer = CounterWriter(pair_device.port)
    writing = asyncio.create_task(writer.run())
    try:
        async with websockets.connect(url, origin=backup.base_url, additional_headers={"Cookie": cookie}) as ws:
            reader = StreamReader(ws)
            reading = asyncio.create_task(reader.run())
            await until(lambda: len(reader.values) >= 10, 15, "values replicated to the standby's clients", reading)
            killed_at = datetime.fromtimestamp(await asyncio.to_thread(pair.main.kill9), UTC)
            await asyncio.to_thread(pair.wait_for_roles, 15, backup="active")
            await until(
                lambda: any(r.get("node") == "backup" and r.get("role") == "active" for r in reader.roles),
                10,
                "the role message telling the client its node is active",
                reading,
            )
            # Values the new active node read from the device after the kill, on the same stream.
            after_kill = lambda: sum(t > killed_at for _, t in reader.values) >= 10  # noqa: E731
            await until(after_kill, 15, "values read by the new active node", reading)
            writer.running = False
            await writing
            last = writer.last
            seen_last = lambda: bool(reader.values) and reader.values[-1][0] == last  # noqa: E731
            await until(seen_last, 10, f"the last value written ({last})", reading)
            reading.cancel()
    finally:
        writer.running = False
        await asyncio.gather(writing, return_exceptions=True)
    print(
        f"{writer.count} values written; client saw {reader.deltas} deltas, {reader.snapshots} snapshot(s), "
        f"{len(reader.values)} updates of {POINT}, {len(reader.roles)} role message(s)"
    )
    # One snapshot on connect and one per role message (the consumer starts a client over from a snapshot when
    # its node's role changes); no other: the stream never had to be healed.
    assert reader.snapshots == 1 + len(reader.roles)
    # Source times never go backwards across the takeover: the new active node continues the old one's image.
    times = [t for _, t in reader.values]
    assert times == sorted(times)
