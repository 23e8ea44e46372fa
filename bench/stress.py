"""Web load against a real pair: polling, heartbeats and the engine loop must not suffer from it.

Run by hand from the repository root (PostgreSQL and Redis on loopback, as for the pair tests)::

    .venv/bin/python bench/stress.py                                   # 60 s quiet, then 60 s loaded: ~3 min
    .venv/bin/python bench/stress.py --seconds 20 --quiet-seconds 20   # shorter (the windows then overlap)
    .venv/bin/python bench/stress.py --ws-clients 100 --writers 10 --pages-per-second 5

Method
------
One simulated building with a write log and a template database, as in
``bench/pair_scenarios.py``; one pair from :mod:`tests.support.pair` in the
production shape (a PostgreSQL database per node, Redis, ``manage.py runbms``
per node), heartbeat period ``--period-ms`` (100) and timeout ``--timeout-ms``
(300), sync links direct (no proxy). After the cold start (main active, backup
standby and caught up):

1. **quiet**: nothing but the pair and the building for ``--quiet-seconds``; then both nodes' ``/metrics``
   are read (engine loop lag and heartbeat jitter over the nodes' own 60 s windows), and a short sequential
   baseline of API writes and page loads is timed;
2. **loaded** for ``--seconds``, from two client processes started together (so the bench itself is not the
   bottleneck): ``--ws-clients`` websocket clients logged in on the active node's ``/ws/live/`` (asyncio and
   ``websockets``, one process, at most ``--ws-ramp`` handshakes at once, reconnecting after an unexpected
   close), and in the other ``--writers`` concurrent API writers (``POST /api/points/<zone>_setpoint/write``,
   each command with a unique id and a unique value, back to back) plus ``--pages-per-second`` page loads
   (``/points/``, ``/events/``, ``/redundancy/`` in turn, open loop) with a logged-in session, keep-alive;
3. at the end of the load both nodes' ``/metrics`` are read again, then every command must be final on the
   active node; the figures: takeovers (role changes recorded by either node, epoch and role of both
   nodes before and after, ``bms_redundancy_failovers_total``), loop lag and heartbeat jitter per node
   next to the quiet ones (goal: p99 < 50 ms), every write executed exactly once (the device's write log
   against the command rows: a value written twice is a duplicate, a success never written is missing),
   API write and page load latency, websocket clients connected and frames received, CPU seconds of each
   process during the load, and what the node logs say (tracebacks, errors, warnings).

The nodes' windows are 60 s long: with ``--seconds`` or ``--quiet-seconds`` under 60 the figures of a phase
include the end of the one before. Results also go to ``bench/results/stress-<timestamp>.json``; node logs
stay under ``var/test-logs/``. Everything listens on 127.0.0.1 and is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import add_layout_argument, ratio, summarize, write_json  # noqa: E402

POINTS = ("zone1_setpoint", "zone2_setpoint", "zone3_setpoint", "zone4_setpoint")
PAGES = ("/points/", "/events/", "/redundancy/")
VALUE_LOW, VALUE_STEP, VALUES_PER_POINT = 15.0, 0.001, 12_900  # loaded writes: 15.000 upwards (range 15..28)
BASELINE_HIGH = 28.0  # baseline writes: 27.999 downwards, never one of the load's values
GOAL_MS = 50.0
OPEN = ("pending", "executing")


@dataclass(slots=True)
class Options:
    seconds: float
    quiet_seconds: float
    ws_clients: int
    ws_ramp: int
    writers: int
    pages_per_second: float
    period_ms: int
    timeout_ms: int
    baseline_requests: int
    settle_seconds: float
    layout: str = (
        "thread"  # thread: runbms per node (engine on its own thread); processes: runengine + runbms --no-engine
    )


# --- HTTP with a shared logged-in session (both the bench and the HTTP client process) ----------------------------


class Http:
    """One keep-alive connection to a node with a session cookie; reconnects after an error."""

    def __init__(self, port: int, cookie: str, csrf: str, timeout: float = 30.0) -> None:
        self.port, self.timeout = port, timeout
        self.headers = {"Cookie": cookie, "X-CSRFToken": csrf, "Referer": f"http://127.0.0.1:{port}/"}
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except Exception:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, data

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def write_value(index: int) -> float:
    return round(VALUE_LOW + index * VALUE_STEP, 3)


def baseline_value(index: int) -> float:
    return round(BASELINE_HIGH - (index + 1) * VALUE_STEP, 3)


def post_write(client: Http, point: str, value: float, command_id: str) -> dict[str, Any]:
    """POST one write; what came back and how long it took (``http`` None: no answer)."""
    body = json.dumps({"value": value, "command_id": command_id}).encode()
    sent = time.monotonic()
    record: dict[str, Any] = {"id": command_id, "point": point, "value": value, "at": time.time()}
    try:
        status, data = client.request("POST", f"/api/points/{point}/write", body)
    except Exception as exc:
        record.update(http=None, error=f"{type(exc).__name__}: {exc}"[:200])
    else:
        record["http"] = status
        with contextlib.suppress(ValueError, AttributeError):
            answer = json.loads(data)
            record["status"] = answer.get("status")
            if status >= 400:  # why it was refused: the API's error code, else its message
                reason = str(answer.get("error") or answer.get("code") or answer.get("detail"))[:120]
                record["refused"] = f"{reason} (node {answer['role']})" if answer.get("role") else reason
    record["ms"] = (time.monotonic() - sent) * 1000
    return record


def get_page(client: Http, path: str) -> dict[str, Any]:
    sent = time.monotonic()
    record: dict[str, Any] = {"path": path}
    try:
        status, data = client.request("GET", path)
    except Exception as exc:
        record.update(http=None, error=f"{type(exc).__name__}: {exc}"[:200])
    else:
        record.update(http=status, bytes=len(data))
    record["ms"] = (time.monotonic() - sent) * 1000
    return record


# --- the client processes -----------------------------------------------------------------------------------------


def wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")


def http_load(config: dict[str, Any]) -> dict[str, Any]:
    """Writers back to back and paced page loads on the active node, for ``seconds``."""
    port, cookie, csrf = config["port"], config["cookie"], config["csrf"]
    seconds, prefix = config["seconds"], config["prefix"]
    counters = dict.fromkeys(POINTS, 0)
    lock = threading.Lock()
    writes: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    exhausted: list[str] = []
    wait_for_go()
    started = time.monotonic()
    stop_at = started + seconds

    def next_value(point: str) -> float | None:
        with lock:
            index = counters[point]
            if index >= VALUES_PER_POINT:
                return None
            counters[point] = index + 1
        return write_value(index)

    def writer(number: int) -> None:
        client, point, k = Http(port, cookie, csrf), POINTS[number % len(POINTS)], 0
        while time.monotonic() < stop_at:
            value = next_value(point)
            if value is None:
                exhausted.append(point)
                return
            record = post_write(client, point, value, f"{prefix}-w{number}-{k}")
            k += 1
            writes.append(record)
            if record["http"] is None:
                time.sleep(0.1)
        client.close()

    tickets: queue.Queue[tuple[float, str] | None] = queue.Queue()

    def page_worker() -> None:
        client = Http(port, cookie, csrf)
        while (ticket := tickets.get()) is not None:
            due, path = ticket
            record = get_page(client, path)
            record["queued_ms"] = max(0.0, (time.monotonic() - record["ms"] / 1000 - due) * 1000)
            pages.append(record)
        client.close()

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(config["writers"])]
    workers = [threading.Thread(target=page_worker, daemon=True) for _ in range(config["page_workers"])]
    for thread in threads + workers:
        thread.start()
    rate, n = config["pages_per_second"], 0
    while rate > 0:
        due = started + n / rate
        if due >= stop_at:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        tickets.put((due, PAGES[n % len(PAGES)]))
        n += 1
    for _ in workers:
        tickets.put(None)
    for thread in threads + workers:
        thread.join(60)
    return {
        "seconds": time.monotonic() - started,
        "writes": writes,
        "pages": pages,
        "pages_scheduled": n,
        "exhausted": sorted(set(exhausted)),
        "cpu_s": time.process_time(),
    }


TYPE = re.compile(r'"type":\s*"(\w+)"')


async def ws_load(config: dict[str, Any]) -> dict[str, Any]:
    """``clients`` websocket clients on ``url`` for ``seconds``: handshakes, frames, closes and errors."""
    import websockets

    url, headers, origin = config["url"], {"Cookie": config["cookie"]}, config["origin"]
    count, seconds = config["clients"], config["seconds"]
    wait_for_go()
    loop = asyncio.get_running_loop()
    started = loop.time()
    stop_at = started + seconds
    gate = asyncio.Semaphore(config["ramp"])
    open_now: set[Any] = set()
    frames = [0] * count
    stats: dict[str, Any] = {
        "handshake_ms": [],
        "first_frame_ms": [],
        "types": Counter(),
        "closes": Counter(),
        "errors": Counter(),
        "bytes": 0,
        "ever": 0,
        "peak": 0,
        "connections": 0,
        "all_connected_s": None,
        "ends": [],
    }
    connected_once: set[int] = set()

    async def client(number: int) -> None:
        while loop.time() < stop_at:
            try:
                async with gate:
                    began = loop.time()
                    connection = await websockets.connect(
                        url,
                        origin=origin,
                        additional_headers=headers,
                        compression=None,
                        proxy=None,
                        max_size=None,
                        open_timeout=30,
                    )
                stats["handshake_ms"].append((loop.time() - began) * 1000)
            except Exception as exc:
                stats["errors"][f"connect: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                await asyncio.sleep(1.0)
                continue
            stats["connections"] += 1
            open_now.add(connection)
            stats["peak"] = max(stats["peak"], len(open_now))
            if number not in connected_once:
                connected_once.add(number)
                stats["ever"] = len(connected_once)
                if stats["ever"] == count:
                    stats["all_connected_s"] = loop.time() - started
            first, reason = True, "?"
            try:
                async for message in connection:
                    frames[number] += 1
                    stats["bytes"] += len(message)
                    kind = TYPE.search(message[:80] if isinstance(message, str) else "")
                    stats["types"][kind.group(1) if kind else "?"] += 1
                    if first:
                        stats["first_frame_ms"].append((loop.time() - began) * 1000)
                        first = False
                reason = f"server closed {connection.close_code}"
                if loop.time() < stop_at:
                    stats["closes"][reason] += 1
            except websockets.ConnectionClosed as exc:
                reason = f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
                if loop.time() < stop_at:
                    stats["closes"][reason] += 1
            except Exception as exc:
                reason = f"read: {type(exc).__name__}"
                stats["errors"][f"read: {type(exc).__name__}: {str(exc)[:80]}"] += 1
            except BaseException:
                reason = "cancelled"
                raise
            finally:
                open_now.discard(connection)
                # every end of a connection, also after the load (s after the start): the open count's check
                stats["ends"].append([round(loop.time() - started, 2), reason])
            if loop.time() < stop_at:
                await asyncio.sleep(1.0)  # reconnect, as a browser page would

    tasks = [asyncio.create_task(client(n)) for n in range(count)]
    await asyncio.sleep(max(0.0, stop_at - loop.time()))
    at_end = len(open_now)
    await asyncio.gather(*(c.close() for c in list(open_now)), return_exceptions=True)
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    return {
        "seconds": loop.time() - started,
        "clients": count,
        "connected_at_end": at_end,
        "seconds_planned": seconds,
        "frames": frames,
        **{key: dict(value) if isinstance(value, Counter) else value for key, value in stats.items()},
        "cpu_s": time.process_time(),
    }


def run_child(kind: str, config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    result = asyncio.run(ws_load(config)) if kind == "ws" else http_load(config)
    Path(config["out"]).write_text(json.dumps(result))
    print("done", flush=True)


class Child:
    """A client process of this file (``--child ws|http``): started, told to go, its result read back."""

    def __init__(self, kind: str, config: dict[str, Any], workdir: Path) -> None:
        self.kind = kind
        self.out = workdir / f"{kind}-result.json"
        path = workdir / f"{kind}-config.json"
        path.write_text(json.dumps(config | {"out": str(self.out)}))
        self.log = (workdir / f"{kind}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, "--config", str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the {kind} client did not start: {line!r} (see {self.log.name})")

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return {"error": f"the {self.kind} client did not finish within {timeout:.0f} s"}
        if self.process.returncode != 0 or not self.out.exists():
            return {"error": f"the {self.kind} client failed ({self.process.returncode}); see {self.log.name}"}
        return json.loads(self.out.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


# --- reading the nodes --------------------------------------------------------------------------------------------

SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            families.setdefault(match[1], []).append((dict(LABEL.findall(match[2] or "")), float(match[3])))
    return families


def metric(families: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float | None:
    for sample_labels, value in families.get(name, []):
        if all(sample_labels.get(key) == wanted for key, wanted in labels.items()):
            return value
    return None


def timing(node: Any, deadline_s: float = 3.0) -> dict[str, Any]:
    """The node's timing figures from its ``/metrics`` (retried while its status row is not fresh).

    ``/metrics`` is served by the web side, which a heavy load can starve (no pooled database connection within
    the pool's timeout): then the same figures are read from the node's status row in its database, written by
    the pair service (``source`` says which, ``row_age_s`` how old that row was: older than the heartbeat
    timeout means the pair service itself could not write it, and the figures describe the time before).
    """
    deadline = time.monotonic() + deadline_s
    attempts, families, failure = 0, {}, None
    while True:
        attempts += 1
        try:
            client = Http(node.web_port, "", "", timeout=10)
            status, body = client.request("GET", "/metrics")
            client.close()
            if status == 200:
                families = parse_metrics(body.decode())
                if "bms_engine_loop_lag_ms" in families and "bms_heartbeat_jitter_ms" in families:
                    break
            failure = f"HTTP {status}" + (" without the timing figures (node status unknown)" if status == 200 else "")
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"[:120]
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    figures: dict[str, Any] = {"attempts": attempts, "complete": "bms_engine_loop_lag_ms" in families}
    if figures["complete"]:
        figures["source"] = "/metrics"
        for key, quantile in (("p50", "0.5"), ("p99", "0.99"), ("max", "1")):
            figures[f"loop_{key}"] = metric(families, "bms_engine_loop_lag_ms", quantile=quantile)
            for direction in ("sent", "received"):
                figures[f"{direction}_{key}"] = metric(
                    families, "bms_heartbeat_jitter_ms", direction=direction, quantile=quantile
                )
        figures["slow_ticks"] = metric(families, "bms_engine_loop_slow_ticks_total")
        figures["failovers"] = metric(families, "bms_redundancy_failovers_total")
        figures["epoch"] = metric(families, "bms_redundancy_epoch")
        return figures
    figures["metrics_failure"] = failure
    return figures | timing_from_row(node)


def timing_from_row(node: Any) -> dict[str, Any]:
    """The same figures from the node's ``redundancy_nodestate`` row (read over the bench's own connection)."""
    try:
        row = node.state()
    except Exception as exc:
        return {"source": f"none (/metrics and the status row failed: {type(exc).__name__})"}
    status = row.get("status") or {}
    loop, jitter = status.get("engine_loop") or {}, status.get("heartbeat_jitter") or {}
    figures: dict[str, Any] = {"source": "status row", "complete": bool(loop and jitter)}
    with contextlib.suppress(TypeError, AttributeError):  # an aware timestamp (timestamptz) is expected
        figures["row_age_s"] = round((datetime.now(UTC) - row["updated_at"]).total_seconds(), 2)
    for key in ("p50", "p99", "max"):
        figures[f"loop_{key}"] = loop.get(f"{key}_ms")
        for direction in ("sent", "received"):
            figures[f"{direction}_{key}"] = (jitter.get(direction) or {}).get(f"{key}_ms")
    figures["slow_ticks"] = loop.get("slow_total")
    figures["failovers"] = status.get("failovers")
    figures["epoch"] = row.get("epoch")
    return figures


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_cpu(pair: Any) -> dict[str, float | None]:
    """CPU seconds per node (all its processes) and, when a node has more than one process, per process."""
    figures: dict[str, float | None] = {}
    for name, node in pair.nodes.items():
        figures[name] = sum(cpu_seconds(process.pid) or 0.0 for process in node.processes)
        if len(node.processes) > 1:
            for process in node.processes:
                role = "engine" if "runengine" in process.args else "web"
                figures[f"{name} {role}"] = cpu_seconds(process.pid)
    return figures


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far (Linux /proc/stat)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class ConnectionSampler(threading.Thread):
    """Once a second: PostgreSQL connections to each node's database (peak), and the age of each node's own
    status row (``redundancy_nodestate.updated_at``, touched by the pair service at least every min(period,
    timeout / 3)): an age over the heartbeat timeout means the web side calls that node "unknown"."""

    def __init__(self, databases: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.databases = databases
        self.row_age_max: dict[str, float] = dict.fromkeys(databases, 0.0)
        self.row_age_samples: dict[str, list[float]] = {name: [] for name in databases}
        self.peaks: dict[str, int] = dict.fromkeys(databases, 0)
        self.peak_total = 0
        self.max_connections: int | None = None
        self._finished = threading.Event()

    def run(self) -> None:
        import psycopg

        from tests.support import services

        nodes: dict[str, Any] = {}
        with contextlib.suppress(Exception), psycopg.connect(services.admin_conninfo(), autocommit=True) as conn:
            self.max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
            for name, database in self.databases.items():
                with contextlib.suppress(Exception):
                    nodes[name] = psycopg.connect(services.database_url(database), autocommit=True)
            while not self._finished.wait(1.0):
                rows = dict(conn.execute("SELECT datname, count(*) FROM pg_stat_activity GROUP BY datname").fetchall())
                self.peak_total = max(self.peak_total, sum(rows.values()))
                for name, database in self.databases.items():
                    self.peaks[name] = max(self.peaks[name], rows.get(database, 0))
                for name, node_conn in nodes.items():
                    with contextlib.suppress(Exception):
                        age = node_conn.execute(
                            "SELECT extract(epoch FROM now() - updated_at) FROM redundancy_nodestate WHERE node = %s",
                            [name],
                        ).fetchone()
                        if age and age[0] is not None:
                            self.row_age_samples[name].append(float(age[0]))
                            self.row_age_max[name] = max(self.row_age_max[name], float(age[0]))
        for node_conn in nodes.values():
            node_conn.close()

    def stop(self, timeout_s: float | None = None) -> dict[str, Any]:
        self._finished.set()
        self.join(5)
        stale = {
            name: sum(1 for age in ages if timeout_s is not None and age > timeout_s)
            for name, ages in self.row_age_samples.items()
        }
        return {
            "per_node": self.peaks,
            "total": self.peak_total,
            "max_connections": self.max_connections,
            "status_row_age_max_s": {name: round(age, 2) for name, age in self.row_age_max.items()},
            "status_row_stale_samples": stale,
            "status_row_samples": {name: len(ages) for name, ages in self.row_age_samples.items()},
        }


LOG_LINE = re.compile(r"\b(CRITICAL|ERROR|WARNING)\b")


def log_findings(path: Path, offset: int) -> dict[str, Any]:
    """Tracebacks and warning/error lines a node logged since ``offset`` (bytes), most frequent first."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return {"tracebacks": 0, "lines": {}}
    lines: Counter = Counter()
    for line in text.splitlines():
        match = LOG_LINE.search(line)
        if match:
            # Numbers vary from one occurrence to the next: group by the line's shape.
            lines[re.sub(r"\d+(\.\d+)?", "N", line[match.start() :])[:160]] += 1
    return {"tracebacks": text.count("Traceback (most recent call last)"), "lines": dict(lines.most_common(8))}


# --- the run ------------------------------------------------------------------------------------------------------


def latency(records: Sequence[dict[str, Any]], ok: Callable[[dict[str, Any]], bool]) -> dict[str, float]:
    return summarize([r["ms"] for r in records if ok(r)])


def baseline(pair: Any, cookie: str, csrf: str, count: int) -> dict[str, Any]:
    """Sequential writes and page loads on the quiet pair: the unloaded latencies."""
    client = Http(pair.main.web_port, cookie, csrf)
    writes = [
        post_write(client, POINTS[i % len(POINTS)], baseline_value(i), f"stress-baseline-{uuid.uuid4().hex[:6]}-{i}")
        for i in range(count)
    ]
    pages = [get_page(client, PAGES[i % len(PAGES)]) for i in range(count)]
    client.close()
    return {"writes": writes, "pages": pages}


def tally_writes(pair: Any, writes: list[dict[str, Any]], since: float, settle_s: float) -> dict[str, Any]:
    """Every write's final status on the active node and how often the device received its value."""
    from tests.support.pair import ZONE_REGISTER, setpoint_writes
    from tests.support.processes import wait_until

    ids = {w["id"] for w in writes}

    def final() -> dict[str, dict[str, Any]] | None:
        rows = pair.main.commands()
        return rows if not any(rows[c]["status"] in OPEN for c in ids if c in rows) else None

    try:
        rows = wait_until(final, settle_s, 0.5, "every command final")
    except AssertionError:
        rows = pair.main.commands()
    device = setpoint_writes(pair.write_log, since)
    statuses: Counter = Counter()
    outcome: Counter = Counter()
    duplicates, missing, matched = {}, [], 0
    for record in writes:
        row = rows.get(record["id"])
        status = row["status"] if row else "not recorded"
        statuses[status] += 1
        count = device.get((ZONE_REGISTER[record["point"]], round(record["value"], 3)), 0)
        matched += count
        if count > 1:
            duplicates[record["id"]] = count
        if status == "succeeded":
            outcome["exactly once" if count == 1 else f"written {count}x"] += 1
            if count == 0:
                missing.append(record["id"])
        elif count:
            outcome[f"{status}, written {count}x"] += 1
    registers = set(ZONE_REGISTER.values())
    stray = sum(n for (register, _), n in device.items() if register in registers) - matched
    others = [c for c in ids if c in rows and rows[c]["status"] != "succeeded"]
    # Where the time went for each command that did not succeed: accepted -> claimed (started) -> final, in ms.
    timeline = pair.main.query(
        "SELECT command_id, status, error, point_name, created_at, started_at, finished_at FROM control_command "
        "WHERE command_id = ANY(%s) ORDER BY created_at",
        [others],
    )

    def ms(a: Any, b: Any) -> float | None:
        return round((b - a).total_seconds() * 1000, 1) if a is not None and b is not None else None

    not_succeeded = [
        {
            "id": row["command_id"],
            "status": row["status"],
            "error": (row["error"] or "")[:160],
            "point": row["point_name"],
            "created": row["created_at"].isoformat(),
            "to_started_ms": ms(row["created_at"], row["started_at"]),
            "to_finished_ms": ms(row["created_at"], row["finished_at"]),
        }
        for row in timeline
    ]
    # A command that did not succeed must not have reached the device, except "unknown" (it was being sent when its
    # node lost it: at most once, never resent).
    unasked = {key: n for key, n in outcome.items() if ", written" in key and not key.startswith("unknown, written 1x")}
    return {
        "submitted": len(writes),
        "http": dict(Counter(str(w["http"]) for w in writes)),
        "refusals": dict(
            Counter(w.get("error") or w.get("refused") or f"HTTP {w['http']}" for w in writes if w["id"] not in rows)
        ),
        "statuses": dict(statuses),
        "outcome": dict(outcome),
        "duplicates": duplicates,
        "missing": missing[:20],
        "stray_device_writes": stray,
        "not_succeeded_but_written": unasked,
        "not_succeeded": not_succeeded[:50],
        # No value reached the device twice or unasked: every succeeded command exactly once, no other command
        # (expired, failed) at all, nothing no command asked for.
        "exactly_once": not duplicates and not missing and not unasked and stray == 0,
        # ... and no write was refused or lost on the way.
        "all_executed": outcome.get("exactly once", 0) == len(writes) and not duplicates and stray == 0,
    }


def states(pair: Any) -> dict[str, dict[str, Any]]:
    result = {}
    for name, node in pair.nodes.items():
        state = node.state()
        result[name] = {
            "role": state["role"],
            "epoch": state["epoch"],
            "failovers": (state["status"] or {}).get("failovers"),
        }
    return result


def run(options: Options) -> dict[str, Any]:
    from drivers.simulator.launch import SimulatorProcess
    from tests.support.pair import Pair, PairOptions, Template
    from tests.support.processes import HttpSession

    report: dict[str, Any] = {"options": asdict(options)}
    write_log = ROOT / "var" / "test-logs" / f"stress-writes-{uuid.uuid4().hex[:8]}.jsonl"
    write_log.parent.mkdir(parents=True, exist_ok=True)
    device = template = pair = None
    children: list[Child] = []
    workdir = Path(tempfile.mkdtemp(prefix="bms-stress-"))
    try:
        with write_log.with_suffix(".log").open("ab") as device_log:
            device = SimulatorProcess("--write-log", str(write_log), stderr=device_log)
        template = Template(device.port)
        pair = Pair(
            template,
            write_log,
            PairOptions(
                period_ms=options.period_ms,
                timeout_ms=options.timeout_ms,
                proxied=False,
                split=options.layout == "processes",
            ),
        )
        report["logs"] = {name: str(node.log_path) for name, node in pair.nodes.items()}
        log_offsets = {
            name: node.log_path.stat().st_size if node.log_path.exists() else 0 for name, node in pair.nodes.items()
        }
        print("starting the pair ...", flush=True)
        pair.up()
        report["before"] = states(pair)
        since = time.time()

        print(f"quiet for {options.quiet_seconds:g} s ...", flush=True)
        time.sleep(options.quiet_seconds)
        report["quiet"] = {name: timing(node) for name, node in pair.nodes.items()}
        session = HttpSession(pair.main.base_url, "demo", "demo")
        cookie, csrf = session.cookie_header, session.csrf
        report["baseline"] = baseline(pair, cookie, csrf, options.baseline_requests)

        print(
            f"loaded for {options.seconds:g} s: {options.ws_clients} websocket clients, {options.writers} writers, "
            f"{options.pages_per_second:g} pages/s ...",
            flush=True,
        )
        common = {"seconds": options.seconds, "cookie": cookie}
        children = [
            Child(
                "ws",
                common
                | {
                    "url": f"ws://127.0.0.1:{pair.main.web_port}/ws/live/",
                    "origin": pair.main.base_url,
                    "clients": options.ws_clients,
                    "ramp": options.ws_ramp,
                },
                workdir,
            ),
            Child(
                "http",
                common
                | {
                    "port": pair.main.web_port,
                    "csrf": csrf,
                    "writers": options.writers,
                    "pages_per_second": options.pages_per_second,
                    "page_workers": max(4, math.ceil(options.pages_per_second)),
                    "prefix": f"stress-{uuid.uuid4().hex[:6]}",
                },
                workdir,
            ),
        ]
        cpu_before, machine_before = node_cpu(pair), machine_cpu()
        sampler = ConnectionSampler({name: node.db_name for name, node in pair.nodes.items()})
        sampler.start()
        load_since = time.time()
        for child in children:
            child.go()
        time.sleep(options.seconds)
        report["loaded"] = {name: timing(node) for name, node in pair.nodes.items()}
        cpu_after = node_cpu(pair)
        report["cpu_s"] = {name: (cpu_after[name] or 0) - (cpu_before.get(name) or 0) for name in cpu_after}
        busy, total = (after - before for after, before in zip(machine_cpu(), machine_before, strict=True))
        report["machine_busy"] = ratio(busy, total)
        report["database_connections"] = sampler.stop(options.timeout_ms / 1000)
        ws, load = (child.result(options.seconds + 60) for child in children)
        report["cpu_s"] |= {"ws clients": ws.get("cpu_s"), "http clients": load.get("cpu_s")}
        report["ws"] = ws
        report["http"] = {key: value for key, value in load.items() if key not in ("writes", "pages")}
        writes, pages = load.get("writes", []), load.get("pages", [])
        report["api"] = latency(writes, lambda r: r["http"] is not None)
        report["pages"] = latency(pages, lambda r: r["http"] == 200)
        report["pages_http"] = dict(Counter(str(p["http"]) for p in pages))
        report["pages_queued"] = summarize([p["queued_ms"] for p in pages])
        print("load done; waiting for every command to be final ...", flush=True)
        report["writes"] = tally_writes(pair, writes + report["baseline"]["writes"], since, options.settle_seconds)
        report["after"] = states(pair)
        report["role_changes"] = [
            f"{change.node}: {change.old} -> {change.new} (epoch {change.epoch}): {change.reason}"
            for change in pair.all_role_changes()
            if change.time >= since
        ]
        report["load_window"] = [load_since, time.time()]
        report["log_findings"] = {
            name: log_findings(node.log_path, log_offsets[name]) for name, node in pair.nodes.items()
        }
    except KeyboardInterrupt:
        report["error"] = "interrupted"
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        for child in children:
            child.stop()
        if pair is not None:
            pair.close()
        if template is not None:
            template.drop()
        if device is not None:
            device.stop()
    report["device_write_log"] = str(write_log)
    return report


# --- the report ---------------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def takeovers(report: dict[str, Any]) -> int | None:
    before, after = report.get("before"), report.get("after")
    if not before or not after:
        return None
    changed = sum(
        1
        for name in before
        if (before[name]["role"], before[name]["epoch"]) != (after[name]["role"], after[name]["epoch"])
    )
    failovers = sum((after[n]["failovers"] or 0) - (before[n]["failovers"] or 0) for n in before)
    return max(changed, failovers, len(report.get("role_changes", [])))


def print_report(report: dict[str, Any]) -> None:
    options = report["options"]
    print()
    print(
        f"stress: pair main + backup (production shape, layout {options.get('layout', 'thread')}: "
        + (
            "runengine + runbms --no-engine per node"
            if options.get("layout") == "processes"
            else "runbms per node, engine on its own thread"
        )
        + f"), period {options['period_ms']} ms, timeout "
        f"{options['timeout_ms']} ms; quiet {options['quiet_seconds']:g} s, then loaded {options['seconds']:g} s: "
        f"{options['ws_clients']} websocket clients, {options['writers']} API writers, "
        f"{options['pages_per_second']:g} page loads/s, all on main"
    )
    if report.get("error"):
        print(f"ERROR: {report['error']}")
    quiet, loaded = report.get("quiet", {}), report.get("loaded", {})
    print(f"{'figure (ms)':<36}{'quiet':>9}{'loaded':>9}{'ratio':>8}")
    goal_met = True
    for name in ("main", "backup"):
        for label, key in (
            ("engine loop lag p50", "loop_p50"),
            ("engine loop lag p99", "loop_p99"),
            ("engine loop lag max", "loop_max"),
            ("heartbeat jitter sent p99", "sent_p99"),
            ("heartbeat jitter sent max", "sent_max"),
            ("heartbeat jitter received p99", "received_p99"),
        ):
            q, v = quiet.get(name, {}).get(key), loaded.get(name, {}).get(key)
            if key.endswith("p99") and (v is None or v >= GOAL_MS):
                goal_met = False
            r = ratio(v, q) if q is not None and v is not None else None
            print(f"{name + ' ' + label:<36}{fmt(q):>9}{fmt(v):>9}{fmt(r, 2):>8}")
        slow_q, slow_l = quiet.get(name, {}).get("slow_ticks"), loaded.get(name, {}).get("slow_ticks")
        if slow_q is not None and slow_l is not None:
            print(f"{name + ' loop ticks > 50 ms during the load':<36}{'':>9}{slow_l - slow_q:>9.0f}")
    base = report.get("baseline", {})
    base_api = latency(base.get("writes", []), lambda r: r["http"] is not None)
    base_pages = latency(base.get("pages", []), lambda r: r["http"] == 200)
    for label, q, v in (
        ("API write latency p50", base_api["p50"], report.get("api", {}).get("p50")),
        ("API write latency p99", base_api["p99"], report.get("api", {}).get("p99")),
        ("page load p50", base_pages["p50"], report.get("pages", {}).get("p50")),
        ("page load p99", base_pages["p99"], report.get("pages", {}).get("p99")),
    ):
        r = ratio(v, q) if q is not None and v is not None else None
        print(f"{label:<36}{fmt(q):>9}{fmt(v):>9}{fmt(r, 2):>8}")
    for phase, figures in (("quiet", quiet), ("loaded", loaded)):
        for name, each in figures.items():
            if each.get("source") != "/metrics":
                print(
                    f"({name} {phase}: no figures from /metrics ({each.get('metrics_failure')}); read from its "
                    f"status row in the database, {fmt(each.get('row_age_s'), 2)} s old)"
                )
    print("(quiet API/page figures: sequential requests on the quiet pair)")
    count = takeovers(report)
    before, after = report.get("before") or {}, report.get("after") or {}
    print(
        f"takeovers during the run: {'-' if count is None else count} ("
        + "; ".join(
            f"{name} {before[name]['role']} e{before[name]['epoch']} -> {after[name]['role']} e{after[name]['epoch']}"
            f", failovers {before[name]['failovers']} -> {after[name]['failovers']}"
            for name in before
            if name in after
        )
        + f"; role changes recorded {len(report.get('role_changes', []))})"
    )
    for change in report.get("role_changes", []):
        print(f"    role change: {change}")
    goal = "met" if goal_met else "NOT met"
    print(f"goal p99 < {GOAL_MS:.0f} ms for loop lag and heartbeat jitter on both nodes: {goal}")
    writes = report.get("writes", {})
    if writes:
        verdict = (
            "every write executed exactly once"
            if writes["all_executed"]
            else "every succeeded write reached the device exactly once and no other did (none twice, none unasked),"
            " but not every write was executed"
            if writes["exactly_once"]
            else "NOT exactly once"
        )
        print(
            f"writes (load + {len(report.get('baseline', {}).get('writes', []))} baseline): {writes['submitted']} "
            f"submitted (HTTP {writes['http']}), final {writes['statuses']}, device {writes['outcome']}, stray "
            f"device writes {writes['stray_device_writes']}: {verdict}"
        )
        if writes["refusals"]:
            print(f"    not recorded: {writes['refusals']}")
        if writes.get("not_succeeded_but_written"):
            print(f"    written although not succeeded: {writes['not_succeeded_but_written']}")
        if writes["duplicates"] or writes["missing"]:
            print(f"    duplicates {writes['duplicates']}; succeeded but never written {writes['missing']}")
        for row in writes.get("not_succeeded", [])[:10]:
            print(
                f"    {row['status']} {row['id']} ({row['point']}, accepted {row['created']}): claimed after "
                f"{fmt(row['to_started_ms'], 0)} ms, final after {fmt(row['to_finished_ms'], 0)} ms: {row['error']}"
            )
    http = report.get("http", {})
    if http:
        pages = report.get("pages", {})
        print(
            f"loaded: API writes {fmt(report.get('api', {}).get('n'), 0)} in {fmt(http.get('seconds'))} s; page loads "
            f"{fmt(pages.get('n'), 0)} ok of {http.get('pages_scheduled')} scheduled (HTTP {report.get('pages_http')}),"
            f" start delay p99 {fmt(report.get('pages_queued', {}).get('p99'))} ms"
            + (f"; values exhausted for {http['exhausted']}" if http.get("exhausted") else "")
        )
        if http.get("error"):
            print(f"    http clients: {http['error']}")
    ws = report.get("ws", {})
    if ws:
        if ws.get("error"):
            print(f"websocket clients: {ws['error']}")
        else:
            frames = ws["frames"]
            handshake = summarize(ws["handshake_ms"])
            print(
                f"websocket: {ws['ever']}/{ws['clients']} connected at least once (all after "
                f"{fmt(ws['all_connected_s'])} s), peak {ws['peak']}, open at the end {ws['connected_at_end']}; "
                f"{ws['connections']} handshakes p50/p99 {fmt(handshake['p50'])}/{fmt(handshake['p99'])} ms; "
                f"frames {sum(frames)} ({ws['types']}), per client min {min(frames, default=0)} "
                f"p50 {fmt(summarize(frames)['p50'], 0)}, {ws['bytes'] / 1e6:.1f} MB"
            )
            if ws["closes"] or ws["errors"]:
                print(f"    unexpected closes {ws['closes']}; errors {ws['errors']}")
            ends = ws.get("ends") or []
            early = [end for end in ends if end[0] < ws["seconds_planned"]] if "seconds_planned" in ws else []
            if early:
                print(
                    f"    connections ended during the load: {len(early)} ("
                    + ", ".join(f"{n}x {why}" for why, n in Counter(why for _, why in early).most_common(4))
                    + f"; at {early[0][0]:.1f}-{early[-1][0]:.1f} s)"
                )
    if report.get("cpu_s"):
        print(
            "CPU s during the load: "
            + ", ".join(f"{k} {fmt(v)}" for k, v in report["cpu_s"].items())
            + f"; all {os.cpu_count()} CPUs {fmt(100 * report.get('machine_busy', math.nan), 0)} % busy"
        )
    connections = report.get("database_connections")
    if connections:
        print(
            f"PostgreSQL connections, peak during the load: {connections['per_node']}, all databases "
            f"{connections['total']} of max_connections {connections['max_connections']}"
        )
        if "status_row_age_max_s" in connections:
            print(
                f"status row age during the load (once a second): max {connections['status_row_age_max_s']} s; "
                f"samples older than the timeout {connections['status_row_stale_samples']} of "
                f"{connections['status_row_samples']} (older = the web side calls the node unknown)"
            )
    for name, findings in report.get("log_findings", {}).items():
        lines = findings["lines"]
        print(f"{name} log: {findings['tracebacks']} tracebacks, {sum(lines.values())} warning/error lines")
        for line, n in list(lines.items())[:4]:
            print(f"    {n}x {line}")
    for name, path in report.get("logs", {}).items():
        print(f"{name} log: {path}")


def failed(report: dict[str, Any]) -> bool:
    return bool(report.get("error")) or takeovers(report) != 0 or not report.get("writes", {}).get("all_executed")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="loaded phase (default 60)")
    parser.add_argument("--quiet-seconds", type=float, default=60.0, help="quiet phase before it (default 60)")
    parser.add_argument("--ws-clients", type=int, default=500, help="websocket clients (default 500)")
    parser.add_argument("--ws-ramp", type=int, default=50, help="websocket handshakes at once (default 50)")
    parser.add_argument("--writers", type=int, default=50, help="concurrent API writers (default 50)")
    parser.add_argument("--pages-per-second", type=float, default=20.0, help="page loads per second (default 20)")
    parser.add_argument("--period-ms", type=int, default=100, help="heartbeat period (default 100)")
    parser.add_argument("--timeout-ms", type=int, default=300, help="heartbeat timeout (default 300)")
    parser.add_argument("--baseline-requests", type=int, default=20, help="sequential quiet writes and pages (20)")
    parser.add_argument("--settle-seconds", type=float, default=60.0, help="wait for final commands (default 60)")
    add_layout_argument(parser)
    parser.add_argument("--child", choices=("ws", "http"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args.child, args.config)
        return 0
    options = Options(
        seconds=args.seconds,
        quiet_seconds=args.quiet_seconds,
        ws_clients=args.ws_clients,
        ws_ramp=args.ws_ramp,
        writers=args.writers,
        pages_per_second=args.pages_per_second,
        period_ms=args.period_ms,
        timeout_ms=args.timeout_ms,
        baseline_requests=args.baseline_requests,
        settle_seconds=args.settle_seconds,
        layout=args.layout,
    )
    started = datetime.now(UTC)
    report = run(options)
    print_report(report)
    raw = {key: value for key, value in report.items() if key != "baseline"}
    raw["ws"] = {key: value for key, value in report.get("ws", {}).items() if key != "handshake_ms"}
    path = write_json("stress", started, raw)
    print(f"results: {path.relative_to(ROOT)}; device write log: {report['device_write_log']}")
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
