"""Live latency: from a register change on the simulator to the value at a websocket client.

Run by hand from the repository root (PostgreSQL and Redis on loopback for
the production shape, as for the system tests)::

    .venv/bin/python bench/live_latency.py                 # both shapes, about a minute
    .venv/bin/python bench/live_latency.py --shape embedded --samples 500

Method
------
The bench process runs the simulated building (a real pymodbus server,
physics frozen so that only the bench changes values) and a ``websockets``
client, both on one asyncio loop. One sample:

1. pick a new value V for ``zone1_setpoint`` (hr:0, float32, exact in
   float32 so it survives the round trip unchanged);
2. tell the packet tracer to wait for V, then write V into the datastore;
3. the tracer (pymodbus' ``trace_packet`` hook, called right before the
   bytes are written to the socket) timestamps the first read-holding-
   registers response that *carries* V: that is when the simulator sent the
   changed value, so the time V waited for the next poll is taken out;
4. the client timestamps the websocket frame whose delta carries V.

latency = t(frame received) - t(changed value sent), both
``time.perf_counter_ns`` in the bench process. Samples are spaced at least
``--spacing`` apart (low load; longer than the publisher's minimum interval),
after ``--warmup`` samples that are not counted.

The node reads its device as one poll cycle of several requests (co, di,
hr, then two ir blocks for the demo map) and updates the process image as
each request is answered, so a value does not wait for the rest of its
cycle. The tracer also timestamps the last response of the cycle; when the
value reached the client after that, the "cyc" figure is the latency from
there (it is left out for samples that arrived before their cycle ended).

Baseline, measured in the same run and in the same way: a raw ``websockets``
server in a subprocess (this file with ``--serve-baseline``) that polls its
own simulator with a raw ``AsyncModbusTcpClient`` at the same interval,
reads the very same blocks (``drivers.modbus.plan_reads`` on the demo point
list), and as each block is answered immediately sends its changed points as
JSON to its clients. No Django, no Channels, no channel layer, no coalescing. The
benchmark reports ours / baseline, because the machine is noisy.

Burst: ``--burst-rounds`` rounds, each changing every unscaled demo point
(float32 setpoints and temperatures, dampers, booleans), one round per poll
interval. It counts the changes written, the point updates that reached the
client, the poll cycles that ran meanwhile and the websocket frames that
carried them. Any poller batches what one cycle reads, so frames <= polls;
frames < polls is the publisher's coalescing (``BMS_PUBLISH_MIN_INTERVAL``,
20 ms by default, above the default 10 ms poll interval). A coalesced delta
carries only the latest state of each point, so "delivered" can be lower
than "changes" for the node: that is by design, not a loss.

Shapes: ``embedded`` is what ``make demo`` runs (``runbms``, SQLite,
in-memory channel layer); ``production`` is ``runbms`` on PostgreSQL and the
Redis pub/sub channel layer (``tests.support.processes.Node``). Everything
listens on 127.0.0.1 only. Results also go to
``bench/results/live_latency-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import math
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import websockets
from pymodbus.client import AsyncModbusTcpClient
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection, serve

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import percentile, ratio, summarize, without_nan  # noqa: E402
from bms.engine.scaling import Scaling  # noqa: E402
from drivers.base import PointSpec, RawValue  # noqa: E402
from drivers.modbus import BIT_TABLES, ReadBlock, decode_registers, encode_registers, plan_reads  # noqa: E402
from drivers.simulator.building import SimulatedBuilding  # noqa: E402

DEMO_CSV = ROOT / "bms" / "points" / "demo" / "demo_building.csv"
RESULTS_DIR = ROOT / "bench" / "results"
HOST = "127.0.0.1"
PROBE_POINT = "zone1_setpoint"  # hr:0, float32
PROBE_OFFSET = 0
READ_HOLDING_REGISTERS = 3
BASELINE_READY = "baseline websocket server on port"
#: issue 11's goals for the live path's p50 at low load, per shape (p99 is reported, not a goal)
GOAL_P50_MS = {"bms embedded": 0.8, "bms production": 1.5}

log = logging.getLogger("bench.live_latency")


# --- the demo point list -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoPoint:
    """One row of the demo point list, as the engine and the baseline both see it."""

    spec: PointSpec
    scaling: Scaling

    @property
    def name(self) -> str:
        return self.spec.name


def load_demo_points() -> list[DemoPoint]:
    with DEMO_CSV.open(newline="", encoding="utf-8") as handle:
        return [
            DemoPoint(
                PointSpec(row["name"], row["address"], row["data_type"]),
                Scaling(row["data_type"], float(row["scale"] or 1), float(row["offset"] or 0)),
            )
            for row in csv.DictReader(handle)
        ]


def blocks_after_probe(points: Sequence[DemoPoint]) -> int:
    """How many read requests of a poll cycle follow the one that carries the probe point."""
    blocks = plan_reads([point.spec for point in points])
    probe = next(
        index for index, block in enumerate(blocks) if any(spec.name == PROBE_POINT for spec, _ in block.points)
    )
    return len(blocks) - probe - 1


# --- the simulator side: when did the changed value leave? --------------------------------


class ChangeTracer:
    """pymodbus ``trace_packet`` hook timestamping the first response that carries awaited registers.

    It remembers the start address of every read-holding-registers request by
    transaction id, so a response is matched by its content at the probe
    offset, never by guesswork. After the match it also timestamps the next
    ``tail`` responses: the end of that poll cycle.
    """

    def __init__(self, offset: int, tail: int) -> None:
        self.offset = offset
        self.tail = tail
        self.expected: tuple[int, ...] | None = None
        self.sent_ns: int | None = None
        self.cycle_end_ns: int | None = None
        self.responses = 0  # read-holding-registers responses sent: one per poll cycle of the demo map
        self._tail_left = 0
        self._requests: dict[int, int] = {}

    def expect(self, words: Sequence[int]) -> None:
        self.expected = tuple(words)
        self.sent_ns = self.cycle_end_ns = None
        self._tail_left = 0

    def __call__(self, sending: bool, data: bytes) -> bytes:
        now = time.perf_counter_ns()
        if sending:
            self._on_sent(now, data)
        elif len(data) >= 12 and data[7] == READ_HOLDING_REGISTERS:
            self._requests[int.from_bytes(data[0:2], "big")] = int.from_bytes(data[8:10], "big")
        return data

    def _on_sent(self, now: int, data: bytes) -> None:
        if self._tail_left:
            self._tail_left -= 1
            if not self._tail_left:
                self.cycle_end_ns = now
            return
        if len(data) < 9 or data[7] != READ_HOLDING_REGISTERS:
            return
        self.responses += 1
        if self.expected is None:
            return
        start = self._requests.pop(int.from_bytes(data[0:2], "big"), None)
        if start is None or not self._carries_expected(start, data):
            return
        self.expected = None
        self.sent_ns = now
        self._tail_left = self.tail
        if not self.tail:
            self.cycle_end_ns = now

    def _carries_expected(self, start: int, data: bytes) -> bool:
        assert self.expected is not None
        first = 9 + 2 * (self.offset - start)
        end = first + 2 * len(self.expected)
        if first < 9 or end > 9 + data[8]:
            return False
        return struct.unpack(f">{len(self.expected)}H", data[first:end]) == self.expected


# --- the client side: when did it arrive? ---------------------------------------------------


@dataclass(slots=True)
class Frame:
    """One websocket message as the client saw it."""

    recv_ns: int
    kind: str
    points: int


class LiveClient:
    """A websocket client that timestamps every frame and folds deltas into ``state``."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[Frame] = []
        self.state: dict[str, Any] = {}
        self.changed = asyncio.Event()
        self._waiters: dict[tuple[str, Any], asyncio.Future[int]] = {}
        self._reader = asyncio.create_task(self._read(), name="live-client")

    @classmethod
    async def connect(cls, url: str, origin: str | None, headers: dict[str, str]) -> LiveClient:
        # No compression (Daphne does not negotiate it either) and never a proxy: loopback only.
        connection = await websockets.connect(
            url, origin=origin, additional_headers=headers, compression=None, proxy=None, max_size=None
        )
        client = cls(connection)
        async with asyncio.timeout(30):
            await client.wait_for_frame("snapshot")
        return client

    async def close(self) -> None:
        await self.connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    def arrival(self, name: str, value: Any) -> asyncio.Future[int]:
        """A future resolved with the receive time of the first frame carrying ``name == value``."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[(name, value)] = future
        return future

    def forget(self, name: str, value: Any) -> None:
        self._waiters.pop((name, value), None)

    async def wait_for_frame(self, kind: str) -> None:
        while not any(frame.kind == kind for frame in self.frames):
            await self._next_change()

    async def wait_for_state(self, expected: dict[str, Any]) -> None:
        while any(self.state.get(name) != value for name, value in expected.items()):
            await self._next_change()

    async def _next_change(self) -> None:
        self.changed.clear()
        await self.changed.wait()

    async def _read(self) -> None:
        async for raw in self.connection:
            recv_ns = time.perf_counter_ns()
            message = json.loads(raw)
            points = message.get("points") or {}
            self.frames.append(Frame(recv_ns, message.get("type", "?"), len(points)))
            for name, state in points.items():
                if state is not None:
                    self._fold(recv_ns, name, state["value"])
            self.changed.set()

    def _fold(self, recv_ns: int, name: str, value: Any) -> None:
        self.state[name] = value
        waiter = self._waiters.pop((name, value), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(recv_ns)


# --- what is measured: the baseline server and the two node shapes ------------------------


@dataclass(slots=True)
class Endpoint:
    """Where and how the client connects to a target."""

    url: str
    origin: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Target(Protocol):
    """Something that polls a simulator and serves its changes on a websocket (blocking calls)."""

    label: str

    def start(self, modbus_port: int) -> Endpoint: ...

    def stop(self) -> None: ...

    def describe_failure(self) -> str: ...


class BaselineTarget:
    """The raw ``websockets`` server of this file (``--serve-baseline``) in its own process."""

    label = "raw websockets (baseline)"

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self.process: subprocess.Popen[str] | None = None

    def start(self, modbus_port: int) -> Endpoint:
        command = [sys.executable, __file__, "--serve-baseline", "--modbus-port", str(modbus_port)]
        command += ["--poll-interval", str(self.poll_interval)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(BASELINE_READY):
            raise RuntimeError(f"the baseline server did not start: {line!r}")
        return Endpoint(f"ws://{HOST}:{int(line.split()[-1])}/")

    def stop(self) -> None:
        stop_process(self.process)

    def describe_failure(self) -> str:
        return "see the baseline's stderr above"


class EmbeddedTarget:
    """``manage.py runbms`` in the embedded shape: SQLite and the in-memory channel layer."""

    label = "bms embedded"

    def __init__(self, poll_interval: float, publish_min_interval: float | None) -> None:
        self.poll_interval = poll_interval
        self.publish_min_interval = publish_min_interval
        self.directory: Path | None = None
        self.env: dict[str, str] = {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / "node.log"

    def start(self, modbus_port: int) -> Endpoint:
        from tests.support.net import free_port, wait_for_port
        from tests.support.processes import HttpSession

        self.directory = Path(tempfile.mkdtemp(prefix="bms-bench-"))
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bms.settings.embedded",
            "DATABASE_URL": f"sqlite:///{self.directory / 'bms.sqlite3'}",
            "BMS_NODE_NAME": "bench",
        }
        if self.publish_min_interval is not None:
            self.env["BMS_PUBLISH_MIN_INTERVAL"] = str(self.publish_min_interval)
        self._manage("migrate", "--verbosity", "0")
        interval = str(self.poll_interval)
        self._manage("loaddemo", "--modbus-port", str(modbus_port), "--poll-interval", interval, "--demo-user")
        port = free_port()
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runbms", "--port", str(port)],
                cwd=ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(port, 30)
        base_url = f"http://{HOST}:{port}"
        session = HttpSession(base_url, "demo", "demo")
        return Endpoint(f"ws://{HOST}:{port}/ws/live/", base_url, {"Cookie": session.cookie_header})

    def _manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def stop(self) -> None:
        stop_process(self.process)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def describe_failure(self) -> str:
        return tail_of(self.log_path) if self.directory is not None else ""


class ProductionTarget:
    """``manage.py runbms`` in the production shape (PostgreSQL, Redis pub/sub), via the system tests' Node."""

    label = "bms production"

    def __init__(self, poll_interval: float, publish_min_interval: float | None) -> None:
        self.poll_interval = poll_interval
        self.publish_min_interval = publish_min_interval
        self.node: Any = None

    def start(self, modbus_port: int) -> Endpoint:
        from tests.support.processes import Node

        self.node = Node(modbus_port, name="bench", poll_interval=self.poll_interval)
        if self.publish_min_interval is not None:
            self.node.env["BMS_PUBLISH_MIN_INTERVAL"] = str(self.publish_min_interval)
        else:
            self.node.env.pop("BMS_PUBLISH_MIN_INTERVAL", None)  # the product's default, as in the embedded shape
        self.node.start()
        session = self.node.session()
        return Endpoint(f"ws://{HOST}:{self.node.port}/ws/live/", self.node.base_url, {"Cookie": session.cookie_header})

    def stop(self) -> None:
        if self.node is not None:
            self.node.drop()

    def describe_failure(self) -> str:
        return tail_of(self.node.log_path) if self.node is not None else ""


def stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail_of(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the baseline server (runs in its own process) --------------------------------------------


class BaselineServer:
    """Polls the simulator with a raw pymodbus client, the engine's read plan, and sends each change at once."""

    def __init__(self, points: Sequence[DemoPoint], modbus_port: int) -> None:
        self.points = {point.name: point for point in points}
        self.blocks = plan_reads([point.spec for point in points])
        self.client = AsyncModbusTcpClient(HOST, port=modbus_port, retries=0, reconnect_delay=0)
        self.values: dict[str, RawValue] = {}
        self.connections: set[ServerConnection] = set()

    async def handle(self, connection: ServerConnection) -> None:
        self.connections.add(connection)
        try:
            await connection.send(self._message("snapshot", self.values))
            await connection.wait_closed()
        finally:
            self.connections.discard(connection)

    async def run(self, interval: float) -> None:
        """Poll on a fixed grid, skipping missed slots, like the engine's poller."""
        if not await self.client.connect():
            raise SystemExit(f"baseline: cannot connect to the simulator at {HOST}:{self.client.comm_params.port}")
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.poll_once()
            next_at += interval
            now = loop.time()
            if next_at <= now:
                next_at += (math.floor((now - next_at) / interval) + 1) * interval
            await asyncio.sleep(next_at - now)

    async def poll_once(self) -> None:
        """Read block by block and send each block's changes at once, as the node does."""
        for block in self.blocks:
            readings = await self.read(block)
            changes = {name: value for name, value in readings.items() if self.values.get(name, ...) != value}
            if not changes:
                continue
            self.values.update(changes)
            message = self._message("delta", changes)
            for connection in list(self.connections):
                try:
                    await connection.send(message)
                except websockets.ConnectionClosed:
                    self.connections.discard(connection)

    async def read(self, block: ReadBlock) -> dict[str, RawValue]:
        readers = {
            "co": self.client.read_coils,
            "di": self.client.read_discrete_inputs,
            "hr": self.client.read_holding_registers,
            "ir": self.client.read_input_registers,
        }
        readings: dict[str, RawValue] = {}
        response = await readers[block.table](block.start, count=block.count, device_id=1)
        for spec, address in block.points:
            index = address.offset - block.start
            if block.table in BIT_TABLES:
                raw: RawValue = bool(response.bits[index])
            else:
                raw = decode_registers(response.registers[index : index + address.width], spec.data_type)
            readings[spec.name] = self.points[spec.name].scaling.to_engineering(raw)
        return readings

    @staticmethod
    def _message(kind: str, values: dict[str, RawValue]) -> str:
        when = datetime.now(UTC).isoformat()
        points = {name: {"value": value, "quality": "good", "time": when} for name, value in values.items()}
        return json.dumps({"type": kind, "points": points}, separators=(",", ":"))


async def serve_baseline(modbus_port: int, poll_interval: float) -> None:
    server = BaselineServer(load_demo_points(), modbus_port)
    async with serve(server.handle, HOST, 0, compression=None) as websocket_server:
        port = next(iter(websocket_server.sockets)).getsockname()[1]
        print(f"{BASELINE_READY} {port}", flush=True)
        await server.run(poll_interval)


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """What to measure and how long; see ``--help``."""

    shapes: tuple[str, ...]
    samples: int
    warmup: int
    spacing: float
    poll_interval: float
    publish_min_interval: float | None
    sample_timeout: float
    ready_timeout: float
    burst_rounds: int
    burst_gap: float
    burst_quiet: float
    seed: int


@dataclass(slots=True)
class LatencyResult:
    """Latencies in milliseconds: from the changed value leaving the simulator, and from the end of its poll cycle."""

    samples_ms: list[float] = field(default_factory=list)
    after_cycle_ms: list[float] = field(default_factory=list)
    lost: int = 0


@dataclass(slots=True)
class BurstResult:
    """How many frames carried a burst of changes."""

    rounds: int
    points: int
    changes: int
    delivered: int
    frames: int
    poll_cycles: int
    span_ms: float

    @property
    def changes_per_frame(self) -> float:
        return self.changes / self.frames if self.frames else math.nan


@dataclass(slots=True)
class TargetResult:
    label: str
    latency: LatencyResult | None = None
    burst: BurstResult | None = None
    error: str | None = None


def probe_values() -> Iterator[float]:
    """Distinct consecutive setpoints, exact in float32 and inside the point's 15..28 range."""
    step = 0
    while True:
        yield 15.0 + (step % 52) * 0.25
        step += 1


def burst_value(point: DemoPoint, round_: int, index: int) -> RawValue:
    """A value that differs from the previous round's by far more than any deadband."""
    step = round_ * 7 + index * 3
    if point.spec.data_type == "bool":
        return (round_ + index) % 2 == 1
    if point.spec.data_type == "float32":
        return 15.0 + (step % 52) * 0.25
    return 10 + step % 80


async def take_sample(
    building: SimulatedBuilding, tracer: ChangeTracer, client: LiveClient, value: float
) -> tuple[int, int | None] | None:
    """One change of the probe point; (ns from value sent, ns from end of its poll cycle), None if unusable.

    Waits for the value as long as the caller's timeout allows.
    """
    tracer.expect(encode_registers(value, "float32"))
    arrival = client.arrival(PROBE_POINT, value)
    try:
        await building.set(PROBE_POINT, value)
        recv_ns = await arrival
    finally:
        client.forget(PROBE_POINT, value)
    if tracer.sent_ns is None:
        log.warning("value %s arrived but the tracer did not see it leave; sample dropped", value)
        return None
    cycle_end = tracer.cycle_end_ns
    return recv_ns - tracer.sent_ns, (recv_ns - cycle_end) if cycle_end is not None and cycle_end <= recv_ns else None


async def measure_latency(
    building: SimulatedBuilding, tracer: ChangeTracer, client: LiveClient, options: Options
) -> LatencyResult:
    result = LatencyResult()
    values = probe_values()
    rng = random.Random(options.seed)
    for index in range(options.warmup + options.samples):
        timeout = options.ready_timeout if index == 0 else options.sample_timeout
        try:
            async with asyncio.timeout(timeout):
                sample = await take_sample(building, tracer, client, next(values))
        except TimeoutError:
            if index == 0:
                raise RuntimeError(f"the first change did not reach the client within {timeout} s") from None
            sample = None
        if sample is None:
            result.lost += 1
        elif index >= options.warmup:
            result.samples_ms.append(sample[0] / 1e6)
            if sample[1] is not None:
                result.after_cycle_ms.append(sample[1] / 1e6)
        await asyncio.sleep(options.spacing * rng.uniform(1.0, 1.5))
    return result


async def measure_burst(
    building: SimulatedBuilding,
    tracer: ChangeTracer,
    client: LiveClient,
    points: Sequence[DemoPoint],
    options: Options,
) -> BurstResult:
    """Change every point once per round, one round per ``burst_gap``; count the frames that carried it.

    Also counts the poll cycles that ran until the last value arrived: with
    one device, every cycle that saw a change is a candidate frame, so
    ``frames < poll_cycles`` is the publisher's coalescing at work.
    """
    await asyncio.sleep(options.burst_quiet)
    current = {point.name: await building.get(point.name) for point in points}
    first_frame = len(client.frames)
    first_response = tracer.responses
    changes = 0
    started = time.perf_counter_ns()
    for round_ in range(options.burst_rounds):
        for index, point in enumerate(points):
            value = burst_value(point, round_, index)
            changes += current[point.name] != value
            current[point.name] = value
            await building.set(point.name, value)
        await asyncio.sleep(options.burst_gap)
    async with asyncio.timeout(options.ready_timeout):
        await client.wait_for_state(current)
    poll_cycles = tracer.responses - first_response
    await asyncio.sleep(options.burst_quiet)  # count late frames too
    frames = [frame for frame in client.frames[first_frame:] if frame.kind == "delta"]
    span_ms = (frames[-1].recv_ns - started) / 1e6 if frames else 0.0
    delivered = sum(frame.points for frame in frames)
    return BurstResult(options.burst_rounds, len(points), changes, delivered, len(frames), poll_cycles, span_ms)


async def run_target(target: Target, points: Sequence[DemoPoint], options: Options) -> TargetResult:
    """Start a simulator and the target on it, measure latency then burst, stop both."""
    tracer = ChangeTracer(PROBE_OFFSET, blocks_after_probe(points))
    building = SimulatedBuilding(HOST, 0, step_seconds=None, trace_packet=tracer)
    await building.start()
    try:
        endpoint = await asyncio.to_thread(target.start, building.port)
        client = await LiveClient.connect(endpoint.url, endpoint.origin, endpoint.headers)
        try:
            latency = await measure_latency(building, tracer, client, options)
            unscaled = [point for point in points if point.scaling.identity]
            burst = await measure_burst(building, tracer, client, unscaled, options)
        finally:
            await client.close()
        return TargetResult(target.label, latency, burst)
    except Exception as exc:  # report and go on with the other targets
        return TargetResult(target.label, error=f"{type(exc).__name__}: {exc}\n{target.describe_failure()}")
    finally:
        await asyncio.to_thread(target.stop)
        await building.stop()


def targets_for(options: Options) -> list[Target]:
    targets: list[Target] = [BaselineTarget(options.poll_interval)]
    if "embedded" in options.shapes:
        targets.append(EmbeddedTarget(options.poll_interval, options.publish_min_interval))
    if "production" in options.shapes:
        targets.append(ProductionTarget(options.poll_interval, options.publish_min_interval))
    return targets


async def run_all(options: Options) -> list[TargetResult]:
    points = load_demo_points()
    results = []
    for target in targets_for(options):
        started = time.monotonic()
        print(f"measuring {target.label} ...", flush=True)
        results.append(await run_target(target, points, options))
        print(f"  done in {time.monotonic() - started:.1f} s", flush=True)
    return results


# --- reporting ---------------------------------------------------------------------------------


def latency_table(results: Sequence[TargetResult]) -> list[str]:
    base = summarize(results[0].latency.samples_ms) if results[0].latency else None
    header = f"{'target':<27}{'n':>5}{'lost':>5}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
    header += f"{'p50/base':>10}{'p99/base':>10}{'cyc p50':>9}{'cyc p99':>9}"
    lines = [header]
    for result in results:
        if result.latency is None:
            lines.append(f"{result.label:<27}  failed: {(result.error or '').splitlines()[0]}")
            continue
        s = summarize(result.latency.samples_ms)
        c = summarize(result.latency.after_cycle_ms)
        p50_ratio = ratio(s["p50"], base["p50"]) if base else math.nan
        p99_ratio = ratio(s["p99"], base["p99"]) if base else math.nan
        line = f"{result.label:<27}{len(result.latency.samples_ms):>5}{result.latency.lost:>5}"
        line += f"{s['p50']:>8.3f}{s['p90']:>8.3f}{s['p99']:>8.3f}{s['max']:>8.3f}"
        line += f"{p50_ratio:>10.2f}{p99_ratio:>10.2f}{c['p50']:>9.3f}{c['p99']:>9.3f}"
        lines.append(line)
    return lines


def burst_table(results: Sequence[TargetResult]) -> list[str]:
    lines = [
        f"{'target':<27}{'changes':>9}{'delivered':>11}{'polls':>7}{'frames':>8}{'changes/frame':>15}{'span ms':>9}"
    ]
    for result in results:
        burst = result.burst
        if burst is None:
            continue
        lines.append(
            f"{result.label:<27}{burst.changes:>9}{burst.delivered:>11}{burst.poll_cycles:>7}{burst.frames:>8}"
            f"{burst.changes_per_frame:>15.1f}{burst.span_ms:>9.1f}"
        )
    return lines


def goal_lines(results: Sequence[TargetResult]) -> list[str]:
    lines = []
    for result in results[1:]:
        if result.latency is None:
            continue
        goal = GOAL_P50_MS.get(result.label)
        if goal is None:
            continue
        p50 = percentile(result.latency.samples_ms, 50)
        verdict = "met" if p50 < goal else "NOT met"
        lines.append(f"goal p50 under {goal:g} ms at low load, {result.label}: {verdict} ({p50:.3f} ms)")
    return lines


def print_report(results: Sequence[TargetResult], options: Options) -> None:
    interval = options.publish_min_interval
    publish = "product default" if interval is None else f"{interval * 1e3:g} ms"
    print()
    print("live latency: changed register sent by the simulator -> value at a websocket client (ms)")
    print(
        f"poll interval {options.poll_interval * 1e3:g} ms, publish min interval {publish}, "
        f"{options.samples} samples after {options.warmup} warm-up, spaced {options.spacing * 1e3:g}-"
        f"{options.spacing * 1.5e3:g} ms; 'cyc' = from the end of that poll cycle"
    )
    print(*latency_table(results), sep="\n")
    print()
    gap = options.burst_gap * 1e3
    print(f"burst: {options.burst_rounds} rounds changing every unscaled demo point, one round every {gap:g} ms")
    print(*burst_table(results), sep="\n")
    goals = goal_lines(results)
    if goals:
        print()
        print(*goals, sep="\n")
    for result in results:
        if result.error:
            print(f"\n{result.label} failed:\n{result.error}")


def environment() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "websockets": websockets.__version__,
    }


def write_json(results: Sequence[TargetResult], options: Options, started: datetime) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"live_latency-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "benchmark": "live_latency",
        "started": started.isoformat(),
        "options": asdict(options),
        "environment": environment(),
        "results": [
            {
                **asdict(result),
                "latency_summary_ms": summarize(result.latency.samples_ms) if result.latency else None,
                "after_cycle_summary_ms": summarize(result.latency.after_cycle_ms) if result.latency else None,
            }
            for result in results
        ],
    }
    path.write_text(json.dumps(without_nan(document), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    return path


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("embedded", "production", "both"), default="both")
    parser.add_argument("--samples", type=int, default=200, help="counted samples per target (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="samples not counted first (default 20)")
    parser.add_argument("--spacing", type=float, default=0.03, help="s between samples, x1..1.5 (default 0.03)")
    parser.add_argument("--poll-interval", type=float, default=0.01, help="device poll interval, s (default 0.01)")
    parser.add_argument(
        "--publish-min-interval", type=float, default=None, help="BMS_PUBLISH_MIN_INTERVAL, s (default: the product's)"
    )
    parser.add_argument("--sample-timeout", type=float, default=2.0, help="s before a sample counts as lost")
    parser.add_argument("--ready-timeout", type=float, default=20.0, help="s to wait for the first value")
    parser.add_argument("--burst-rounds", type=int, default=10, help="rounds of changes in the burst (default 10)")
    parser.add_argument("--burst-gap", type=float, default=None, help="s between rounds (default: poll interval)")
    parser.add_argument("--burst-quiet", type=float, default=0.3, help="s of silence before and after the burst")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample spacing jitter")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--modbus-port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    shapes = ("embedded", "production") if args.shape == "both" else (args.shape,)
    return Options(
        shapes=shapes,
        samples=args.samples,
        warmup=args.warmup,
        spacing=args.spacing,
        poll_interval=args.poll_interval,
        publish_min_interval=args.publish_min_interval,
        sample_timeout=args.sample_timeout,
        ready_timeout=args.ready_timeout,
        burst_rounds=args.burst_rounds,
        burst_gap=args.poll_interval if args.burst_gap is None else args.burst_gap,
        burst_quiet=args.burst_quiet,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.serve_baseline:
        asyncio.run(serve_baseline(args.modbus_port, args.poll_interval))
        return 0
    options = options_from(args)
    started = datetime.now(UTC)
    results = asyncio.run(run_all(options))
    print_report(results, options)
    print(f"\nresults: {write_json(results, options, started).relative_to(ROOT)}")
    return 0 if all(result.error is None for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
