"""Commands under concurrent load: N API writers against one node or a pair, every write checked at the device.

Run by hand from the repository root (PostgreSQL and Redis on loopback, as for the pair tests)::

    flock /tmp/bench.lock .venv/bin/python bench/command_load.py                  # node and pair, 1 and 4 devices
    flock /tmp/bench.lock .venv/bin/python bench/command_load.py --shapes pair --devices 4 --seconds 30
    .venv/bin/python bench/command_load.py --help

Method
------
One simulated building (``python -m drivers.simulator --write-log``: every Modbus write it receives is a line
of the log) and a template database loaded with the demo building plus ``--devices`` extra devices ``loadK``
on the same simulator (each its own connection, so its own driver with one request in flight), four writable
float32 points each, range 0..100,000 (one template for every case; a case with ``K`` devices writes to the
points of the first ``K``, the others are polled but not written). Per shape: ``node`` is main alone (active
after its start-up allowance, no partner: no barrier), ``pair`` is main and backup in the production shape (heartbeat
``--period-ms``/``--timeout-ms``, direct sync links; main active, backup standby and caught up: every command
waits for the standby's acknowledgement of its claim).

**Baseline, same run**: the raw device write rate, a pymodbus client writing two registers back to back on
the same simulator for ``--raw-seconds``, one connection per device at once (the ceiling of one request in
flight per device).

**Load**: ``--writers`` threads, each with its own keep-alive logged-in HTTP connection, POST
``/api/points/<point>/write`` back to back for ``--seconds``, writer ``i`` always on point ``i mod points``
(several writers share a point, so per-point order and planning are exercised), each command a unique
``command_id`` and a unique value. The API waits up to ``BMS_COMMAND_WAIT_SECONDS`` (3 s) for the outcome,
then answers 202 and the writer goes on. After the load, every command must be final on the active node.

**Figures**: commands/s succeeded (final ``succeeded`` / load seconds) and its ratio to the raw write rate;
submit-to-final latency p50/p99 from the command rows (``finished_at - created_at``, one node's clock); the
API answer time; statuses (``expired`` counted); and **exactly once at the device**: every ``succeeded``
command's value is in the write log exactly once, no other command's value is there at all, and no value is
there twice. Results also go to ``bench/results/command_load-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import tempfile
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

from bench.common import RESULTS_DIR, add_layout_argument, ratio, summarize, without_nan  # noqa: E402
from bench.stress import Http, post_write  # noqa: E402

POINTS_PER_DEVICE = 4
FIRST_REGISTER = 30  # the demo building uses holding registers 0-21; 30-93 are free (the table has 100)
RAW_REGISTER = 94  # the raw baseline writes here, never a point's register
FINAL = ("succeeded", "held", "failed", "unknown", "expired")


@dataclass(slots=True)
class Options:
    shapes: list[str]
    devices: list[int]
    writers: int
    seconds: float
    raw_seconds: float
    period_ms: int
    timeout_ms: int
    settle_seconds: float
    layout: str = "thread"


def point_names(devices: int) -> list[tuple[str, str, int]]:
    """``(device, point, register)`` of every load point."""
    return [
        (f"load{d}", f"load{d}_sp{p}", FIRST_REGISTER + 2 * (d * POINTS_PER_DEVICE + p))
        for d in range(devices)
        for p in range(POINTS_PER_DEVICE)
    ]


def add_devices(template: Any, devices: int) -> None:
    """Copy the demo device as ``loadK`` (same simulator, own connection) and import four points for each."""
    import psycopg

    from tests.support import services
    from tests.support.pair import base_env

    with psycopg.connect(services.database_url(template.name), autocommit=True) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'points_device' "
                "AND column_name NOT IN ('id', 'name') ORDER BY ordinal_position"
            )
        ]
        names = ", ".join(columns)
        for d in range(devices):
            conn.execute(
                f"INSERT INTO points_device (name, {names}) SELECT %s, {names} FROM points_device "
                "WHERE name = (SELECT name FROM points_device ORDER BY id LIMIT 1)",
                [f"load{d}"],
            )
        conn.execute("UPDATE points_device SET poll_interval = 1.0 WHERE name LIKE 'load%%'")
    rows = ["device,name,address,data_type,writable,min_value,max_value"]
    rows += [f"{device},{point},hr:{register},float32,yes,0,100000" for device, point, register in point_names(devices)]
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as csv:
        csv.write("\n".join(rows) + "\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "importpoints", csv.name],
        cwd=ROOT,
        env=base_env(template.name, "template"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    Path(csv.name).unlink()
    if result.returncode != 0:
        raise RuntimeError(f"importpoints failed:\n{result.stdout}\n{result.stderr}")


async def _raw_rate(port: int, connections: int, seconds: float) -> dict[str, float]:
    """Back-to-back two-register writes, one client per connection, all at once: writes/s in total."""
    from pymodbus.client import AsyncModbusTcpClient

    clients = [AsyncModbusTcpClient("127.0.0.1", port=port, retries=0) for _ in range(connections)]
    for client in clients:
        await client.connect()
    done = [0] * connections
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def run(index: int) -> None:
        client = clients[index]
        while time.monotonic() < stop:
            sent = time.monotonic()
            await client.write_registers(RAW_REGISTER, [index, done[index] & 0xFFFF], device_id=1)
            latencies.append((time.monotonic() - sent) * 1000)
            done[index] += 1

    started = time.monotonic()
    await asyncio.gather(*(run(i) for i in range(connections)))
    elapsed = time.monotonic() - started
    for client in clients:
        client.close()
    return {"writes_per_s": sum(done) / elapsed, "connections": connections, "ms": summarize(latencies)}


def raw_rate(port: int, connections: int, seconds: float) -> dict[str, float]:
    return asyncio.run(_raw_rate(port, connections, seconds))


def device_writes(write_log: Path, since: float) -> Counter:
    """How many times each (register, float32 value rounded to 0.001) reached the device since ``since``."""
    from tests.support.pair import read_writes

    counts: Counter = Counter()
    for write in read_writes(write_log, since):
        if write.table == "hr" and len(write.values) == 2 and FIRST_REGISTER <= write.address < RAW_REGISTER:
            value = struct.unpack(">f", struct.pack(">2H", *write.values))[0]
            counts[(write.address, round(value, 3))] += 1
    return counts


def load(port: int, cookie: str, csrf: str, points: list[tuple[str, str, int]], opts: Options) -> list[dict]:
    """``opts.writers`` threads writing back to back for ``opts.seconds``; every write's record."""
    records: list[dict] = []
    lock = threading.Lock()
    counters = Counter()
    prefix = uuid.uuid4().hex[:6]
    stop = time.monotonic() + opts.seconds
    start = threading.Barrier(opts.writers + 1)

    def writer(number: int) -> None:
        client = Http(port, cookie, csrf)
        _, point, register = points[number % len(points)]
        start.wait()
        mine = []
        while time.monotonic() < stop:
            with lock:
                counters[point] += 1
                index = counters[point]
            value = round(1 + index * 0.001, 3)  # unique per point: the device's log tells each command apart
            record = post_write(client, point, value, f"load-{prefix}-{number}-{index}")
            record["register"] = register
            mine.append(record)
        client.close()
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(opts.writers)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    return records


def tally(node: Any, records: list[dict], write_log: Path, since: float, seconds: float, settle: float) -> dict:
    from tests.support.processes import wait_until

    ids = [r["id"] for r in records]

    def rows() -> dict[str, dict]:
        found = node.query(
            "SELECT command_id, status, error, created_at, started_at, finished_at FROM control_command "
            "WHERE command_id LIKE 'load-%%'"
        )
        return {row["command_id"]: row for row in found}

    def final() -> dict | None:
        current = rows()
        return current if all(current[c]["status"] in FINAL for c in ids if c in current) else None

    try:
        found = wait_until(final, settle, 0.5, "every command final")
    except AssertionError:
        found = rows()
    device = device_writes(write_log, since)
    statuses: Counter = Counter()
    duplicates, missing, unasked, latencies = {}, [], {}, []
    asked = set()
    for record in records:
        row = found.get(record["id"])
        status = row["status"] if row else "not recorded"
        statuses[status] += 1
        key = (record["register"], round(record["value"], 3))
        asked.add(key)
        count = device.get(key, 0)
        if count > 1:
            duplicates[record["id"]] = count
        if status == "succeeded" and count == 0:
            missing.append(record["id"])
        if status not in ("succeeded", "unknown") and count:
            unasked[record["id"]] = f"{status}, written {count}x"
        if row and row["finished_at"] and status in FINAL:
            latencies.append((row["finished_at"] - row["created_at"]).total_seconds() * 1000)
    stray = sum(n for key, n in device.items() if key not in asked)
    succeeded = statuses.get("succeeded", 0)
    return {
        "submitted": len(records),
        "http": dict(Counter(str(r["http"]) for r in records)),
        "refused": dict(Counter(f"{r['http']} {r['refused']}" for r in records if r.get("refused"))),
        "statuses": dict(statuses),
        "succeeded_per_s": succeeded / seconds,
        "submit_to_final_ms": summarize(latencies),
        "api_ms": summarize([r["ms"] for r in records if r["http"] is not None]),
        "duplicates": len(duplicates),
        "missing": missing[:20],
        "not_succeeded_but_written": unasked,
        "stray_device_writes": stray,
        "exactly_once": not duplicates and not missing and not unasked and stray == 0,
    }


def run_case(shape: str, devices: int, opts: Options, template: Any, write_log: Path) -> dict[str, Any]:
    from tests.support.pair import Pair, PairOptions
    from tests.support.processes import HttpSession

    pair = None
    report: dict[str, Any] = {"shape": shape, "devices": devices}
    try:
        points = point_names(devices)  # the first ``devices`` of the template's load devices
        pair = Pair(
            template,
            write_log,
            PairOptions(
                period_ms=opts.period_ms,
                timeout_ms=opts.timeout_ms,
                startup_allowance_ms=500 if shape == "node" else None,
                split=opts.layout == "processes",
            ),
        )
        if shape == "node":
            pair.start("main")
            pair.wait_for_roles(60, main="active")
        else:
            pair.up()
        session = HttpSession(pair.main.base_url, "demo", "demo")
        time.sleep(2)  # the new devices' first polls (a write before its device is connected waits for it)
        since = time.time()
        print(f"  {shape}, {devices} device(s): {opts.writers} writers for {opts.seconds:g} s ...", flush=True)
        records = load(pair.main.web_port, session.cookie_header, session.csrf, points, opts)
        report |= tally(pair.main, records, write_log, since, opts.seconds, opts.settle_seconds)
        report["log"] = str(pair.main.log_path)
    finally:
        if pair is not None:
            pair.close()
    return report


def run(opts: Options) -> dict[str, Any]:
    from drivers.simulator.launch import SimulatorProcess
    from tests.support.pair import Template

    write_log = ROOT / "var" / "test-logs" / f"command-load-{uuid.uuid4().hex[:8]}.jsonl"
    write_log.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"options": asdict(opts), "cases": []}
    with write_log.with_suffix(".log").open("ab") as device_log:
        device = SimulatorProcess("--write-log", str(write_log), stderr=device_log)
    template = None
    try:
        report["raw"] = {str(n): raw_rate(device.port, n, opts.raw_seconds) for n in sorted({1, *opts.devices})}
        print(
            "raw device writes/s: " + ", ".join(f"{n} conn {r['writes_per_s']:.0f}" for n, r in report["raw"].items())
        )
        # One template for every case, with the most devices; a case writes to the points of its first few.
        template = Template(device.port)
        add_devices(template, max(opts.devices))
        for shape in opts.shapes:
            for devices in opts.devices:
                case = run_case(shape, devices, opts, template, write_log)
                case["ratio_to_raw"] = ratio(case["succeeded_per_s"], report["raw"][str(devices)]["writes_per_s"])
                report["cases"].append(case)
                print_case(case)
    finally:
        if template is not None:
            template.drop()
        device.stop()
    report["device_write_log"] = str(write_log)
    return report


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:,.{digits}f}"


def print_case(case: dict[str, Any]) -> None:
    lat, api = case["submit_to_final_ms"], case["api_ms"]
    refused = f", refused {case['refused']}" if case.get("refused") else ""
    print(
        f"  {case['shape']:>4} {case['devices']} dev: {case['submitted']} submitted, "
        f"{fmt(case['succeeded_per_s'])} succeeded/s ({fmt(case['ratio_to_raw'], 3)} of raw), "
        f"submit->final p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} ms, API p50 {fmt(api['p50'])} ms, "
        f"statuses {case['statuses']}{refused}, exactly once: {case['exactly_once']} "
        f"(duplicates {case['duplicates']}, missing {len(case['missing'])}, "
        f"not succeeded but written {len(case['not_succeeded_but_written'])}, stray {case['stray_device_writes']})",
        flush=True,
    )


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=("node", "pair"), default=["node", "pair"])
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 4], help="extra devices (4 points each)")
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    parser.add_argument("--period-ms", type=int, default=100)
    parser.add_argument("--timeout-ms", type=int, default=300)
    parser.add_argument("--settle-seconds", type=float, default=30.0)
    add_layout_argument(parser)
    args = parser.parse_args(argv)
    if max(args.devices) * POINTS_PER_DEVICE * 2 + FIRST_REGISTER > RAW_REGISTER:
        parser.error(f"at most {(RAW_REGISTER - FIRST_REGISTER) // (2 * POINTS_PER_DEVICE)} devices")
    return Options(**vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started = datetime.now(UTC)
    report = run(opts)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"command_load-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(without_nan(report), indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results: {path.relative_to(ROOT)}; device write log: {report['device_write_log']}")
    return 0 if all(case["exactly_once"] for case in report["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
