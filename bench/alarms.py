"""Alarm engine cost and an alarm flood at building scale (issue 9): a real node, a simulated Modbus building.

Run by hand from the repository root (PostgreSQL and Redis on loopback, as
for the system tests; libmodbus for the C device server)::

    flock /tmp/bench.lock .venv/bin/python bench/alarms.py                 # 100,000 points, 20,000 alarms
    flock /tmp/bench.lock .venv/bin/python bench/alarms.py --devices 40 100  # 40,000 and 100,000 points
    flock /tmp/bench.lock .venv/bin/python bench/alarms.py --profile 20     # + cProfile of the engine loop

Method
------
Field: ``--devices`` Modbus devices of ``--points-per-device`` (1,000)
points, half holding and half input registers, on ``bench/modbus_server.c``
servers (``bench/scale.py``'s layout: one register range per device, every
10th register of each 125-register read incremented after answering, so
10.4 % of the values change per poll; ``--poll-interval`` 1 s). Most points
are uint16; the points that state alarms watch are bools, one bit of their
input register: bit 0 (it flips whenever its register changes) or bit 6
(every 64th change).

Alarms: one per ``--points-per-alarm`` (5) points, written as a CSV and
loaded with ``manage.py importalarms`` (timed). Per device of 1,000 points
(200 alarms): 100 ``high`` alarms (limit 30,000, deadband 50, no delay) on
holding registers 0-99, the **flood set**; 20 ``high_high`` (40,000) on the
first 20 of them; and on points drawn at random (seeded) from the rest: 20
``low`` (deadband 10), 15 ``high`` with a 30 s on-delay, 15 ``state_equal``
on bit-0 bools with a 10 s on-delay (the condition flips every poll when the
register changes: timers start and are cancelled, never raised), 10
``state_equal`` on bit-6 bools without delay (they raise and return now and
then: ~1.6 transitions/s at 100,000 points), 10 ``deviation`` (band 20,000
around another point) and 10 ``quality`` (30 s). Values stay far from the
limits, so in the CPU phases almost every evaluation changes nothing, as in a
building; alarmed points change at the same 10 % per poll as the others.

Node: one node (no partner), production shape, its own database
``bench_alarms_<hex>``: ``runengine`` + ``runbms --no-engine``
(``--layout processes``, the default: the engine's CPU = the ``runengine``
process, all its threads) or ``manage.py runbms`` (``--layout thread``: the
engine on its own thread, its CPU = the ``bms-engine`` + ``engine-db_N``
threads). The default is the layout the product prescribes at this size:
100,000 points is above ``BMS_ONE_PROCESS_POINTS`` (30,000), where a
one-process node warns at every configuration load and docs/ARCHITECTURE.md
sends large sites to ``runbms --web-workers N`` (the same two processes).
In one process the web side's objects share the engine's heap, so a full
garbage collection during a flood walks both (up to 50 ms measured) and
the loop's lag goal is not met there (117 ms on 2 December 2026).

The node gets ``bench/alarms_hooks`` on its ``PYTHONPATH``: thread names in ``/proc`` and every LoopWatch tick (the
engine loop's lag, ``bms/engine/loopwatch.py``) with its monotonic time in a
file, plus the engine's counters once a second and every garbage collection
of 1 ms or more (a collection holds the GIL: the loop waits for it).

CPU phases: the definitions are imported disabled; ``A`` = all disabled,
``B`` = all enabled (one ``UPDATE`` + ``ConfigRevision.bump()``: the engine
reloads, keeps its pollers, creates the alarm entries). ``--rounds`` (2)
runs A B B A (drift cancels); each phase waits until the engine runs the
wanted number of alarms, ``--settle`` s, then a window of ``--seconds``
(60). Per window: engine CPU seconds, the changes the servers made (their
counters, shifted by one poll interval: a change is read at the next poll),
polls answered against the plan, alarm evaluations, loop lag. Figure: engine
CPU µs per changed value, B against A (sums over the rounds); goal ratio <=
1.25. One websocket client holding every point (compact form) stays
connected throughout, as a screen would.

Flood (alarms enabled, after the phases): ``--clients-per-flood`` clients
subscribe to the flood set's ``alarm:<name>`` entries (at most 64 KiB of
names per subscription, so 5 clients at 10,000), besides the all-points
client. The bench then writes the raise value 35,000 into every flood
register at once (one Write Multiple Registers per device, pipelined); the
next poll of each device raises its alarms. Measured: at each client, the
first arrival of each flood entry in ``active_unacked``; the flood time =
last arrival - the earliest raise (the source time the entry carries: the
read that raised it), i.e. from the poll cycle that raised them until the
client held all of them (goal <= 2 s); per alarm arrival - its own read;
write -> all (includes the wait for the next poll); the engine loop's lag
from the write until the flood is delivered and journalled (goal: max <=
100 ms); ``raised`` journal rows of the flood set counted in the database
every 50 ms, and the time until all were there. Then the initial values are
written back: the same figures for the return flood (``rtn_unacked``,
``returned`` rows), for information.

``--gc-freeze`` is an experiment, not the product: the hook runs
``gc.collect()`` + ``gc.freeze()`` on the loop's thread after start-up and
after each configuration change, to show what leaving the long-lived objects
(image, alarm states, the hub's mirror) out of full collections would give.

``--profile S`` adds, after the floods, S s of cProfile on the engine's loop
thread in steady state with alarms, and one on a third flood (raise again);
the top functions are printed and the stats kept under ``bench/results/``.

Results go to ``bench/results/alarms-<timestamp>.json``. Everything listens
on 127.0.0.1; servers, node, database and clients are removed at the end,
also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import math
import os
import random
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import add_turn_budget_argument, percentile, write_json  # noqa: E402
from bench.fanout import ClientProcess, host_busy  # noqa: E402
from bench.scale import (  # noqa: E402
    DeviceLayout,
    DeviceServer,
    cpu_report,
    fmt,
    layout,
    log_findings,
    memory,
    offered_per_poll,
    requests_per_poll,
    sample,
)

HOST = "127.0.0.1"
HOOKS = ROOT / "bench" / "alarms_hooks"
USERNAME = PASSWORD = "demo"
GOAL_RATIO = 1.25
GOAL_FLOOD_S = 2.0
GOAL_LAG_MS = 100.0
HIGH_LIMIT = 30000.0
HIGH_HIGH_LIMIT = 40000.0
RAISE_VALUE = 35000
MAX_WRITE = 120  # registers per Write Multiple Registers request (the protocol allows 123)
SUBSCRIBE_BYTES = 60_000  # a client message may be 64 KiB (bms/realtime/consumers.py)
RAISED, RETURNED = "active_unacked", "rtn_unacked"
#: the alarms besides the flood set and its high_high partners, in sixteenths of what is left
REST_MIX = (("low", 4), ("high_delayed", 3), ("state_toggling", 3), ("state_slow", 2), ("deviation", 2), ("quality", 2))


def initial(register: int) -> int:
    """What the C server holds in a register before anyone writes or reads it."""
    return register & 0x7FFF


# --- the building: points and alarm definitions ---------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """Points per device, the alarm CSV rows, and the flood set (its alarms and the registers to write)."""

    points: dict[str, list[list[str]]] = field(default_factory=dict)  # device -> [[name, address, data type]]
    rows: list[dict[str, str]] = field(default_factory=list)
    flood_alarms: list[str] = field(default_factory=list)
    #: (port, unit, first register, initial values) per device: the holding registers of the flood set
    flood_registers: list[tuple[int, int, int, list[int]]] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def csv_text(self) -> str:
        columns = ["name", "point", "kind", "class", "limit", "deadband", "on_delay", "alarm_value"]
        columns += ["setpoint_point", "quality_delay", "area", "enabled"]
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def rest_counts(rest: int) -> dict[str, int]:
    counts = {kind: rest * share // 16 for kind, share in REST_MIX}
    counts["low"] += rest - sum(counts.values())
    return counts


def plan_building(devices: Sequence[DeviceLayout], points_per_alarm: int, seed: int) -> Plan:
    rng = random.Random(seed)
    plan = Plan()
    for d in devices:
        hr = [f"{d.name}.hr{i:04d}" for i in range(d.holding)]
        ir = [f"{d.name}.ir{i:04d}" for i in range(d.inputs)]
        count = round((d.holding + d.inputs) / points_per_alarm)
        flood = min(count // 2, d.holding)
        high_high = min(count // 10, flood)
        rest = rest_counts(count - flood - high_high)
        states = rest["state_toggling"] + rest["state_slow"]
        inputs = list(range(d.inputs))
        rng.shuffle(inputs)
        if states > len(inputs):
            raise ValueError(f"{d.name}: {states} state alarms need as many input registers")
        bools = {i: 0 for i in inputs[: rest["state_toggling"]]} | {
            i: 6 for i in inputs[rest["state_toggling"] : states]
        }
        pool = [hr[i] for i in range(flood, d.holding)] + [ir[i] for i in inputs[states:]]
        rng.shuffle(pool)
        others = rest["low"] + rest["high_delayed"] + rest["deviation"] + rest["quality"]
        if others + rest["deviation"] > len(pool):
            raise ValueError(f"{d.name}: too few points for {others} alarms and {rest['deviation']} setpoints")
        chosen, setpoints = pool[:others], pool[others : others + rest["deviation"]]

        plan.points[d.name] = [[name, f"hr:{d.start + i}", "uint16"] for i, name in enumerate(hr)] + [
            [name, f"ir:{d.start + i}.{bools[i]}", "bool"] if i in bools else [name, f"ir:{d.start + i}", "uint16"]
            for i, name in enumerate(ir)
        ]

        def add(kind: str, point: str, what: str, klass: str, area: str = d.name, **settings: Any) -> None:
            name = f"{point}.{what}"
            plan.rows.append({"name": name, "point": point, "kind": kind, "class": klass, "area": area} | settings)
            plan.kinds[what] = plan.kinds.get(what, 0) + 1

        for i in range(flood):
            add("high", hr[i], "high", "high", limit=HIGH_LIMIT, deadband=50)
            plan.flood_alarms.append(f"{hr[i]}.high")
        for i in range(high_high):
            add("high_high", hr[i], "high_high", "critical", limit=HIGH_HIGH_LIMIT, deadband=50)
        for point in chosen[: rest["low"]]:
            add("low", point, "low", "medium", limit=0, deadband=10)
        chosen = chosen[rest["low"] :]
        for point in chosen[: rest["high_delayed"]]:
            add("high", point, "high_delayed", "medium", limit=HIGH_LIMIT, deadband=50, on_delay=30)
        chosen = chosen[rest["high_delayed"] :]
        for point, setpoint in zip(chosen[: rest["deviation"]], setpoints, strict=True):
            add("deviation", point, "deviation", "medium", limit=20000, deadband=100, setpoint_point=setpoint)
        for point in chosen[rest["deviation"] :]:
            add("quality", point, "quality", "low", quality_delay=30)
        for i, bit in bools.items():
            normal = initial(d.start + i) >> bit & 1
            what = "state_toggling" if bit == 0 else "state_slow"
            add("state_equal", ir[i], what, "low", alarm_value=1 - normal, on_delay=10 if bit == 0 else "")
        if flood:
            plan.flood_registers.append((d.port, d.unit, d.start, [initial(d.start + i) for i in range(flood)]))
    for row in plan.rows:
        row["enabled"] = "no"  # phase A first; the bench enables them all at once
    return plan


# --- the node ------------------------------------------------------------------------------------------------------

#: run by ``manage.py shell -c``: devices and points from the plan (a JSON file), the revision, user ``demo``
LOADER = """
import json, os
from django.contrib.auth.models import User
from django.db import transaction
from bms.points.models import ConfigRevision, Device, Point
with open(os.environ["ALARMS_BUILDING"]) as f:
    building = json.load(f)
with transaction.atomic():
    made = {}
    for d in building["devices"]:
        made[d["name"]] = Device.objects.create(
            name=d["name"], driver="modbus", host="127.0.0.1", port=d["port"], unit_id=d["unit"],
            poll_interval=building["poll_interval"], timeout=building["timeout"], enabled=True)
    Point.objects.bulk_create(
        (Point(device=made[device], name=name, address=address, data_type=data_type)
         for device, points in building["points"].items() for name, address, data_type in points),
        batch_size=5000)
    ConfigRevision.bump()
    User.objects.create_user("demo", password="demo")
print(Device.objects.count(), Point.objects.count())
"""

#: run by ``manage.py shell -c``: every alarm definition enabled or disabled at once, one revision bump
TOGGLE = """
import os
from django.db import transaction
from bms.alarms.models import AlarmDefinition
from bms.points.models import ConfigRevision
with transaction.atomic():
    changed = AlarmDefinition.objects.update(enabled=os.environ["ALARMS_ENABLED"] == "1")
    ConfigRevision.bump()
print(changed)
"""


class AlarmNode:
    """One node on its own database ``bench_alarms_<hex>``, loaded with the plan's points and (disabled) alarms."""

    def __init__(self, args: argparse.Namespace, devices: Sequence[DeviceLayout], plan: Plan, work: Path) -> None:
        from tests.support.pair import admin, base_env

        self.args = args
        self.work = work
        self.db_name = f"bench_alarms_{uuid.uuid4().hex[:8]}"
        self.hook_path = work / "hook.log"
        self.log_path = work / "node.log"
        self.processes: list[subprocess.Popen] = []
        self.steps: dict[str, float] = {}
        admin(f'CREATE DATABASE "{self.db_name}"')
        self.env = base_env(self.db_name, "alarms") | {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
            "BENCH_ALARMS_HOOK": str(self.hook_path),
            "PYTHONUNBUFFERED": "1",
            "BMS_POLL_SPREAD": "1" if args.poll_spread else "0",
            "BMS_TURN_BUDGET_MS": f"{args.turn_budget_ms:g}",
        }
        building = work / "building.json"
        building.write_text(
            json.dumps(
                {
                    "poll_interval": args.poll_interval,
                    "timeout": args.device_timeout,
                    "devices": [{"name": d.name, "port": d.port, "unit": d.unit} for d in devices],
                    "points": plan.points,
                }
            )
        )
        alarms_csv = work / "alarms.csv"
        alarms_csv.write_text(plan.csv_text())
        began = time.monotonic()
        self.manage("migrate", "--verbosity", "0")
        loaded = self.manage("shell", "-c", LOADER, extra={"ALARMS_BUILDING": str(building)})
        self.loaded = " ".join(loaded.split()[-2:]) + " devices, points"
        self.steps["migrate_and_points_s"] = time.monotonic() - began
        began = time.monotonic()
        self.imported = self.manage("importalarms", str(alarms_csv)).strip()
        self.steps["importalarms_s"] = time.monotonic() - began

    def manage(self, *args: str, extra: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env | (extra or {}),
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return result.stdout

    def start(self) -> str:
        """Start the node; return its base URL once the web side answers."""
        from tests.support.net import free_port, wait_for_port
        from tests.support.processes import spawn_node

        port = free_port()
        self.processes = spawn_node(port, self.args.layout == "processes", self.env, self.log_path)
        wait_for_port(port, 120)
        self.base_url = f"http://{HOST}:{port}"
        return self.base_url

    def labels(self) -> dict[str, int]:
        return node_labels(self.args.layout, self.processes)

    def set_alarms(self, enabled: bool) -> int:
        return int(self.manage("shell", "-c", TOGGLE, extra={"ALARMS_ENABLED": "1" if enabled else "0"}).split()[-1])

    def connect(self) -> Any:
        import psycopg

        from tests.support import services

        return psycopg.connect(services.database_url(self.db_name), autocommit=True)

    def stop(self) -> None:
        import signal

        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def drop(self) -> None:
        from tests.support.pair import admin

        admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


def journal_count(conn: Any, alarms: list[str], transition: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM alarms_alarmjournal WHERE transition = %s AND alarm = ANY(%s)", [transition, alarms]
    ).fetchone()
    return int(row[0])


class HookLog:
    """The node's hook file (bench/alarms_hooks): loop lag per tick and the engine's counters per second."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lags: list[tuple[float, float]] = []  # (monotonic, lag s)
        self.stats: list[tuple[float, dict[str, Any]]] = []
        self.collections: list[tuple[float, int, float]] = []  # (monotonic start, generation, s) of slow GCs
        self.events: list[tuple[str, float, str]] = []

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            kind, _, rest = line.partition(" ")
            moment, _, body = rest.partition(" ")
            try:
                if kind == "L":
                    self.lags.append((float(moment), float(body)))
                elif kind == "S":
                    self.stats.append((float(moment), json.loads(body)))
                elif kind == "G":
                    generation, took = body.split()
                    self.collections.append((float(moment), int(generation), float(took)))
                else:
                    self.events.append((kind, float(moment), body))
            except ValueError:
                continue

    def latest(self) -> dict[str, Any]:
        self.poll()
        return self.stats[-1][1] if self.stats else {}

    def lags_ms(self, start: float, end: float) -> list[float]:
        return [lag * 1000 for at, lag in self.lags if start <= at <= end]

    def gc_pauses(self, start: float, end: float) -> dict[str, Any]:
        """Garbage collections of 1 ms or more that began in the window: how many, their total and longest."""
        found = [(generation, took * 1000) for at, generation, took in self.collections if start <= at <= end]
        full = [ms for generation, ms in found if generation == 2]
        return {
            "n": len(found),
            "ms": sum(ms for _, ms in found),
            "max_ms": max((ms for _, ms in found), default=0.0),
            "full_n": len(full),
            "full_max_ms": max(full, default=0.0),
        }

    def stat_at(self, moment: float) -> dict[str, Any]:
        """The last counters written at or before ``moment`` (the first ones if none was)."""
        found = self.stats[0][1] if self.stats else {}
        for at, stats in self.stats:
            if at > moment:
                break
            found = stats
        return found

    def wait_for(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.latest()
            if stats and predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the engine did not get to {what} within {timeout:.0f} s (last counters {stats})")
            time.sleep(0.5)

    def wait_event(self, kind: str, since: int, timeout: float) -> tuple[str, float, str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            found = [event for event in self.events[since:] if event[0] == kind]
            if found:
                return found[0]
            time.sleep(0.2)
        return None


def lag_summary(lags: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(lags),
        "p50_ms": percentile(lags, 50),
        "p99_ms": percentile(lags, 99),
        "max_ms": max(lags, default=math.nan),
        "over_50ms": sum(1 for lag in lags if lag > 50),
        "over_100ms": sum(1 for lag in lags if lag > 100),
    }


# --- writing the flood -----------------------------------------------------------------------------------------


async def write_registers(writes: Sequence[tuple[int, int, int, list[int]]]) -> None:
    """Each ``(port, unit, first register, values)`` as Write Multiple Registers requests, pipelined per server."""
    by_port: dict[int, list[bytes]] = {}
    for port, unit, first, values in writes:
        for offset in range(0, len(values), MAX_WRITE):
            chunk = values[offset : offset + MAX_WRITE]
            frames = by_port.setdefault(port, [])
            pdu = struct.pack(">BHHB", 0x10, first + offset, len(chunk), 2 * len(chunk))
            pdu += struct.pack(f">{len(chunk)}H", *chunk)
            frames.append(struct.pack(">HHHB", len(frames) + 1, 0, len(pdu) + 1, unit) + pdu)

    async def one_server(port: int, frames: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(b"".join(frames))
            await writer.drain()
            for _ in frames:
                _tid, _protocol, length, _unit = struct.unpack(">HHHB", await reader.readexactly(7))
                body = await reader.readexactly(length - 1)
                if body[0] & 0x80:
                    raise RuntimeError(f"the server on port {port} refused a write: exception code {body[1]}")
        finally:
            writer.close()

    await asyncio.gather(*(one_server(port, frames) for port, frames in by_port.items()))


# --- the client process ----------------------------------------------------------------------------------------


class WatchClient:
    """A compact-form websocket client that notes when each watched entry first shows the watched state."""

    def __init__(self, label: str, subscription: list[str] | None) -> None:
        self.label = label
        self.subscription = subscription
        self.connection: Any = None
        self.names: list[str] = []
        self.seq: int | None = None
        self.ready = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.done = asyncio.Event()
        self.state: str | None = None
        self.watched: set[str] = set()
        #: name -> (monotonic arrival, wall arrival ms, changed_ms the entry carried)
        self.arrived: dict[str, tuple[float, float, int | None]] = {}
        self.frames = self.rows = self.snapshots = self.gaps = self.errors = 0
        self.failure: str | None = None
        self.last_error: Any = None
        self.pending: asyncio.Future | None = None  # the last resync being sent

    async def run(self, url: str, cookie: str, origin: str) -> None:
        import websockets

        try:
            self.connection = await websockets.connect(
                url,
                additional_headers={"Cookie": cookie},
                origin=origin,
                compression=None,
                proxy=None,
                max_size=None,
                ping_interval=None,
                open_timeout=60,
                close_timeout=1,
            )
            while True:
                data = await self.connection.recv(decode=False)
                self.on_message(json.loads(data), time.monotonic(), time.time() * 1000)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"[:300]
            self.ready.set()

    def on_message(self, message: dict[str, Any], mono: float, wall_ms: float) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.names = message["names"]
            self.seq = message["seq"]
            self.snapshots += 1
            self.ready.set()
            if self.subscription is not None and len(self.names) == len(self.subscription):
                self.subscribed.set()
            if self.state is not None:
                for name, row in zip(self.names, message["points"], strict=False):
                    if row[1] == self.state:
                        self.see(name, row[3], mono, wall_ms)
        elif kind == "delta":
            if self.seq is None:
                return
            if message["from"] != self.seq:
                self.gaps += 1
                self.seq = None
                self.pending = asyncio.ensure_future(self.connection.send('{"type":"resync"}'))
                return
            self.seq = message["seq"]
            rows = message["points"]
            self.frames += 1
            self.rows += len(rows)
            state = self.state
            if state is not None:
                names = self.names
                for row in rows:
                    if row[2] == state:
                        self.see(names[row[0]], row[4], mono, wall_ms)
        elif kind == "error":
            self.errors += 1
            self.last_error = message

    def see(self, name: str, changed_ms: int | None, mono: float, wall_ms: float) -> None:
        if name in self.watched and name not in self.arrived:
            self.arrived[name] = (mono, wall_ms, changed_ms)
            if len(self.arrived) == len(self.watched):
                self.done.set()

    def watch(self, state: str, names: set[str]) -> None:
        self.state = state
        self.watched = names if self.subscription is None else set(self.subscription)
        self.arrived = {}
        self.done.clear()

    def collected(self) -> dict[str, Any]:
        arrivals = list(self.arrived.values())
        latencies = [wall - changed for _, wall, changed in arrivals if changed is not None]
        changed = [c for _, _, c in arrivals if c is not None]
        result = {
            "label": self.label,
            "watched": len(self.watched),
            "arrived": len(arrivals),
            "first_mono": min((a[0] for a in arrivals), default=None),
            "last_mono": max((a[0] for a in arrivals), default=None),
            "last_wall_ms": max((a[1] for a in arrivals), default=None),
            "first_changed_ms": min(changed, default=None),
            "last_changed_ms": max(changed, default=None),
            "latency_ms": {q: percentile(latencies, q) for q in (50, 99, 100)},
        }
        self.state = None
        return result

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "frames": self.frames,
            "rows": self.rows,
            "snapshots": self.snapshots,
            "gaps": self.gaps,
            "errors": self.errors,
            "last_error": self.last_error,
            "failure": self.failure,
        }


def chunks_of_names(names: Sequence[str], budget: int) -> list[list[str]]:
    """``names`` in groups whose subscribe message stays under ``budget`` bytes."""
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        cost = len(json.dumps(name)) + 1
        if groups[-1] and size + cost > budget:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += cost
    return groups


async def client_process(config: dict[str, Any]) -> None:
    """Driven by lines on stdin: connect, subscribe, watch <state>, collect <timeout>, stop."""
    with open(config["flood_file"], encoding="utf-8") as f:  # noqa: ASYNC230 (once, before any connection)
        entries = json.load(f)
    every = set(entries)
    clients: list[WatchClient] = []
    tasks: list[asyncio.Task] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def open_client(client: WatchClient) -> None:
        clients.append(client)
        tasks.append(asyncio.create_task(client.run(config["url"], config["cookie"], config["origin"])))
        async with asyncio.timeout(config["snapshot_timeout"]):
            await client.ready.wait()

    say("ready")
    while True:
        words = (await reader.readline()).decode().split()
        if not words or words[0] == "stop":
            break
        began = time.monotonic()
        try:
            if words[0] == "connect":
                await open_client(WatchClient("all points", None))
                say("connected " + json.dumps({"seconds": time.monotonic() - began, "failure": clients[0].failure}))
            elif words[0] == "subscribe":
                for i, names in enumerate(chunks_of_names(entries, SUBSCRIBE_BYTES)):
                    client = WatchClient(f"alarms {i + 1}", names)
                    await open_client(client)
                    await client.connection.send(json.dumps({"type": "subscribe", "points": names}))
                    async with asyncio.timeout(config["snapshot_timeout"]):
                        await client.subscribed.wait()
                failures = [c.failure or c.last_error for c in clients if c.failure or c.last_error]
                say("subscribed " + json.dumps({"clients": len(clients) - 1, "seconds": time.monotonic() - began}))
                if failures:
                    print(f"client problems: {failures}", file=sys.stderr)
            elif words[0] == "watch":
                for client in clients:
                    client.watch(words[1], every)
                say("watching")
            elif words[0] == "collect":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(float(words[1])):
                        await asyncio.gather(*(client.done.wait() for client in clients))
                say("collected " + json.dumps([client.collected() for client in clients]))
        except TimeoutError:
            say(f"{words[0]}-failed " + json.dumps([c.summary() for c in clients]))
    say("result " + json.dumps([client.summary() for client in clients]))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- phases ------------------------------------------------------------------------------------------------------


def node_labels(layout_name: str, processes: Sequence[subprocess.Popen]) -> dict[str, int]:
    """A node's processes to measure (as started by ``spawn_node``), labelled as bench/scale.py's ``sample`` expects
    (``main ...``: per thread too)."""
    if layout_name == "processes":
        return {"main engine": processes[0].pid, "main web": processes[1].pid}
    return {"main runbms": processes[0].pid}


def engine_cpu_pct(layout_name: str, processes: dict[str, float], threads: dict[str, dict[str, float]]) -> float:
    """% of one core: the runengine process, or the engine's threads of runbms (as bench/scale.py counts)."""
    if layout_name == "processes":
        return processes.get("main engine", math.nan)
    groups = threads.get("main runbms", {})
    return sum(value for name, value in groups.items() if name == "bms-engine" or name.startswith("engine-db"))


def measure_window(
    phase: str,
    args: argparse.Namespace,
    node: AlarmNode,
    servers: Sequence[DeviceServer],
    hook: HookLog,
    plan_info: dict[str, Any],
) -> dict[str, Any]:
    labels = node.labels()
    start = time.monotonic()
    first, host0 = sample(labels), host_busy()
    time.sleep(args.seconds)
    last, host1 = sample(labels), host_busy()
    end = time.monotonic()
    seconds = end - start
    processes, threads = cpu_report(first, last)
    engine_pct = engine_cpu_pct(args.layout, processes, threads)
    shift = args.poll_interval  # a change is made when a register is read and seen at the next poll
    offered = reads = 0.0
    for server in servers:
        offered += server.at(end - shift)[1] - server.at(start - shift)[1]
        reads += server.at(end)[0] - server.at(start)[0]
    time.sleep(0.5)
    hook.poll()
    s0, s1 = hook.stat_at(start), hook.stat_at(end)
    engine_cpu_s = engine_pct / 100 * seconds
    window = {
        "phase": phase,
        "seconds": seconds,
        "engine_cpu_pct": engine_pct,
        "engine_cpu_s": engine_cpu_s,
        "node_cpu_pct": sum(v for k, v in processes.items() if k.startswith("main")),
        "threads_pct": threads,
        "host_busy_pct": (host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * 100 * (os.cpu_count() or 1),
        "changes": offered,
        "changes_per_s": offered / seconds,
        "cpu_us_per_change": engine_cpu_s / offered * 1e6 if offered else math.nan,
        "poll_share": reads / seconds / (plan_info["requests_per_poll"] / args.poll_interval),
        "image_seq_per_s": (s1.get("seq", 0) - s0.get("seq", 0)) / seconds,
        "evaluations_per_s": (s1.get("evaluations", 0) - s0.get("evaluations", 0)) / seconds,
        "alarm_cpu_s": s1.get("alarm_cpu", 0.0) - s0.get("alarm_cpu", 0.0),
        "transitions": s1.get("transitions", 0) - s0.get("transitions", 0),
        "alarms": s1.get("alarms"),
        "lag": lag_summary(hook.lags_ms(start, end)),
        "gc": hook.gc_pauses(start, end),
        "rss_mb": sum(memory(pid)[0] for pid in labels.values()),
    }
    print(
        f"    {phase}: engine {engine_pct:5.1f} % = {window['cpu_us_per_change']:.2f} µs CPU per changed value "
        f"({window['changes_per_s']:,.0f} changes/s, polls {window['poll_share'] * 100:.0f} % of plan, "
        f"{window['evaluations_per_s']:,.0f} alarm evaluations/s), loop lag p99 {fmt(window['lag']['p99_ms'], '.1f')}"
        f" max {fmt(window['lag']['max_ms'], '.0f')} ms, host {window['host_busy_pct']:.0f} %",
        flush=True,
    )
    return window


def set_phase(node: AlarmNode, hook: HookLog, enabled: bool, expected: int, args: argparse.Namespace) -> float:
    """Enable or disable every alarm; return seconds until the engine ran the wanted number of them."""
    began = time.monotonic()
    node.set_alarms(enabled)
    hook.wait_for(
        lambda s: s.get("alarms") == (expected if enabled else 0) and (s.get("running") or not enabled),
        args.apply_timeout,
        f"{expected if enabled else 0} alarms",
    )
    took = time.monotonic() - began
    if args.gc_freeze:
        freeze(node, hook)
    return took


def freeze(node: AlarmNode, hook: HookLog) -> None:
    """``--gc-freeze``: have the node's hook run gc.collect() + gc.freeze() on the engine's loop thread."""
    hook.poll()
    since = len(hook.events)
    time.sleep(3)  # let the reload's follow-up work (entries, snapshots for the hub) finish first
    Path(str(node.hook_path) + ".cmd").write_text("gc-freeze\n")
    if hook.wait_event("F", since, 30) is None:
        raise RuntimeError("the node's hook did not freeze the garbage collector")


class JournalWatch(threading.Thread):
    """Counts the journal rows of a transition of the flood set every 50 ms until they reach ``target``."""

    def __init__(self, node: AlarmNode, alarms: list[str], transition: str, target: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.conn = node.connect()
        self.alarms = alarms
        self.transition = transition
        self.target = target
        self.timeout = timeout
        self.before = journal_count(self.conn, alarms, transition)
        self.samples: list[tuple[float, int]] = []
        self.reached: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                count = journal_count(self.conn, self.alarms, self.transition) - self.before
                now = time.monotonic()
                self.samples.append((now, count))
                if count >= self.target:
                    self.reached = now
                    break
                time.sleep(0.05)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.conn.close()


def run_flood(
    label: str,
    state: str,
    transition: str,
    values: Sequence[tuple[int, int, int, list[int]]],
    node: AlarmNode,
    hook: HookLog,
    client: ClientProcess,
    plan: Plan,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Write ``values`` at once; time the flood to the clients, the journal and the loop's lag meanwhile."""
    expected = len(plan.flood_alarms)
    client.send(f"watch {state}")
    client.expect("watching", 30)
    journal = JournalWatch(node, plan.flood_alarms, transition, expected, args.flood_timeout)
    labels = node.labels()
    stats0 = hook.latest()
    cpu0 = sample(labels)
    journal.start()
    t0 = time.monotonic()
    asyncio.run(write_registers(values))
    t1 = time.monotonic()
    client.send(f"collect {args.flood_timeout}")
    per_client = json.loads(client.expect("collected", args.flood_timeout + 60))
    journal.join(args.flood_timeout + 5)
    last_arrival = max((c["last_mono"] or t1 for c in per_client), default=t1)
    end = max(last_arrival, journal.reached or t1) + 1.0
    time.sleep(max(0.0, end - time.monotonic()) + 1.5)  # the hook writes each tick; flushed once a second
    cpu1 = sample(labels)
    hook.poll()
    processes, threads = cpu_report(cpu0, cpu1)
    stats1 = hook.latest()
    lags = hook.lags_ms(t0, end)
    clients = []
    for c in per_client:
        flood_s = (c["last_wall_ms"] - c["first_changed_ms"]) / 1000 if c["first_changed_ms"] is not None else math.nan
        clients.append(
            c
            | {
                "flood_s": flood_s,
                "write_to_all_s": c["last_mono"] - t1 if c["last_mono"] is not None else math.nan,
                "raise_spread_s": (c["last_changed_ms"] - c["first_changed_ms"]) / 1000
                if c["first_changed_ms"] is not None
                else math.nan,
            }
        )
    primary = clients[0] if clients else {}
    result = {
        "label": label,
        "expected": expected,
        "write_s": t1 - t0,
        "clients": clients,
        "all_arrived": all(c["arrived"] == c["watched"] for c in clients),
        "flood_s": max((c["flood_s"] for c in clients), default=math.nan),
        "lag": lag_summary(lags),
        "gc": hook.gc_pauses(t0, end),
        "lag_window_s": end - t0,
        "journal_rows": journal.samples[-1][1] if journal.samples else 0,
        "journal_s": journal.reached - t1 if journal.reached else math.nan,
        "journal_error": journal.error,
        "transitions": stats1.get("transitions", 0) - stats0.get("transitions", 0),
        "journal_dropped": stats1.get("journal_dropped", 0) - stats0.get("journal_dropped", 0),
        "turns_deferred": stats1.get("turns_deferred", 0) - stats0.get("turns_deferred", 0),
        "engine_cpu_s": engine_cpu_pct(args.layout, processes, threads) / 100 * (cpu1.at - cpu0.at),
        "engine_cpu_window_s": cpu1.at - cpu0.at,
        "threads_cpu_s": {
            label: {name: pct / 100 * (cpu1.at - cpu0.at) for name, pct in groups.items() if pct >= 1}
            for label, groups in threads.items()
        },
    }
    print(
        f"    flood {label}: {primary.get('arrived')}/{expected} at the all-points client, flood "
        f"{fmt(result['flood_s'], '.2f')} s (raise spread {fmt(primary.get('raise_spread_s'), '.2f')} s, write -> all "
        f"{fmt(primary.get('write_to_all_s'), '.2f')} s); loop lag max {fmt(result['lag']['max_ms'], '.0f')} ms p99 "
        f"{fmt(result['lag']['p99_ms'], '.1f')} ms; journal {result['journal_rows']:,} rows in "
        f"{fmt(result['journal_s'], '.2f')} s; {result['turns_deferred']:,} answers and slices waited a turn",
        flush=True,
    )
    return result


def profile(
    node: Any, hook: HookLog, seconds: float, path: Path, during: Any = None, groups: Sequence[tuple] | None = None
) -> tuple[str, dict[str, Any]]:
    """cProfile the engine loop for ``seconds`` (running ``during()`` meanwhile); the stats' top as text.

    ``node``: anything with the ``hook_path`` its hook reads commands beside; ``groups``: the entry points to
    total (default: :data:`PROFILE_GROUPS`)."""
    import pstats

    hook.poll()
    since = len(hook.events)
    path.parent.mkdir(parents=True, exist_ok=True)  # the node's hook dumps there; a fresh checkout has no bench/results
    Path(str(node.hook_path) + ".cmd").write_text(f"profile {path} {seconds}\n")
    if hook.wait_event("P-start", since, 10) is None:
        raise RuntimeError("the node's hook did not start profiling")
    started = time.monotonic()
    extra = during() if during is not None else {}
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    if hook.wait_event("P", since, seconds + 30) is None:
        raise RuntimeError("the node's hook did not write the profile")
    return "\n".join(profile_lines(pstats.Stats(str(path)).stats, groups or PROFILE_GROUPS)), extra


#: where the loop's time goes, by entry point (cumulative CPU of the thread inside them)
PROFILE_GROUPS = (
    ("alarm evaluation (AlarmEngine.run_once)", "bms/alarms/engine.py", "run_once"),
    ("  of it: AlarmEngine._evaluate", "bms/alarms/engine.py", "_evaluate"),
    ("  of it: AlarmEngine._publish (entry dict, message, to_dict, image.put)", "bms/alarms/engine.py", "_publish"),
    ("  of it: AlarmEngine._publish_summary", "bms/alarms/engine.py", "_publish_summary"),
    ("  of it: Alarm.update (state machine)", "bms/alarms/states.py", "update"),
    ("  of it: conditions.evaluate", "bms/alarms/conditions.py", "evaluate"),
    ("  of it: Outbox.put (journal queue)", "bms/engine/outbox.py", "put"),
    ("journal batches handed to the db thread (Outbox.flush)", "bms/engine/outbox.py", "flush"),
    ("polling (DevicePoller.poll_once)", "bms/engine/poller.py", "poll_once"),
    ("publishing (Publisher.flush: delta + channel layer)", "bms/engine/publisher.py", "flush"),
    ("  of it: ImageCursor.take_delta", "bms/engine/image.py", "take_delta"),
    ("snapshots for hubs (ProcessImage.snapshot)", "bms/engine/image.py", "snapshot"),
    ("configuration reload (Engine.reload)", "bms/engine/runner.py", "reload"),
)


def profile_lines(stats: dict[Any, Any], groups: Sequence[tuple] = PROFILE_GROUPS) -> list[str]:
    """The loop thread's CPU (cProfile on thread_time) by entry point, then the top functions by own time."""
    total = sum(entry[2] for entry in stats.values())
    lines = [f"    loop thread CPU profiled: {total:.2f} s"]

    def cumulative(path: str, function: str) -> tuple[float, int]:
        found = [(e[3], e[1]) for (file, _, name), e in stats.items() if file.endswith(path) and name == function]
        return max(found, default=(0.0, 0))

    for label, path, function in groups:
        seconds, calls = cumulative(path, function)
        if seconds:
            lines.append(f"    {label:<78} {seconds:7.3f} s {seconds / total * 100:5.1f} % ({calls:,} calls)")
    lines.append("    top functions by own CPU:")
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:25]
    for (file, line, name), entry in ranked:
        where = f"{Path(file).name}:{line}({name})" if line else name
        lines.append(f"      {entry[2]:7.3f} s {entry[2] / total * 100:5.1f} %  {entry[1]:>9,} calls  {where}")
    return lines


# --- one size ----------------------------------------------------------------------------------------------------


def run_size(args: argparse.Namespace, devices_count: int, stamp: str) -> dict[str, Any]:
    from bench.modbus_poll import build_server
    from tests.support.processes import HttpSession

    out: dict[str, Any] = {"devices": devices_count, "steps": {}}
    servers: list[DeviceServer] = []
    node: AlarmNode | None = None
    client: ClientProcess | None = None
    began = time.monotonic()
    work = ROOT / "var" / "bench-alarms" / f"{stamp}-{devices_count}"
    work.mkdir(parents=True, exist_ok=True)

    def step(name: str) -> None:
        out["steps"][name] = round(time.monotonic() - began, 1)
        print(f"  [{out['steps'][name]:7.1f} s] {name}", flush=True)

    try:
        binary = build_server()
        servers = [
            DeviceServer(binary, args.change_stride, 100) for _ in range(math.ceil(devices_count / args.per_server))
        ]
        devices = layout(devices_count, args.points_per_device, args.per_server, [s.port for s in servers])
        plan = plan_building(devices, args.points_per_alarm, args.seed)
        points = sum(len(p) for p in plan.points.values())
        plan_info = {
            "points": points,
            "alarms": len(plan.rows),
            "kinds": plan.kinds,
            "flood": len(plan.flood_alarms),
            "requests_per_poll": requests_per_poll(devices),
            "offered_per_poll": offered_per_poll(devices, args.change_stride),
        }
        out["plan"] = plan_info
        step(f"{len(servers)} C servers; {points:,} points, {len(plan.rows):,} alarms {plan.kinds}; loading")
        node = AlarmNode(args, devices, plan, work)
        out["node"] = {"database": node.db_name, "log": str(node.log_path), "loaded": node.loaded}
        out["import"] = {"result": node.imported, **node.steps}
        step(f"database {node.db_name}: {node.loaded}; importalarms {node.steps['importalarms_s']:.1f} s")
        base_url = node.start()
        hook = HookLog(node.hook_path)
        hook.wait_for(lambda s: s.get("points", 0) >= points, args.apply_timeout, f"{points:,} points in the image")
        session = HttpSession(base_url, USERNAME, PASSWORD)
        flood_file = work / "flood.json"
        flood_file.write_text(json.dumps([f"alarm:{name}" for name in plan.flood_alarms]))
        client = ClientProcess(
            {
                "url": f"ws://{HOST}:{base_url.rsplit(':', 1)[1]}/ws/live/?wire=compact",
                "origin": base_url,
                "cookie": session.cookie_header,
                "flood_file": str(flood_file),
                "snapshot_timeout": 300.0,
            },
            __file__,
            "ALARMS_CLIENT_CONFIG",
        )
        client.expect("ready", 60)
        client.send("connect")
        client.expect("connected", 320)
        step(f"node up ({args.layout} layout), a client holds the snapshot; warm-up {args.warmup:g} s")
        time.sleep(args.warmup)
        if args.gc_freeze:
            freeze(node, hook)

        windows = []
        enabled = False
        order = "".join("AB" if r % 2 == 0 else "BA" for r in range(args.rounds))
        for phase in order:
            want = phase == "B"
            if want != enabled:
                took = set_phase(node, hook, want, len(plan.rows), args)
                enabled = want
                step(f"alarms {'enabled' if want else 'disabled'}: engine applied it in {took:.1f} s")
            time.sleep(args.settle)
            windows.append(measure_window(phase, args, node, servers, hook, plan_info))
        out["windows"] = windows
        out["cpu"] = cpu_figures(windows)

        if not enabled:
            took = set_phase(node, hook, True, len(plan.rows), args)
            step(f"alarms enabled for the flood: engine applied it in {took:.1f} s")
        client.send("subscribe")
        subscribed = json.loads(client.expect("subscribed", 900))
        if args.gc_freeze:
            freeze(node, hook)
        step(f"{subscribed['clients']} clients subscribed to the flood's alarm entries; settle {args.settle:g} s")
        time.sleep(args.settle)
        raise_values = [
            (port, unit, first, [RAISE_VALUE] * len(values)) for port, unit, first, values in plan.flood_registers
        ]
        flood = run_flood("raise", RAISED, "raised", raise_values, node, hook, client, plan, args)
        out["flood"] = flood
        time.sleep(args.settle)
        out["return_flood"] = run_flood(
            "return", RETURNED, "returned", plan.flood_registers, node, hook, client, plan, args
        )
        if args.profile > 0:
            time.sleep(args.settle)
            results = ROOT / "bench" / "results"
            steady_path = results / f"alarms-{stamp}-{devices_count}-steady.prof"
            text, _ = profile(node, hook, args.profile, steady_path)
            out["profile_steady"] = {"path": str(steady_path), "top": text}
            step(f"steady-state profile: {steady_path.relative_to(ROOT)}")
            time.sleep(args.settle)
            flood_path = results / f"alarms-{stamp}-{devices_count}-flood.prof"

            def raise_again() -> dict[str, Any]:
                return run_flood("raise (profiled)", RAISED, "raised", raise_values, node, hook, client, plan, args)

            text, profiled = profile(node, hook, args.profile, flood_path, raise_again)
            out["profile_flood"] = {"path": str(flood_path), "top": text, "flood": profiled}
            step(f"flood profile: {flood_path.relative_to(ROOT)}")
        client.send("stop")
        out["clients"] = json.loads(client.expect("result", 60))
        step("done")
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        print(f"  FAILED: {out['error'][:2000]}", flush=True)
    finally:
        if client is not None:
            client.stop()
        if node is not None:
            node.stop()
            out["log_findings"] = log_findings(node.log_path)
            with contextlib.suppress(Exception):
                node.drop()
        for server in servers:
            server.stop()
    return out


def cpu_figures(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Engine CPU per changed value in A and B (sums over the windows), their ratio, and per A/B pair."""
    figures: dict[str, Any] = {}
    for phase in "AB":
        chosen = [w for w in windows if w["phase"] == phase]
        cpu = sum(w["engine_cpu_s"] for w in chosen)
        changes = sum(w["changes"] for w in chosen)
        figures[phase] = {
            "cpu_s": cpu,
            "changes": changes,
            "us_per_change": cpu / changes * 1e6 if changes else math.nan,
            "engine_pct": sum(w["engine_cpu_pct"] for w in chosen) / max(1, len(chosen)),
            "poll_share": min((w["poll_share"] for w in chosen), default=math.nan),
            "lag_p99_ms": max((w["lag"]["p99_ms"] for w in chosen), default=math.nan),
            "lag_max_ms": max((w["lag"]["max_ms"] for w in chosen), default=math.nan),
            "rss_mb": max((w["rss_mb"] for w in chosen), default=math.nan),
            "alarm_us_per_change": sum(w.get("alarm_cpu_s", 0.0) for w in chosen) / changes * 1e6 if changes else 0.0,
        }
    a, b = figures["A"]["us_per_change"], figures["B"]["us_per_change"]
    figures["ratio"] = b / a if a and not math.isnan(a) else math.nan
    pairs = [windows[i : i + 2] for i in range(0, len(windows) - 1, 2)]
    figures["pair_ratios"] = [
        next(w for w in pair if w["phase"] == "B")["cpu_us_per_change"]
        / next(w for w in pair if w["phase"] == "A")["cpu_us_per_change"]
        for pair in pairs
        if {w["phase"] for w in pair} == {"A", "B"}
    ]
    return figures


# --- the report --------------------------------------------------------------------------------------------------


def met(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def summary_lines(sizes: Sequence[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    lines = [
        f"alarms bench (issue 9): {args.layout} layout, poll {args.poll_interval:g} s, change stride "
        f"{args.change_stride} (10.4 % of values per poll), 1 alarm per {args.points_per_alarm} points, "
        f"{args.rounds} x A/B windows of {args.seconds:g} s" + (" (experiment: --gc-freeze)" if args.gc_freeze else ""),
        "",
        f"{'points':>8} {'alarms':>7} | {'A µs/chg':>8} {'B µs/chg':>8} {'B/A':>5} {'goal<=1.25':>10} | "
        f"{'flood':>6} {'to client s':>11} {'goal<=2s':>8} | {'lag max':>7} {'p99':>5} {'goal<=100':>9} | "
        f"{'journal':>7} {'catch-up s':>10}",
    ]
    for size in sizes:
        plan = size.get("plan", {})
        cpu = size.get("cpu") or {}
        flood = size.get("flood") or {}
        if not cpu and not flood:
            lines.append(
                f"{plan.get('points', size['devices'] * args.points_per_device):>8,} failed: {size.get('error')}"
            )
            continue
        ratio = cpu.get("ratio", math.nan)
        lag = flood.get("lag", {})
        flood_ok = flood.get("all_arrived") and flood.get("flood_s", math.inf) <= GOAL_FLOOD_S if flood else None
        lag_ok = lag.get("max_ms", math.inf) <= GOAL_LAG_MS if flood else None
        lines.append(
            f"{plan.get('points', 0):>8,} {plan.get('alarms', 0):>7,} | "
            f"{fmt(cpu.get('A', {}).get('us_per_change'), '.2f'):>8} "
            f"{fmt(cpu.get('B', {}).get('us_per_change'), '.2f'):>8} {fmt(ratio, '.2f'):>5} "
            f"{met(ratio <= GOAL_RATIO if cpu else None):>10} | {flood.get('expected', 0):>6,} "
            f"{fmt(flood.get('flood_s'), '.2f'):>11} {met(flood_ok):>8} | {fmt(lag.get('max_ms'), '.0f'):>7} "
            f"{fmt(lag.get('p99_ms'), '.0f'):>5} {met(lag_ok):>9} | {flood.get('journal_rows', 0):>7,} "
            f"{fmt(flood.get('journal_s'), '.2f'):>10}"
        )
    for size in sizes:
        lines += ["", *size_detail_lines(size)]
    return lines


def size_detail_lines(size: dict[str, Any]) -> list[str]:
    plan = size.get("plan", {})
    lines = [f"{plan.get('points', 0):,} points, {plan.get('alarms', 0):,} alarms {plan.get('kinds', {})}"]
    if size.get("import"):
        imp = size["import"]
        lines.append(
            f"  load: points {imp.get('migrate_and_points_s', 0):.0f} s; importalarms "
            f"{imp.get('importalarms_s', 0):.1f} s ({imp.get('result', '')[-80:]})"
        )
    cpu = size.get("cpu")
    if cpu:
        for phase in "AB":
            p = cpu[phase]
            lines.append(
                f"  {phase}: engine {p['engine_pct']:.1f} % of a core, {p['cpu_s']:.1f} CPU s for {p['changes']:,.0f} "
                f"changed values = {p['us_per_change']:.2f} µs each; polls >= {p['poll_share'] * 100:.0f} % of plan; "
                f"loop lag p99 <= {fmt(p['lag_p99_ms'], '.1f')} ms, max {fmt(p['lag_max_ms'], '.0f')} ms; RSS "
                f"{fmt(p['rss_mb'])} MB"
            )
        lines.append(
            f"  ratio B/A {fmt(cpu['ratio'], '.3f')} (per A/B pair: "
            f"{', '.join(f'{r:.3f}' for r in cpu['pair_ratios'])}); alarm CPU added = "
            f"{fmt(cpu['B']['us_per_change'] - cpu['A']['us_per_change'], '.2f')} µs per changed "
            f"value; inside AlarmEngine.run_once in B: {cpu['B']['alarm_us_per_change']:.2f} µs per changed value "
            f"({cpu['B']['alarm_us_per_change'] / cpu['B']['us_per_change'] * 100:.1f} % of B's engine CPU)"
        )
        for w in size.get("windows", []):
            lines.append(
                f"    {w['phase']} window: engine {w['engine_cpu_pct']:.1f} %, node {w['node_cpu_pct']:.0f} %, host "
                f"{w['host_busy_pct']:.0f} %, {w['changes_per_s']:,.0f} changes/s, image seq "
                f"{w['image_seq_per_s']:,.0f}/s, {w['evaluations_per_s']:,.0f} evaluations/s, "
                f"{w['transitions']} transitions, {w['cpu_us_per_change']:.2f} µs/change; GC >= 1 ms: "
                f"{w.get('gc', {}).get('n', 0)} ({w.get('gc', {}).get('full_n', 0)} full, longest "
                f"{w.get('gc', {}).get('max_ms', 0):.0f} ms)"
            )
    for key in ("flood", "return_flood"):
        flood = size.get(key)
        if not flood:
            continue
        lines.append(
            f"  {flood['label']} flood of {flood['expected']:,}: writes {flood['write_s'] * 1000:.0f} ms; engine "
            f"{flood['engine_cpu_s']:.2f} CPU s in {flood['engine_cpu_window_s']:.1f} s; loop lag in the "
            f"{flood['lag_window_s']:.1f} s after the write: max {fmt(flood['lag']['max_ms'], '.0f')} ms, p99 "
            f"{fmt(flood['lag']['p99_ms'], '.1f')} ms, "
            f"{flood['lag']['over_50ms']} ticks > 50 ms, {flood['lag']['over_100ms']} > 100 ms; journal "
            f"{flood['journal_rows']:,} rows in {fmt(flood['journal_s'], '.2f')} s after the write "
            f"(dropped {flood['journal_dropped']}); transitions {flood['transitions']:,}"
        )
        pauses = flood.get("gc") or {}
        lines.append(
            f"    garbage collections >= 1 ms in that time: {pauses.get('n', 0)}, {pauses.get('ms', 0):.0f} ms in all, "
            f"longest {pauses.get('max_ms', 0):.0f} ms ({pauses.get('full_n', 0)} full, longest "
            f"{pauses.get('full_max_ms', 0):.0f} ms)"
        )
        for label, groups in flood.get("threads_cpu_s", {}).items():
            busy = ", ".join(f"{name} {value:.2f}" for name, value in sorted(groups.items(), key=lambda x: -x[1])[:5])
            lines.append(f"    CPU s by thread ({label}): {busy}")
        for c in flood["clients"]:
            lat = c["latency_ms"]
            lines.append(
                f"    {c['label']:<12} {c['arrived']:>6,}/{c['watched']:<6,} flood {fmt(c['flood_s'], '.2f')} s "
                f"(raise spread {fmt(c['raise_spread_s'], '.2f')} s), write -> all "
                f"{fmt(c['write_to_all_s'], '.2f')} s, "
                f"per alarm read -> client p50 {fmt(lat.get('50'), '.0f')} p99 {fmt(lat.get('99'), '.0f')} max "
                f"{fmt(lat.get('100'), '.0f')} ms"
            )
    for key in ("profile_steady", "profile_flood"):
        if size.get(key):
            lines += [f"  {key} ({size[key]['path']}):", size[key]["top"]]
    found = size.get("log_findings") or {}
    if found.get("lines") or found.get("tracebacks"):
        lines.append(f"  node log: {found['tracebacks']} tracebacks")
        lines += [f"    {count} x {line}" for line, count in found["lines"].items()]
    if size.get("error"):
        lines.append(f"  FAILED: {size['error'][:2000]}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[100], help="devices per size (default 100)")
    parser.add_argument("--points-per-device", type=int, default=1000, help="points per device (default 1000)")
    parser.add_argument("--points-per-alarm", type=int, default=5, help="one alarm per N points (default 5)")
    parser.add_argument("--seconds", type=float, default=60.0, help="each CPU window (default 60)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs, ordered A B B A ... (default 2)")
    parser.add_argument("--settle", type=float, default=15.0, help="s after a phase change (default 15)")
    # 60 s: see bench/logic.py (the start's trend samples are drained over 20-40 s)
    parser.add_argument("--warmup", type=float, default=60.0, help="s after the node is up (default 60)")
    parser.add_argument(
        "--layout",
        choices=("thread", "processes"),
        default="processes",
        help="node layout (default processes: what the product prescribes above 30,000 points)",
    )
    parser.add_argument("--poll-interval", type=float, default=1.0, help="device poll interval, s (default 1)")
    parser.add_argument("--change-stride", type=int, default=10, help="server changes every N-th register read")
    parser.add_argument("--per-server", type=int, default=25, help="devices per C server (default 25)")
    parser.add_argument("--device-timeout", type=float, default=2.0, help="s per Modbus request (default 2)")
    parser.add_argument("--flood-timeout", type=float, default=60.0, help="s to wait for a flood (default 60)")
    parser.add_argument("--apply-timeout", type=float, default=600.0, help="s for the engine to apply a change")
    parser.add_argument("--profile", type=float, default=0.0, help="s of cProfile of the engine loop (0: none)")
    parser.add_argument("--seed", type=int, default=9, help="random seed of the alarm placement")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.collect() + gc.freeze() in the node after start-up and each configuration change",
    )
    parser.add_argument(
        "--poll-spread",
        type=int,
        choices=(0, 1),
        default=0,
        help="BMS_POLL_SPREAD of the node: 1 spreads the devices' polls over the interval, 0 (the default, as the "
        "product's) polls all on one grid",
    )
    add_turn_budget_argument(parser)
    parser.add_argument("--serve-clients", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.points_per_device < 20 or args.per_server * math.ceil(args.points_per_device / 2) > 65536:
        parser.error("--points-per-device must be at least 20 and one server's devices must fit 65,536 registers")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_clients:
        asyncio.run(client_process(json.loads(os.environ["ALARMS_CLIENT_CONFIG"])))
        return 0
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    sizes: list[dict[str, Any]] = []
    began = time.monotonic()
    interrupted = False
    for devices in args.devices:
        print(f"size: {devices} devices x {args.points_per_device} points", flush=True)
        try:
            sizes.append(run_size(args, devices, stamp))
        except KeyboardInterrupt:
            sizes.append({"devices": devices, "error": "interrupted"})
            interrupted = True
            break
        except Exception as exc:
            sizes.append({"devices": devices, "error": f"{type(exc).__name__}: {exc}"})
    path = write_json("alarms", started, {"arguments": vars(args), "sizes": sizes, "seconds": time.monotonic() - began})
    lines = summary_lines(sizes, args)
    print()
    print(*lines, sep="\n")
    print(f"\nrun time {time.monotonic() - began:.0f} s; results: {path.relative_to(ROOT)}")
    return 1 if interrupted or any(size.get("error") for size in sizes) else 0


if __name__ == "__main__":
    sys.exit(main())
