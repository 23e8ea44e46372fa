"""Live fan-out: one stream of device changes to 100 and 500 websocket clients, against a raw broadcast server.

Run by hand from the repository root (PostgreSQL and Redis on loopback for
the production shape, found as in ``tests/support/services.py``)::

    .venv/bin/python bench/fanout.py --wire keyed                 # baseline, embedded, production; N=100, 500
    .venv/bin/python bench/fanout.py --shape embedded --clients 500 --seconds 30
    .venv/bin/python bench/fanout.py --self-check                 # the wire parsers only, no processes

Method
------
Field side: a pymodbus TCP server in a subprocess (this file with
``--serve-device``) holds a block of ``--points`` holding registers (default
400). A timer changes 10 % of the block per tick, a different tenth each
tick (tick k writes registers ``(k % 10) * P/10 ...``), at ``--change-rate``
changes per second (default 2,000: 40 registers every 20 ms); each register
thus changes every 10 ticks (200 ms by default). The value written is the
tick number (mod 65,536), and the device records the CLOCK_MONOTONIC time of
each tick in a small table shared with the client processes through a
memory-mapped file. A client that receives value v of any point knows when
the device made that change: delay = arrival - table[v], with no clock
sync and no per-change messages between processes. The device's rate is
its own (a timer on a fixed grid, catching up if late), independent of who
polls it, so a poller that falls behind loses changes (a register changed
twice between two reads) instead of slowing the device down.

Targets, each polling that device every ``--poll-interval`` (default 50 ms,
the product's lowest allowed interval) with the same read plan
(``drivers.modbus.plan_reads``: 4 requests of <= 125 registers):

- **raw** (baseline): this file with ``--serve-baseline``: a raw
  ``AsyncModbusTcpClient`` loop and a plain ``websockets`` server, no Django.
  After each answered read request it builds one delta of the changed
  registers in the same wire form (``--wire``) and the same seq scheme as the
  node (a snapshot on connect and on ``resync``), encodes it once and hands
  it to ``websockets.broadcast`` for all clients.
- **embedded**: ``manage.py runbms`` with ``bms.settings.embedded`` (SQLite,
  in-memory channel layer).
- **production**: ``manage.py runbms`` with ``bms.settings.production``
  (PostgreSQL, Redis), its own database, dropped at the end.
- **workers** (``--shape workers`` or ``all``): the production shape as
  ``manage.py runbms --web-workers N`` (``--web-workers``, default 1): the
  engine in its own process (``runengine``), N web processes.

The node is configured with one Device ``field`` and ``--points`` uint16
points ``r0000``..., loaded with ``manage.py shell -c``; the clients log in
once through the login form (``tests.support.processes.HttpSession``) and
share the session cookie.

Clients: ``--client-procs`` processes (default 2) of asyncio + ``websockets``
clients, N / procs each. All of a round's N clients connect at once (a "go"
line to every process) while the device changes; connect -> first snapshot
is timed per client. Every client checks seq continuity (a delta whose
``from`` is not its seq is a gap: it sends ``resync`` and ignores deltas
until the next snapshot) and counts delta frames and points. To keep the
client side from limiting the server, most clients read only the header of a
delta (a regular expression for type/from/seq, a substring count for the
points; anything else falls back to ``json.loads``); ``--probes`` clients per
process (default 4, spread over the connection order) decode every message
fully with the wire parser (checked by ``--self-check``) and time every
change they receive. The window of ``--seconds`` starts one second after
all clients hold a snapshot.

Per target and N: delivered delta frames/s and point updates/s summed over
clients (and their ratios to raw at the same N), device -> client delay
p50/p99 of every change the probes received in the window (``srv p50``:
from the server's own ``time`` field, its poll time, to the client; wall
clock), CPU of the server process tree (utime+stime from /proc over the
window, % of one core) and its RSS at the end of the window, the same CPU
figure for the client processes and the device, the whole host's busy
share (of 100 % x cores), seq gaps, errors, closed connections,
connect -> snapshot p50/max, and the share of the offered changes that
reached the process image while the clients were connected: offered =
ticks the device made in the window x changes per tick; reached = distinct
(point, value) pairs of those ticks seen by the best probe, counted after a
grace period for late frames. That is the image's content, not only what
one client got: a probe with no gap sees every value the image took,
because every delta carries the latest state of each point it covers and a
register changes only every 10 ticks (200 ms by default), far longer than
any coalescing in the server. A change is lost to the image when a poll of
its register comes more than 10 ticks after the previous one (a stall of
150 ms at the defaults), so the raw server's own share on the same box is
the reference. The JSON also holds the image seq increase the probe saw
between the window's ends (shifted by the delay, so only a rough
cross-check). Results also go to ``bench/results/fanout-<timestamp>.json``,
and the logs of a target whose log had warnings or errors to
``bench/results/fanout-<timestamp>-<target>-<process>.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import mmap
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS_DIR, percentile, ratio, write_json  # noqa: E402

HOST = "127.0.0.1"
KEYED = "keyed"
COMPACT = "compact"
DEVICE_READY = "fanout device on port"
BASELINE_READY = "fanout baseline on port"
SLOTS = 65536  # the tick table: one slot per register value
USERNAME, PASSWORD = "bench", "bench-pass-1"
GOAL_RATIO = 0.25
GOAL_REACHED = 1.0
GOAL_SNAPSHOT_S = 5.0


# --- the tick table shared by the device and the clients -------------------------------------------------------


def _is_number(value: Any) -> bool:
    """A device point's value (the image also carries entries such as the alarm summary, whose value is a dict)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class ChangeTable:
    """A memory-mapped array of doubles: [0] last tick made, [1] changes per tick, [2 + v] CLOCK_MONOTONIC of value v.

    The device writes it; client processes read it to learn when the change carrying value v was made.
    """

    def __init__(self, path: Path, create: bool = False) -> None:
        size = 8 * (2 + SLOTS)
        if create:
            with path.open("wb") as handle:
                handle.truncate(size)
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), size)
        self.cells = memoryview(self._map).cast("d")

    @property
    def tick(self) -> int:
        return int(self.cells[0])

    def time_of(self, value: int) -> float:
        return self.cells[2 + (value & 0xFFFF)]

    def close(self) -> None:
        self.cells.release()
        self._map.close()
        self._file.close()


# --- wire forms: the full parser (probe clients) and the header reader (all others) ----------------------------


class Stream:
    """A client's view of the stream in either wire form: seq, point names, latest values.

    :meth:`feed` takes one decoded message and returns ``(outcome, changes)``:
    outcome is ``snapshot``, ``delta`` (applied), ``gap`` (``from`` is not our
    seq: the caller must send resync; deltas are ignored until a snapshot),
    ``ignored`` (a delta while waiting for a snapshot) or the message type;
    changes are ``(name, value, source time in epoch seconds or None)`` for
    every point state carried (``value`` None for a removed point).
    """

    def __init__(self, wire: str) -> None:
        self.wire = wire
        self.seq: int | None = None
        self.names: list[str] = []
        self.values: dict[str, Any] = {}
        self._iso: dict[str, float] = {}

    def feed(self, message: dict[str, Any]) -> tuple[str, list[tuple[str, Any, float | None]]]:
        kind = message.get("type")
        if kind == "snapshot":
            return "snapshot", self._snapshot(message)
        if kind == "delta":
            if self.seq is None:
                return "ignored", []
            if message.get("from") != self.seq:
                self.seq = None
                return "gap", []
            changes = self._delta(message)
            self.seq = message["seq"]
            return "delta", changes
        return str(kind), []

    def _snapshot(self, message: dict[str, Any]) -> list[tuple[str, Any, float | None]]:
        points = message["points"]
        if self.wire == COMPACT:
            if not isinstance(points, list) or not isinstance(message.get("names"), list):
                raise ValueError("compact snapshot expected ('names' and a 'points' list), got another form")
            names = message["names"]
            if len(names) != len(points):
                raise ValueError(f"compact snapshot: {len(names)} names but {len(points)} rows")
            changes = [(name, row[0], _millis(row[2])) for name, row in zip(names, points, strict=True)]
            self.names = list(names)
        else:
            if not isinstance(points, dict):
                raise ValueError("keyed snapshot expected ('points' an object), got another form")
            changes = [(name, state["value"], self._seconds(state["time"])) for name, state in points.items() if state]
            self.names = list(points)
        self.values = {name: value for name, value, _ in changes}
        self.seq = message["seq"]
        return changes

    def _delta(self, message: dict[str, Any]) -> list[tuple[str, Any, float | None]]:
        points = message["points"]
        changes: list[tuple[str, Any, float | None]] = []
        if self.wire == COMPACT:
            names = self.names
            for row in points:
                name = names[row[0]]
                if len(row) < 6:  # not in the form as given; read as "removed"
                    changes.append((name, None, None))
                    self.values.pop(name, None)
                    continue
                changes.append((name, row[1], _millis(row[3])))
                self.values[name] = row[1]
        else:
            for name, state in points.items():
                if state is None:
                    changes.append((name, None, None))
                    self.values.pop(name, None)
                    continue
                changes.append((name, state["value"], self._seconds(state["time"])))
                self.values[name] = state["value"]
        return changes

    def _seconds(self, text: str | None) -> float | None:
        if text is None:
            return None
        seconds = self._iso.get(text)
        if seconds is None:
            if len(self._iso) > 4096:
                self._iso.clear()
            seconds = self._iso[text] = datetime.fromisoformat(text).timestamp()
        return seconds


def _millis(value: int | None) -> float | None:
    return None if value is None else value / 1000


#: type, from (deltas only) and seq at the start of a message, as the servers write them (any spacing)
HEADER = re.compile(rb'\{\s*"type"\s*:\s*"([a-z_]+)"\s*,\s*(?:"from"\s*:\s*(-?\d+)\s*,\s*)?"seq"\s*:\s*(-?\d+)\s*,')
TYPE = re.compile(rb'\{\s*"type"\s*:\s*"([a-z_]+)"')


def read_header(data: bytes) -> tuple[str, int | None, int, int] | None:
    """``(type, from, seq, end of header)`` of a snapshot or delta without decoding it; None if not in that order."""
    match = HEADER.match(data)
    if match is None:
        return None
    first = match.group(2)
    return match.group(1).decode(), None if first is None else int(first), int(match.group(3)), match.end()


def count_points(data: bytes, start: int, wire: str) -> int:
    """Point states in a delta whose header ends at ``start`` (its only object/array after the header is points)."""
    if wire == COMPACT:
        return max(0, data.count(b"[", start) - 1)  # one row array per point inside the points array
    return max(0, data.count(b"{", start) - 1)  # one object per state inside the points object; null not counted


def self_check() -> None:
    """Both wire forms through :class:`Stream`, :func:`read_header` and :func:`count_points`; raises on a mistake."""
    when_ms = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
    iso = datetime.fromtimestamp(when_ms / 1000, UTC).isoformat()
    state = {"value": 7, "quality": "good", "time": iso, "changed": iso, "seq": 3}
    keyed = [
        {"type": "snapshot", "seq": 3, "points": {"a": state, "b": {**state, "value": 1.5, "seq": 2}}},
        {"type": "delta", "from": 3, "seq": 5, "points": {"b": {**state, "value": 2.5, "seq": 5}, "a": None}},
        {"type": "delta", "from": 4, "seq": 6, "points": {"b": {**state, "value": 9, "seq": 6}}},  # gap
        {"type": "delta", "from": 6, "seq": 7, "points": {"b": state}},  # ignored until a snapshot
    ]
    compact = [
        {
            "type": "snapshot",
            "seq": 3,
            "names": ["a", "b"],
            "points": [[7, "good", when_ms, when_ms, 3], [1.5, "good", None, None, 2]],
        },
        {
            "type": "delta",
            "from": 3,
            "seq": 5,
            "points": [[1, 2.5, "good", when_ms, when_ms, 5], [0, False, "bad", when_ms, None, 4]],
        },
        {"type": "delta", "from": 4, "seq": 6, "points": [[1, 9, "good", when_ms, when_ms, 6]]},  # gap
        {"type": "delta", "from": 6, "seq": 7, "points": [[1, 9, "good", when_ms, when_ms, 7]]},  # ignored
    ]
    expected = {
        KEYED: [
            ("snapshot", [("a", 7, when_ms / 1000), ("b", 1.5, when_ms / 1000)], {"a": 7, "b": 1.5}, 3),
            ("delta", [("b", 2.5, when_ms / 1000), ("a", None, None)], {"b": 2.5}, 5),
            ("gap", [], {"b": 2.5}, None),
            ("ignored", [], {"b": 2.5}, None),
        ],
        COMPACT: [
            ("snapshot", [("a", 7, when_ms / 1000), ("b", 1.5, None)], {"a": 7, "b": 1.5}, 3),
            ("delta", [("b", 2.5, when_ms / 1000), ("a", False, when_ms / 1000)], {"a": False, "b": 2.5}, 5),
            ("gap", [], {"a": False, "b": 2.5}, None),
            ("ignored", [], {"a": False, "b": 2.5}, None),
        ],
    }
    point_counts = {KEYED: [None, 1, 1, 1], COMPACT: [None, 2, 1, 1]}
    for wire, messages in ((KEYED, keyed), (COMPACT, compact)):
        stream = Stream(wire)
        for message, (outcome, changes, values, seq), points in zip(
            messages, expected[wire], point_counts[wire], strict=True
        ):
            got = stream.feed(message)
            assert got == (outcome, changes), f"{wire}: {message} gave {got}, expected {(outcome, changes)}"
            assert stream.values == values, f"{wire}: values {stream.values} after {message}"
            assert stream.seq == seq, f"{wire}: seq {stream.seq} after {message}"
            for separators in ((",", ":"), (", ", ": ")):
                data = json.dumps(message, separators=separators).encode()
                header = read_header(data)
                assert header is not None, f"{wire}: no header in {data!r}"
                kind, first, seq_read, end = header
                assert (kind, first, seq_read) == (message["type"], message.get("from"), message["seq"]), data
                if points is not None:
                    assert count_points(data, end, wire) == points, f"{wire}: point count of {data!r}"
        assert stream.feed({"type": "error", "code": "x", "message": "y"}) == ("error", [])
        if wire == COMPACT:
            try:
                Stream(COMPACT).feed(keyed[0])
            except ValueError:
                pass
            else:
                raise AssertionError("a keyed snapshot was accepted as compact")
    # a compact snapshot may come at any time (points added or removed: new names, new positions) and replaces all
    stream = Stream(COMPACT)
    stream.feed(compact[0])
    stream.feed(compact[1])
    again = {
        "type": "snapshot",
        "seq": 9,
        "names": ["c", "b"],
        "points": [[4, "good", when_ms, when_ms, 9], [2.5, "good", when_ms, when_ms, 5]],
    }
    assert stream.feed(again)[0] == "snapshot" and stream.seq == 9 and stream.values == {"c": 4, "b": 2.5}
    got = stream.feed({"type": "delta", "from": 9, "seq": 10, "points": [[0, 5, "good", when_ms, when_ms, 10]]})
    assert got == ("delta", [("c", 5, when_ms / 1000)]) and stream.values == {"c": 5, "b": 2.5}, got
    # a header in another key order is not read (the caller falls back to json.loads)
    assert read_header(b'{"seq":1,"type":"delta","from":0,"points":{}}') is None
    assert TYPE.match(b'{"type":"error","code":"x"}').group(1) == b"error"


# --- the field device (its own process) --------------------------------------------------------------------------


async def serve_device(points: int, rate: float, table_path: Path) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    table = ChangeTable(table_path)
    per_tick = points // 10
    period = per_tick / rate
    device = SimDevice(
        id=0,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=points, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, address=(HOST, 0))
    serving = asyncio.create_task(server.serve_forever())
    for _ in range(200):
        if server.transport is not None:
            break
        await asyncio.sleep(0.01)
    else:
        raise SystemExit("fanout device: the Modbus server did not start")
    table.cells[1] = per_tick
    print(f"{DEVICE_READY} {server.transport.sockets[0].getsockname()[1]}", flush=True)
    set_values = server.context.async_setValues
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    tick = 0
    cells = table.cells
    while not serving.done():
        now = loop.time()
        while next_at <= now:  # a late timer catches up: the device's rate does not depend on the machine's mood
            tick += 1
            value = tick & 0xFFFF
            cells[2 + value] = time.monotonic()  # before the change: no read can see it earlier
            await set_values(0, 3, (tick % 10) * per_tick, [value] * per_tick)
            cells[0] = tick
            next_at += period
        await asyncio.sleep(next_at - loop.time())


# --- the raw baseline server (its own process) -------------------------------------------------------------------


class BaselineServer:
    """Raw pymodbus polling + ``websockets.broadcast`` of each answered request's changes, encoded once."""

    def __init__(self, points: int, modbus_port: int, wire: str) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        from drivers.base import PointSpec
        from drivers.modbus import plan_reads

        self.wire = wire
        self.names = [point_name(index) for index in range(points)]
        self.blocks = plan_reads([PointSpec(name, f"hr:{i}", "uint16") for i, name in enumerate(self.names)])
        self.client = AsyncModbusTcpClient(HOST, port=modbus_port, retries=0, reconnect_delay=0, timeout=2)
        # per point: value, quality, time (epoch microseconds), changed, seq
        self.rows: list[list[Any]] = [[None, "uncertain", None, None, 0] for _ in self.names]
        self.seq = 0
        self.connections: set[Any] = set()

    async def handle(self, connection: Any) -> None:
        import websockets

        websockets.broadcast([connection], self.snapshot())  # synchronous: no delta can slip in between
        self.connections.add(connection)
        try:
            async for message in connection:
                if isinstance(message, str) and '"resync"' in message:
                    websockets.broadcast([connection], self.snapshot())
        except websockets.ConnectionClosed:
            pass
        finally:
            self.connections.discard(connection)

    async def run(self, interval: float) -> None:
        if not await self.client.connect():
            raise SystemExit(f"baseline: cannot connect to the device at {HOST}:{self.client.comm_params.port}")
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            for block in self.blocks:
                response = await self.client.read_holding_registers(block.start, count=block.count, device_id=1)
                self.apply(block, response.registers)
            next_at += interval
            now = loop.time()
            if next_at <= now:
                next_at += (math.floor((now - next_at) / interval) + 1) * interval
            await asyncio.sleep(next_at - now)

    def apply(self, block: Any, registers: Sequence[int]) -> None:
        import websockets

        now_us = time.time_ns() // 1000
        first = self.seq
        changed: list[int] = []
        for _spec, address in block.points:
            value = registers[address.offset - block.start]
            row = self.rows[address.offset]
            if value != row[0] or row[1] != "good":
                self.seq += 1
                row[0], row[1], row[2], row[3], row[4] = value, "good", now_us, now_us, self.seq
                changed.append(address.offset)
        if changed and self.connections:
            websockets.broadcast(self.connections, self.delta(first, changed))

    def snapshot(self) -> str:
        if self.wire == COMPACT:
            rows = [[r[0], r[1], _ms(r[2]), _ms(r[3]), r[4]] for r in self.rows]
            return _encode({"type": "snapshot", "seq": self.seq, "names": self.names, "points": rows})
        memo: dict[int, str | None] = {}
        points = {name: _keyed_state(row, memo) for name, row in zip(self.names, self.rows, strict=True)}
        return _encode({"type": "snapshot", "seq": self.seq, "points": points})

    def delta(self, first: int, changed: list[int]) -> str:
        rows = self.rows
        if self.wire == COMPACT:
            points: Any = [[i, rows[i][0], rows[i][1], _ms(rows[i][2]), _ms(rows[i][3]), rows[i][4]] for i in changed]
        else:
            memo: dict[int, str | None] = {}
            points = {self.names[i]: _keyed_state(rows[i], memo) for i in changed}
        return _encode({"type": "delta", "from": first, "seq": self.seq, "points": points})


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _ms(micros: int | None) -> int | None:
    return None if micros is None else micros // 1000


def _iso(micros: int | None, memo: dict[int, str | None]) -> str | None:
    if micros is None:
        return None
    text = memo.get(micros)
    if text is None:
        text = memo[micros] = datetime.fromtimestamp(micros / 1e6, UTC).isoformat()
    return text


def _keyed_state(row: list[Any], memo: dict[int, str | None]) -> dict[str, Any]:
    return {
        "value": row[0],
        "quality": row[1],
        "time": _iso(row[2], memo),
        "changed": _iso(row[3], memo),
        "seq": row[4],
    }


def point_name(index: int) -> str:
    return f"r{index:04d}"


async def serve_baseline(points: int, modbus_port: int, interval: float, wire: str) -> None:
    from websockets.asyncio.server import serve

    server = BaselineServer(points, modbus_port, wire)
    async with serve(server.handle, HOST, 0, compression=None, max_size=None, ping_interval=None, backlog=1024) as ws:
        print(f"{BASELINE_READY} {next(iter(ws.sockets)).getsockname()[1]}", flush=True)
        await server.run(interval)


# --- the client processes ---------------------------------------------------------------------------------------


class Window:
    """The measurement window in CLOCK_MONOTONIC seconds (nothing counts until the parent sets it)."""

    start = math.inf
    end = math.inf


class Histogram:
    """Log-binned milliseconds (0.5 % wide bins): cheap to fill, exact enough for p50/p99, mergeable."""

    SCALE = 200.0

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}

    def add(self, ms: float) -> None:
        key = int(math.log(ms if ms > 1e-3 else 1e-3) * self.SCALE)
        self.bins[key] = self.bins.get(key, 0) + 1

    @staticmethod
    def merged(parts: Sequence[dict[str, int]]) -> dict[int, int]:
        total: dict[int, int] = {}
        for part in parts:
            for key, count in part.items():
                total[int(key)] = total.get(int(key), 0) + count
        return total

    @classmethod
    def quantile(cls, bins: dict[int, int], q: float) -> float:
        count = sum(bins.values())
        if not count:
            return math.nan
        rank = q / 100 * (count - 1)
        seen = 0
        for key in sorted(bins):
            seen += bins[key]
            if seen > rank:
                return math.exp((key + 0.5) / cls.SCALE)
        return math.exp((max(bins) + 0.5) / cls.SCALE)


class Client:
    """One websocket client. Probes decode everything and time each change; the others read headers only."""

    def __init__(self, index: int, probe: bool, wire: str, window: Window, table: ChangeTable, shared: Any) -> None:
        self.index = index
        self.probe = probe
        self.wire = wire
        self.window = window
        self.table = table
        self.shared = shared  # the process's histograms (probes only)
        self.ready = asyncio.Event()
        self.connection: Any = None
        self.started = 0.0
        self.snapshot_s: float | None = None
        self.failure: str | None = None
        self.failed_at: float | None = None  # s from the go to the failed connect
        self.closed: str | None = None
        self.closed_at: float | None = None  # s from the go to the close
        self.seq: int | None = None
        self.frames = self.points = self.gaps = self.snapshots = self.errors = self.fallbacks = self.ignored = 0
        self.stream = Stream(wire)
        self.last: dict[str, int] = {}
        self.reached: dict[int, int] = {}  # value (tick mod 65536) -> distinct changes seen with it
        self.seq_at_start: int | None = None
        self.seq_at_end: int | None = None
        self.parse_error: str | None = None
        self.pending: asyncio.Future | None = None  # the last resync request being sent

    async def run(self, url: str, headers: dict[str, str], origin: str | None, open_timeout: float) -> None:
        import websockets

        self.started = time.monotonic()
        try:
            self.connection = await websockets.connect(
                url,
                additional_headers=headers,
                origin=origin,
                compression=None,
                proxy=None,
                max_size=None,
                ping_interval=None,
                open_timeout=open_timeout,
                close_timeout=1,
            )
        except Exception as exc:  # counted, never retried: a refused client is a result
            self.failure = f"{type(exc).__name__}: {exc}"[:200]
            self.failed_at = time.monotonic() - self.started
            self.ready.set()
            return
        recv = self.connection.recv
        try:
            while True:
                data = await recv(decode=False)
                now = time.monotonic()
                if self.probe:
                    self.on_message(data, now)
                else:
                    self.on_header(data, now)
        except websockets.ConnectionClosed as exc:
            self.closed = f"{exc.rcvd.code if exc.rcvd else 'no close frame'}"
            self.closed_at = time.monotonic() - self.started
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.parse_error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.ready.set()

    def _resync(self) -> None:
        self.gaps += 1
        self.seq = None
        self.pending = asyncio.ensure_future(self.connection.send('{"type":"resync"}'))

    def _snapshot(self, seq: int, now: float) -> None:
        self.seq = seq
        self.snapshots += 1
        if self.snapshot_s is None:
            self.snapshot_s = now - self.started
            self.ready.set()

    def on_header(self, data: bytes, now: float) -> None:
        header = read_header(data)
        if header is None or header[0] != "delta":
            match = TYPE.match(data)
            kind = match.group(1) if match is not None else None
            if kind == b"error":
                self.errors += 1
            elif kind is None or kind in (b"snapshot", b"delta"):  # snapshots are decoded in full (names, seq)
                self.fallbacks += kind != b"snapshot"
                self.on_message(data, now)
            return  # status, role, pong: nothing to count
        _kind, first, seq, end = header
        if self.seq is None:
            self.ignored += 1
        elif first != self.seq:
            self._resync()
        else:
            self.seq = seq
            if self.window.start <= now < self.window.end:
                self.frames += 1
                self.points += count_points(data, end, self.wire)

    def on_message(self, data: bytes, now: float) -> None:
        message = json.loads(data)
        stream = self.stream
        stream.seq = self.seq  # a header-only client moved it on without the stream
        outcome, changes = stream.feed(message)
        if outcome == "snapshot":
            first = self.snapshot_s is None
            self._snapshot(message["seq"], now)
            if self.probe:
                # A snapshot may come at any time (a resync, points added or removed, the hub's own restart): a
                # value it brings that this probe had not seen is a value of the image it saw, so it counts.
                last, reached = self.last, self.reached
                fresh = {name: int(value) for name, value, _ in changes if _is_number(value)}
                if not first:
                    for name, value in fresh.items():
                        if last.get(name) != value:
                            reached[value] = reached.get(value, 0) + 1
                self.last = fresh
            return
        if outcome == "gap":
            self._resync()
            return
        if outcome == "ignored":
            self.ignored += 1
            return
        if outcome == "error":
            self.errors += 1
        if outcome != "delta":
            return
        self.seq = stream.seq
        window = self.window
        if now < window.start:
            self.seq_at_start = self.seq
        if now < window.end:
            self.seq_at_end = self.seq
        inside = window.start <= now < window.end
        if inside:
            self.frames += 1
            self.points += sum(1 for _, value, _ in changes if value is not None)
        if not self.probe:
            return
        wall = time.time()
        delays, source_delays = self.shared
        last = self.last
        reached = self.reached
        time_of = self.table.time_of
        for name, value, source in changes:
            if not _is_number(value):
                continue  # no value, or an entry that is not a device point (the alarm summary is a dict)
            value = int(value)
            if last.get(name) != value:
                last[name] = value
                reached[value] = reached.get(value, 0) + 1
            if inside:
                delays.add((now - time_of(value)) * 1e3)
                if source is not None:
                    source_delays.add((wall - source) * 1e3)

    def result(self) -> dict[str, Any]:
        return {
            "snapshot_s": self.snapshot_s,
            "failure": self.failure,
            "failed_at": self.failed_at,
            "closed": self.closed,
            "closed_at": self.closed_at,
            "open": self.connection is not None and self.closed is None,  # as the server sees it
            "parse_error": self.parse_error,
            "frames": self.frames,
            "points": self.points,
            "gaps": self.gaps,
            "snapshots": self.snapshots,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "ignored": self.ignored,
        }


async def client_process(config: dict[str, Any]) -> None:
    """Run ``config['count']`` clients; driven by lines on stdin (go, window, stop), answering on stdout."""
    table = ChangeTable(Path(config["table"]))
    window = Window()
    shared = (Histogram(), Histogram())
    count = config["count"]
    probes = set(config["probes"])
    clients = [Client(i, i in probes, config["wire"], window, table, shared) for i in range(count)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    say("ready")
    if (await reader.readline()).strip() != b"go":
        return
    headers = config["headers"]
    tasks = [
        asyncio.create_task(client.run(config["url"], headers, config["origin"], config["connect_timeout"]))
        for client in clients
    ]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(config["connect_timeout"] + 5):
            await asyncio.gather(*(client.ready.wait() for client in clients))
    say("connected " + json.dumps({"snapshots": sum(c.snapshot_s is not None for c in clients)}))
    words = (await reader.readline()).split()
    window.start, window.end = float(words[1]), float(words[2])
    cpu: list[float] = []
    loop.call_at(window.start, lambda: cpu.append(time.process_time()))
    loop.call_at(window.end, lambda: cpu.append(time.process_time()))
    words = (await reader.readline()).split()  # stop k0 k1
    k0, k1 = int(words[1]), int(words[2])
    wanted = [k & 0xFFFF for k in range(k0 + 1, k1 + 1)]
    probe_results = [
        {
            "index": client.index,
            "reached": sum(client.reached.get(v, 0) for v in wanted),
            "gaps": client.gaps,
            "seq_increase": None
            if client.seq_at_start is None or client.seq_at_end is None
            else client.seq_at_end - client.seq_at_start,
            "parse_error": client.parse_error,
        }
        for client in clients
        if client.probe
    ]
    say(
        "result "
        + json.dumps(
            {
                "clients": [client.result() for client in clients],
                "probes": probe_results,
                "delays": shared[0].bins,
                "source_delays": shared[1].bins,
                "cpu_s": cpu[1] - cpu[0] if len(cpu) == 2 else None,
            }
        )
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closing = [client.connection.close() for client in clients if client.connection is not None]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            await asyncio.gather(*closing, return_exceptions=True)
    table.close()


class ClientProcess:
    """The parent's handle on one client process: lines in on stdin, lines out through a reader thread.

    ``script`` is started with ``--serve-clients`` and finds ``config`` as JSON in ``config_variable``
    (bench/scale.py uses it too).
    """

    def __init__(
        self, config: dict[str, Any], script: str = __file__, config_variable: str = "FANOUT_CLIENT_CONFIG"
    ) -> None:
        env = {**os.environ, config_variable: json.dumps(config)}
        self.process = subprocess.Popen(
            [sys.executable, script, "--serve-clients"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")  # end of output

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, word: str, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"client process {self.process.pid}: no '{word}' within {timeout:.0f} s") from None
        if not line.startswith(word):
            raise RuntimeError(f"client process {self.process.pid}: expected '{word}', got {line[:200]!r}")
        return line[len(word) :].strip()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)  # it closes its connections and exits after its result
        stop_process(self.process, grace=5)


# --- the targets (parent side) -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Endpoint:
    url: str
    origin: str | None
    headers: dict[str, str]
    pids: list[int]
    health_url: str | None = None  # the node's /healthz (its "live" counters); None for the baseline


class DeviceProcess:
    """The field device (``--serve-device``); its stderr (pymodbus' own log) goes to ``log_path``."""

    def __init__(self, points: int, rate: float, table_path: Path, log_path: Path) -> None:
        command = [sys.executable, __file__, "--serve-device", "--points", str(points), "--change-rate", str(rate)]
        self.log_path = log_path
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*command, "--table", str(table_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the only line it prints
        if not line.startswith(DEVICE_READY):
            stop_process(self.process)
            raise RuntimeError(f"the device did not start: {line!r} {log_path.read_text(errors='replace')[-500:]}")
        self.port = int(line.split()[-1])

    def stop(self) -> None:
        stop_process(self.process)


class BaselineTarget:
    key = "raw"
    label = "raw websockets"

    def __init__(self, options: Options) -> None:
        self.options = options
        self.process: subprocess.Popen[str] | None = None
        self.log_path: Path | None = None

    def start(self, modbus_port: int, work: Path) -> Endpoint:
        o = self.options
        command = [sys.executable, __file__, "--serve-baseline", "--modbus-port", str(modbus_port)]
        command += ["--points", str(o.points), "--poll-interval", str(o.poll_interval), "--wire", o.wire]
        self.log_path = work / "baseline.log"
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(BASELINE_READY):
            raise RuntimeError(f"the baseline server did not start: {line!r}")
        query = "?wire=compact" if o.wire == COMPACT else ""
        return Endpoint(f"ws://{HOST}:{int(line.split()[-1])}/{query}", None, {}, [self.process.pid])

    def stop(self) -> None:
        stop_process(self.process)


class NodeTarget:
    """``manage.py runbms`` on its own database, with one device and ``points`` points; the bench user logs in."""

    key = "node"
    label = "bms node"
    settings = ""
    #: what ``manage.py runbms`` gets besides the port
    runbms_args: tuple[str, ...] = ()

    def __init__(self, options: Options) -> None:
        self.options = options
        self.directory = Path(tempfile.mkdtemp(prefix="bms-fanout-"))
        self.log_path: Path | None = self.directory / "node.log"
        self.env: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        raise NotImplementedError

    def start(self, modbus_port: int, work: Path) -> Endpoint:
        from tests.support.net import free_port, wait_for_port
        from tests.support.processes import HttpSession

        self.prepare()
        self._manage("migrate", "--verbosity", "0")
        self._manage("shell", "-c", LOADER, extra={"FANOUT_PORT": str(modbus_port)})
        port = free_port()
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runbms", "--port", str(port), *self.runbms_args],
                cwd=ROOT,
                env={**self.env, "PYTHONUNBUFFERED": "1"},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(port, 30)
        base_url = f"http://{HOST}:{port}"
        # With --web-workers the supervisor listens before its workers run: wait until one answers.
        read_live(f"{base_url}/healthz", timeout=60)
        session = HttpSession(base_url, USERNAME, PASSWORD)
        query = "?wire=compact" if self.options.wire == COMPACT else ""
        return Endpoint(
            f"ws://{HOST}:{port}/ws/live/{query}",
            base_url,
            {"Cookie": session.cookie_header},
            [self.process.pid],
            f"{base_url}/healthz",
        )

    def _manage(self, *args: str, extra: dict[str, str] | None = None) -> None:
        env = {**self.env, **(extra or {})}
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")

    def _base_env(self) -> dict[str, str]:
        o = self.options
        return {
            **os.environ,
            "BMS_NODE_NAME": "fanout",
            "FANOUT_POINTS": str(o.points),
            "FANOUT_POLL_INTERVAL": str(o.poll_interval),
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class EmbeddedTarget(NodeTarget):
    key = "embedded"
    label = "bms embedded"

    def prepare(self) -> None:
        self.env = {
            **self._base_env(),
            "DJANGO_SETTINGS_MODULE": "bms.settings.embedded",
            "DATABASE_URL": f"sqlite:///{self.directory / 'bms.sqlite3'}",
        }


class ProductionTarget(NodeTarget):
    key = "production"
    label = "bms production"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.db_name: str | None = None

    def prepare(self) -> None:
        import psycopg

        from tests.support import services

        redis = urlparse(services.REDIS_URL)
        try:
            socket.create_connection((redis.hostname or HOST, redis.port or 6379), timeout=2).close()
        except OSError as exc:
            raise RuntimeError(f"Redis is not reachable at {services.REDIS_URL}: {exc}") from exc
        self.db_name = f"bms_fanout_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(services.admin_conninfo(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.env = {
            **self._base_env(),
            "DJANGO_SETTINGS_MODULE": "bms.settings.production",
            "DJANGO_SECRET_KEY": "fanout-bench-key",
            "DATABASE_URL": services.database_url(self.db_name),
            "REDIS_URL": services.REDIS_URL,
            "BMS_CHANNEL_PREFIX": f"f{uuid.uuid4().hex[:8]}",
            "BMS_SECURE_TRANSPORT": "0",  # plain HTTP on loopback (docs/security.md)
        }

    def cleanup(self) -> None:
        if self.db_name is not None:
            import psycopg

            from tests.support import services

            try:
                with psycopg.connect(services.admin_conninfo(), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except Exception as exc:
                print(f"warning: could not drop database {self.db_name}: {exc}", file=sys.stderr)
        super().cleanup()


class WorkersTarget(ProductionTarget):
    """The production shape as ``runbms --web-workers N``: the engine in its own process (``runengine``), N web
    processes on the listening socket (``runbms --no-engine --fd``), under runbms as their supervisor."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.key = f"workers{options.web_workers}"
        self.label = f"bms prod ww{options.web_workers}"
        self.runbms_args = ("--web-workers", str(options.web_workers))


def read_live(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The ``live`` counters of the web process that answers ``url`` (``/healthz``), retried until ``timeout``."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=max(1.0, min(10.0, deadline - time.monotonic()))) as response:
                return dict(json.loads(response.read()).get("live") or {})
        except (OSError, ValueError, urllib.error.URLError) as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no answer from {url} within {timeout:.0f} s: {exc}") from exc
            time.sleep(0.5)


#: run by ``manage.py shell -c`` in the node's environment: the bench device, its points and the bench user
LOADER = """
import os
from django.contrib.auth.models import User
from bms.points.models import ConfigRevision, Device, Point
device = Device.objects.create(
    name="field", driver="modbus", host="127.0.0.1", port=int(os.environ["FANOUT_PORT"]), unit_id=1,
    poll_interval=float(os.environ["FANOUT_POLL_INTERVAL"]), timeout=2.0, enabled=True,
)
Point.objects.bulk_create(
    Point(device=device, name=f"r{i:04d}", address=f"hr:{i}", data_type="uint16")
    for i in range(int(os.environ["FANOUT_POINTS"]))
)
ConfigRevision.bump()
User.objects.create_user("bench", password="bench-pass-1")
"""


def stop_process(process: subprocess.Popen | None, grace: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- /proc: CPU and memory of a process tree --------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pids: Sequence[int]) -> list[int]:
    """``pids`` and all their descendants (runbms is one process today; this also covers a split shape)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in process_tree(pids):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def cpu_by_process(pids: Sequence[int]) -> dict[str, float]:
    """CPU seconds per process of the tree, named by role: engine, web, supervisor, runbms (one process), other."""
    found: dict[str, float] = {}
    for pid in process_tree(pids):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if b"runengine" in command:
                name = "engine"
            elif b"--no-engine" in command:
                name = "web"
            elif b"--web-workers" in command:
                name = "supervisor"
            elif b"runbms" in command:
                name = "runbms"
            else:
                name = Path(command[0].decode(errors="replace")).name or str(pid)
            key, k = name, 1
            while key in found:
                k += 1
                key = f"{name}{k}"
            found[key] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def memory_mb(pids: Sequence[int]) -> tuple[float, float]:
    """(RSS, peak RSS) in MiB, summed over the tree."""
    rss = peak = 0
    for pid in process_tree(pids):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
    return rss / 1024, peak / 1024


# --- measuring ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    shapes: tuple[str, ...]
    clients: tuple[int, ...]
    seconds: float
    change_rate: float
    points: int
    poll_interval: float
    wire: str
    client_procs: int
    probes: int
    connect_timeout: float
    settle: float
    grace: float
    keep_logs: bool
    web_workers: int = 1


@dataclass(slots=True)
class Round:
    """One target at one N."""

    target: str
    clients: int
    seconds: float
    frames_per_s: float = math.nan
    points_per_s: float = math.nan
    delay_p50_ms: float = math.nan
    delay_p99_ms: float = math.nan
    delay_max_ms: float = math.nan
    delay_samples: int = 0
    source_delay_p50_ms: float = math.nan
    source_delay_p99_ms: float = math.nan
    node_cpu_pct: float = math.nan
    device_cpu_pct: float = math.nan
    host_busy_pct: float = math.nan
    node_rss_mb: float = math.nan
    node_peak_rss_mb: float = math.nan
    client_cpu_pct: float = math.nan
    gaps: int = 0
    errors: int = 0
    closed: int = 0
    failed_connects: int = 0
    no_snapshot: int = 0
    fallbacks: int = 0
    snapshot_p50_s: float = math.nan
    snapshot_max_s: float = math.nan
    offered: int = 0
    offered_per_s: float = math.nan
    reached: int = 0
    reached_probe_gaps: int = 0
    image_seq_increase: int | None = None
    probe_errors: list[str] = field(default_factory=list)
    failure_samples: list[str] = field(default_factory=list)
    #: failed connects and closes before a first snapshot, grouped: message -> [count, first s, last s after the go]
    connect_failures: dict[str, list[float]] = field(default_factory=dict)
    resnapshots: int = 0  # snapshots after a client's first (resync, points changed, hub restart)
    open_at_end: int = 0  # connections open (as the server sees them) when the window ended
    live_start: dict[str, int] = field(default_factory=dict)  # the node's /healthz "live" at the window's start
    live_end: dict[str, int] = field(default_factory=dict)  # ... and at its end
    live_error: str | None = None
    cpu_by_process: dict[str, float] = field(default_factory=dict)  # % of one core per process of the tree
    error: str | None = None

    @property
    def reached_share(self) -> float:
        return self.reached / self.offered if self.offered else math.nan

    @property
    def image_share(self) -> float:
        return self.image_seq_increase / self.offered if self.offered and self.image_seq_increase else math.nan


@dataclass(slots=True)
class TargetResult:
    key: str
    label: str
    rounds: list[Round] = field(default_factory=list)
    error: str | None = None
    log_findings: list[str] = field(default_factory=list)
    log_copies: list[str] = field(default_factory=list)


def spread(count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``range(count)``."""
    wanted = min(wanted, count)
    return sorted({int(i * count / wanted) for i in range(wanted)}) if wanted else []


def host_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def measure_round(
    label: str, endpoint: Endpoint, n: int, table: ChangeTable, options: Options, device_pid: int
) -> Round:
    result = Round(label, n, options.seconds)
    shares = [n // options.client_procs + (i < n % options.client_procs) for i in range(options.client_procs)]
    processes = [
        ClientProcess(
            {
                "url": endpoint.url,
                "origin": endpoint.origin,
                "headers": endpoint.headers,
                "count": share,
                "probes": spread(share, options.probes),
                "wire": options.wire,
                "table": str(table_path_of(table)),
                "connect_timeout": options.connect_timeout,
            }
        )
        for share in shares
        if share
    ]
    try:
        for process in processes:
            process.expect("ready", 60)
        for process in processes:  # as close together as the pipes allow: N connects at once
            process.send("go")
        for process in processes:
            process.expect("connected", options.connect_timeout + 30)
        start = time.monotonic() + options.settle
        end = start + options.seconds
        for process in processes:
            process.send(f"window {start!r} {end!r}")
        time.sleep(max(0.0, start - time.monotonic()))
        cpu0, k0, dev0, host0 = cpu_seconds(endpoint.pids), table.tick, cpu_seconds([device_pid]), host_busy()
        by0 = cpu_by_process(endpoint.pids)
        if endpoint.health_url:
            try:
                result.live_start = read_live(endpoint.health_url)
            except RuntimeError as exc:
                result.live_error = str(exc)[:200]
        time.sleep(max(0.0, end - time.monotonic()))
        cpu1, k1, dev1, host1 = cpu_seconds(endpoint.pids), table.tick, cpu_seconds([device_pid]), host_busy()
        by1 = cpu_by_process(endpoint.pids)
        result.node_rss_mb, result.node_peak_rss_mb = memory_mb(endpoint.pids)
        if endpoint.health_url:
            try:
                result.live_end = read_live(endpoint.health_url)
            except RuntimeError as exc:
                result.live_error = str(exc)[:200]
        result.cpu_by_process = {
            name: (by1[name] - by0.get(name, 0.0)) / options.seconds * 100 for name in by1 if name in by0
        }
        time.sleep(options.grace)  # late changes of the window's ticks still count as reached
        for process in processes:
            process.send(f"stop {k0} {k1}")
        reports = [json.loads(process.expect("result", 60)) for process in processes]
    finally:
        for process in processes:
            process.stop()
    seconds = options.seconds
    clients = [client for report in reports for client in report["clients"]]
    result.frames_per_s = sum(c["frames"] for c in clients) / seconds
    result.points_per_s = sum(c["points"] for c in clients) / seconds
    result.gaps = sum(c["gaps"] for c in clients)
    result.errors = sum(c["errors"] for c in clients)
    result.closed = sum(c["closed"] is not None for c in clients)
    result.failed_connects = sum(c["failure"] is not None for c in clients)
    result.no_snapshot = sum(c["snapshot_s"] is None for c in clients)
    result.fallbacks = sum(c["fallbacks"] for c in clients)
    result.resnapshots = sum(max(0, c["snapshots"] - 1) for c in clients)
    result.open_at_end = sum(bool(c["open"]) for c in clients)
    for c in clients:
        if c["failure"] is not None:
            key, at = c["failure"][:90], c["failed_at"]
        elif c["snapshot_s"] is None and c["closed"] is not None:
            key, at = f"closed {c['closed']} before a snapshot", c["closed_at"]
        else:
            continue
        entry = result.connect_failures.setdefault(key, [0, math.inf, -math.inf])
        entry[0] += 1
        if at is not None:
            entry[1], entry[2] = min(entry[1], at), max(entry[2], at)
    result.failure_samples = sorted(
        {
            c["failure"] or c["parse_error"] or f"closed {c['closed']}"
            for c in clients
            if c["failure"] or c["parse_error"] or c["closed"]
        }
    )[:5]
    snapshots = [c["snapshot_s"] for c in clients if c["snapshot_s"] is not None]
    result.snapshot_p50_s = percentile(snapshots, 50)
    result.snapshot_max_s = max(snapshots, default=math.nan)
    delays = Histogram.merged([report["delays"] for report in reports])
    result.delay_samples = sum(delays.values())
    result.delay_p50_ms = Histogram.quantile(delays, 50)
    result.delay_p99_ms = Histogram.quantile(delays, 99)
    result.delay_max_ms = Histogram.quantile(delays, 100)
    sources = Histogram.merged([report["source_delays"] for report in reports])
    result.source_delay_p50_ms = Histogram.quantile(sources, 50)
    result.source_delay_p99_ms = Histogram.quantile(sources, 99)
    result.node_cpu_pct = (cpu1 - cpu0) / seconds * 100
    result.device_cpu_pct = (dev1 - dev0) / seconds * 100
    result.host_busy_pct = (host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * 100 * (os.cpu_count() or 1)
    client_cpu = [report["cpu_s"] for report in reports if report["cpu_s"] is not None]
    result.client_cpu_pct = sum(client_cpu) / seconds * 100 if client_cpu else math.nan
    per_tick = int(table.cells[1])
    result.offered = (k1 - k0) * per_tick
    result.offered_per_s = result.offered / seconds
    probes = [probe for report in reports for probe in report["probes"]]
    result.probe_errors = sorted({p["parse_error"] for p in probes if p["parse_error"]})
    if probes:
        best = max(probes, key=lambda p: (p["reached"], -p["gaps"]))
        result.reached = best["reached"]
        result.reached_probe_gaps = best["gaps"]
        result.image_seq_increase = best["seq_increase"]
    return result


def table_path_of(table: ChangeTable) -> str:
    return table._file.name


async def check_stream(endpoint: Endpoint, wire: str, seconds: float) -> None:
    """One client: a snapshot in the wire form asked for, then a delta with points (the target polls the device)."""
    import websockets

    async with asyncio.timeout(seconds):
        async with websockets.connect(
            endpoint.url,
            additional_headers=endpoint.headers,
            origin=endpoint.origin,
            compression=None,
            proxy=None,
            max_size=None,
        ) as connection:
            stream = Stream(wire)
            while True:
                message = json.loads(await connection.recv())
                try:
                    outcome, changes = stream.feed(message)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    raise RuntimeError(
                        f"the {wire} wire form was asked for, but: {exc} ({str(message)[:200]})"
                    ) from exc
                if outcome == "gap":
                    await connection.send('{"type":"resync"}')
                if outcome == "delta" and changes and stream.values:
                    return


LOG_PATTERN = re.compile(r"Traceback|\b(ERROR|CRITICAL|WARNING)\b")


def log_findings(text: str) -> list[str]:
    """Warnings, errors and tracebacks in a node log, each distinct message once with its count."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if LOG_PATTERN.search(line):
            key = re.sub(r"^\S+ \S+ ", "", line)  # without the time stamp
            key = re.sub(r"\d+", "#", key)[:160]
            counts[key] = counts.get(key, 0) + 1
    return [f"{count} x {key}" for key, count in sorted(counts.items(), key=lambda item: -item[1])][:12]


def log_text(path: Path | None) -> str:
    return path.read_text(errors="replace") if path is not None and path.exists() else ""


def run_target(target: Any, options: Options, stamp: str) -> TargetResult:
    result = TargetResult(target.key, target.label)
    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    shm = Path("/dev/shm")
    handle, name = tempfile.mkstemp(prefix="fanout-ticks-", dir=shm if shm.is_dir() else work)
    os.close(handle)
    table_file = Path(name)
    table = ChangeTable(table_file, create=True)
    device: DeviceProcess | None = None
    try:
        device = DeviceProcess(options.points, options.change_rate, table_file, work / "device.log")
        endpoint = target.start(device.port, work)
        asyncio.run(check_stream(endpoint, options.wire, 60))
        for n in options.clients:
            print(f"  N = {n} ...", flush=True)
            try:
                result.rounds.append(measure_round(target.label, endpoint, n, table, options, device.process.pid))
            except Exception as exc:  # the next N may still work
                result.rounds.append(Round(target.label, n, options.seconds, error=f"{type(exc).__name__}: {exc}"))
            if target.process is not None and target.process.poll() is not None:
                raise RuntimeError(f"{target.label} exited with code {target.process.returncode}")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        target.stop()
        if device is not None:
            device.stop()
        logs = {target.key: target.log_path, "device": device.log_path if device else None}
        for key, path in logs.items():
            text = log_text(path)
            findings = log_findings(text)
            result.log_findings += [f"{key}: {finding}" for finding in findings]
            if path is not None and text and (findings or options.keep_logs):
                copy = RESULTS_DIR / f"fanout-{stamp}-{target.key}-{key}.log"
                RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
                result.log_copies.append(str(copy.relative_to(ROOT)))
        if result.error and isinstance(target, NodeTarget):
            result.error += "\n" + "\n".join(log_text(target.log_path).splitlines()[-20:])
        if isinstance(target, NodeTarget):
            target.cleanup()
        table.close()
        table_file.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return result


def run_all(options: Options, stamp: str) -> list[TargetResult]:
    targets: list[Any] = [BaselineTarget(options)]
    if "embedded" in options.shapes:
        targets.append(EmbeddedTarget(options))
    if "production" in options.shapes:
        targets.append(ProductionTarget(options))
    if "workers" in options.shapes:
        targets.append(WorkersTarget(options))
    results = []
    for target in targets:
        started = time.monotonic()
        print(f"measuring {target.label} ...", flush=True)
        results.append(run_target(target, options, stamp))
        print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
    return results


# --- reporting ---------------------------------------------------------------------------------------------------


def _f(value: float | None, spec: str, width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}{spec}}"


def report_lines(results: Sequence[TargetResult], options: Options) -> list[str]:
    raw = {r.clients: r for r in results[0].rounds if r.error is None} if results else {}
    lines = [
        f"live fan-out, wire {options.wire}: device {options.points} registers, {options.change_rate:g} changes/s "
        f"(10 % per tick), poll {options.poll_interval * 1e3:g} ms, window {options.seconds:g} s",
        "frames/s and pts/s: delta frames and point updates received, summed over clients; delay: device change ->"
        " client (probes, every change); cpu/rss: the server process",
        "",
        f"{'target':<16}{'N':>5}{'frames/s':>10}{'ratio':>7}{'pts/s':>10}{'ratio':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'srv p50':>8}{'cpu %':>7}{'rss MB':>8}{'cli cpu%':>9}{'dev cpu%':>9}{'host %':>7}",
    ]
    for result in results:
        for r in result.rounds:
            if r.error:
                lines.append(f"{result.label:<16}{r.clients:>5}  failed: {r.error.splitlines()[0][:90]}")
                continue
            base = raw.get(r.clients)
            lines.append(
                f"{result.label:<16}{r.clients:>5}{_f(r.frames_per_s, '.0f', 10)}"
                f"{_f(ratio(r.frames_per_s, base.frames_per_s) if base else math.nan, '.2f', 7)}"
                f"{_f(r.points_per_s, '.0f', 10)}"
                f"{_f(ratio(r.points_per_s, base.points_per_s) if base else math.nan, '.2f', 7)}"
                f"{_f(r.delay_p50_ms, '.1f', 8)}{_f(r.delay_p99_ms, '.1f', 8)}{_f(r.source_delay_p50_ms, '.1f', 8)}"
                f"{_f(r.node_cpu_pct, '.0f', 7)}{_f(r.node_rss_mb, '.0f', 8)}{_f(r.client_cpu_pct, '.0f', 9)}"
                f"{_f(r.device_cpu_pct, '.0f', 9)}{_f(r.host_busy_pct, '.0f', 7)}"
            )
        if result.error:
            lines.append(f"{result.label:<16}  failed: {result.error.splitlines()[0][:110]}")
    lines += [
        "",
        "connect all N at once -> first snapshot; integrity over the window (offered = changes the device made)",
        f"{'target':<16}{'N':>5}{'snap p50':>9}{'snap max':>9}{'no snap':>8}{'gaps':>6}{'errs':>6}{'closed':>7}"
        f"{'offered/s':>10}{'reached':>9}{'probe gaps':>11}",
    ]
    for result in results:
        for r in result.rounds:
            if r.error:
                continue
            lines.append(
                f"{result.label:<16}{r.clients:>5}{_f(r.snapshot_p50_s, '.2f', 9)}{_f(r.snapshot_max_s, '.2f', 9)}"
                f"{r.no_snapshot:>8}{r.gaps:>6}{r.errors:>6}{r.closed:>7}{_f(r.offered_per_s, '.0f', 10)}"
                f"{_f(r.reached_share * 100, '.1f', 8)}%{r.reached_probe_gaps:>11}"
            )
    node_rounds = [(result, r) for result in results[1:] for r in result.rounds if r.error is None]
    if node_rounds:
        lines += [
            "",
            "the node's /healthz \"live\" at the window's end (encoded/sent/catch-ups: +during the window);"
            " open: connections the clients held",
            f"{'target':<16}{'N':>5}{'clients':>8}{'direct':>7}{'open':>6}{'encoded':>9}{'+win':>7}{'sent':>10}"
            f"{'+win':>9}{'catchups':>9}{'+win':>6}  check",
        ]
        for result, r in node_rounds:
            end, begin = r.live_end, r.live_start
            if not end:
                lines.append(f"{result.label:<16}{r.clients:>5}  /healthz not read: {r.live_error}")
                continue

            def plus(key: str, end: dict[str, int] = end, begin: dict[str, int] = begin) -> str:
                return str(end.get(key, 0) - begin[key]) if key in begin else "-"

            verdict = (
                "ok"
                if end.get("clients") == end.get("direct_clients") == r.open_at_end
                else "MISMATCH (direct_clients must equal the clients connected)"
            )
            lines.append(
                f"{result.label:<16}{r.clients:>5}{end.get('clients', '-'):>8}{end.get('direct_clients', '-'):>7}"
                f"{r.open_at_end:>6}{end.get('frames_encoded', '-'):>9}{plus('frames_encoded'):>7}"
                f"{end.get('frames_sent', '-'):>10}{plus('frames_sent'):>9}{end.get('catch_ups', '-'):>9}"
                f"{plus('catch_ups'):>6}  {verdict}"
            )
    lines.append("")
    if options.web_workers and "workers" in options.shapes:
        lines.append(
            f"bms prod ww{options.web_workers}: runbms --web-workers {options.web_workers} (production settings; engine"
            f" in runengine, {options.web_workers} web process(es)); bms production: plain runbms (engine on a thread)"
        )
    top = max(options.clients)
    for result in results[1:]:
        r = next((r for r in result.rounds if r.clients == top and r.error is None), None)
        if r is None:
            lines.append(f"goals at N = {top}, {result.label}: not measured")
            continue
        base = raw.get(top)
        frames_ratio = ratio(r.frames_per_s, base.frames_per_s) if base else math.nan
        verdicts = [
            f"ratio >= {GOAL_RATIO:g}: {'met' if frames_ratio >= GOAL_RATIO else 'NOT met'} ({frames_ratio:.2f})",
            f"100 % reached: {'met' if r.reached_share >= GOAL_REACHED else 'NOT met'} ({r.reached_share * 100:.2f} %"
            f"{f', raw {base.reached_share * 100:.1f} %' if base else ''})",
            f"snapshot <= {GOAL_SNAPSHOT_S:g} s: "
            f"{'met' if r.no_snapshot == 0 and r.snapshot_max_s <= GOAL_SNAPSHOT_S else 'NOT met'}"
            f" (max {r.snapshot_max_s:.2f} s, {r.no_snapshot} without)",
        ]
        lines.append(f"goals at N = {top}, {result.label}: " + "; ".join(verdicts))
    for result in results:
        notes = []
        for r in result.rounds:
            for message, (count, first, last) in r.connect_failures.items():
                when = f"{first:.2f}-{last:.2f} s" if first <= last else "?"
                notes.append(f"N={r.clients}: {count:.0f} clients without a snapshot: {message} (at {when} after go)")
            if r.failure_samples:
                notes.append(f"N={r.clients} client failures: {'; '.join(r.failure_samples)}")
            if r.resnapshots:
                notes.append(f"N={r.clients}: {r.resnapshots} snapshots after clients' first (resync or re-sent)")
            if len(r.cpu_by_process) > 1:
                parts = ", ".join(f"{name} {pct:.0f}" for name, pct in r.cpu_by_process.items())
                notes.append(f"N={r.clients}: cpu % by process: {parts}")
            if r.probe_errors:
                notes.append(f"N={r.clients} probe errors: {'; '.join(r.probe_errors)}")
            if r.fallbacks:
                notes.append(f"N={r.clients}: {r.fallbacks} messages not in header order (decoded in full)")
        if result.error:
            notes.append("failed: " + result.error)
        if result.log_findings:
            notes.append("logs: " + ", ".join(result.log_copies) + "\n    " + "\n    ".join(result.log_findings))
        if notes:
            lines.append(f"\n{result.label}:")
            lines += [f"  {note}" for note in notes]
    return lines


# --- command line ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shape",
        choices=("embedded", "production", "workers", "both", "all", "raw"),
        default="both",
        help="both: embedded and production (plain runbms); workers: production as runbms --web-workers N (the "
        "engine in a process of its own); all: embedded, production and workers; raw: the baseline only",
    )
    parser.add_argument(
        "--web-workers", type=int, default=1, metavar="N", help="web processes of the workers shape (default 1)"
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 500], help="N per round (default 100 500)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per round (default 15)")
    parser.add_argument("--change-rate", type=float, default=2000.0, help="device changes per second (default 2000)")
    parser.add_argument("--points", type=int, default=400, help="registers/points, a multiple of 10 (default 400)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="s, node and baseline (default 0.05)")
    parser.add_argument("--wire", choices=(KEYED, COMPACT), default=COMPACT, help="wire form (default compact)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--probes", type=int, default=4, help="fully decoding clients per process (default 4)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="s for connect + first snapshot")
    parser.add_argument("--settle", type=float, default=1.0, help="s after all snapshots before the window")
    parser.add_argument("--grace", type=float, default=1.5, help="s after the window for late changes")
    parser.add_argument(
        "--keep-logs", action="store_true", help="copy node logs to bench/results/ (always on findings)"
    )
    parser.add_argument("--self-check", action="store_true", help="check the wire parsers and exit")
    parser.add_argument("--serve-device", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-clients", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--modbus-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.points % 10 or args.points < 10 or args.points > 10000:
        parser.error("--points must be a multiple of 10 from 10 to 10000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_device:
        asyncio.run(serve_device(args.points, args.change_rate, args.table))
        return 0
    if args.serve_baseline:
        import logging

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        asyncio.run(serve_baseline(args.points, args.modbus_port, args.poll_interval, args.wire))
        return 0
    if args.serve_clients:
        if os.environ.get("FANOUT_PROFILE"):
            import cProfile

            cProfile.runctx(
                "asyncio.run(client_process(json.loads(os.environ['FANOUT_CLIENT_CONFIG'])))",
                globals(),
                locals(),
                f"{os.environ['FANOUT_PROFILE']}.{os.getpid()}",
            )
            return 0
        asyncio.run(client_process(json.loads(os.environ["FANOUT_CLIENT_CONFIG"])))
        return 0
    self_check()
    if args.self_check:
        print("wire parsers: keyed and compact self-check passed")
        return 0
    options = Options(
        shapes={"both": ("embedded", "production"), "all": ("embedded", "production", "workers"), "raw": ()}.get(
            args.shape, (args.shape,)
        ),
        clients=tuple(args.clients),
        seconds=args.seconds,
        change_rate=args.change_rate,
        points=args.points,
        poll_interval=args.poll_interval,
        wire=args.wire,
        client_procs=max(1, args.client_procs),
        probes=max(1, args.probes),
        connect_timeout=args.connect_timeout,
        settle=args.settle,
        grace=args.grace,
        keep_logs=args.keep_logs,
        web_workers=max(1, args.web_workers),
    )
    started = datetime.now(UTC)
    results = run_all(options, started.strftime("%Y%m%dT%H%M%SZ"))
    lines = report_lines(results, options)
    print()
    print(*lines, sep="\n")
    document = {
        "options": asdict(options),
        "results": [
            {
                **asdict(result),
                "rounds": [
                    {**asdict(r), "reached_share": r.reached_share, "image_share": r.image_share} for r in result.rounds
                ],
            }
            for result in results
        ],
        "summary": lines,
    }
    path = write_json("fanout", started, document)
    print(f"\nresults: {path.relative_to(ROOT)}")
    failed = any(result.error or any(r.error for r in result.rounds) for result in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
