"""Fault scenarios against a real pair: what each fault does to roles, takeover, device writes and history.

Run by hand from the repository root (PostgreSQL and Redis on loopback, as for the pair tests)::

    .venv/bin/python bench/pair_scenarios.py                                  # every scenario, ~4-6 min
    .venv/bin/python bench/pair_scenarios.py --scenario partition pause       # only these
    .venv/bin/python bench/pair_scenarios.py --list                           # the scenarios and what they do
    .venv/bin/python bench/pair_scenarios.py --period-ms 200 --seconds 10     # slower heartbeat, shorter flapping

Method
------
One simulated building with a write log (every device write and the pid
that sent it) and one template database (migrated, demo building loaded)
serve the whole run. Each scenario gets a fresh pair from
:mod:`tests.support.pair` in the production shape (a PostgreSQL database
per node cloned from the template, Redis, ``manage.py runbms`` per node in
its own process group), both sync links through test-controlled proxies
(:mod:`tests.support.proxy`), heartbeat ``--period-ms`` (100) and timeout
``--timeout-ms`` (3 x period), automatic failback. Then:

1. cold start; wait for main active and backup standby, caught up;
2. a :class:`~tests.support.pair.Load` submits writes to whichever node's row says active, and a
   :class:`~tests.support.pair.RoleSampler` reads both nodes' role rows, for the whole scenario;
3. the scenario function applies its fault (marking the fault's start) and heals it;
4. the runner waits until the pair settles: main active and backup standby and caught up (failback
   brings control back to main), then lets the load run a few more commands and stops it;
5. figures, all from the nodes' databases and the device's write log: the sampler's double-active
   time, the role changes both nodes recorded, the first takeover after the fault's start, the final
   status on the active node of every command submitted, the device writes of each command's value
   (a value written more than once is a DUPLICATE), and whether both databases end up with the same
   history (:meth:`~tests.support.pair.Pair.wait_history_identical`).

Adding a scenario is one function decorated with :func:`scenario`: it gets a :class:`Trial` (the
pair, the options, helpers for bursts and in-flight writes), calls :meth:`Trial.fault` when the fault
starts and leaves the pair healed. Everything listens on 127.0.0.1; the pairs, the template and the
simulator are removed at the end, also on Ctrl-C. Results also go to
``bench/results/pair_scenarios-<timestamp>.json``; node logs stay under ``var/test-logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_json  # noqa: E402
from drivers.simulator.launch import SimulatorProcess  # noqa: E402
from tests.support.pair import (  # noqa: E402
    ZONE_REGISTER,
    Load,
    Pair,
    PairNode,
    PairOptions,
    RoleSampler,
    Template,
    setpoint_writes,
)
from tests.support.processes import paused, wait_until  # noqa: E402

LOAD_POINT = "zone2_setpoint"  # the steady load; bursts and single writes use the other zones
BURST_POINTS = ("zone3_setpoint", "zone4_setpoint")
IN_FLIGHT_POINT = "zone4_setpoint"
IN_FLIGHT_VALUE = 27.995  # three decimals: never one of the loads' two-decimal values
LOAD_VALUES = 1300  # Load.value cycles after this many commands: more would write a value twice by design
FLAP_DOWN_S, FLAP_EVERY_S = 0.5, 2.0
DELAY_BELOW, DELAY_ABOVE = 0.4, 0.6  # one-way delay as a fraction of the timeout: below / above half of it
PAUSE_LEAD_S = 0.1  # the in-flight write goes out this long before SIGSTOP
OPEN = ("pending", "executing")


@dataclass(slots=True)
class Options:
    """Command-line options of a run."""

    scenarios: list[str]
    period_ms: int
    timeout_ms: int
    hold_down_ms: int
    seconds: float  # flapping
    fault_s: float  # every other fault
    settle_s: float
    history_s: float


# --- scenarios ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named fault: ``run(trial)`` applies it to a running pair and heals it.

    ``witness`` adds a witness; ``pair_options`` are more :class:`PairOptions` (proxied databases, private
    Redis servers); ``prepare(pair)`` changes the nodes before they start (a node's clock, say).
    """

    name: str
    run: Callable[[Trial], None]
    witness: bool
    description: str
    pair_options: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[Pair], None] | None = None


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, witness: bool = False, prepare: Callable[[Pair], None] | None = None, **pair_options: Any
) -> Callable[[Callable[[Trial], None]], Callable[[Trial], None]]:
    """Register ``function(trial)`` as the scenario ``name``; stacked, one function runs with and without a witness."""

    def register(function: Callable[[Trial], None]) -> Callable[[Trial], None]:
        description = function.__doc__.strip().splitlines()[0] if function.__doc__ else name
        description += " (witness)" if witness else ""
        SCENARIOS[name] = Scenario(name, function, witness, description, pair_options, prepare)
        return function

    return register


class Trial:
    """One scenario on one fresh pair: the fault's start, and every command submitted with where it went."""

    def __init__(self, name: str, pair: Pair, options: Options) -> None:
        self.name = name
        self.pair = pair
        self.options = options
        self.loads: list[Load] = []
        self.singles: dict[str, dict[str, Any]] = {}  # command_id -> point, value, node, http, body
        self.threads: list[threading.Thread] = []
        self.fault_at: float | None = None

    @property
    def timeout(self) -> float:
        return self.pair.timeout

    def fault(self) -> float:
        """Mark the start of the fault (the first call counts): the takeover time is measured from here."""
        if self.fault_at is None:
            self.fault_at = time.time()
        return self.fault_at

    def hold(self, seconds: float | None = None) -> None:
        """Keep the fault on for ``seconds`` (default ``--fault-seconds``)."""
        time.sleep(self.options.fault_s if seconds is None else seconds)

    def active(self) -> PairNode:
        """The node whose row says active (main if neither does)."""
        roles = self.pair.roles()
        return next((self.pair.nodes[name] for name, role in roles.items() if role == "active"), self.pair.main)

    def partner(self, node: PairNode) -> PairNode:
        return self.pair.backup if node is self.pair.main else self.pair.main

    @contextlib.contextmanager
    def load(self, point: str, interval: float) -> Iterator[Load]:
        """A :class:`Load` on ``point`` whose commands are counted with the scenario's."""
        load = Load(self.pair, f"{self.name}-{point}", point, interval)
        self.loads.append(load)
        with load:
            yield load

    def submit_in_background(self, node: PairNode, point: str, value: float) -> str:
        """POST one write to ``node`` from a thread (it may hang on a frozen node); return its command id."""
        command_id = f"{self.name}-single-{len(self.singles)}"
        record = self.singles[command_id] = {"point": point, "value": value, "node": node.name, "http": None}

        def submit() -> None:
            record["http"], record["body"] = node.submit(point, value, command_id)

        thread = threading.Thread(target=submit, name=command_id, daemon=True)
        thread.start()
        self.threads.append(thread)
        return command_id

    def answers(self) -> dict[str, dict[str, Any]]:
        """Every command's answer: ``command_id -> {node, http, body, ...}`` (``http`` None: no answer)."""
        answers = {cid: answer for load in self.loads for cid, answer in load.results.items()}
        return answers | self.singles

    def submitted(self) -> dict[str, tuple[str, float]]:
        """Every command submitted: ``command_id -> (point, value)``."""
        for thread in self.threads:
            thread.join(30)
        commands = {cid: (load.point, result["value"]) for load in self.loads for cid, result in load.results.items()}
        commands.update({cid: (single["point"], single["value"]) for cid, single in self.singles.items()})
        return commands


def drop_from(pair: Pair, sender: str) -> None:
    """One-way loss: every byte ``sender`` sends its partner is dropped, on both sync connections."""
    for name, proxy in pair.proxies.items():
        # The proxy named after a node carries its partner's dialled connection to it: that node is the upstream.
        if name == sender:
            proxy.drop_upstream_to_client()
        else:
            proxy.drop_client_to_upstream()


def delay_links(trial: Trial, fraction: float) -> None:
    trial.fault()
    for proxy in trial.pair.proxies.values():
        proxy.delay(fraction * trial.timeout)
    trial.hold()
    trial.pair.restore()


@scenario("partition-witness", witness=True)
@scenario("partition")
def partition(trial: Trial) -> None:
    """Sync link cut (connections closed, new ones refused) for --fault-seconds."""
    trial.fault()
    trial.pair.cut()
    trial.hold()
    trial.pair.restore()


@scenario("blackhole-witness", witness=True)
@scenario("blackhole")
def blackhole(trial: Trial) -> None:
    """Silent link: connections stay open, every byte is dropped, for --fault-seconds."""
    trial.fault()
    trial.pair.blackhole()
    trial.hold()
    trial.pair.restore()


@scenario("loss-main-to-backup")
def loss_main_to_backup(trial: Trial) -> None:
    """One-way loss: what main sends is dropped, backup's bytes still arrive, for --fault-seconds."""
    trial.fault()
    drop_from(trial.pair, "main")
    trial.hold()
    trial.pair.restore()


@scenario("loss-backup-to-main")
def loss_backup_to_main(trial: Trial) -> None:
    """One-way loss: what backup sends is dropped, main's bytes still arrive, for --fault-seconds."""
    trial.fault()
    drop_from(trial.pair, "backup")
    trial.hold()
    trial.pair.restore()


@scenario("flapping")
def flapping(trial: Trial) -> None:
    """Link cut for 0.5 s every 2 s, for --seconds."""
    trial.fault()
    for _ in range(max(1, round(trial.options.seconds / FLAP_EVERY_S))):
        trial.pair.cut()
        time.sleep(FLAP_DOWN_S)
        trial.pair.restore()
        time.sleep(FLAP_EVERY_S - FLAP_DOWN_S)


@scenario("delay-below-half")
def delay_below_half(trial: Trial) -> None:
    """Every chunk delayed 0.4 x timeout each way (round trip below the timeout), for --fault-seconds."""
    delay_links(trial, DELAY_BELOW)


@scenario("delay-above-half")
def delay_above_half(trial: Trial) -> None:
    """Every chunk delayed 0.6 x timeout each way (round trip above the timeout), for --fault-seconds."""
    delay_links(trial, DELAY_ABOVE)


@scenario("pause")
def pause(trial: Trial) -> None:
    """SIGSTOP of the active node for --fault-seconds, a write submitted to it 100 ms before; then SIGCONT."""
    node = trial.active()
    trial.submit_in_background(node, IN_FLIGHT_POINT, IN_FLIGHT_VALUE)
    time.sleep(PAUSE_LEAD_S)
    trial.fault()
    node.sigstop()
    try:
        trial.hold()
    finally:
        node.sigcont()


@scenario("kill9-burst")
def kill9_burst(trial: Trial) -> None:
    """kill -9 of the active node during a write burst; the burst goes on at the new active; restart, failback."""
    node = trial.active()
    try:
        with trial.load(BURST_POINTS[0], 0.01) as first, trial.load(BURST_POINTS[1], 0.01) as second:
            wait_until(lambda: first.count + second.count >= 6, 30, message="the burst running")
            trial.fault()
            node.kill9()
            trial.pair.wait_for_roles(30, **{trial.partner(node).name: "active"})
            count = first.count + second.count
            wait_until(lambda: first.count + second.count >= count + 6, 30, message="the burst on the new active")
    finally:
        if not node.alive:
            node.start()
            node.wait_web()


@scenario("standby-db-outage", proxied_databases=True)
def standby_database_outage(trial: Trial) -> None:
    """The standby's database away for --fault-seconds (its connections cut, new ones refused)."""
    trial.fault()
    trial.pair.database_proxies["backup"].cut()
    trial.hold()
    trial.pair.database_proxies["backup"].restore()


@scenario("active-db-outage", proxied_databases=True)
def active_database_outage(trial: Trial) -> None:
    """The active node's database away for --fault-seconds: writes refused (503), polling and roles go on."""
    trial.fault()
    trial.pair.database_proxies["main"].cut()
    trial.hold()
    trial.pair.database_proxies["main"].restore()


@scenario("active-redis-outage", private_redis=True)
def active_redis_outage(trial: Trial) -> None:
    """The active node's Redis killed for --fault-seconds, then started again on the same port."""
    server = trial.pair.redis["main"]
    trial.fault()
    server.kill()
    try:
        trial.hold()
    finally:
        server.start()


def skew_the_backups_clock(pair: Pair) -> None:
    library = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
    if library is None:
        raise RuntimeError("clock-skew needs Debian's faketime package (apt-get install faketime)")
    pair.backup.env |= {"LD_PRELOAD": str(library), "FAKETIME": "+300s"}


@scenario("clock-skew", prepare=skew_the_backups_clock)
def clock_skew(trial: Trial) -> None:
    """The backup's wall clock 300 s ahead from the start; then a kill -9 of main while it is."""
    trial.fault()
    trial.hold()
    main = trial.pair.main
    main.kill9()
    trial.pair.wait_for_roles(30, backup="active")
    main.start()
    main.wait_web()


@scenario("witness-lost", witness=True)
def witness_lost(trial: Trial) -> None:
    """The witness frozen for --fault-seconds, the sync link cut for 1 s meanwhile (no takeover may follow)."""
    with paused(trial.pair.witness):
        trial.fault()
        trial.hold(trial.options.fault_s / 2)
        trial.pair.cut()
        time.sleep(1.0)
        trial.pair.restore()
        trial.hold(trial.options.fault_s / 2)


@scenario("stale-start")
def stale_start(trial: Trial) -> None:
    """Backup stopped while main writes; main killed; backup started alone (it must wait); then main back."""
    pair = trial.pair
    pair.backup.stop()
    trial.hold(2.0)  # main goes on executing the load's writes
    trial.fault()
    pair.main.kill9()
    pair.backup.start()
    pair.backup.wait_web()
    wait_until(lambda: pair.backup.role() == "isolated", 60, message="the stale backup waits (isolated)")
    trial.hold()
    pair.main.start()
    pair.main.wait_web()


# --- one run of a scenario ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """What one scenario did, from both databases and the device's write log."""

    scenario: str
    double_active_ms: float = 0.0
    overlap_samples: int = 0
    role_samples: int = 0
    role_changes: int = 0
    takeover_ms: float | None = None
    submitted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # "node http-status" -> commands
    singles: dict[str, str] = field(default_factory=dict)  # single writes (the in-flight one): what became of them
    device_writes: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)  # command id -> times its value was written
    succeeded_unseen: list[str] = field(default_factory=list)  # succeeded, but the device never saw the value
    stray_writes: int = 0  # writes of a value no command of this scenario asked for
    history_identical: bool | None = None
    settled: str = ""
    settle_s: float | None = None  # from the fault healed to the pair settled (or given up)
    error: str = ""
    seconds: float = 0.0
    logs: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.error or self.duplicates or self.succeeded_unseen or self.history_identical is not True)


def overlap_ms(times: Sequence[float], samples: int, window: float) -> float:
    """Double-active time from the sampler's overlap samples.

    A run of overlap samples no more than two sampling periods apart lasts from
    its first to its last sample plus one period (the resolution: one sample).
    """
    if not times:
        return 0.0
    period = window / max(samples, 1)
    total, start, previous = 0.0, times[0], times[0]
    for moment in times[1:]:
        if moment - previous > 2 * period:
            total += previous - start + period
            start = moment
        previous = moment
    return (total + previous - start + period) * 1000


def settle(trial: Trial) -> str:
    """Wait for main active and backup standby, caught up (failback is automatic); else accept the reverse."""
    pair, options = trial.pair, trial.options
    try:
        pair.wait_for_roles(options.settle_s, main="active", backup="standby")
        return "main active"
    except AssertionError:
        pass
    try:
        pair.wait_for_roles(5, backup="active", main="standby")
        return "backup active"
    except AssertionError:
        return f"not settled: {pair.roles()}"


def tally(trial: Trial, result: Result, since: float) -> None:
    """Commands by final status on the active node, and the device writes of each command's value."""
    commands = trial.submitted()
    node = trial.active()

    def final() -> dict[str, dict[str, Any]] | None:
        rows = node.commands()
        return rows if not any(rows[c]["status"] in OPEN for c in commands if c in rows) else None

    try:
        rows = wait_until(final, trial.options.history_s, 0.2, "every command final")
    except AssertionError:
        rows = node.commands()
    result.submitted = len(commands)
    answers = trial.answers()
    result.answers = dict(Counter(f"{answers[c]['node']} {answers[c].get('http')}" for c in commands))
    result.statuses = dict(Counter(rows[c]["status"] if c in rows else "not recorded" for c in commands))
    writes = setpoint_writes(trial.pair.write_log, since)
    registers = {ZONE_REGISTER[point] for point, _ in commands.values()}
    result.device_writes = sum(count for (register, _), count in writes.items() if register in registers)
    matched = 0
    for command_id, (point, value) in sorted(commands.items()):
        count = writes.get((ZONE_REGISTER[point], round(float(value), 3)), 0)
        matched += count
        if count > 1:
            result.duplicates[command_id] = count
        status = rows.get(command_id, {}).get("status", "not recorded")
        if count == 0 and status == "succeeded":
            result.succeeded_unseen.append(command_id)
        if command_id in trial.singles:
            http = trial.singles[command_id].get("http")
            result.singles[command_id] = f"API {http} at {answers[command_id]['node']}, {status}, written {count}x"
    result.stray_writes = result.device_writes - matched
    if any(load.count > LOAD_VALUES for load in trial.loads):
        result.error = f"a load submitted more than {LOAD_VALUES} commands: its values repeat"


def run_scenario(entry: Scenario, template: Template, write_log: Path, options: Options) -> Result:
    """Fresh pair, load, fault, heal, settle, figures; the pair is torn down whatever happens."""
    result = Result(entry.name)
    began = time.monotonic()
    pair_options = PairOptions(
        period_ms=options.period_ms,
        timeout_ms=options.timeout_ms,
        hold_down_ms=options.hold_down_ms,
        witness=entry.witness,
        proxied=True,
        **entry.pair_options,
    )
    pair = Pair(template, write_log, pair_options)
    try:
        if entry.prepare is not None:
            entry.prepare(pair)
        result.logs = [str(node.log_path) for node in pair.nodes.values()]
        pair.up()
        trial = Trial(entry.name, pair, options)
        since = time.time()
        sampler = RoleSampler(pair)
        try:
            with sampler:
                with trial.load(LOAD_POINT, 0.05) as load:
                    wait_until(lambda: load.count >= 5, 30, message="the load running")
                    entry.run(trial)
                    healed = time.monotonic()
                    result.settled = settle(trial)
                    result.settle_s = time.monotonic() - healed
                    count = load.count
                    with contextlib.suppress(AssertionError):
                        wait_until(lambda: load.count >= count + 5, 15, message="the load after settling")
                window = time.time() - since
        finally:
            result.overlap_samples, result.role_samples = len(sampler.overlaps), sampler.samples
        result.double_active_ms = overlap_ms([t for t, _ in sampler.overlaps], sampler.samples, window)
        changes = [change for change in pair.all_role_changes() if change.time >= since]
        result.role_changes = len(changes)
        fault_at = trial.fault_at or since
        takeover = next((c for c in changes if c.new == "active" and c.time >= fault_at), None)
        result.takeover_ms = (takeover.time - fault_at) * 1000 if takeover else None
        tally(trial, result, since)
        try:
            pair.wait_history_identical(options.history_s)
            result.history_identical = True
        except AssertionError:
            result.history_identical = False
        if not result.settled.startswith(("main", "backup")):
            result.error = result.error or result.settled
    except Exception as exc:  # report it with the logs; the next scenario gets a fresh pair
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        pair.close()
        result.seconds = time.monotonic() - began
    return result


# --- the report ---------------------------------------------------------------------------------------------------

COLUMNS = (
    ("scenario", 21, "<"),
    ("dbl-act ms", 10, ">"),
    ("roles", 6, ">"),
    ("takeover ms", 12, ">"),
    ("sub", 5, ">"),
    ("ok", 5, ">"),
    ("fail", 5, ">"),
    ("exp", 4, ">"),
    ("unk", 4, ">"),
    ("other", 6, ">"),
    ("writes", 7, ">"),
    ("dup", 4, ">"),
    ("hist", 5, ">"),
    ("settle s", 9, ">"),
)


def row(result: Result) -> list[str]:
    statuses = result.statuses
    named = ("succeeded", "failed", "expired", "unknown")
    other = sum(count for status, count in statuses.items() if status not in named)
    return [
        result.scenario,
        f"{result.double_active_ms:.0f}",
        str(result.role_changes),
        "-" if result.takeover_ms is None else f"{result.takeover_ms:.0f}",
        str(result.submitted),
        *(str(statuses.get(status, 0)) for status in named),
        str(other),
        str(result.device_writes),
        str(len(result.duplicates)),
        {True: "yes", False: "no", None: "-"}[result.history_identical],
        "-" if result.settle_s is None else f"{result.settle_s:.1f}",
    ]


def print_report(results: Sequence[Result], options: Options) -> None:
    print()
    print(
        f"pair scenarios: period {options.period_ms} ms, timeout {options.timeout_ms} ms, hold-down "
        f"{options.hold_down_ms} ms, faults {options.fault_s:g} s, flapping {options.seconds:g} s; "
        "production shape, loopback"
    )
    print("".join(f"{title:{align}{width}}" for title, width, align in COLUMNS))
    for result in results:
        print("".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(row(result), COLUMNS, strict=True)))
    for result in results:
        notes = []
        if result.error:
            notes.append(f"error: {result.error}")
        if result.settled and result.settled != "main active":
            notes.append(f"settled: {result.settled}")
        others = {s: n for s, n in result.statuses.items() if s not in ("succeeded", "failed", "expired", "unknown")}
        if others:
            notes.append(f"other statuses: {others} (API answers: {result.answers})")
        notes.extend(f"{command_id}: {fate}" for command_id, fate in result.singles.items())
        if result.duplicates:
            notes.append(f"DUPLICATE device writes: {result.duplicates}")
        if result.succeeded_unseen:
            notes.append(f"succeeded but never written: {result.succeeded_unseen}")
        if result.stray_writes:
            notes.append(f"{result.stray_writes} device writes of values no command asked for")
        if result.history_identical is False:
            notes.append("history differs between the two databases")
        if notes:
            print(f"{result.scenario}: " + "; ".join(notes))
            if result.failed:
                for path in result.logs:
                    print(f"    log: {path}")


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", nargs="+", action="extend", default=[], metavar="NAME", choices=SCENARIOS)
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--period-ms", type=int, default=100, help="heartbeat period (default 100)")
    parser.add_argument("--timeout-ms", type=int, default=None, help="heartbeat timeout (default 3 x period)")
    parser.add_argument("--hold-down-ms", type=int, default=2000, help="failback hold-down (default 2000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="flapping lasts this long (default 30)")
    parser.add_argument("--fault-seconds", type=float, default=5.0, help="every other fault lasts this long (5)")
    parser.add_argument("--settle-seconds", type=float, default=120.0, help="wait for roles this long (120)")
    parser.add_argument("--history-seconds", type=float, default=30.0, help="wait for equal history this long")
    args = parser.parse_args(argv)
    if args.list:
        for entry in SCENARIOS.values():
            print(f"{entry.name:<21}{entry.description}")
        raise SystemExit(0)
    return Options(
        scenarios=list(dict.fromkeys(args.scenario)) or list(SCENARIOS),
        period_ms=args.period_ms,
        timeout_ms=args.timeout_ms or 3 * args.period_ms,
        hold_down_ms=args.hold_down_ms,
        seconds=args.seconds,
        fault_s=args.fault_seconds,
        settle_s=args.settle_seconds,
        history_s=args.history_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.now(UTC)
    write_log = ROOT / "var" / "test-logs" / f"scenario-writes-{uuid.uuid4().hex[:8]}.jsonl"
    write_log.parent.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    device: SimulatorProcess | None = None
    template: Template | None = None
    try:
        with write_log.with_suffix(".log").open("ab") as device_log:  # the simulator's own log, not the terminal
            device = SimulatorProcess("--write-log", str(write_log), stderr=device_log)
        template = Template(device.port)
        for name in options.scenarios:
            print(f"{name}: {SCENARIOS[name].description} ...", flush=True)
            result = run_scenario(SCENARIOS[name], template, write_log, options)
            results.append(result)
            print(f"  {'failed' if result.failed else 'done'} in {result.seconds:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", flush=True)
    finally:
        if template is not None:
            template.drop()
        if device is not None:
            device.stop()
    print_report(results, options)
    path = write_json("pair_scenarios", started, {"options": asdict(options), "results": [asdict(r) for r in results]})
    print(f"results: {path.relative_to(ROOT)}; device write log: {write_log}")
    return 1 if any(result.failed for result in results) or len(results) < len(options.scenarios) else 0


if __name__ == "__main__":
    sys.exit(main())
