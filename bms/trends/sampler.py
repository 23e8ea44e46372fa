"""The trend sampler: the engine's module that turns point changes into samples, on the engine loop.

Runs inside the node's real-time engine (:class:`bms.engine.runner.Engine`),
on its loop, and samples only while the node is active (the role gate says
so and the engine handed it control); the standby's trends arrive by
replication. Like the alarm engine it has an image cursor of its own, which
collects the names of the points that changed:

* **On change** (modes ``change`` and ``both``): a sample when the value
  moved further than the trend deadband from the last *sample* (not from the
  last reading), stamped with the point's change time.
* **Quality**: a sample whenever the quality differs from the last sample's,
  in every mode (a device going offline is part of the record).
* **Interval** (mode ``interval``): a sample every N seconds on a grid of N
  seconds since 1970 UTC; **heartbeat** (mode ``both``): a sample when N
  seconds passed since the last one. Either is stamped with its due time
  when the point has not changed since then and it is less than N seconds
  late, else with the moment it is taken: a sample never claims a value the
  point did not have yet, and missed ones are never back-filled. Timers wait
  in a heap, one entry per point.
* **Taking control** records each point's current state at its change time
  (replicated from the old active node): the sample its predecessor may not
  have flushed before it died; if it did, the idempotent insert stores it
  once. So the gap in the record is only the time no node was polling.

Samples go to the :class:`~bms.trends.writer.TrendWriter` (a list append:
no ORM call, no I/O on the loop), which stores them by COPY off the loop and
spools them to disk when the database is away. In the embedded shape (no
Celery beat) the sampler also runs the roll-ups and storage upkeep on a
thread of their own (:class:`bms.trends.maintenance.MaintenanceThread`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bms.engine.image import ProcessImage
from bms.engine.role import RoleGate
from bms.engine.tasks import cancel_and_wait, run_slices, woken_or_due
from bms.engine.turns import TURN_SLICE_SECONDS, TurnBudget, slice_deadline
from bms.points.models import TREND_BOTH, TREND_INTERVAL
from bms.trends import conf
from bms.trends.maintenance import MaintenanceThread
from bms.trends.models import QUALITY_CODES
from bms.trends.spec import TrendSpec
from bms.trends.spool import Spool, SpoolInUse
from bms.trends.writer import TrendWriter
from drivers.node import register_gauge, unregister_gauge

log = logging.getLogger(__name__)
#: the longest a slice of sampling runs before the loop is free again (seconds): a burst of changes (a hundred
#: devices' answers, an alarm flood's entries) is worked off between polls, not in one turn of the loop; with the
#: engine's turn budget, the turn's end comes first
SLICE_SECONDS = TURN_SLICE_SECONDS
#: the slice's clock is read once per this many points
CLOCK_EVERY = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_UNCERTAIN = QUALITY_CODES["uncertain"]
#: how the engine records an event: (kind, source, message, severity), called on the loop
LogEvent = Callable[[str, str, str, str], None]


@dataclass(slots=True)
class PointTrend:
    """One trended point on the engine: its rule and its last sample."""

    spec: TrendSpec
    value: float | None = None
    quality: int = -1  # no sample yet
    time: datetime | None = None
    #: the due time of this point's one timer entry (None: no timer)
    due: datetime | None = None


#: values that are never a number, even where float() would read them ("1.5", b"2")
_NOT_NUMBERS = (str, bytes, dict, list)


def number(value: Any) -> float | None:
    """A value as the trend stores it: a finite float (booleans 0 and 1), else None."""
    # Called for every changed value (10,000 a second at 100,000 points): the common types first, and no
    # ``str | bytes | ...`` union in the isinstance test, which built a new object at every call (bench/alarms.py)
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, _NOT_NUMBERS):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        return None
    return result if math.isfinite(result) else None


def _moved(old: float | None, new: float | None, deadband: float) -> bool:
    if old is None or new is None:
        return old is not new
    return abs(new - old) > deadband if deadband > 0 else new != old


def next_on_grid(now: datetime, interval: float) -> datetime:
    """The first multiple of ``interval`` seconds since 1970 UTC after ``now``."""
    step = max(1, round(interval * 1_000_000))
    micros = (now - _EPOCH) // _MICROSECOND
    return _EPOCH + timedelta(microseconds=(micros // step + 1) * step)


class TrendSampler:
    """All trended points of one node. ``configure`` on every configuration load, ``take_control`` when the
    node becomes active, ``release_control`` when it stops being; ``start``/``stop`` in the engine loop."""

    def __init__(
        self,
        image: ProcessImage,
        role: RoleGate,
        writer: TrendWriter,
        log_event: LogEvent | None = None,
        maintenance: MaintenanceThread | None = None,
        turns: TurnBudget | None = None,
    ) -> None:
        self.image = image
        #: the engine loop's shared turn budget: sampling slices take turns with poll answers and other slices
        self.turns = turns
        self.role = role
        self.writer = writer
        self.log_event = log_event
        self.maintenance = maintenance
        self.points: dict[str, PointTrend] = {}
        self.running = False
        self.samples = 0
        self._cursor = image.cursor()
        self._timers: list[tuple[datetime, int, str]] = []
        self._order = itertools.count()
        # changed points not sampled yet (a slice ran out of time), oldest first, each once
        self._pending: deque[str] = deque()
        self._queued: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # What this node's ``node`` device reads (drivers/node.py): an alarm on the spool filling is an
        # ordinary alarm definition on node.trend_spool_percent.
        self._gauges: dict[str, Callable[[], float | int]] = {
            "trend_spool_percent": lambda: round(writer.spool_percent, 1),
            "trend_samples_waiting": lambda: writer.waiting,
            "trend_samples_lost": lambda: writer.lost,
        }

    @classmethod
    def for_node(
        cls,
        image: ProcessImage,
        role: RoleGate,
        log_event: LogEvent | None = None,
        turns: TurnBudget | None = None,
    ) -> TrendSampler:
        """The sampler of a node as the settings configure it: spool, writer, and (embedded) maintenance."""
        directory = conf.spool_dir()
        try:
            spool = Spool(directory, conf.spool_bytes())
        except SpoolInUse:
            # A second engine of this node and database: in one process, a test of a pair; otherwise a
            # misconfiguration. Either way it must not append to the first one's spool.
            stand_in = Path(tempfile.mkdtemp(prefix=f"{directory.name}-"))
            log.error("the trend spool %s is in use by another engine; this one spools to %s", directory, stand_in)
            spool = Spool(stand_in, conf.spool_bytes(), temporary=True)
        maintenance = MaintenanceThread(lambda: role.active) if conf.maintenance_in_engine() else None
        return cls(image, role, TrendWriter(spool), log_event, maintenance, turns)

    # ---- configuration --------------------------------------------------------------------------------------

    def configure(self, specs: Iterable[TrendSpec], now: datetime | None = None) -> None:
        """Trend exactly ``specs``: points that stay keep their last sample; new or changed ones start afresh."""
        now = now or datetime.now(UTC)
        current = self.points
        self.points = {}
        started = []
        for spec in specs:
            trend = current.get(spec.name)
            if trend is None or trend.spec.point_id != spec.point_id:
                trend = PointTrend(spec)
                started.append(trend)
            elif trend.spec != spec:
                trend.spec = spec
                started.append(trend)
            self.points[spec.name] = trend
        if self.running:
            for trend in started:
                if trend.quality < 0:
                    self._record_state(trend)
                self._schedule_first(trend, now)

    # ---- control --------------------------------------------------------------------------------------------

    def take_control(self, now: datetime | None = None) -> None:
        """The node became active: record every point's current state at its change time, start the timers."""
        self.running = False
        self._timers.clear()
        self._cursor.dirty.clear()
        self._forget_pending()  # their current states are recorded below
        now = now or datetime.now(UTC)
        for trend in self.points.values():
            trend.value, trend.quality, trend.time, trend.due = None, -1, None, None
            self._record_state(trend)
            self._schedule_first(trend, now)
        self.running = True
        self._wake.set()
        log.info("trends: %d point(s) sampled", len(self.points))

    def release_control(self) -> None:
        """The node is no longer active: stop sampling; what is buffered goes to the writer now."""
        self.running = False
        self._timers.clear()
        self._forget_pending()
        self.writer.hand_over()

    # ---- the task -------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.log_event is not None:
            loop = asyncio.get_running_loop()
            log_event = self.log_event

            def report(kind: str, message: str, severity: str) -> None:  # from the writer's threads
                loop.call_soon_threadsafe(log_event, kind, "trends", message, severity)

            self.writer.report = report
        self.writer.start()
        for gauge, read in self._gauges.items():
            register_gauge(gauge, read)
        if self.maintenance is not None:
            self.maintenance.start()
        self._task = asyncio.create_task(self._run(), name="trends")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for gauge, read in self._gauges.items():
            unregister_gauge(gauge, read)
        if self.maintenance is not None:
            await asyncio.to_thread(self.maintenance.stop)
        await self.writer.stop()

    def wake(self) -> None:
        """Points changed (called with every image change notice)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await woken_or_due(self._wake, self._timers[0][0] if self.running and self._timers else None)
            if not (self.running and self.role.active):
                self._cursor.dirty.clear()
                self._forget_pending()
                continue
            await run_slices(self.run_once, lambda: self.running and self.role.active, "trend sampling", self.turns)

    def _forget_pending(self) -> None:
        self._pending.clear()
        self._queued.clear()

    def run_once(self, now: datetime) -> bool:
        """Sample the points that changed, then the timers due by ``now``, for one slice.

        True if work is left for another slice (a slice ends after :data:`SLICE_SECONDS`). A point still waiting
        when it changes again is sampled once, in its latest state: the same as two changes between two runs."""
        deadline = slice_deadline(self.turns, SLICE_SECONDS)
        dirty = self._cursor.dirty
        pending, queued = self._pending, self._queued
        if dirty:
            trends = self.points
            for name in dirty:
                if name in trends and name not in queued:
                    queued.add(name)
                    pending.append(name)
            dirty.clear()
        if pending:
            points = self.image.points
            trends = self.points
            codes = QUALITY_CODES
            while pending:
                for _ in range(min(CLOCK_EVERY, len(pending))):
                    name = pending.popleft()
                    queued.discard(name)
                    trend = trends.get(name)
                    state = points.get(name)
                    if trend is None or state is None:
                        continue
                    quality = codes.get(state.quality, _UNCERTAIN)
                    value = number(state.value)
                    if quality != trend.quality or (
                        trend.spec.on_change and _moved(trend.value, value, trend.spec.deadband)
                    ):
                        self._record(trend, state.change_time or now, value, quality)
                if pending and time.perf_counter() >= deadline:
                    return True
        return self._tick(now, deadline)

    # ---- samples and timers ---------------------------------------------------------------------------------

    def _record(self, trend: PointTrend, when: datetime, value: float | None, quality: int) -> None:
        self.writer.add((trend.spec.point_id, when, value, quality))
        trend.value, trend.quality, trend.time = value, quality, when
        self.samples += 1

    def _record_state(self, trend: PointTrend) -> None:
        """A sample of the point's current state at its change time, if it has had one."""
        state = self.image.points.get(trend.spec.name)
        if state is not None and state.change_time is not None:
            self._record(trend, state.change_time, number(state.value), QUALITY_CODES.get(state.quality, _UNCERTAIN))

    def _schedule_first(self, trend: PointTrend, now: datetime) -> None:
        mode, interval = trend.spec.mode, trend.spec.interval
        if mode == TREND_INTERVAL:
            self._schedule(trend, next_on_grid(now, interval))
        elif mode == TREND_BOTH:
            self._schedule(trend, (trend.time or now) + timedelta(seconds=interval))
        else:
            trend.due = None

    def _schedule(self, trend: PointTrend, due: datetime) -> None:
        if not self._timers or due < self._timers[0][0]:
            self._wake.set()  # the loop sleeps until the earliest timer it knew of: this one is earlier
        trend.due = due
        heapq.heappush(self._timers, (due, next(self._order), trend.spec.name))

    def _tick(self, now: datetime, deadline: float = math.inf) -> bool:
        """Take the samples due by ``now``; True if ``deadline`` (``time.perf_counter``) cut it short."""
        timers = self._timers
        points = self.image.points
        taken = 0
        while timers and timers[0][0] <= now:
            taken += 1
            if taken % CLOCK_EVERY == 0 and time.perf_counter() >= deadline:
                return True
            due, _, name = heapq.heappop(timers)
            trend = self.points.get(name)
            if trend is None or trend.due != due:
                continue  # the point went away or its timer moved since
            interval = timedelta(seconds=trend.spec.interval)
            if trend.spec.mode == TREND_BOTH and trend.time is not None and trend.time + interval > due:
                self._schedule(trend, trend.time + interval)  # a sample came since: the heartbeat moves
                continue
            state = points.get(name)
            if state is not None and state.change_time is not None:
                # the due time if the value has not changed since and the sample is not an interval late (a
                # heartbeat due since long before a takeover is taken now, never back-filled), else now
                when = due if state.change_time <= due and now - due < interval else now
                self._record(trend, when, number(state.value), QUALITY_CODES.get(state.quality, _UNCERTAIN))
            if trend.spec.mode == TREND_INTERVAL:
                self._schedule(trend, next_on_grid(max(now, due), trend.spec.interval))
            else:
                self._schedule(trend, (trend.time or now) + interval)
        return False

    def stats(self) -> dict[str, Any]:
        return {"points": len(self.points), "samples": self.samples, "running": self.running, **self.writer.stats()}
