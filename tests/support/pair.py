"""A hot-standby pair of real nodes for fault tests, in the production shape.

Each node is ``manage.py runbms`` (web + engine, or engine and web apart
with ``split=True``) on its own PostgreSQL database (cloned from a template
that was migrated and loaded once per session) with its own Redis channel
prefix, its own web and sync ports, and its own process group, so a test can
kill -9, SIGSTOP and SIGCONT it. The nodes share one simulated building
whose write log shows every device write and the pid that sent it.

What tests observe comes from the nodes' databases, never from sleeps:
``redundancy_nodestate`` (role, epoch, live status, written on every change
and twice a second), role-change events, the command log and the history
stamps ``(origin, epoch, origin_seq)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.support import databases, services
from tests.support.background import Background
from tests.support.net import free_port, wait_for_port
from tests.support.processes import ROOT, HttpSession, spawn_node, wait_or_kill, wait_until
from tests.support.proxy import Proxy
from tests.support.redis_server import RedisServer

SECRET = "pair-test-secret-0123456789"
HISTORY_TABLES = {
    "events.event": "events_event",
    "control.auditentry": "control_auditentry",
    "control.command": "control_command",
}
#: columns that name rows local to each database (primary keys, references to users and points)
LOCAL_COLUMNS = {"id", "user_id", "point_id"}
ROLE_CHANGE = re.compile(r"^(\w+) -> (\w+) \(epoch (\d+)\): (.*)$", re.S)
FINAL = ("succeeded", "held", "failed", "unknown", "expired")


def admin(sql: str) -> None:
    with psycopg.connect(services.admin_conninfo(), autocommit=True) as conn:
        conn.execute(sql)


class Template:
    """A database migrated and loaded with the demo building once; every node database is a clone of it."""

    def __init__(self, modbus_port: int, device_timeout: float = 2.0, poll_interval: float = 0.2) -> None:
        self.name = f"bms_pairtpl_{uuid.uuid4().hex[:8]}"
        databases.create_migrated(self.name)  # the session's migrated database, copied: no second migrate
        databases.load_demo(base_env(self.name, "template"), modbus_port, poll_interval)
        with psycopg.connect(services.database_url(self.name), autocommit=True) as conn:
            conn.execute("UPDATE points_device SET timeout = %s", [device_timeout])

    def clone(self, name: str) -> None:
        admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')

    def drop(self) -> None:
        admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def base_env(db_name: str, node: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BMS_") or key in ("BMS_TEST_DATABASE_URL", "BMS_TEST_REDIS_URL")
    }
    return env | {
        "DJANGO_SETTINGS_MODULE": "bms.settings.production",
        "DJANGO_SECRET_KEY": "pair-test-key",
        "DATABASE_URL": services.database_url(db_name),
        "REDIS_URL": services.REDIS_URL,
        "BMS_CHANNEL_PREFIX": f"p{uuid.uuid4().hex[:8]}",
        "BMS_NODE_NAME": node,
        "BMS_NODE_HEALTH_POINTS": "off",  # only the devices each test creates
        "BMS_PUBLISH_MIN_INTERVAL": "0.02",
        "BMS_SYNC_SECRET": SECRET,
        # plain HTTP on loopback, with the demo operator (production refuses both by default: docs/security.md)
        "BMS_SECURE_TRANSPORT": "0",
        "BMS_ALLOW_DEMO_USER": "1",
    }


# -- the simulated device's write log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    ts: float
    table: str
    address: int
    values: tuple[int, ...]
    pid: int | None

    @property
    def float32(self) -> float:
        import struct

        return struct.unpack(">f", struct.pack(">2H", *self.values[:2]))[0]


def read_writes(path: Path, since: float = 0.0) -> list[Write]:
    if not path.exists():
        return []
    writes = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if row["ts"] >= since:
                writes.append(Write(row["ts"], row["table"], row["address"], tuple(row["values"]), row.get("pid")))
    return writes


def setpoint_writes(path: Path, since: float = 0.0) -> Counter:
    """How many times each (zone setpoint register, value rounded to 0.001) was written since ``since``."""
    counts: Counter = Counter()
    for write in read_writes(path, since):
        if write.table == "hr" and write.address in (0, 2, 4, 6) and len(write.values) == 2:
            counts[(write.address, round(write.float32, 3))] += 1
    return counts


ZONE_REGISTER = {"zone1_setpoint": 0, "zone2_setpoint": 2, "zone3_setpoint": 4, "zone4_setpoint": 6}


# -- one node ------------------------------------------------------------------------------------------------------


class PairNode:
    """One node of the pair: its process group, database and HTTP session."""

    def __init__(self, name: str, template: Template, split: bool = False) -> None:
        self.name = name
        self.split = split
        self.db_name = f"bms_pair_{name}_{uuid.uuid4().hex[:8]}"
        template.clone(self.db_name)
        self.web_port = free_port()
        self.sync_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.env = base_env(self.db_name, name)
        self.log_path = ROOT / "var" / "test-logs" / f"{self.db_name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen] = []
        self._conn: psycopg.Connection | None = None
        self._session: HttpSession | None = None
        self.started_at: float | None = None

    # -- processes -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.time()
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {datetime.now().isoformat()} ====\n".encode())
        # Own session: kill -9 and SIGSTOP reach the node's process group, never the test runner.
        self.processes.extend(spawn_node(self.web_port, self.split, self.env, self.log_path, new_session=True))

    def wait_web(self, timeout: float = 60) -> None:
        wait_for_port(self.web_port, timeout)

    @property
    def engine_process(self) -> subprocess.Popen:
        return self.processes[0]

    @property
    def pids(self) -> set[int]:
        return {process.pid for process in self.processes}

    @property
    def alive(self) -> bool:
        return bool(self.processes) and all(process.poll() is None for process in self.processes)

    def _signal(self, sig: int, engine_only: bool = False) -> None:
        targets = [self.engine_process] if engine_only else self.processes
        for process in targets:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def kill9(self) -> float:
        """SIGKILL the node's processes; return the wall-clock time of the kill."""
        at = time.time()
        self._signal(signal.SIGKILL)
        for process in self.processes:
            process.wait(10)
        self.processes.clear()
        self._session = None
        return at

    def sigstop(self, engine_only: bool = False) -> float:
        at = time.time()
        self._signal(signal.SIGSTOP, engine_only)
        return at

    def sigcont(self, engine_only: bool = False) -> float:
        at = time.time()
        self._signal(signal.SIGCONT, engine_only)
        return at

    def stop(self) -> None:
        self._signal(signal.SIGCONT)
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
        for process in self.processes:
            wait_or_kill(process, f"node {self.name}", self.log_path, group=True)
        self.processes.clear()
        self._session = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def drop(self) -> None:
        self.stop()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the database ----------------------------------------------------------------------------------------------

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(services.database_url(self.db_name), autocommit=True, row_factory=dict_row)
        return self._conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Any = None) -> None:
        self.query_none(sql, params)

    def query_none(self, sql: str, params: Any = None) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(services.database_url(self.db_name), autocommit=True, row_factory=dict_row)
        self._conn.execute(sql, params)

    def state(self) -> dict[str, Any]:
        """This node's own row: role, epoch, status (the live redundancy status) and updated_at."""
        rows = self.query(
            "SELECT role, epoch, status, updated_at FROM redundancy_nodestate WHERE node = %s", [self.name]
        )
        return rows[0] if rows else {"role": "none", "epoch": 0, "status": {}, "updated_at": None}

    def role(self) -> str:
        """The role in this node's row; "stale" if the row is from before the current process started."""
        state = self.state()
        if state["updated_at"] is not None and self.started_at and state["updated_at"].timestamp() < self.started_at:
            return "stale"
        return state["role"]

    def takeover(self, after: float, timeout: float = 20.0) -> RoleChange:
        """This node's first activation at or after ``after`` (epoch seconds) in its own event log (waits for it)."""
        return self.role_change("active", after, timeout)

    def role_change(self, new: str, after: float, timeout: float = 20.0) -> RoleChange:
        """This node's first change to role ``new`` at or after ``after`` (epoch seconds) in its own event log.

        Waits for it: the event outbox writes the role change a moment after the role itself changed (behind
        the engine's own database work, while the node state row has a database thread of its own), so a role
        seen in the row does not mean the event is stored yet."""

        def found() -> RoleChange | None:
            mine = [c for c in self.role_changes(source=self.name) if c.new == new and c.time >= after]
            return mine[0] if mine else None

        deadline = time.monotonic() + timeout
        while (change := found()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no change of {self.name} to {new} after {after} in its event log ({timeout} s)")
            time.sleep(0.1)
        return change

    def role_changes(self, source: str | None = None) -> list[RoleChange]:
        """Role changes in this node's event log (its own and, replicated, its partner's), oldest first."""
        rows = self.query(
            "SELECT time, source, message, origin, epoch, origin_seq FROM events_event "
            "WHERE kind = 'role_change' ORDER BY time, id"
        )
        changes = []
        for row in rows:
            match = ROLE_CHANGE.match(row["message"])
            if match and (source is None or row["source"] == source):
                changes.append(
                    RoleChange(row["time"].timestamp(), row["source"], match[1], match[2], int(match[3]), match[4])
                )
        return changes

    def commands(self) -> dict[str, dict[str, Any]]:
        rows = self.query(
            "SELECT command_id, point_name, value, status, error, observed, accepted_by, accepted_epoch, "
            "origin, epoch, origin_seq FROM control_command"
        )
        return {row["command_id"]: row for row in rows}

    def history_rows(self) -> list[tuple[str, dict[str, Any]]]:
        rows = []
        for label, table in HISTORY_TABLES.items():
            for row in self.query(f"SELECT * FROM {table}"):
                rows.append((label, {k: v for k, v in row.items() if k not in LOCAL_COLUMNS}))
        return rows

    def digest(self) -> dict[str, dict[str, Any]]:
        """Per origin: row counts per table and a hash of every row (table, stamp, natural key, content)."""
        per_origin: dict[str, list[str]] = defaultdict(list)
        counts: dict[str, Counter] = defaultdict(Counter)
        for label, row in self.history_rows():
            per_origin[row["origin"]].append(f"{label}|{row['origin_seq']}|{_canonical(row)}")
            counts[row["origin"]][label] += 1
        return {
            origin: {
                "counts": dict(counts[origin]),
                "hash": hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16],
            }
            for origin, lines in per_origin.items()
        }

    def stamps(self, origin: str) -> dict[str, dict[int, dict[str, Any]]]:
        """``{table: {origin_seq: row}}`` of one origin."""
        result: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for label, row in self.history_rows():
            if row["origin"] == origin:
                result[label][row["origin_seq"]] = row
        return result

    def frames_rejected(self) -> dict[str, int]:
        return dict((self.state()["status"] or {}).get("sync", {}).get("frames_rejected") or {})

    # -- HTTP --------------------------------------------------------------------------------------------------------

    def session(self) -> HttpSession:
        if self._session is None:
            self._session = HttpSession(self.base_url, "demo", "demo")
        return self._session

    def submit(self, point: str, value: float, command_id: str, **extra: Any) -> tuple[int | None, dict[str, Any]]:
        """POST a write to this node's API; (None, {"error": ...}) if the node did not answer."""
        try:
            return self.session().post_json(
                f"/api/points/{point}/write", {"value": value, "command_id": command_id, **extra}
            )
        except Exception as exc:  # a dead or frozen node: the caller records what happened
            self._session = None
            return None, {"error": f"{type(exc).__name__}: {exc}"}


@dataclass(frozen=True, slots=True)
class RoleChange:
    time: float
    node: str
    old: str
    new: str
    epoch: int
    reason: str


def _canonical(row: dict[str, Any]) -> str:
    def default(value: Any) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    return json.dumps(row, sort_keys=True, default=default)


# -- the pair ------------------------------------------------------------------------------------------------------


@dataclass
class PairOptions:
    period_ms: int = 100
    timeout_ms: int | None = None  # default 3 x period
    hold_down_ms: int = 2000
    failback: str = "auto"
    startup_allowance_ms: int | None = None
    witness: bool = False
    proxied: bool = False  # sync links through test-controlled proxies (both directions)
    record: bool = False  # the proxies record what they carry
    split: bool = False
    proxied_databases: bool = False  # each node reaches its database through a proxy (database outages)
    private_redis: bool = False  # each node has a Redis of its own that can be stopped (Redis outages)
    command_wait_s: float = 3.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def timeout(self) -> float:
        return (self.timeout_ms or 3 * self.period_ms) / 1000


class Pair:
    """main and backup, wired to each other (directly or through proxies), optionally with a witness."""

    def __init__(self, template: Template, write_log: Path, options: PairOptions | None = None) -> None:
        self.options = options or PairOptions()
        self.write_log = write_log
        self.proxies: dict[str, Proxy] = {}
        self.database_proxies: dict[str, Proxy] = {}  # node name -> the proxy to its database
        self.redis: dict[str, RedisServer] = {}  # node name -> its own Redis (``private_redis``)
        self.witness: subprocess.Popen | None = None
        self.nodes: dict[str, PairNode] = {}
        try:
            self.main = self.nodes["main"] = PairNode("main", template, self.options.split)
            self.backup = self.nodes["backup"] = PairNode("backup", template, self.options.split)
            self._wire()
        except BaseException:
            self.close()
            raise

    def _wire(self) -> None:
        opts = self.options
        witness_address = self._start_witness() if opts.witness else ""
        for node in self.nodes.values():
            if opts.proxied_databases:
                proxy = self.database_proxies[node.name] = Proxy(services.database_port())
                node.env["DATABASE_URL"] = services.proxied_database_url(node.db_name, proxy.port)
            if opts.private_redis:
                server = self.redis[node.name] = RedisServer(node.log_path.parent)
                server.start()
                node.env["REDIS_URL"] = server.url
        for node, partner in ((self.main, self.backup), (self.backup, self.main)):
            partner_port = partner.sync_port
            if opts.proxied:
                # The proxy named after the partner carries this node's dialled link to it.
                proxy = self.proxies[partner.name] = Proxy(partner.sync_port, record=opts.record)
                partner_port = proxy.port
            node.env |= {
                "BMS_PARTNER_NAME": partner.name,
                "BMS_PARTNER_ADDRESS": f"127.0.0.1:{partner_port}",
                "BMS_SYNC_HOST": "127.0.0.1",
                "BMS_SYNC_PORT": str(node.sync_port),
                "BMS_PUBLIC_URL": node.base_url,
                "BMS_PARTNER_URL": partner.base_url,
                "BMS_HEARTBEAT_PERIOD_MS": str(opts.period_ms),
                "BMS_HEARTBEAT_TIMEOUT_MS": str(opts.timeout_ms or 3 * opts.period_ms),
                "BMS_HOLD_DOWN_MS": str(opts.hold_down_ms),
                "BMS_FAILBACK": opts.failback,
                "BMS_COMMAND_WAIT_SECONDS": str(opts.command_wait_s),
                "BMS_WITNESS_ADDRESS": witness_address,
                **opts.extra_env,
            }
            if opts.startup_allowance_ms is not None:
                node.env["BMS_STARTUP_ALLOWANCE_MS"] = str(opts.startup_allowance_ms)

    def _start_witness(self) -> str:
        env = base_env("postgres", "witness")
        self.witness = subprocess.Popen(
            [sys.executable, "manage.py", "witness", "--port", "0", "--nodes", "main,backup", "--period-ms", "50"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        line = self.witness.stdout.readline()
        match = re.search(r"port (\d+)", line)
        if not match:
            raise RuntimeError(f"witness did not report its port: {line!r}")
        threading.Thread(target=self.witness.stdout.read, daemon=True).start()  # keep the pipe drained
        return f"127.0.0.1:{match[1]}"

    @property
    def timeout(self) -> float:
        return self.options.timeout

    def start(self, *names: str) -> None:
        """Start the named nodes (default both) at once and wait until their web ports answer."""
        nodes = [self.nodes[name] for name in names or ("main", "backup")]
        for node in nodes:
            node.start()
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.wait_web(), nodes))

    def roles(self) -> dict[str, str]:
        return {name: node.role() if node.alive else "down" for name, node in self.nodes.items()}

    def wait_for_roles(self, timeout: float = 30.0, **wanted: str) -> dict[str, str]:
        """Wait until every named node's database row shows the wanted role (the standby also caught up)."""

        def check() -> dict[str, str] | None:
            states = {name: self.nodes[name].state() for name in wanted}
            for name, role in wanted.items():
                node, state = self.nodes[name], states[name]
                if state["role"] != role:
                    return None
                if node.started_at and (
                    state["updated_at"] is None or state["updated_at"].timestamp() < node.started_at
                ):
                    return None  # a row left by the node's previous life
                if role == "standby" and not (states[name]["status"] or {}).get("sync", {}).get("caught_up"):
                    return None
            return {name: state["role"] for name, state in states.items()}

        try:
            return wait_until(check, timeout, 0.05, f"roles {wanted}")
        except AssertionError as exc:
            logs = [str(node.log_path) for node in self.nodes.values()]
            raise AssertionError(f"{exc}; now {self.roles()}; logs: {logs}") from None

    def up(self, timeout: float = 60.0) -> None:
        """Cold-start both nodes and wait for main active and backup standby, caught up, both changes in the logs.

        The node state row shows a role from the moment the node enters it, but the role-change event is
        recorded once the change is carried out (taking control loads the configuration and settles commands
        first; the event outbox writes behind the engine's database work): on a loaded machine seconds later.
        Tests that compare or count role changes from "now" must start after it."""
        self.start()
        self.wait_for_roles(timeout, main="active", backup="standby")
        for node, role in ((self.main, "active"), (self.backup, "standby")):
            node.role_change(role, after=node.started_at or 0.0, timeout=30.0)

    def cut(self) -> None:
        for proxy in self.proxies.values():
            proxy.cut()

    def blackhole(self) -> None:
        for proxy in self.proxies.values():
            proxy.blackhole()

    def restore(self) -> None:
        for proxy in self.proxies.values():
            proxy.restore()

    def all_role_changes(self) -> list[RoleChange]:
        """Each node's own role changes read from its own database, merged by time."""
        changes = []
        for name, node in self.nodes.items():
            changes.extend(node.role_changes(source=name))
        return sorted(changes, key=lambda change: change.time)

    def wait_history_identical(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        def same() -> dict | None:
            main, backup = self.main.digest(), self.backup.digest()
            return main if main == backup else None

        try:
            return wait_until(same, timeout, 0.2, "identical history on both databases")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: main {self.main.digest()} backup {self.backup.digest()}") from None

    def close(self) -> None:
        def drop(node: PairNode) -> None:
            with contextlib.suppress(Exception):
                node.drop()

        # Both nodes shut down at once: each stop waits for its own processes to finish their shutdown.
        with ThreadPoolExecutor(max(1, len(self.nodes))) as pool:
            list(pool.map(drop, self.nodes.values()))
        if self.witness is not None and self.witness.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.witness.pid, signal.SIGKILL)
            self.witness.wait(10)
        for proxy in [*self.proxies.values(), *self.database_proxies.values()]:
            proxy.close()
        for server in self.redis.values():
            server.stop()


class RoleSampler(Background):
    """Samples both nodes' rows in a background thread: A, B, then A again; both active in one sandwich is overlap."""

    def __init__(self, pair: Pair, interval: float = 0.02) -> None:
        super().__init__()
        self.pair = pair
        self.interval = interval
        self.samples = 0
        self.overlaps: list[tuple[float, dict[str, str]]] = []
        self.seen: Counter = Counter()
        self._conns: dict[str, psycopg.Connection] = {}

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for conn in self._conns.values():
            conn.close()

    def _role(self, node: PairNode) -> str:
        conn = self._conns.get(node.name)
        if conn is None:
            conn = self._conns[node.name] = psycopg.connect(services.database_url(node.db_name), autocommit=True)
        row = conn.execute("SELECT role, updated_at FROM redundancy_nodestate WHERE node = %s", [node.name]).fetchone()
        if row is None:
            return "none"
        # A row left by the node's previous life (before kill -9 and restart) says nothing about now.
        if node.started_at is not None and row[1].timestamp() < node.started_at:
            return "stale"
        # A frozen node's row keeps its last role, but its engine's liveness beat stops: after the
        # timeout the node's own web side says "unknown" (and its fence sends nothing), so do we.
        if time.time() - row[1].timestamp() > self.pair.timeout + 0.1:
            return "silent"
        return row[0]

    def _run(self) -> None:
        main, backup = self.pair.main, self.pair.backup
        while not self._stop.is_set():
            try:
                first = self._role(main) if main.alive else "down"
                other = self._role(backup) if backup.alive else "down"
                again = self._role(main) if main.alive else "down"
            except psycopg.Error:
                time.sleep(self.interval)
                continue
            self.samples += 1
            self.seen[(first, other)] += 1
            if first == again == "active" and other == "active":
                self.overlaps.append((time.time(), {"main": first, "backup": other}))
            time.sleep(self.interval)


class Load(Background):
    """Submits commands continuously to whichever node's row says active; remembers every answer."""

    join_seconds = 60.0  # a submission in flight may wait for its answer that long

    def __init__(self, pair: Pair, prefix: str, point: str = "zone2_setpoint", interval: float = 0.05) -> None:
        super().__init__()
        self.pair = pair
        self.prefix = prefix
        self.point = point
        self.interval = interval
        self.results: dict[str, dict[str, Any]] = {}
        self.count = 0

    def value(self, index: int) -> float:
        return round(15.0 + (index % 1300) * 0.01, 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            roles = {}
            for name, node in self.pair.nodes.items():
                with contextlib.suppress(Exception):
                    roles[name] = node.role() if node.alive else "down"
            target = next((self.pair.nodes[n] for n, r in roles.items() if r == "active"), None)
            if target is None:
                time.sleep(self.interval)
                continue
            index = self.count
            self.count += 1
            command_id = f"{self.prefix}-{index}"
            value = self.value(index)
            status, body = target.submit(self.point, value, command_id)
            self.results[command_id] = {"node": target.name, "http": status, "body": body, "value": value}
            time.sleep(self.interval)
