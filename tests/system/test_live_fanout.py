"""The live fan-out under load, through real processes (production shape: PostgreSQL + Redis, Daphne, simulator).

One node for the module (``runbms``: web and engine thread in one process)
serves hundreds of real ``websockets`` clients sharing one login: a storm of
connecting clients, web load beside live clients, a client that stops
reading, a mass disconnect, and SIGTERM with clients connected (``runbms``
and ``runbms --web-workers 1``).

The device's registers changed here are the two dampers (``ahu1_damper``
hr:20, ``ahu2_damper`` hr:21, uint16), which no other system test writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import websockets
from pymodbus.client import AsyncModbusTcpClient

from bms.engine.tasks import cancel_and_wait
from drivers.modbus import encode_registers
from tests.support.net import free_port, wait_for_port
from tests.support.processes import ROOT, HttpSession, Node, wait_until
from tests.support.waiting import eventually

#: how long a node may take to stop after SIGTERM with its clients connected (both layouts)
STOP_SECONDS = 4.0

pytestmark = pytest.mark.system

LOOP_POINT, LOOP_REGISTER = "ahu1_damper", 20  # changed all the time by DeviceWriter
PROBE_POINT, PROBE_REGISTER = "ahu2_damper", 21  # set to values the tests then wait for


# --- the node ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fanout_node(simulator):
    bms = Node(simulator.port, name="fanout")
    # The stalled client below fills its connection by asking for thousands of snapshots without reading them:
    # what the default per-client limits (tests/security/test_live_flood.py) refuse. Here they must not.
    bms.env.update(BMS_LIVE_MESSAGE_RATE="100000", BMS_LIVE_MESSAGE_BURST="100000")
    bms.env.update(BMS_LIVE_SNAPSHOT_RATE="100000", BMS_LIVE_SNAPSHOT_BURST="100000")
    try:
        bms.start()
        bms.web = bms.session()
        # The engine thread may still be starting when the port answers: wait until a client gets a snapshot, so
        # that the tests below start with a hub that holds the image and an engine that polls.
        asyncio.run(_first_snapshot(bms, bms.web))
        yield bms
    finally:
        bms.drop()
        print(f"node log: {bms.log_path}")


async def _first_snapshot(node: Node, session: HttpSession) -> None:
    async with _connect(node.port, node.base_url, session) as ws:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] == "snapshot" and message["points"][PROBE_POINT]["quality"] == "good":
                return
            if message["type"] == "snapshot":
                await asyncio.sleep(0.2)
                await ws.send(json.dumps({"type": "resync"}))


def health(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as response:
        return json.loads(response.read())


def loop_lag_ms(base_url: str) -> dict[str, float]:
    """``bms_engine_loop_lag_ms`` from ``/metrics``, by quantile."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for labels, value in re.findall(r"^bms_engine_loop_lag_ms\{([^}]*)\}\s+(\S+)$", text, re.MULTILINE):
        quantile = re.search(r'quantile="([^"]+)"', labels)
        if quantile:
            found[quantile.group(1)] = float(value)
    assert found, f"no bms_engine_loop_lag_ms in /metrics:\n{text}"
    return found


def log_offset(node: Node) -> int:
    return node.log_path.stat().st_size if node.log_path.exists() else 0


def log_since(node: Node, offset: int) -> str:
    with node.log_path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def wait_for_no_clients(base_url: str, timeout: float = 20.0) -> None:
    """Clients of the previous test are gone (their disconnects are handled) before the next one counts."""
    wait_until(lambda: health(base_url)["live"]["clients"] == 0, timeout, 0.1, "the hub to have no clients")


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    return f"p50 {ordered[len(ordered) // 2]:.2f} s, max {ordered[-1]:.2f} s (n={len(ordered)})"


# --- the device -------------------------------------------------------------------------------------------------


class DeviceWriter:
    """Changes ``LOOP_POINT`` at the device every 50 ms (a busy plant); :meth:`write` sets any uint16 register."""

    def __init__(self, port: int) -> None:
        self.client = AsyncModbusTcpClient("127.0.0.1", port=port)
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None
        self.writes = 0

    async def __aenter__(self) -> DeviceWriter:
        assert await self.client.connect()
        self.task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Not a bare cancel(): on Python 3.11 pymodbus's wait_for swallows a cancellation that lands as an answer
        # arrives, and the loop then wrote on for ever (the storm test hung here after its checks, CI 1-2 December).
        await cancel_and_wait(self.task)
        self.client.close()

    async def write(self, offset: int, value: int) -> None:
        async with self.lock:
            response = await self.client.write_registers(offset, encode_registers(value, "uint16"), device_id=1)
        assert not response.isError(), response
        self.writes += 1

    async def _loop(self) -> None:
        value = 0
        while True:
            value = (value + 7) % 101
            await self.write(LOOP_REGISTER, value)
            await asyncio.sleep(0.05)


# --- clients ----------------------------------------------------------------------------------------------------


def _connect(port: int, origin: str, session: HttpSession):
    return websockets.connect(
        f"ws://127.0.0.1:{port}/ws/live/",
        origin=origin,
        additional_headers={"Cookie": session.cookie_header},
        open_timeout=60,
        ping_interval=None,  # our clients answer the server's pings; they need not send their own
        max_size=None,
    )


class Client:
    """A live client that reads the stream as a client must: a snapshot, then deltas that continue its seq."""

    def __init__(self, ws: Any, connected_in: float) -> None:
        self.ws = ws
        self.connected_in = connected_in  # from the start of the storm to the first message
        self.first: dict[str, Any] | None = None
        self.seq: int | None = None
        self.values: dict[str, Any] = {}
        self.via: dict[str, str] = {}  # the message type that brought each point's current value
        self.arrived: dict[tuple[str, Any], float] = {}  # (PROBE_POINT, value) -> loop time it arrived
        self.problems: list[str] = []
        self.snapshots = self.deltas = 0
        self.closed = False
        self.task: asyncio.Task | None = None

    def feed(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if self.first is None:
            self.first = message
        before = self.values.get(PROBE_POINT)
        if kind == "snapshot":
            self.snapshots += 1
            self.seq = message["seq"]
            self.values = {name: state["value"] for name, state in message["points"].items()}
            self.via = dict.fromkeys(self.values, "snapshot")
        elif kind == "delta":
            self.deltas += 1
            if self.seq is None or message["from"] != self.seq:
                self.problems.append(f"gap: client at {self.seq}, delta {message['from']}..{message['seq']}")
            self.seq = message["seq"]
            for name, state in message["points"].items():
                self.values[name] = None if state is None else state["value"]
                self.via[name] = "delta"
        else:
            self.problems.append(f"unexpected message {message}")
        if PROBE_POINT in message.get("points", ()) and (self.values[PROBE_POINT] != before or len(self.arrived) == 0):
            self.arrived[(PROBE_POINT, self.values[PROBE_POINT])] = asyncio.get_running_loop().time()

    def start_reading(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.feed(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True

    def has(self, value: Any) -> bool:
        return self.values.get(PROBE_POINT) == value

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await self.task

    def abort(self) -> None:
        """Drop the TCP connection at once (RST): no close handshake, no FIN."""
        sock = self.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.ws.transport.abort()


async def open_clients(
    port: int, origin: str, session: HttpSession, count: int, first_wait: float = 30
) -> list[Client]:
    """``count`` clients connect at once; each is returned with its first message read, and reading on."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one() -> Client:
        ws = await _connect(port, origin, session)
        text = await asyncio.wait_for(ws.recv(), first_wait)
        client = Client(ws, loop.time() - started)
        client.feed(json.loads(text))
        client.start_reading()
        return client

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    clients = [result for result in results if isinstance(result, Client)]
    failures = [result for result in results if not isinstance(result, Client)]
    if failures:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        raise AssertionError(f"{len(failures)} of {count} clients failed to connect: {failures[:3]!r}")
    return clients


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(asyncio.wait_for(client.close(), 10) for client in clients), return_exceptions=True)


async def set_probe(writer: DeviceWriter, clients: list[Client], value: int, wait: float) -> list[float]:
    """Write ``value`` to the probe register; return how long each client took to get it (fails after ``wait``)."""
    loop = asyncio.get_running_loop()
    written = loop.time()
    await writer.write(PROBE_REGISTER, value)
    await eventually(
        lambda: all(client.has(value) for client in clients),
        wait,
        f"{PROBE_POINT}={value} at all {len(clients)} clients "
        f"(missing at {sum(not client.has(value) for client in clients)})",
    )
    return [client.arrived[(PROBE_POINT, value)] - written for client in clients]


_probe_values = itertools.cycle(range(40, 100))


def new_value(clients: list[Client]) -> int:
    """A probe value that no client holds, and not one of the last few used (arrival times are per value)."""
    held = {client.values.get(PROBE_POINT) for client in clients}
    return next(value for value in _probe_values if value not in held)


# --- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_snapshot_storm_is_served_from_the_mirror(fanout_node, simulator):
    node = fanout_node
    wait_for_no_clients(node.base_url)
    before = health(node.base_url)["live"]
    async with DeviceWriter(simulator.port) as writer:
        await eventually(lambda: writer.writes >= 5, 10, "the device to be changing")
        clients = await open_clients(node.port, node.base_url, node.web, 300)
        try:
            times = [client.connected_in for client in clients]
            print(f"\nsnapshot storm, 300 clients: connect -> snapshot {summary(times)}")
            wrong = [client.first for client in clients if client.first["type"] != "snapshot"]
            assert not wrong, f"{len(wrong)} clients got something else first: {wrong[:3]}"
            assert max(times) < 10, summary(times)
            live = health(node.base_url)["live"]
            asked = live["snapshots_requested"] - before["snapshots_requested"]
            print(f"live after the storm: {live}; snapshots requested during it: {asked}")
            assert asked <= 2, live
            assert live["direct_clients"] == 300, live

            value = new_value(clients)
            took = await set_probe(writer, clients, value, 15)
            print(f"new value at all 300 clients: {summary(took)}")
            assert all(client.via[PROBE_POINT] == "delta" for client in clients)
            problems = [problem for client in clients for problem in client.problems]
            assert not problems, problems[:5]
        finally:
            await close_all(clients)


@pytest.mark.timeout(120)
async def test_web_load_does_not_hold_up_the_engine(fanout_node, simulator):
    node = fanout_node
    wait_for_no_clients(node.base_url)
    offset = log_offset(node)
    viewer = node.session("viewer", "viewer-pass-1")
    requests: dict[str, int] = {}
    failures: list[str] = []
    counting = threading.Lock()
    stop = threading.Event()

    def get(path: str) -> None:
        try:
            with viewer.opener.open(f"{node.base_url}{path}", timeout=30) as response:
                response.read()
                key = f"{path} {response.status}"
        except Exception as exc:
            key = f"{path} {exc!r}"
            failures.append(key)
        with counting:
            requests[key] = requests.get(key, 0) + 1

    def load() -> None:
        """Bursts of 100 GETs in parallel (half the API, half the points page behind ``/``) until told to stop."""
        with ThreadPoolExecutor(100) as pool:
            while True:
                list(pool.map(get, ["/api/points/", "/"] * 50))
                if stop.is_set():
                    return

    async with DeviceWriter(simulator.port) as writer:
        clients = await open_clients(node.port, node.base_url, node.web, 200)
        try:
            assert all(client.first["type"] == "snapshot" for client in clients)
            loader = threading.Thread(target=load, name="web-load", daemon=True)
            started = time.monotonic()
            loader.start()
            freshness: list[float] = []
            try:
                await eventually(lambda: sum(requests.values()) >= 20, 30, "the web load to be under way")
                for _ in range(3):  # changes made while the load runs
                    freshness.append(max(await set_probe(writer, clients, new_value(clients), 10)))
            finally:
                stop.set()
                await asyncio.get_running_loop().run_in_executor(None, loader.join, 60)
            seconds = time.monotonic() - started
            lag = loop_lag_ms(node.base_url)
            print(
                f"\nweb load beside 200 clients: {sum(requests.values())} GETs in {seconds:.1f} s {requests}; "
                f"change -> all clients {', '.join(f'{each:.2f} s' for each in freshness)}; engine loop lag ms {lag}"
            )
            assert not failures, failures[:5]
            assert max(freshness) < 2.0, freshness
            assert lag["0.99"] < 100, lag
            problems = [problem for client in clients for problem in client.problems]
            assert not problems, problems[:5]
        finally:
            await close_all(clients)
    stale = [line for line in log_since(node, offset).splitlines() if "not read for more than" in line]
    assert not stale, stale


def tcp_send_buffer_max() -> int:
    """How large the kernel lets a TCP send buffer grow (bytes)."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


class StalledClient:
    """A websocket client on a bare socket with a small receive buffer that reads only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, node: Node) -> StalledClient:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window stays small
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)  # buffers at most 8 kB when not read
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws/live/ HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {node.base_url}\r\nCookie: {node.web.cookie_header}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, text: str, opcode: int = 0x1) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        else:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def receive(self, wait: float) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self._message(), wait))

    async def _message(self) -> str:
        parts: list[bytes] = []
        while True:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(size)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping: pong with the same payload
                self.send(payload.decode(errors="replace"), 0xA)
                continue
            if opcode == 0x8:
                raise ConnectionError(f"closed by the server: {payload!r}")
            parts.append(payload)
            if first & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.writer.close()


@pytest.mark.timeout(90)
async def test_a_stalled_client_holds_up_no_one_and_catches_up(fanout_node, simulator):
    node = fanout_node
    wait_for_no_clients(node.base_url)
    async with DeviceWriter(simulator.port) as writer:
        others = await open_clients(node.port, node.base_url, node.web, 20)
        stalled = await StalledClient.open(node)
        try:
            # The node's deltas are a few hundred bytes: asking for snapshots (a few kB each) without reading them
            # fills the connection in a moment. On loopback the kernel's send buffer grows to tcp_wmem's maximum
            # (4 MB here) before the server's own buffer fills and the connection reports it is backed up.
            asked = (tcp_send_buffer_max() + (2 << 20)) // len(json.dumps(others[0].first)) + 1
            for _ in range(asked):
                stalled.send(json.dumps({"type": "resync"}))
            # Last, it subscribes to two points: a view of its own, so /healthz tells when the server has handled
            # everything it sent (messages are handled in order), and its stream is only these two points.
            stalled.send(json.dumps({"type": "subscribe", "points": [PROBE_POINT, LOOP_POINT]}))
            await stalled.writer.drain()
            await asyncio.get_running_loop().run_in_executor(
                None, wait_until, lambda: health(node.base_url)["live"]["views"] == 2, 30, 0.1, "the subscription"
            )
            values = []
            for _ in range(5):  # changes while the stalled client reads nothing; the others get each one
                values.append(new_value(others))
                await set_probe(writer, others, values[-1], 10)
            catch_ups = health(node.base_url)["live"]["catch_ups"]

            # It reads again: snapshots (as asked), then deltas that continue its seq, up to the last value.
            seq, value, kind, kinds, after_last_snapshot = None, None, None, {}, 0
            while value != values[-1]:
                message = await stalled.receive(10)
                kind = message["type"]
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind == "snapshot":
                    after_last_snapshot = 0
                else:
                    assert kind == "delta", message
                    assert message["from"] == seq, f"gap: stalled client at {seq}, delta from {message['from']}"
                    after_last_snapshot += 1
                seq = message["seq"]
                if PROBE_POINT in message["points"]:
                    value = message["points"][PROBE_POINT]["value"]
            after = health(node.base_url)["live"]
            print(
                f"\n{asked} snapshots asked; the stalled client read {kinds}, "
                f"the last value in a {kind} after {after_last_snapshot} delta(s); live {after}"
            )
            assert after["catch_ups"] > catch_ups, f"no catch-up: the stalled client was never paused; live {after}"
            problems = [problem for client in others for problem in client.problems]
            assert not problems, problems[:5]
            assert all(client.via[PROBE_POINT] == "delta" for client in others)
        finally:
            stalled.close()
            await close_all(others)


def start_supervised(node: Node, port: int) -> subprocess.Popen:
    """``runbms --web-workers 1`` on ``port``, started as :func:`tests.support.processes.spawn_node` starts a node."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "runbms", "--port", str(port), "--web-workers", "1"],
        cwd=ROOT,
        env=node.env,
        stdout=node.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def sigterm_and_time(process: subprocess.Popen) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        pass
    return time.monotonic() - started


@pytest.mark.timeout(120)
async def test_mass_disconnect_and_sigterm(fanout_node):
    node = fanout_node
    wait_for_no_clients(node.base_url)
    clients = await open_clients(node.port, node.base_url, node.web, 300)
    assert all(client.first["type"] == "snapshot" for client in clients)
    offset = log_offset(node)
    for client in clients:
        client.abort()
    await asyncio.gather(*(client.task for client in clients), return_exceptions=True)
    await asyncio.get_running_loop().run_in_executor(None, wait_for_no_clients, node.base_url)
    health(node.base_url)  # one more request through the process: what the disconnects logged is out by now
    logged = log_since(node, offset).splitlines()
    print(f"\n300 connections aborted: {len(logged)} new log line(s)")
    assert "Traceback" not in "\n".join(logged), "\n".join(logged)
    assert len(logged) < 10, "\n".join(logged)

    # SIGTERM with 100 clients connected: runbms (web + engine thread).
    clients = await open_clients(node.port, node.base_url, node.web, 100)
    (process,) = node.processes
    seconds = await asyncio.get_running_loop().run_in_executor(None, sigterm_and_time, process)
    print(f"runbms with 100 clients: exit {process.returncode} {seconds:.2f} s after SIGTERM")
    await asyncio.gather(*(asyncio.wait_for(client.task, 10) for client in clients), return_exceptions=True)
    assert process.returncode is not None, "runbms still running 15 s after SIGTERM"
    # a prompt stop, not an instant one: the engine hands its trend samples and journal rows to the database
    # (or the spool) before it goes, which a loaded two-core machine stretches
    assert seconds < STOP_SECONDS, f"runbms took {seconds:.2f} s to stop"

    # The same for the production layout: a supervisor, the engine process and one web process.
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    supervisor = start_supervised(node, port)
    children: set[int] = set()
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for_port, port, 30)
        session = HttpSession(base_url, "demo", "demo")
        clients = await open_clients(port, base_url, session, 100)
        # The engine process may answer the web worker's first snapshot request late: clients are told to wait.
        await eventually(lambda: all(client.snapshots for client in clients), 30, "snapshots from the engine process")
        children = descendants(supervisor.pid)
        assert len(children) >= 2, children  # the engine and the web worker
        seconds = await asyncio.get_running_loop().run_in_executor(None, sigterm_and_time, supervisor)
        left = sorted(pid for pid in children if alive(pid))
        print(
            f"runbms --web-workers 1 with 100 clients: exit {supervisor.returncode} {seconds:.2f} s after SIGTERM; "
            f"children {sorted(children)}, left {left}"
        )
        await asyncio.gather(*(asyncio.wait_for(client.task, 10) for client in clients), return_exceptions=True)
        assert supervisor.returncode is not None, "the supervisor still runs 15 s after SIGTERM"
        assert seconds < STOP_SECONDS, f"runbms --web-workers 1 took {seconds:.2f} s to stop"
        assert not left, f"processes left behind: {left}"
    finally:
        for pid in [supervisor.pid, *children]:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            supervisor.wait(10)
