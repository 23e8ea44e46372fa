"""Whole-node scale run (issue 11): 100,000 points, a pair in the production shape, 100 live clients.

Run by hand from the repository root (PostgreSQL and Redis on loopback, as
for the pair tests; libmodbus for the C device server)::

    .venv/bin/python bench/scale.py                                   # 100 x 1,000 points, 60 s window, 4-9 min
    .venv/bin/python bench/scale.py --layout processes                # engine and web as separate processes
    .venv/bin/python bench/scale.py --devices 20 --seconds 20         # smaller and shorter

Method
------
Field: ``--devices`` Modbus devices of ``--points-per-device`` uint16
points each, half holding and half input registers, served by
``bench/modbus_server.c`` (libmodbus, compiled on first use as for
``modbus_poll.py``). One C process listens on one port, so the devices are
spread over ``ceil(devices / --devices-per-server)`` servers; on its server
each device has its own unit id and its own register range (its registers
change only when it is read itself). With ``--change-stride 10`` the server
increments every 10th register of each range it is asked for, after
answering: a device read once a second (``--poll-interval``) sees about
10 % of its values change per poll (10.4 % with 125-register requests).
The servers print their counters every 100 ms (``--stats-ms``): register
reads answered and registers changed, on CLOCK_MONOTONIC.

Node: a pair from ``tests/support/pair.py`` (a PostgreSQL database per node
cloned from a template, Redis, the sync link direct), product defaults for
the heartbeat (1 s period, 3 s timeout, hold-down 10 s). The template is
migrated and loaded through the ORM (``manage.py shell -c``: devices and
points with ``bulk_create``, then ``ConfigRevision.bump()``; user
``demo``). ``--layout thread`` runs each node as ``manage.py runbms`` (the
engine on its own thread ``bms-engine``); ``--layout processes`` as
``runengine`` plus ``runbms --no-engine`` (``PairNode(split=True)``). The
node processes get ``bench/scale_hooks`` on ``PYTHONPATH``: its
``sitecustomize`` copies Python thread names into ``/proc/.../comm``, which
Python 3.11 does not do, so the engine's thread can be measured apart.

Clients: one client process (this file with ``--serve-clients``) holds
``--clients`` websocket clients on the active node's
``/ws/live/?wire=compact``, logged in as ``demo`` (one session cookie),
``--connect-concurrency`` handshakes at a time, each counted connected once
it holds its snapshot. ``--probes`` of them decode every message and time
every point row; the others read only the head of each frame
(``bench.fanout.read_header``) and count its rows. One more probe holds a
connection to the standby. Every client checks seq continuity and sends
``resync`` on a gap.

Window: ``--warmup`` seconds after the last snapshot, then ``--seconds``:

- **CPU** (utime + stime from ``/proc/<pid>/stat``, % of one core) per node
  process, per thread (``/proc/<pid>/task/<tid>/stat`` and ``comm``,
  grouped by name) and for the servers, the client process and the host;
  **RSS** (VmRSS, VmHWM) per process at the window's end, and the active
  node's processes' VmRSS summed every 50 ms from the pair's start to the
  window's end: the node's peak, on which the 1 GB goal is judged (the sum
  of each process's own VmHWM adds peaks that came at different times). The active
  node's engine = the ``bms-engine`` + ``engine-db*`` threads (thread
  layout) or the ``runengine`` process (processes layout). Goals from the
  issue (reported, not asserted): engine under one core, node under 1 GB.
- **changes**: offered = registers the servers changed, read from their
  counters one poll interval (plus the live p50) before the window's ends,
  because a change is read at the device's next poll; reached the image =
  the seq increase the active probes saw over the window (every image
  change takes one seq); seen = rows whose value changed in the best
  gap-free probe's deltas. Each point changes at most once a second, far
  longer than any coalescing, so a gap-free probe sees every change.
- **live path**: receive wall time of every delta row minus its
  ``time_ms`` (the active node's read time: the change is taken when the
  answer is applied; the wait for the next poll is not counted; ms
  truncation adds up to 1 ms), active probes and, separately, the standby
  probe (active read -> standby client).
- **replication lag**: for every delta the standby probe gets (ending at
  seq S), its arrival minus the first moment any active probe held a seq
  >= S (same process, same clock): the lag a client sees between the two
  nodes. Also the standby's own ``sync.lag_ms`` (age of the last applied
  delta) and ``lag_seq`` from its status row, sampled every 0.5 s.

Results go to ``bench/results/scale-<timestamp>.json``; the node logs stay
under ``var/test-logs/`` and their warnings, errors and tracebacks are
printed grouped. Everything listens on 127.0.0.1; databases, servers and
processes are removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import percentile, write_json  # noqa: E402
from bench.fanout import TYPE, Histogram, count_points, host_busy, read_header, stop_process  # noqa: E402
from bench.fanout import ClientProcess as FanoutClientProcess  # noqa: E402

HOST = "127.0.0.1"
HOOKS = ROOT / "bench" / "scale_hooks"
USERNAME = PASSWORD = "demo"
REGISTERS_PER_READ = 125  # what the planner merges at most (drivers.modbus.MAX_REGISTERS_PER_READ)
GOAL_ENGINE_CORES = 1.0
GOAL_RSS_MB = 1024.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the device servers ------------------------------------------------------------------------------------------


class DeviceServer:
    """One C Modbus server on an ephemeral port; a thread keeps its counters: (monotonic, reads, changes)."""

    def __init__(self, binary: Path, stride: int, stats_ms: int) -> None:
        self.process = subprocess.Popen(
            [str(binary), "--port", "0", "--change-stride", str(stride), "--stats-ms", str(stats_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r":(\d+)\s*$", line)
        if not match:
            stop_process(self.process, 2)
            raise RuntimeError(f"the C server did not start: {line!r}")
        self.port = int(match.group(1))
        self.samples: list[tuple[float, int, int]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            words = line.split()
            if len(words) == 4 and words[0] == "stats":
                with self._lock:
                    self.samples.append((float(words[1]), int(words[2]), int(words[3])))

    def at(self, moment: float) -> tuple[float, float]:
        """(reads, changes) at ``moment`` (CLOCK_MONOTONIC), interpolated between the counters' samples."""
        with self._lock:
            samples = list(self.samples)
        if not samples:
            return math.nan, math.nan
        times = [s[0] for s in samples]
        i = bisect.bisect_left(times, moment)
        if i == 0:
            return float(samples[0][1]), float(samples[0][2])
        if i >= len(samples):
            return float(samples[-1][1]), float(samples[-1][2])
        (t0, r0, c0), (t1, r1, c1) = samples[i - 1], samples[i]
        share = (moment - t0) / (t1 - t0) if t1 > t0 else 0.0
        return r0 + (r1 - r0) * share, c0 + (c1 - c0) * share

    def stop(self) -> None:
        stop_process(self.process, 2)


@dataclass(frozen=True, slots=True)
class DeviceLayout:
    name: str
    port: int
    unit: int
    start: int  # first register of this device in both tables of its server
    holding: int  # points on holding registers (start ...)
    inputs: int  # points on input registers (start ...)


def layout(devices: int, per_device: int, per_server: int, ports: Sequence[int]) -> list[DeviceLayout]:
    span = math.ceil(per_device / 2)
    return [
        DeviceLayout(
            f"dev{d:03d}", ports[d // per_server], d % per_server + 1, (d % per_server) * span, span, per_device - span
        )
        for d in range(devices)
    ]


def requests_per_poll(devices: Sequence[DeviceLayout]) -> int:
    """Read requests one poll of every device takes (contiguous registers, 125 per request)."""
    return sum(math.ceil(count / REGISTERS_PER_READ) for d in devices for count in (d.holding, d.inputs) if count)


def offered_per_poll(devices: Sequence[DeviceLayout], stride: int) -> int:
    """Registers the servers change per poll of every device (the planner's 125-register requests)."""
    total = 0
    for device in devices:
        for count in (device.holding, device.inputs):
            full, rest = divmod(count, REGISTERS_PER_READ)
            total += full * math.ceil(REGISTERS_PER_READ / stride) + (math.ceil(rest / stride) if rest else 0)
    return total


# --- the template database ---------------------------------------------------------------------------------------

#: run by ``manage.py shell -c`` in the template's environment: devices, points (bulk), the revision, the user
LOADER = """
import json, os
from django.contrib.auth.models import User
from django.db import transaction
from bms.points.models import ConfigRevision, Device, Point
spec = json.loads(os.environ["SCALE_LAYOUT"])
with transaction.atomic():
    devices = Device.objects.bulk_create(
        Device(name=d["name"], driver="modbus", host="127.0.0.1", port=d["port"], unit_id=d["unit"],
               poll_interval=spec["poll_interval"], timeout=spec["timeout"], enabled=True)
        for d in spec["devices"]
    )
    def points():
        for device, d in zip(devices, spec["devices"]):
            for i in range(d["holding"]):
                yield Point(device=device, name=f"{d['name']}.hr{i:04d}", address=f"hr:{d['start'] + i}",
                            data_type="uint16")
            for i in range(d["inputs"]):
                yield Point(device=device, name=f"{d['name']}.ir{i:04d}", address=f"ir:{d['start'] + i}",
                            data_type="uint16")
    Point.objects.bulk_create(points(), batch_size=5000)
    ConfigRevision.bump()
    User.objects.create_user("demo", password="demo")
print(Device.objects.count(), Point.objects.count(), ConfigRevision.current())
"""


class ScaleTemplate:
    """A database migrated and loaded with the bench's devices once; each node's database is a clone."""

    def __init__(self, devices: Sequence[DeviceLayout], poll_interval: float, timeout: float) -> None:
        from tests.support.pair import admin, base_env

        self.name = f"bms_scaletpl_{uuid.uuid4().hex[:8]}"
        admin(f'CREATE DATABASE "{self.name}"')
        env = base_env(self.name, "template")
        spec = {"poll_interval": poll_interval, "timeout": timeout, "devices": [asdict(d) for d in devices]}
        env["SCALE_LAYOUT"] = json.dumps(spec)
        self.output = ""
        for args in (["migrate", "--verbosity", "0"], ["shell", "-c", LOADER]):
            result = subprocess.run(
                [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
            )
            if result.returncode != 0:
                raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
            self.output = (result.stdout.strip().splitlines() or [""])[-1]  # the loader's counts

    def clone(self, name: str) -> None:
        from tests.support.pair import admin

        admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')

    def drop(self) -> None:
        from tests.support.pair import admin

        admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- the client process ------------------------------------------------------------------------------------------


class Window:
    start = math.inf
    end = math.inf


class LiveClient:
    """One websocket client; ``full`` ones decode everything and time every row, the others read frame heads."""

    def __init__(self, node: str, full: bool, window: Window) -> None:
        self.node = node
        self.full = full
        self.window = window
        self.ready = asyncio.Event()
        self.connection: Any = None
        self.started = 0.0
        self.snapshot_s: float | None = None
        self.failure: str | None = None
        self.closed: str | None = None
        self.parse_error: str | None = None
        self.seq: int | None = None
        self.frames = self.points = self.gaps = self.snapshots = self.errors = self.ignored = 0
        self.snapshot_bytes = 0
        self.pending: asyncio.Future | None = None  # the last resync being sent
        # full clients only
        self.values: list[Any] = []
        self.value_changes = 0
        self.rows = 0
        self.latency = Histogram()  # ms from the read that brought a new value to its arrival here
        self.qualities: dict[str, int] = {}  # rows in the window by quality
        self.timeline: list[tuple[float, int]] = []  # (monotonic arrival, seq) of every snapshot and delta

    async def run(self, url: str, headers: dict[str, str], origin: str, open_timeout: float) -> None:
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
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"[:200]
            self.ready.set()
            return
        recv = self.connection.recv
        try:
            while True:
                data = await recv(decode=False)
                now = time.monotonic()
                if self.full:
                    self.on_message(data, now)
                else:
                    self.on_header(data, now)
        except websockets.ConnectionClosed as exc:
            self.closed = f"{exc.rcvd.code if exc.rcvd else 'no close frame'}"
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

    def _snapshot(self, seq: int, now: float, size: int) -> None:
        self.seq = seq
        self.snapshots += 1
        self.snapshot_bytes = size
        if self.snapshot_s is None:
            self.snapshot_s = now - self.started
            self.ready.set()

    def on_header(self, data: bytes, now: float) -> None:
        header = read_header(data)
        if header is None:
            kind = TYPE.match(data)
            if kind is not None and kind.group(1) == b"error":
                self.errors += 1
            elif kind is None or kind.group(1) in (b"snapshot", b"delta"):
                self.on_message(data, now)  # not in the expected key order: decode it
            return
        kind, first, seq, end = header
        if kind == "snapshot":
            self._snapshot(seq, now, len(data))
        elif kind == "delta":
            if self.seq is None:
                self.ignored += 1
            elif first != self.seq:
                self._resync()
            else:
                self.seq = seq
                if self.window.start <= now < self.window.end:
                    self.frames += 1
                    self.points += count_points(data, end, "compact")

    def on_message(self, data: bytes, now: float) -> None:
        message = json.loads(data)
        kind = message.get("type")
        if kind == "snapshot":
            self._snapshot(message["seq"], now, len(data))
            if self.full:
                self.values = [row[0] for row in message["points"]]
                self._mark(now, message["seq"])
            return
        if kind == "error":
            self.errors += 1
            return
        if kind != "delta":
            return
        if self.seq is None:
            self.ignored += 1
            return
        if message["from"] != self.seq:
            self._resync()
            return
        self.seq = message["seq"]
        rows = message["points"]
        window = self.window
        inside = window.start <= now < window.end
        if inside:
            self.frames += 1
            self.points += len(rows)
        if not self.full:
            return
        self._mark(now, self.seq)
        values = self.values
        if inside:
            wall_ms = time.time() * 1000
            add = self.latency.add
            changes = 0
            qualities = self.qualities
            for row in rows:
                index, value, quality, time_ms = row[0], row[1], row[2], row[3]
                qualities[quality] = qualities.get(quality, 0) + 1
                if values[index] != value:
                    changes += 1
                    if time_ms is not None:  # a new value: time_ms is the read that brought it
                        add(wall_ms - time_ms)
                values[index] = value
            self.value_changes += changes
            self.rows += len(rows)
        else:
            for row in rows:
                values[row[0]] = row[1]

    def _mark(self, now: float, seq: int) -> None:
        self.timeline.append((now, seq))

    def _trimmed_timeline(self) -> list[tuple[float, int]]:
        """The timeline from the last entry before the window (the seq held at its start) to 10 s after it."""
        start, end = self.window.start, self.window.end
        kept = [entry for entry in self.timeline if start <= entry[0] < end + 10]
        before = [entry for entry in self.timeline if entry[0] < start]
        return before[-200:] + kept

    def summary(self) -> dict[str, Any]:
        result = {
            "node": self.node,
            "full": self.full,
            "snapshot_s": self.snapshot_s,
            "snapshot_bytes": self.snapshot_bytes,
            "failure": self.failure,
            "closed": self.closed,
            "parse_error": self.parse_error,
            "frames": self.frames,
            "points": self.points,
            "gaps": self.gaps,
            "snapshots": self.snapshots,
            "errors": self.errors,
            "ignored": self.ignored,
        }
        if self.full:
            result |= {
                "value_changes": self.value_changes,
                "rows": self.rows,
                "qualities": self.qualities,
                "latency": self.latency.bins,
                "timeline": self._trimmed_timeline(),
            }
        return result


async def client_process(config: dict[str, Any]) -> None:
    """The clients; driven by lines on stdin (go, window, stop), answering on stdout."""
    window = Window()
    count = config["clients"]
    probes = set(config["probes"])
    clients = [LiveClient("active", i in probes, window) for i in range(count)]
    clients.append(LiveClient("standby", True, window))
    targets = {"active": config["active"], "standby": config["standby"]}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    say("ready")
    if (await reader.readline()).strip() != b"go":
        return
    gate = asyncio.Semaphore(config["connect_concurrency"])
    tasks: list[asyncio.Task] = []

    async def connect(client: LiveClient) -> None:
        target = targets[client.node]
        async with gate:
            tasks.append(
                asyncio.create_task(
                    client.run(target["url"], {"Cookie": target["cookie"]}, target["origin"], config["open_timeout"])
                )
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(config["snapshot_timeout"]):
                    await client.ready.wait()

    began = time.monotonic()
    await asyncio.gather(*(connect(client) for client in clients))
    say(
        "connected "
        + json.dumps(
            {
                "snapshots": sum(c.snapshot_s is not None for c in clients),
                "clients": len(clients),
                "seconds": time.monotonic() - began,
                "failures": sorted({c.failure or c.parse_error or "" for c in clients} - {""})[:5],
            }
        )
    )
    words = (await reader.readline()).split()
    window.start, window.end = float(words[1]), float(words[2])
    await reader.readline()  # stop
    say("result " + json.dumps([client.summary() for client in clients]))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closing = [client.connection.close() for client in clients if client.connection is not None]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.gather(*closing, return_exceptions=True)


def client_process_for(config: dict[str, Any]) -> FanoutClientProcess:
    """This bench's client process (``--serve-clients`` of this file), driven like fanout's."""
    return FanoutClientProcess(config, __file__, "SCALE_CLIENT_CONFIG")


# --- /proc -------------------------------------------------------------------------------------------------------


def _cpu(stat: str) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_cpu(pid: int) -> float:
    try:
        return _cpu(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return math.nan


def host_processes_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (what it is, CPU seconds) of every process on the host: where a window's host load went."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found[int(entry)] = (process_kind(stat[stat.index("(") + 1 : stat.rindex(")")], cmdline), _cpu(stat))
    return found


#: (what a process is, a part of its command line that says so), first match wins
_KINDS = (
    ("node: engine", "runengine"),
    ("node: web", "runweb"),
    ("node: web", "daphne"),
    ("node: runbms", "runbms"),
    ("modbus servers", "modbus_server"),
)


def process_kind(comm: str, cmdline: str) -> str:
    for kind, marker in _KINDS:
        if marker in cmdline:
            return kind
    if comm.startswith("postgres"):
        return "postgresql"
    if comm.startswith("redis"):
        return "redis"
    if comm.startswith(("python", "pytest")):
        return "other python"
    return "other"


def host_breakdown(first: dict[int, tuple[str, float]], last: dict[int, tuple[str, float]], seconds: float) -> dict:
    """% of one core per kind of process between two :func:`host_processes_cpu` (processes alive at both, and
    those started meanwhile from zero)."""
    totals: Counter = Counter()
    for pid, (kind, cpu) in last.items():
        before = first.get(pid)
        totals[kind] += cpu - (before[1] if before is not None and before[0] == kind else 0.0)
    return {kind: round(value / seconds * 100, 2) for kind, value in totals.most_common()}


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (kernel thread name, CPU seconds) of every thread of ``pid``."""
    threads = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                threads[int(tid)] = (comm, _cpu(Path(f"/proc/{pid}/task/{tid}/stat").read_text()))
    return threads


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    rss = peak = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return rss / 1024, peak / 1024


class RssSampler(threading.Thread):
    """The summed VmRSS of ``pids`` every ``period`` s until stopped: the first sample and the peak, in MiB.

    The node's footprint at its worst moment: the sum of each process's own peak (VmHWM) counts peaks that
    came at different times (an engine's at start-up, a web worker's in a snapshot storm) as if together.
    """

    def __init__(self, pids: Sequence[int], period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.period = period
        self.first = self.peak = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss = sum(memory(pid)[0] for pid in self.pids)
            self.first = self.first or rss
            self.peak = max(self.peak, rss)
            self._done.wait(self.period)

    def stop(self) -> float:
        """Stop sampling; the peak."""
        self._done.set()
        self.join()
        return self.peak


def thread_group(name: str) -> str:
    """Threads of one pool under one name: engine-db_0 -> engine-db_N, ThreadPoolExe... -> ThreadPoolExe..."""
    return re.sub(r"\d+", "N", name)


@dataclass(slots=True)
class ProcSample:
    at: float
    processes: dict[str, float]
    threads: dict[str, dict[int, tuple[str, float]]]


def sample(labels: dict[str, int]) -> ProcSample:
    return ProcSample(
        time.monotonic(),
        {label: process_cpu(pid) for label, pid in labels.items()},
        {label: thread_cpu(pid) for label, pid in labels.items() if label.startswith(("main", "backup"))},
    )


def cpu_report(first: ProcSample, last: ProcSample) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """% of one core per process and, for node processes, per thread group."""
    seconds = last.at - first.at
    processes = {label: (last.processes[label] - first.processes[label]) / seconds * 100 for label in first.processes}
    threads: dict[str, dict[str, float]] = {}
    for label, after in last.threads.items():
        before = first.threads.get(label, {})
        groups: Counter = Counter()
        for tid, (name, cpu) in after.items():
            groups[thread_group(name)] += cpu - before.get(tid, (name, 0.0))[1]
        threads[label] = {name: value / seconds * 100 for name, value in groups.most_common()}
    return processes, threads


# --- the status rows ---------------------------------------------------------------------------------------------


class StatusSampler(threading.Thread):
    """Both nodes' state rows every 0.5 s: role, image seq, the standby's sync lag, the engine loop's lag."""

    def __init__(self, databases: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.databases = databases
        self.samples: list[dict[str, Any]] = []
        self._finished = threading.Event()

    def run(self) -> None:
        import psycopg

        from tests.support import services

        connections = {}
        try:
            for name, database in self.databases.items():
                connections[name] = psycopg.connect(services.database_url(database), autocommit=True)
            while not self._finished.wait(0.5):
                entry: dict[str, Any] = {"at": time.monotonic()}
                for name, conn in connections.items():
                    with contextlib.suppress(Exception):
                        row = conn.execute(
                            "SELECT role, status FROM redundancy_nodestate WHERE node = %s", [name]
                        ).fetchone()
                        if row:
                            status = row[1] or {}
                            sync = status.get("sync") or {}
                            entry[name] = {
                                "role": row[0],
                                "image_seq": sync.get("image_seq"),
                                "lag_ms": sync.get("lag_ms"),
                                "lag_seq": sync.get("lag_seq"),
                                "history_backlog": sync.get("history_backlog"),
                                "loop": status.get("engine_loop"),
                                "failovers": status.get("failovers"),
                            }
                self.samples.append(entry)
        finally:
            for conn in connections.values():
                conn.close()

    def stop(self) -> list[dict[str, Any]]:
        self._finished.set()
        self.join(5)
        return self.samples


# --- logs --------------------------------------------------------------------------------------------------------

LOG_LINE = re.compile(r"\b(CRITICAL|ERROR|WARNING)\b")


def log_findings(path: Path) -> dict[str, Any]:
    """Tracebacks and warning/error lines, grouped by their shape (numbers replaced), most frequent first."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {"tracebacks": 0, "lines": {}}
    lines: Counter = Counter()
    for line in text.splitlines():
        match = LOG_LINE.search(line)
        if match:
            lines[re.sub(r"\d+(\.\d+)?", "N", line[match.start() :])[:170]] += 1
    return {"tracebacks": text.count("Traceback (most recent call last)"), "lines": dict(lines.most_common(10))}


# --- the run -----------------------------------------------------------------------------------------------------


def seq_at(timeline: Sequence[tuple[float, int]], moment: float) -> int | None:
    """The last seq a client held at ``moment``."""
    times = [t for t, _ in timeline]
    i = bisect.bisect_right(times, moment)
    return timeline[i - 1][1] if i else None


def replication_lags(active: Sequence[tuple[float, int]], standby: Sequence[tuple[float, int]], window: Window):
    """Per standby frame in the window: its arrival minus the first moment an active probe held that seq."""
    merged = sorted(active)
    times, highest, best = [], [], -1
    for moment, seq in merged:
        best = max(best, seq)
        times.append(moment)
        highest.append(best)
    lags = []
    for moment, seq in standby:
        if not window.start <= moment < window.end:
            continue
        i = bisect.bisect_left(highest, seq)
        if i < len(highest):
            lags.append((moment - times[i]) * 1000)
    return lags


def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Everything from the servers to the figures; ``report`` is filled as the run goes (kept on a failure)."""
    from bench.modbus_poll import build_server
    from tests.support.pair import Pair, PairOptions
    from tests.support.processes import HttpSession

    figures = report["figures"]
    steps = report["steps"]
    servers: list[DeviceServer] = []
    template = pair = client = None
    began = time.monotonic()

    def step(name: str) -> None:
        steps[name] = round(time.monotonic() - began, 1)
        print(f"[{steps[name]:7.1f} s] {name}", flush=True)

    try:
        binary = build_server()
        server_count = math.ceil(args.devices / args.devices_per_server)
        servers = [DeviceServer(binary, args.change_stride, args.stats_ms) for _ in range(server_count)]
        devices = layout(args.devices, args.points_per_device, args.devices_per_server, [s.port for s in servers])
        per_poll = offered_per_poll(devices, args.change_stride)
        report["layout"] = {
            "servers": [s.port for s in servers],
            "points": sum(d.holding + d.inputs for d in devices),
            "offered_per_poll": per_poll,
            "requests_per_poll": requests_per_poll(devices),
        }
        step(f"{server_count} C servers up; loading the template ({report['layout']['points']:,} points)")
        template = ScaleTemplate(devices, args.poll_interval, args.device_timeout)
        step(f"template loaded (devices, points, revision: {template.output})")
        options = PairOptions(
            period_ms=args.period_ms,
            timeout_ms=args.timeout_ms,
            hold_down_ms=args.hold_down_ms,
            split=args.layout == "processes",
            extra_env={"PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))},
        )
        pair = Pair(template, ROOT / "var" / "test-logs" / "scale-no-writes.jsonl", options)
        report["logs"] = {name: str(node.log_path) for name, node in pair.nodes.items()}
        wait_for_pair(pair, args.startup_timeout, report)
        step("pair up: main active, backup standby and caught up")
        node_memory = RssSampler([process.pid for process in pair.main.processes])
        node_memory.start()
        sessions = {name: HttpSession(node.base_url, USERNAME, PASSWORD) for name, node in pair.nodes.items()}
        config = {
            "clients": args.clients,
            "probes": spread(args.clients, args.probes),
            "connect_concurrency": args.connect_concurrency,
            "open_timeout": 30.0,
            "snapshot_timeout": args.snapshot_timeout,
            "active": {
                "url": f"ws://{HOST}:{pair.main.web_port}/ws/live/?wire=compact",
                "origin": pair.main.base_url,
                "cookie": sessions["main"].cookie_header,
            },
            "standby": {
                "url": f"ws://{HOST}:{pair.backup.web_port}/ws/live/?wire=compact",
                "origin": pair.backup.base_url,
                "cookie": sessions["backup"].cookie_header,
            },
        }
        client = client_process_for(config)
        client.expect("ready", 60)
        client.send("go")
        connected = json.loads(client.expect("connected", args.snapshot_timeout * (args.clients + 1) + 60))
        report["connect"] = connected
        step(
            f"{connected['snapshots']}/{connected['clients']} clients hold a snapshot "
            f"({connected['seconds']:.1f} s); warm-up {args.warmup:g} s"
        )
        labels: dict[str, int] = {}
        for name, node in pair.nodes.items():
            for process in node.processes:
                kind = "engine" if "runengine" in process.args else ("web" if node.split else "runbms")
                labels[f"{name} {kind}"] = process.pid
        for i, server in enumerate(servers):
            labels[f"server {i}"] = server.process.pid
        labels["clients"] = client.process.pid
        time.sleep(args.warmup)
        window = Window()
        window.start = time.monotonic() + 0.5
        window.end = window.start + args.seconds
        client.send(f"window {window.start!r} {window.end!r}")
        sampler = StatusSampler({name: node.db_name for name, node in pair.nodes.items()})
        sampler.start()
        time.sleep(max(0.0, window.start - time.monotonic()))
        first, host0 = sample(labels), host_busy()
        step(f"window of {args.seconds:g} s")
        time.sleep(max(0.0, window.end - time.monotonic()))
        last, host1 = sample(labels), host_busy()
        rss = {label: memory(pid) for label, pid in labels.items()}
        figures["active_node_sampled_peak_rss_mb"] = node_memory.stop()
        statuses = sampler.stop()
        time.sleep(args.grace)
        client.send("stop")
        summaries = json.loads(client.expect("result", 120))
        step("window over; computing")
        roles_after = pair.roles()
        figures.update(
            analyse(
                args,
                window,
                first,
                last,
                host0,
                host1,
                rss,
                statuses,
                summaries,
                servers,
                report["layout"],
                roles_after,
            )
        )
    finally:
        if client is not None:
            client.stop()
        if pair is not None:
            report["log_findings"] = {name: log_findings(node.log_path) for name, node in pair.nodes.items()}
            pair.close()
        if template is not None:
            template.drop()
        for server in servers:
            server.stop()


OVERSIZE = re.compile(r"frame of (\d+) bytes exceeds the limit of (\d+)")
ROLE_LINE = re.compile(r"redundancy: (\w+) -> (\w+) \(epoch \d+\): (.*)$")


def wait_for_pair(pair: Any, timeout: float, report: dict[str, Any]) -> None:
    """Start both nodes; wait for main active and backup standby, caught up; fail early on an oversize frame."""
    pair.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            pair.wait_for_roles(5, main="active", backup="standby")
            break
        except AssertionError:
            pass
        for name, node in pair.nodes.items():
            match = OVERSIZE.search(node.log_text())
            if match:
                raise RuntimeError(
                    f"the {name} node refused a sync frame of {int(match[1]):,} bytes (limit {int(match[2]):,}: "
                    "redundancy.framing.DEFAULT_MAX_BODY): the configuration dump of this many points does not fit "
                    f"one frame, so the pair cannot get in sync; roles now {pair.roles()}"
                )
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the pair did not settle within {timeout:g} s: roles {pair.roles()}")
    report["startup_role_changes"] = {
        name: [
            " -> ".join(m.groups()[:2]) + f": {m[3]}" for m in map(ROLE_LINE.search, node.log_text().splitlines()) if m
        ]
        for name, node in pair.nodes.items()
    }


def spread(count: int, wanted: int) -> list[int]:
    wanted = min(wanted, count)
    return sorted({int(i * count / wanted) for i in range(wanted)}) if wanted else []


def analyse(
    args: argparse.Namespace,
    window: Window,
    first: ProcSample,
    last: ProcSample,
    host0: tuple[int, int],
    host1: tuple[int, int],
    rss: dict[str, tuple[float, float]],
    statuses: list[dict[str, Any]],
    summaries: list[dict[str, Any]],
    servers: list[DeviceServer],
    plan: dict[str, Any],
    roles_after: dict[str, str],
) -> dict[str, Any]:
    seconds = window.end - window.start
    out: dict[str, Any] = {}
    processes, threads = cpu_report(first, last)
    out["cpu_pct"] = processes
    out["thread_cpu_pct"] = threads
    out["host_busy_pct"] = (host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * 100 * (os.cpu_count() or 1)
    out["rss_mb"] = {label: {"rss": r, "peak": p} for label, (r, p) in rss.items()}
    if args.layout == "thread":
        engine_threads = threads.get("main runbms", {})
        out["engine_cpu_pct"] = sum(
            value for name, value in engine_threads.items() if name == "bms-engine" or name.startswith("engine-db")
        )
        out["engine_thread_cpu_pct"] = engine_threads.get("bms-engine", math.nan)
    else:
        out["engine_cpu_pct"] = processes.get("main engine", math.nan)
        out["engine_thread_cpu_pct"] = math.nan
    out["active_node_cpu_pct"] = sum(v for k, v in processes.items() if k.startswith("main "))
    out["active_node_rss_mb"] = sum(v["rss"] for k, v in out["rss_mb"].items() if k.startswith("main "))
    out["active_node_peak_rss_mb"] = sum(v["peak"] for k, v in out["rss_mb"].items() if k.startswith("main "))
    out["standby_node_cpu_pct"] = sum(v for k, v in processes.items() if k.startswith("backup "))
    out["standby_node_rss_mb"] = sum(v["rss"] for k, v in out["rss_mb"].items() if k.startswith("backup "))

    # clients
    active = [s for s in summaries if s["node"] == "active"]
    standby = [s for s in summaries if s["node"] == "standby"]
    probes = [s for s in active if s["full"]]
    out["clients"] = {
        "active": len(active),
        "with_snapshot": sum(s["snapshot_s"] is not None for s in active),
        "snapshot_p50_s": percentile([s["snapshot_s"] for s in active if s["snapshot_s"] is not None], 50),
        "snapshot_max_s": max((s["snapshot_s"] for s in active if s["snapshot_s"] is not None), default=math.nan),
        "snapshot_mb": max((s["snapshot_bytes"] for s in active), default=0) / 1e6,
        "frames_per_s": sum(s["frames"] for s in active) / seconds,
        "points_per_s": sum(s["points"] for s in active) / seconds,
        "frames_per_s_per_client": sum(s["frames"] for s in active) / seconds / max(1, len(active)),
        "gaps": sum(s["gaps"] for s in active),
        "errors": sum(s["errors"] for s in active),
        "closed": sum(s["closed"] is not None for s in active),
        "closed_codes": dict(Counter(s["closed"] for s in summaries if s["closed"] is not None)),
        "failures": sorted({s["failure"] or s["parse_error"] or "" for s in summaries} - {""})[:5],
        "standby_gaps": sum(s["gaps"] for s in standby),
        "standby_frames_per_s": sum(s["frames"] for s in standby) / seconds,
    }
    latency = Histogram.merged([p["latency"] for p in probes])
    out["live_ms"] = {
        "n": sum(latency.values()),
        "p50": Histogram.quantile(latency, 50),
        "p99": Histogram.quantile(latency, 99),
        "max": Histogram.quantile(latency, 100),
    }
    standby_latency = Histogram.merged([p["latency"] for p in standby])
    out["standby_live_ms"] = {
        "n": sum(standby_latency.values()),
        "p50": Histogram.quantile(standby_latency, 50),
        "p99": Histogram.quantile(standby_latency, 99),
        "max": Histogram.quantile(standby_latency, 100),
    }

    # changes: offered by the servers (read one poll + the live p50 before the window's ends) vs the image
    shift = args.poll_interval + (out["live_ms"]["p50"] / 1000 if not math.isnan(out["live_ms"]["p50"]) else 0)
    offered = 0.0
    reads = 0.0
    for server in servers:
        _, c0 = server.at(window.start - shift)
        _, c1 = server.at(window.end - shift)
        r0, _ = server.at(window.start)
        r1, _ = server.at(window.end)
        offered += c1 - c0
        reads += r1 - r0
    out["offered"] = offered
    out["offered_per_s"] = offered / seconds
    out["offered_per_poll_planned"] = plan["offered_per_poll"]
    out["requests_per_s"] = reads / seconds
    out["requests_per_s_planned"] = plan["requests_per_poll"] / args.poll_interval
    out["poll_share"] = out["requests_per_s"] / out["requests_per_s_planned"]
    increases = []
    for probe in probes:
        s0, s1 = seq_at(probe["timeline"], window.start), seq_at(probe["timeline"], window.end)
        if s0 is not None and s1 is not None:
            increases.append(s1 - s0)
    out["image_seq_increase"] = max(increases, default=None)
    out["image_share"] = out["image_seq_increase"] / offered if offered and out["image_seq_increase"] else math.nan
    clean = [p for p in probes if p["gaps"] == 0] or probes
    best = max(clean, key=lambda p: p["value_changes"], default=None)
    out["seen_changes"] = best["value_changes"] if best else None
    out["seen_share"] = best["value_changes"] / offered if best and offered else math.nan
    out["probe_gaps"] = [p["gaps"] for p in probes]
    out["probe_rows"] = best["rows"] if best else None
    out["probe_qualities"] = best["qualities"] if best else {}

    # replication
    active_timeline = [tuple(x) for p in probes for x in p["timeline"]]
    standby_timeline = [tuple(x) for p in standby for x in p["timeline"]]
    lags = replication_lags(active_timeline, standby_timeline, window)
    out["replication_ms"] = {
        "n": len(lags),
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": max(lags, default=math.nan),
    }
    inside = [s for s in statuses if window.start <= s["at"] <= window.end]
    lag_ms = [s["backup"]["lag_ms"] for s in inside if s.get("backup") and s["backup"].get("lag_ms") is not None]
    lag_seq = [s["backup"]["lag_seq"] for s in inside if s.get("backup") and s["backup"].get("lag_seq") is not None]
    out["standby_status"] = {
        "samples": len(inside),
        "lag_ms_p50": percentile(lag_ms, 50),
        "lag_ms_p99": percentile(lag_ms, 99),
        "lag_ms_max": max(lag_ms, default=math.nan),
        "lag_seq_p99": percentile(lag_seq, 99),
        "lag_seq_max": max(lag_seq, default=math.nan),
    }
    # History rows (trend samples, events, journal, commands) main has written that the standby has not
    # acknowledged: it must stay bounded, not grow through the window (the trend stream keeping up).
    backlog = [
        (s["at"], s["main"]["history_backlog"])
        for s in inside
        if s.get("main") and s["main"].get("history_backlog") is not None
    ]
    out["history_backlog"] = {
        "samples": len(backlog),
        "first": backlog[0][1] if backlog else math.nan,
        "last": backlog[-1][1] if backlog else math.nan,
        "p50": percentile([b for _, b in backlog], 50),
        "max": max((b for _, b in backlog), default=math.nan),
    }
    # How far the active node's clients were behind its image: the image seq in main's status row (written twice
    # a second) minus the seq the first probe held at that moment (in seqs, and in seconds of the change rate).
    behind = []
    timeline = sorted(tuple(x) for x in probes[0]["timeline"]) if probes else []
    for entry in inside:
        image_seq = (entry.get("main") or {}).get("image_seq")
        held = seq_at(timeline, entry["at"]) if timeline else None
        if image_seq is not None and held is not None:
            behind.append(max(0, image_seq - held))
    rate = out["image_seq_increase"] / seconds if out["image_seq_increase"] else math.nan
    out["clients_behind"] = {
        "samples": len(behind),
        "seq_p50": percentile(behind, 50),
        "seq_max": max(behind, default=math.nan),
        "s_p50": percentile(behind, 50) / rate if rate else math.nan,
        "s_max": max(behind, default=math.nan) / rate if rate else math.nan,
    }
    out["series"] = {
        "status": [
            [
                round(e["at"] - window.start, 2),
                (e.get("main") or {}).get("image_seq"),
                (e.get("backup") or {}).get("image_seq"),
                (e.get("backup") or {}).get("lag_ms"),
            ]
            for e in statuses
        ],
        "probe_seq": [[round(t - window.start, 2), seq] for t, seq in timeline[:: max(1, len(timeline) // 300)]],
    }
    roles = Counter((s.get("main", {}).get("role"), s.get("backup", {}).get("role")) for s in inside)
    out["roles_in_window"] = {f"{m}/{b}": n for (m, b), n in roles.items()}
    out["roles_after"] = roles_after
    final = statuses[-1] if statuses else {}
    out["engine_loop"] = {name: (final.get(name) or {}).get("loop") for name in ("main", "backup")}
    out["failovers"] = {name: (final.get(name) or {}).get("failovers") for name in ("main", "backup")}
    return out


# --- the report --------------------------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def report_lines(report: dict[str, Any]) -> list[str]:
    a = report["arguments"]
    f = report["figures"]
    lay = report.get("layout", {})
    lines = [
        f"scale run: {a['devices']} devices x {a['points_per_device']} points = {lay.get('points', 0):,} points "
        f"on {len(lay.get('servers', []))} C servers, change stride {a['change_stride']}, "
        f"poll {a['poll_interval']:g} s; "
        f"pair ({a['layout']} layout), {a['clients']} compact clients on the active node; window {a['seconds']:g} s",
    ]
    changes = report.get("startup_role_changes")
    if changes:
        lines.append(
            f"start-up ({report['steps'].get('pair up: main active, backup standby and caught up', '?')} s into the "
            "run): "
            + "; ".join(f"{name}: " + ", ".join(c.split(":")[0] for c in found) for name, found in changes.items())
        )
    if not f:
        return [*lines, "no figures: the run did not reach its window (see the error above)"]
    c = f["clients"]
    engine = f["engine_cpu_pct"]
    lines += [
        "",
        "CPU % of one core over the window (utime+stime), RSS MB at its end (peak):",
    ]
    for label, pct in f["cpu_pct"].items():
        mem = f["rss_mb"].get(label, {})
        lines.append(f"  {label:<16}{fmt(pct):>6} %   rss {fmt(mem.get('rss')):>6} MB (peak {fmt(mem.get('peak'))})")
    for label, groups in f["thread_cpu_pct"].items():
        top = ", ".join(f"{name} {value:.0f}" for name, value in list(groups.items())[:6] if value >= 0.5)
        lines.append(f"  threads {label}: {top}")
    lines += [
        f"  host busy {fmt(f['host_busy_pct'])} % of {os.cpu_count()} cores",
        "",
        f"active engine: {fmt(engine)} % of a core"
        + (f" (bms-engine thread {fmt(f['engine_thread_cpu_pct'])} %, + engine-db)" if a["layout"] == "thread" else "")
        + f" -> goal < 100 %: {'met' if engine < GOAL_ENGINE_CORES * 100 else 'NOT met'}",
        f"active node: {fmt(f['active_node_cpu_pct'])} % CPU, RSS {fmt(f['active_node_rss_mb'])} MB "
        f"(peak, processes together: {fmt(f.get('active_node_sampled_peak_rss_mb'))}; sum of each process's own "
        f"peak {fmt(f['active_node_peak_rss_mb'])}) -> goal < 1 GB: "
        f"{'met' if f.get('active_node_sampled_peak_rss_mb', math.inf) < GOAL_RSS_MB else 'NOT met'}; standby node "
        f"{fmt(f['standby_node_cpu_pct'])} % CPU, RSS {fmt(f['standby_node_rss_mb'])} MB",
        "",
        f"polling: {fmt(f['requests_per_s'])} reads/s answered of {fmt(f['requests_per_s_planned'])} planned "
        f"({fmt(f['poll_share'] * 100, '.1f')} %); changes offered {fmt(f['offered_per_s'])}/s (planned "
        f"{f['offered_per_poll_planned'] / a['poll_interval']:,.0f}/s)",
        f"image seq +{fmt(f['image_seq_increase'], ',')} = {fmt(f['image_share'] * 100, '.2f')} % of the changes "
        f"offered; a full client saw {fmt(f['seen_changes'], ',')} value changes = {fmt(f['seen_share'] * 100, '.2f')}"
        f" % in {fmt(f['probe_rows'], ',')} rows (by quality: {f['probe_qualities']})",
        f"live path (read of a new value on the active node -> client), {fmt(f['live_ms']['n'], ',')} changes: p50 "
        f"{fmt(f['live_ms']['p50'], '.1f')}"
        f" ms, p99 {fmt(f['live_ms']['p99'], '.1f')} ms, max {fmt(f['live_ms']['max'], '.1f')} ms; via the standby: "
        f"p50 {fmt(f['standby_live_ms']['p50'], '.1f')}, p99 {fmt(f['standby_live_ms']['p99'], '.1f')} ms",
        f"replication lag (standby status, sampled 2/s): lag_ms p50/p99/max "
        f"{fmt(f['standby_status']['lag_ms_p50'], '.1f')}/{fmt(f['standby_status']['lag_ms_p99'], '.1f')}/"
        f"{fmt(f['standby_status']['lag_ms_max'], '.1f')} ms, lag_seq p99/max {fmt(f['standby_status']['lag_seq_p99'])}"
        f"/{fmt(f['standby_status']['lag_seq_max'])}; standby client seq vs active clients, "
        f"{f['replication_ms']['n']} frames: p50 {fmt(f['replication_ms']['p50'], '.1f')} ms, p99 "
        f"{fmt(f['replication_ms']['p99'], '.1f')} ms (negative: the active node's clients were behind the standby's)",
        f"history backlog on main (rows not yet acknowledged by the standby), {f['history_backlog']['samples']} "
        f"samples: first {fmt(f['history_backlog']['first'], ',')}, last {fmt(f['history_backlog']['last'], ',')}, "
        f"p50 {fmt(f['history_backlog']['p50'], ',')}, max {fmt(f['history_backlog']['max'], ',')}",
        f"clients: {c['with_snapshot']}/{c['active']} with a snapshot ({c['snapshot_mb']:.1f} MB; connect -> snapshot "
        f"p50 {fmt(c['snapshot_p50_s'], '.2f')} s, max {fmt(c['snapshot_max_s'], '.2f')} s), {fmt(c['frames_per_s'])} "
        f"frames/s ({fmt(c['frames_per_s_per_client'], '.1f')} per client), {fmt(c['points_per_s'])} rows/s; gaps "
        f"{c['gaps']} (standby {c['standby_gaps']}), errors {c['errors']}, closed {c['closed']} "
        f"{c['closed_codes'] or ''}",
    ]
    b = f.get("clients_behind") or {}
    lines.append(
        f"active clients behind the image (main's status seq - probe seq, 2/s): p50 {fmt(b.get('seq_p50'), ',.0f')} "
        f"seqs ({fmt(b.get('s_p50'), '.2f')} s), max {fmt(b.get('seq_max'), ',.0f')} ({fmt(b.get('s_max'), '.1f')} s)"
    )
    loops = f["engine_loop"]
    loop_text = "; ".join(
        f"{name} p99 {fmt((loop or {}).get('p99_ms'), '.1f')} ms max {fmt((loop or {}).get('max_ms'), '.0f')} ms"
        for name, loop in loops.items()
    )
    lines.append(
        f"engine loop lag (status, last 60 s): {loop_text}; roles in window {f['roles_in_window']}, after "
        f"{f['roles_after']}; failovers {f['failovers']}"
    )
    if c["failures"]:
        lines.append(f"client failures: {c['failures']}")
    return lines


def findings_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, found in (report.get("log_findings") or {}).items():
        path = report.get("logs", {}).get(name, "?")
        if not found["lines"] and not found["tracebacks"]:
            lines.append(f"{name} log: nothing at WARNING or above ({path})")
            continue
        lines.append(f"{name} log ({path}): {found['tracebacks']} tracebacks")
        lines += [f"  {count} x {line}" for line, count in found["lines"].items()]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100, help="Modbus devices (default 100)")
    parser.add_argument("--points-per-device", type=int, default=1000, help="uint16 points per device (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (default 60)")
    parser.add_argument("--clients", type=int, default=100, help="websocket clients on the active node (default 100)")
    parser.add_argument("--layout", choices=("thread", "processes"), default="thread", help="node layout")
    parser.add_argument("--warmup", type=float, default=15.0, help="s after the last snapshot (default 15)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="device poll interval, s (default 1)")
    parser.add_argument("--change-stride", type=int, default=10, help="server changes every N-th register read")
    parser.add_argument("--devices-per-server", type=int, default=25, help="devices per C server (default 25)")
    parser.add_argument("--probes", type=int, default=2, help="fully decoding clients among --clients (default 2)")
    parser.add_argument("--connect-concurrency", type=int, default=10, help="handshakes at once (default 10)")
    parser.add_argument("--snapshot-timeout", type=float, default=120.0, help="s per client for its first snapshot")
    parser.add_argument("--period-ms", type=int, default=1000, help="heartbeat period (product default 1000)")
    parser.add_argument("--timeout-ms", type=int, default=None, help="heartbeat timeout (default 3 x period)")
    parser.add_argument("--hold-down-ms", type=int, default=10000, help="failback hold-down (product default 10000)")
    parser.add_argument("--device-timeout", type=float, default=2.0, help="s per Modbus request (default 2)")
    parser.add_argument("--startup-timeout", type=float, default=900.0, help="s for main active, backup caught up")
    parser.add_argument("--stats-ms", type=int, default=100, help="C servers' counter period (default 100)")
    parser.add_argument("--grace", type=float, default=2.0, help="s after the window before the clients report")
    parser.add_argument("--serve-clients", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    span = math.ceil(args.points_per_device / 2)
    if args.devices < 1 or args.points_per_device < 2:
        parser.error("--devices must be at least 1 and --points-per-device at least 2")
    if not 1 <= args.devices_per_server <= 247 or args.devices_per_server * span > 65536:
        parser.error(f"--devices-per-server must be 1..247 and devices-per-server x {span} registers must fit 65,536")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_clients:
        asyncio.run(client_process(json.loads(os.environ["SCALE_CLIENT_CONFIG"])))
        return 0
    started = datetime.now(UTC)
    report: dict[str, Any] = {"arguments": vars(args), "figures": {}, "steps": {}}
    error = None
    try:
        run(args, report)
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error:
        report["error"] = error
    lines = report_lines(report)
    print()
    print(*lines, sep="\n")
    findings = findings_lines(report)
    if findings:
        print()
        print(*findings, sep="\n")
    if error:
        print(f"\nFAILED: {error[:2000]}")
    path = write_json("scale", started, report)
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
