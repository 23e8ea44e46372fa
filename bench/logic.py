"""Logic (and schedules) at building scale (issue 12): engine CPU per changed value, input change -> command latency.

Run by hand from the repository root (PostgreSQL and Redis on loopback, as
for the system tests; libmodbus for the C device server)::

    flock /tmp/bench.lock .venv/bin/python bench/logic.py                   # 100,000 points, 5,000 rules, 500 schedules
    flock /tmp/bench.lock .venv/bin/python bench/logic.py --seconds 30 --rounds 1

Method
------
Field: ``--devices`` (100) Modbus devices of 1,000 points on
``bench/modbus_server.c`` servers (``bench/scale.py``'s layout: 500 holding
and 500 input registers per device, uint16; every 10th register of each
125-register read is incremented after answering, so 10.4 % of the values
change per poll; ``--poll-interval`` 1 s). Holding registers are writable
points. The probes (below) write registers the servers never change
(offset 5 of each ten); the other rules and the schedules write virtual
points (one ``virtual`` device, polled every ``--virtual-poll`` 10 s): their
commands take the whole command path (recorded, claimed, arbitrated,
written, finished) without a Modbus request each.

Rules (``--rules``, 5,000, 50 per device), inputs drawn at random (seeded)
from the device's 500 input registers (``--inputs any``: 10.4 % of them
change per poll, like every value; ``--inputs changing``: only the changing
ones, so every rule runs at every poll, the worst case):

* 70 % expressions, steady outputs: ``if(max({a}, {b}, {c}) > 65535, 1, 0)``
  and ``limit(avg({a}, {b}) - 70000, 0, 100)`` (cycle 10 s);
* 14 % PIDs (``pv`` an input, saturated: output steady; sample 1 s);
* 8 % rate limiters (cycle 1 s) and 8 % totalizers (cycle 5 s);
* ``--probes`` (10) of the expressions are **probes**: ``if({a} % 10 < 5, 1,
  0)``, a new output every fifth change of their input (every 5 s), so
  commands flow all the time (2 per second with 10 probes).

Schedules (``--schedules``, 500): each writes one virtual point (integer,
07:00 -> 21, 19:00 -> 16 every day, site time zone).

Node: one node, production shape, ``manage.py runbms`` (the engine on its
own thread; its CPU = the ``bms-engine`` and ``engine-db_N`` threads),
database ``bench_logic_<hex>``, ``bench/logic_hooks`` on its ``PYTHONPATH``
(``bench/alarms_hooks`` plus the logic engine's counters per second and,
per probe command, the change time of its input).

CPU: rules and schedules are loaded disabled; phase ``A`` = all disabled
(the baseline), ``B`` = all enabled (one ``UPDATE`` + revision bump; then
the bench waits until the command log has no pending command: enabling
makes every rule and schedule command its output once, a burst the
executor works through one command at a time, reported as ``burst``). The
phases run A B B A (``--rounds`` 2; drift cancels), each after ``--settle``
s, for a window of ``--seconds``. Figure: engine CPU µs per changed value, B
against A (sums over the windows); goal: at most +30 % (ratio <= 1.30).

Latency (in the B windows): per probe command, from the change time of its
input in the image (the poll answer that brought it) to the command row's
``finished_at`` (the device acknowledged the write: the command has left the
node), and to ``created_at`` (recorded in the command log). p50 and p99.

``--profile S``: after each window, S s of cProfile on the engine loop's
thread (by its CPU clock), printed by entry point and top functions, the
``.prof`` files beside the results: where B's excess goes.

Results go to ``bench/results/logic-<timestamp>.json``. Everything listens
on 127.0.0.1; servers, node and database are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.alarms import HookLog, cpu_figures, engine_cpu_pct, lag_summary, node_labels, profile  # noqa: E402
from bench.common import RESULTS_DIR, add_turn_budget_argument, percentile, without_nan  # noqa: E402
from bench.fanout import host_busy  # noqa: E402
from bench.scale import (  # noqa: E402
    DeviceLayout,
    DeviceServer,
    cpu_report,
    fmt,
    host_breakdown,
    host_processes_cpu,
    layout,
    log_findings,
    memory,
    offered_per_poll,
    requests_per_poll,
    sample,
)

HOST = "127.0.0.1"
HOOKS = ROOT / "bench" / "logic_hooks"
GOAL_RATIO = 1.30
#: ``--profile``: where the engine loop's time goes, by entry point (bench.alarms.profile_lines)
PROFILE_GROUPS = (
    ("logic passes (LogicEngine.run_once)", "bms/logic/engine.py", "run_once"),
    ("  of it: RuleRunner.evaluate", "bms/logic/runner.py", "evaluate"),
    ("  of it: LogicEngine._apply (states to the image, commands to the sink)", "bms/logic/engine.py", "_apply"),
    ("schedules (ScheduleEngine.run_due)", "bms/schedules/engine.py", "run_due"),
    ("command execution (CommandExecutor._execute)", "bms/engine/commands.py", "_execute"),
    ("polling (DevicePoller.poll_once)", "bms/engine/poller.py", "poll_once"),
    ("publishing (Publisher.flush: delta + channel layer)", "bms/engine/publisher.py", "flush"),
    ("  of it: ImageCursor.take_delta", "bms/engine/image.py", "take_delta"),
    ("trend sampling (TrendSampler.run_once)", "bms/trends/sampler.py", "run_once"),
    ("configuration reload (Engine.reload)", "bms/engine/runner.py", "reload"),
)


# --- the plan --------------------------------------------------------------------------------------------------


def changing(count: int) -> list[int]:
    """Offsets (0..count-1) of a table the C server changes: every 10th of each 125-register read."""
    return [i for i in range(count) if (i % 125) % 10 == 0]


def steady(count: int) -> list[int]:
    """Offsets it never changes, for the probes' outputs."""
    return [i for i in range(count) if (i % 125) % 10 in (5, 6)]


def plan(
    devices: Sequence[DeviceLayout], rules: int, schedules: int, probes: int, inputs: str, seed: int
) -> dict[str, Any]:
    """Points (device -> [[name, address, data type, writable]]), virtual outputs, rules and schedules (dicts)."""
    rng = random.Random(seed)
    points: dict[str, list[list[Any]]] = {}
    virtual: list[str] = []
    rule_rows: list[dict[str, Any]] = []
    schedule_rows: list[dict[str, Any]] = []
    per_rules, per_schedules = math.ceil(rules / len(devices)), math.ceil(schedules / len(devices))
    probe_every = max(1, len(devices) // max(1, probes)) if probes else 0

    def output() -> str:
        virtual.append(f"virt.o{len(virtual):05d}")
        return virtual[-1]

    for number, d in enumerate(devices):
        hr = [f"{d.name}.hr{i:04d}" for i in range(d.holding)]
        ir = [f"{d.name}.ir{i:04d}" for i in range(d.inputs)]
        points[d.name] = [[name, f"hr:{d.start + i}", "uint16", True] for i, name in enumerate(hr)] + [
            [name, f"ir:{d.start + i}", "uint16", False] for i, name in enumerate(ir)
        ]
        live = [ir[i] for i in changing(d.inputs)]
        pool = live if inputs == "changing" else ir

        def pick(pool: list[str] = pool) -> str:
            return rng.choice(pool)

        for k in range(per_rules):
            if len(rule_rows) >= rules:
                break
            name = f"r_{d.name}_{k:02d}"
            a, b, c = pick(), pick(), pick()
            share = k / per_rules
            if k == 0 and probe_every and number % probe_every == 0 and number // probe_every < probes:
                # a probe reads a changing input and writes a real device register the server never changes
                expression = f"if({{{rng.choice(live)}}} % 10 < 5, 1, 0)"
                row = {"name": f"probe_{d.name}", "kind": "expression", "expression": expression}
                rule_rows.append({"output": hr[steady(d.holding)[0]], "enabled": False, **row})
                continue
            if share < 0.70:
                expression = (
                    f"if(max({{{a}}}, {{{b}}}, {{{c}}}) > 65535, 1, 0)"
                    if k % 2
                    else f"limit(avg({{{a}}}, {{{b}}}) - 70000, 0, 100)"
                )
                row = {"name": name, "kind": "expression", "expression": expression, "cycle_time": 10.0}
            elif share < 0.84:
                row = {
                    "name": name,
                    "kind": "pid",
                    "inputs": {"pv": f"{{{a}}}", "sp": 0.0},
                    "params": {"kp": 0.5, "ki": 0.05, "out_min": 0, "out_max": 100, "sample_time": 1},
                }
            elif share < 0.92:
                row = {
                    "name": name,
                    "kind": "rate_limit",
                    "inputs": {"x": f"limit({{{a}}}, 0, 0) + 50"},
                    "params": {"rise": 10},
                }
            else:
                row = {
                    "name": name,
                    "kind": "totalizer",
                    "inputs": {"x": f"{{{a}}} * 0"},
                    "params": {"per": 3600},
                    "cycle_time": 5.0,
                }
            rule_rows.append({"output": output(), "enabled": False, **row})
        for k in range(per_schedules):
            if len(schedule_rows) >= schedules:
                break
            schedule_rows.append({"name": f"s_{d.name}_{k}", "target": output()})
    return {"points": points, "virtual": virtual, "rules": rule_rows, "schedules": schedule_rows}


# --- the node ---------------------------------------------------------------------------------------------------

#: run by ``manage.py shell -c``: devices, points, rules and schedules (disabled) from the plan, the revision
LOADER = """
import json, os
from django.db import transaction
from bms.logic.models import Rule
from bms.points.models import ConfigRevision, Device, Point
from bms.schedules.models import Schedule, ScheduleTarget
with open(os.environ["LOGIC_PLAN"]) as f:
    plan = json.load(f)
week = {day: [{"time": "07:00", "value": 21}, {"time": "19:00", "value": 16}]
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
with transaction.atomic():
    made = {}
    for d in plan["devices"]:
        made[d["name"]] = Device.objects.create(
            name=d["name"], driver="modbus", host="127.0.0.1", port=d["port"], unit_id=d["unit"],
            poll_interval=plan["poll_interval"], timeout=plan["timeout"], enabled=True)
    Point.objects.bulk_create(
        (Point(device=made[device], name=name, address=address, data_type=data_type, writable=writable)
         for device, rows in plan["points"].items() for name, address, data_type, writable in rows),
        batch_size=5000)
    virt = Device.objects.create(name="virt", driver="virtual", host="", poll_interval=plan["virtual_poll"],
                                 enabled=True)
    Point.objects.bulk_create(
        (Point(device=virt, name=name, address=name.split(".")[1], data_type="uint16", writable=True)
         for name in plan["virtual"]), batch_size=5000)
    rules = [Rule(**row) for row in plan["rules"]]
    for rule in rules[:3]:
        rule.full_clean()  # the kinds as the model checks them (all 5,000 would take minutes: neighbour checks)
    Rule.objects.bulk_create(rules, batch_size=1000)
    schedules = Schedule.objects.bulk_create(
        [Schedule(name=row["name"], enabled=False, value_type="integer", weekly=week) for row in plan["schedules"]])
    by_name = {p.name: p for p in Point.objects.filter(name__in=[row["target"] for row in plan["schedules"]])}
    ScheduleTarget.objects.bulk_create(
        ScheduleTarget(schedule=s, point=by_name[row["target"]], priority=16)
        for s, row in zip(schedules, plan["schedules"]))
    ConfigRevision.bump()
print(Device.objects.count(), Point.objects.count(), Rule.objects.count(), Schedule.objects.count())
"""

#: run by ``manage.py shell -c``: every rule and schedule enabled or disabled at once, one revision bump
TOGGLE = """
import os
from django.db import transaction
from bms.logic.models import Rule
from bms.points.models import ConfigRevision
from bms.schedules.models import Schedule
on = os.environ["LOGIC_ENABLED"] == "1"
with transaction.atomic():
    changed = Rule.objects.update(enabled=on) + Schedule.objects.update(enabled=on)
    ConfigRevision.bump()
print(changed)
"""


class LogicNode:
    """One node on its own database, loaded with the plan (rules and schedules disabled)."""

    def __init__(self, args: argparse.Namespace, devices: Sequence[DeviceLayout], the_plan: dict, work: Path) -> None:
        from tests.support.pair import admin, base_env

        self.args = args
        self.db_name = f"bench_logic_{uuid.uuid4().hex[:8]}"
        self.hook_path = work / "hook.log"
        self.logic_path = work / "logic.log"
        self.log_path = work / "node.log"
        self.processes: list[subprocess.Popen] = []
        admin(f'CREATE DATABASE "{self.db_name}"')
        self.env = base_env(self.db_name, "logic") | {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
            "BENCH_ALARMS_HOOK": str(self.hook_path),
            "BENCH_LOGIC_HOOK": str(self.logic_path),
            "PYTHONUNBUFFERED": "1",
            "BMS_TURN_BUDGET_MS": f"{args.turn_budget_ms:g}",
        }
        plan_file = work / "plan.json"
        plan_file.write_text(
            json.dumps(
                {
                    "poll_interval": args.poll_interval,
                    "virtual_poll": args.virtual_poll,
                    "timeout": args.device_timeout,
                    "devices": [{"name": d.name, "port": d.port, "unit": d.unit} for d in devices],
                    **the_plan,
                }
            )
        )
        began = time.monotonic()
        self.manage("migrate", "--verbosity", "0")
        self.loaded = self.manage("shell", "-c", LOADER, extra={"LOGIC_PLAN": str(plan_file)}).split()[-4:]
        self.load_s = time.monotonic() - began

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

    def start(self) -> None:
        from tests.support.net import free_port, wait_for_port
        from tests.support.processes import spawn_node

        port = free_port()
        self.processes = spawn_node(port, self.args.layout == "processes", self.env, self.log_path)
        wait_for_port(port, 300)

    def labels(self) -> dict[str, int]:
        return node_labels(self.args.layout, self.processes)

    def set_enabled(self, enabled: bool) -> int:
        return int(self.manage("shell", "-c", TOGGLE, extra={"LOGIC_ENABLED": "1" if enabled else "0"}).split()[-1])

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        import psycopg

        from tests.support import services

        with psycopg.connect(services.database_url(self.db_name), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        import signal

        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def drop(self) -> None:
        from tests.support.pair import admin

        admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


class LogicLog:
    """The node's logic hook file: ``R`` counters per second, ``C`` change times of probe commands."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.stats: list[tuple[float, dict[str, Any]]] = []
        self.changes: dict[str, int] = {}  # command id -> input change time, µs since 1970

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
            first, _, body = rest.partition(" ")
            try:
                if kind == "R":
                    self.stats.append((float(first), json.loads(body)))
                elif kind == "C":
                    self.changes[first] = int(body)
            except ValueError:
                continue

    def at(self, moment: float) -> dict[str, Any]:
        found = self.stats[0][1] if self.stats else {}
        for at, stats in self.stats:
            if at > moment:
                break
            found = stats
        return found

    def wait_for(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            stats = self.stats[-1][1] if self.stats else {}
            if stats and predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the engine did not get to {what} within {timeout:.0f} s (last counters {stats})")
            time.sleep(0.5)


# --- measuring ---------------------------------------------------------------------------------------------------


def measure_window(
    phase: str,
    args: argparse.Namespace,
    node: LogicNode,
    servers: Sequence[DeviceServer],
    hook: HookLog,
    logic: LogicLog,
    requests: int,
) -> dict[str, Any]:
    """One CPU window of ``args.seconds``; ``requests``: Modbus read requests one poll of every device takes."""
    labels = node.labels()
    start = time.monotonic()
    wall_start = time.time()
    first, host0, everyone0 = sample(labels), host_busy(), host_processes_cpu()
    time.sleep(args.seconds)
    last, host1, everyone1 = sample(labels), host_busy(), host_processes_cpu()
    end = time.monotonic()
    seconds = end - start
    processes, threads = cpu_report(first, last)
    engine_pct = engine_cpu_pct(args.layout, processes, threads)
    shift = args.poll_interval  # a change is made when a register is read and seen at the next poll
    offered = sum(s.at(end - shift)[1] - s.at(start - shift)[1] for s in servers)
    reads = sum(s.at(end)[0] - s.at(start)[0] for s in servers)
    time.sleep(1.5)
    hook.poll()
    logic.poll()
    l0, l1 = logic.at(start), logic.at(end)
    engine_cpu_s = engine_pct / 100 * seconds
    window = {
        "phase": phase,
        "seconds": seconds,
        "wall": (wall_start, wall_start + seconds),
        "engine_cpu_pct": engine_pct,
        "engine_cpu_s": engine_cpu_s,
        "threads_pct": threads,
        "host_busy_pct": (host1[0] - host0[0]) / max(1, host1[1] - host0[1]) * 100 * (os.cpu_count() or 1),
        "host_by_kind_pct": host_breakdown(everyone0, everyone1, seconds),
        "changes": offered,
        "changes_per_s": offered / seconds,
        "cpu_us_per_change": engine_cpu_s / offered * 1e6 if offered else math.nan,
        "poll_share": reads / seconds / (requests / args.poll_interval),
        "rules": l1.get("rules", 0),
        "evaluations_per_s": (l1.get("evaluations", 0) - l0.get("evaluations", 0)) / seconds,
        "commands_per_s": (l1.get("commands", 0) - l0.get("commands", 0)) / seconds,
        "passes_per_s": (l1.get("slices", 0) - l0.get("slices", 0)) / seconds,
        "logic_cpu_s": l1.get("cpu_seconds", 0.0) - l0.get("cpu_seconds", 0.0),
        "lag": lag_summary(hook.lags_ms(start, end)),
        "gc": hook.gc_pauses(start, end),
        "rss_mb": memory(node.processes[0].pid)[0],
    }
    print(
        f"    {phase}: engine {engine_pct:5.1f} % = {window['cpu_us_per_change']:.2f} µs CPU per changed value "
        f"({window['changes_per_s']:,.0f} changes/s, {window['evaluations_per_s']:,.0f} rule runs/s, "
        f"{window['commands_per_s']:.1f} commands/s, {window['passes_per_s']:.0f} logic passes/s, "
        f"{window['logic_cpu_s']:.2f} s CPU, "
        f"polls {window['poll_share'] * 100:.0f} % of plan), "
        f"loop lag p99 {fmt(window['lag']['p99_ms'], '.1f')} max {fmt(window['lag']['max_ms'], '.0f')} ms, "
        f"host {window['host_busy_pct']:.0f} %",
        flush=True,
    )
    kinds = ", ".join(f"{kind} {pct:.1f}" for kind, pct in window["host_by_kind_pct"].items() if pct >= 0.5)
    print(f"       host by process, % of one core: {kinds}", flush=True)
    return window


def set_phase(
    node: LogicNode, logic: LogicLog, enabled: bool, rules: int, args: argparse.Namespace
) -> tuple[float, dict[str, Any]]:
    """Enable or disable every rule and schedule; return (seconds until the engine ran them, the command burst)."""
    began = time.monotonic()
    since = datetime.now(UTC)
    node.set_enabled(enabled)
    want = rules if enabled else 0
    logic.wait_for(lambda s: s.get("rules") == want and s.get("waiting", 0) == 0, args.apply_timeout, f"{want} rules")
    took = time.monotonic() - began
    deadline = time.monotonic() + args.apply_timeout
    while node.query("SELECT count(*) FROM control_command WHERE status IN ('pending', 'executing')")[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError("the command backlog did not drain")
        time.sleep(1.0)
    rows = node.query("SELECT status, count(*) FROM control_command WHERE created_at >= %s GROUP BY status", [since])
    burst = {"statuses": dict(rows), "drained_s": time.monotonic() - began}
    return took, burst


def latencies(node: LogicNode, logic: LogicLog, windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Probe commands made in the B windows: input change -> recorded, -> the device answered the write."""
    logic.poll()
    spans = [w["wall"] for w in windows if w["phase"] == "B"]
    rows = node.query(
        "SELECT command_id, created_at, finished_at, status FROM control_command WHERE command_id LIKE 'logic:probe%%'"
    )
    recorded, sent, statuses = [], [], {}
    for command_id, created, finished, status in rows:
        statuses[status] = statuses.get(status, 0) + 1
        changed_us = logic.changes.get(command_id)
        if changed_us is None:
            continue
        changed = changed_us / 1e6
        if not any(begin <= changed <= end for begin, end in spans):
            continue
        recorded.append((created.timestamp() - changed) * 1000)
        if finished is not None and status == "succeeded":
            sent.append((finished.timestamp() - changed) * 1000)
    return {
        "commands": len(recorded),
        "statuses": statuses,
        "recorded_ms": {"p50": percentile(recorded, 50), "p99": percentile(recorded, 99)},
        "sent_ms": {
            "n": len(sent),
            "p50": percentile(sent, 50),
            "p99": percentile(sent, 99),
            "max": max(sent, default=math.nan),
        },
    }


def run(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    from bench.modbus_poll import build_server

    out: dict[str, Any] = {"steps": {}}
    servers: list[DeviceServer] = []
    node: LogicNode | None = None
    began = time.monotonic()
    work = ROOT / "var" / "bench-logic" / stamp
    work.mkdir(parents=True, exist_ok=True)

    def step(name: str) -> None:
        out["steps"][name] = round(time.monotonic() - began, 1)
        print(f"  [{out['steps'][name]:7.1f} s] {name}", flush=True)

    try:
        binary = build_server()
        servers = [DeviceServer(binary, 10, 100) for _ in range(math.ceil(args.devices / args.per_server))]
        devices = layout(args.devices, args.points_per_device, args.per_server, [s.port for s in servers])
        the_plan = plan(devices, args.rules, args.schedules, args.probes, args.inputs, args.seed)
        points = sum(len(p) for p in the_plan["points"].values()) + len(the_plan["virtual"])
        rules, schedules = len(the_plan["rules"]), len(the_plan["schedules"])
        out["plan"] = {
            "points": points,
            "rules": rules,
            "schedules": schedules,
            "probes": sum(row["name"].startswith("probe") for row in the_plan["rules"]),
            "kinds": {
                k: sum(row["kind"] == k for row in the_plan["rules"])
                for k in ("expression", "pid", "rate_limit", "totalizer")
            },
            "requests_per_poll": requests_per_poll(devices),
            "offered_per_poll": offered_per_poll(devices, 10),
        }
        step(f"{len(servers)} C servers; plan {out['plan']}; loading")
        node = LogicNode(args, devices, the_plan, work)
        out["node"] = {
            "database": node.db_name,
            "log": str(node.log_path),
            "loaded": node.loaded,
            "load_s": node.load_s,
        }
        step(f"database {node.db_name}: devices, points, rules, schedules {node.loaded} in {node.load_s:.0f} s")
        node.start()
        hook = HookLog(node.hook_path)
        logic = LogicLog(node.logic_path)
        hook.wait_for(lambda s: s.get("points", 0) >= points, args.apply_timeout, f"{points:,} points in the image")
        step(f"node up; warm-up {args.warmup:g} s")
        time.sleep(args.warmup)
        windows = []
        enabled = False
        for phase in "".join("AB" if r % 2 == 0 else "BA" for r in range(args.rounds)):
            want = phase == "B"
            if want != enabled:
                took, burst = set_phase(node, logic, want, rules, args)
                enabled = want
                out.setdefault("bursts", []).append(burst)
                step(
                    f"rules and schedules {'enabled' if want else 'disabled'}: the engine applied it in {took:.1f} s; "
                    f"commands {burst['statuses']}, drained after {burst['drained_s']:.0f} s"
                )
            time.sleep(args.settle)
            windows.append(measure_window(phase, args, node, servers, hook, logic, out["plan"]["requests_per_poll"]))
            if args.profile > 0:
                path = RESULTS_DIR / f"logic-{stamp}-{len(windows)}{phase}.prof"
                text, _ = profile(node, hook, args.profile, path, groups=PROFILE_GROUPS)
                out.setdefault("profiles", []).append({"phase": phase, "path": str(path), "top": text})
                print(text, flush=True)
        out["windows"] = windows
        out["cpu"] = cpu_figures(windows)
        out["latency"] = latencies(node, logic, windows)
        step("done")
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        print(f"  FAILED: {out['error'][:2000]}", flush=True)
    finally:
        if node is not None:
            node.stop()
            out["log_findings"] = log_findings(node.log_path)
            if not args.keep:
                node.drop()
        for server in servers:
            server.stop()
    return out


def summary_lines(out: dict[str, Any], args: argparse.Namespace) -> list[str]:
    if "cpu" not in out:
        return [f"no figures: {out.get('error')}"]
    cpu, lat = out["cpu"], out.get("latency", {})
    plan_info = out["plan"]
    ratio = cpu["ratio"]
    sent = lat.get("sent_ms", {})
    return [
        f"logic bench: {plan_info['points']:,} points, {plan_info['rules']:,} rules {plan_info['kinds']}, "
        f"{plan_info['schedules']} schedules, poll {args.poll_interval:g} s",
        f"  engine CPU per changed value: A (none) {cpu['A']['us_per_change']:.2f} µs, "
        f"B (rules + schedules) {cpu['B']['us_per_change']:.2f} µs",
        f"  ratio B/A {ratio:.3f} (+{(ratio - 1) * 100:.1f} %); goal <= {GOAL_RATIO:.2f}: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}",
        f"  pair ratios {[round(r, 3) for r in cpu['pair_ratios']]}; polls kept up: A {cpu['A']['poll_share']:.0%}, "
        f"B {cpu['B']['poll_share']:.0%} of the plan (the least of the windows)",
        f"  loop lag p99 A {fmt(cpu['A']['lag_p99_ms'], '.1f')} ms, B {fmt(cpu['B']['lag_p99_ms'], '.1f')} ms; "
        f"max A {fmt(cpu['A']['lag_max_ms'], '.0f')} ms, B {fmt(cpu['B']['lag_max_ms'], '.0f')} ms",
        f"  input change -> command recorded: p50 {fmt(lat.get('recorded_ms', {}).get('p50'), '.1f')} ms, "
        f"p99 {fmt(lat.get('recorded_ms', {}).get('p99'), '.1f')} ms ({lat.get('commands', 0)} probe commands)",
        f"  input change -> written to the device (left the node): p50 {fmt(sent.get('p50'), '.1f')} ms, "
        f"p99 {fmt(sent.get('p99'), '.1f')} ms, max {fmt(sent.get('max'), '.0f')} ms; "
        f"p50 = {sent.get('p50', math.nan) / (args.poll_interval * 1000):.3f} of the poll interval",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100, help="devices of --points-per-device (default 100)")
    parser.add_argument("--points-per-device", type=int, default=1000)
    parser.add_argument("--layout", choices=("thread", "processes"), default="thread", help="node layout")
    add_turn_budget_argument(parser)
    parser.add_argument("--rules", type=int, default=5000, help="logic rules (default 5000)")
    parser.add_argument("--schedules", type=int, default=500, help="schedules (default 500)")
    parser.add_argument("--probes", type=int, default=10, help="rules that command on every change (default 10)")
    parser.add_argument("--seconds", type=float, default=45.0, help="each CPU window (default 45)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs, ordered A B B A ... (default 2)")
    parser.add_argument("--settle", type=float, default=10.0, help="s after a phase change (default 10)")
    # 60 s: a node's first seconds sample every point for the trends (100,000 samples, spooled and drained over
    # 20-40 s); a first A window inside that read 53 µs against 30 µs for the last one of the same run
    parser.add_argument("--warmup", type=float, default=60.0, help="s after the node is up (default 60)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="device poll interval, s (default 1)")
    parser.add_argument("--per-server", type=int, default=25, help="devices per C server (default 25)")
    parser.add_argument("--device-timeout", type=float, default=2.0)
    parser.add_argument("--apply-timeout", type=float, default=600.0, help="s for the engine to apply a change")
    parser.add_argument(
        "--inputs",
        choices=("any", "changing"),
        default="any",
        help="rule inputs drawn from all input registers (10 %% change per poll) or only from changing ones",
    )
    parser.add_argument("--virtual-poll", type=float, default=10.0, help="poll interval of the virtual outputs, s")
    parser.add_argument("--seed", type=int, default=12, help="random seed of the input placement")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--profile", type=float, default=0.0, help="s of cProfile of the engine loop after each window (0: none)"
    )
    return parser.parse_args(argv)


def write_results(started: datetime, document: dict[str, Any]) -> Path:
    """``bench/results/logic-<timestamp>.json``; like bench.common.write_json, without asking git for the commit
    (the bench runs in a tree other sessions work in: the reviewer records the commit)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"logic-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    environment = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "load": os.getloadavg()}
    body = {"benchmark": "logic", "started": started.isoformat(), "environment": environment, **document}
    path.write_text(json.dumps(without_nan(body), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    began = time.monotonic()
    try:
        out = run(args, stamp)
    except KeyboardInterrupt:
        out = {"error": "interrupted"}
    path = write_results(started, {"arguments": vars(args), **out, "seconds": time.monotonic() - began})
    print()
    print(*summary_lines(out, args), sep="\n")
    print(f"\nrun time {time.monotonic() - began:.0f} s; results: {path.relative_to(ROOT)}")
    return 1 if out.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
