"""Polls one device on its own interval without drift, and writes to it.

One poller owns one driver instance, so reads and writes to a device share
one connection with one request in flight (a lock serialises them). While a
device is unreachable, connection attempts back off (doubling from the poll
interval up to ``RECONNECT_MAX_SECONDS``, or the device option
``reconnect_max``), so a dead device costs neither a busy loop nor a long
stall once it is back.
Communication failure marks all of the device's points ``comm_failure`` and
is reported once per outage; per-point refusals mark only those points
``bad``, also once per transition.

A stale value is never shown as good: each successful read moves a point's
``source_time`` (the time of its last successful read) even when its value
did not change, and a watchdog beside the poll loop marks ``stale`` every
good point whose last read is older than ``stale_after`` on the monotonic
clock, so a step of the wall clock neither hides nor invents one (device option;
default three poll intervals, at least one second). It asks per request
first: when every point belongs to a request answered within
``stale_after`` (a device polled on time), nothing can be stale and no point
is looked at. That covers a poll
that hangs (a device that accepts the connection but answers nothing until
the timeout and retries run out) and an overloaded engine. The first poll
that reads the point again shows it good.

The hot path takes one :class:`~drivers.base.Batch` per protocol request and
looks only at the raw values that changed since the same request's previous
answer (the driver says which, or the poller compares), so an unchanged value
costs neither a conversion nor an image update. Each request keeps its
points' state objects (``ProcessImage.states``, renewed when the image's
layout moves), so neither a changed value nor a refresh looks a point up by
name. Moving ``source_time`` of unchanged points touches every point, so it
is done at most every ``stale_after / 10`` per request (at once after any
quality change): a ``source_time`` is the last successful read to within a
tenth of the stale limit, and on polls slower than that (the usual case)
exactly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bms.engine.config import DeviceConfig, PointConfig
from bms.engine.image import BAD, COMM_FAILURE, GOOD, STALE, PointState, ProcessImage
from bms.engine.scaling import Scaling
from bms.engine.tasks import Alarm, cancel_and_wait
from bms.engine.turns import TurnBudget
from drivers.base import Batch, CommunicationError, Driver, RawValue, Reading, WriteUncertain, WrongDevice
from drivers.registry import driver_class

log = logging.getLogger(__name__)
RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0
STALE_POLL_INTERVALS = 3
# A floor, so that a very short poll interval on a busy host does not flap points to stale.
STALE_MIN_SECONDS = 1.0
# Requests whose last raw answer is remembered; more than any device has, cleared if a plan keeps changing.
MAX_REMEMBERED_REQUESTS = 4096
#: overruns of shorter intervals (back-to-back polling, as in the benchmark) are the intent, not news
MIN_REPORTED_INTERVAL = 0.01

EventSink = Callable[[str, str, str, str], None]  # kind, source, message, severity


class _Answer:
    """One request's names, the raw values last applied from it in full, when it last answered and when its
    source times last moved."""

    __slots__ = ("convert", "deadbands", "layout", "names", "read_at", "refreshed_at", "states", "values")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.values: Sequence[RawValue | None] | None = None
        self.refreshed_at = -math.inf
        self.read_at = -math.inf  # time.monotonic() of the last answer
        #: per name: its raw -> engineering function and its deadband, made on first use (see _prepare)
        self.convert: tuple[Callable[[RawValue], RawValue], ...] | None = None
        self.deadbands: tuple[float, ...] = ()
        #: the image's state objects of ``names`` (ProcessImage.states), valid while its layout is ``layout``
        self.states: list[PointState | None] = []
        self.layout = -1


def _finite(value: RawValue) -> bool:
    # NaN - NaN and inf - inf are NaN (true); a finite number, int or bool minus itself is 0 (false).
    return not value - value


def _unknown(name: str) -> Callable[[RawValue], RawValue]:
    # A driver answered for a point this poller does not have: fail as the lookup by name did, when its value
    # changes, not when the request is first seen.
    def convert(raw: RawValue) -> RawValue:
        raise KeyError(name)

    return convert


def _not_a_number(value: RawValue) -> str:
    # A device that sends NaN or infinity is saying "no valid measurement" (a broken sensor, a range error),
    # not giving a value: the point goes bad and keeps its last value. It also keeps NaN out of the image,
    # where it would compare unequal to itself and break the clients' JSON.
    return f"device reported {value} (not a number); last valid value kept"


def next_slot(previous: float, now: float, interval: float) -> tuple[float, int]:
    """The next poll time on the fixed grid ``previous + k * interval`` that is after ``now``.

    Polls start on the grid however long each one took, so the schedule never
    drifts; slots a slow poll overran are skipped (and counted), not bunched.
    """
    next_at = previous + interval
    if next_at > now:
        return next_at, 0
    missed = math.floor((now - next_at) / interval) + 1
    return next_at + missed * interval, missed


def next_due(due: float, now: float, interval: float) -> tuple[float, int]:
    """The regular poll time after a poll that ended at ``now``, when the regular one was ``due``.

    A poll that ran early (asked for after a write) leaves the regular slot
    where it is: otherwise every early poll would push the schedule one
    interval into the future, and writes faster than the interval would stop
    polling altogether.
    """
    if now < due:
        return due, 0
    return next_slot(due, now, interval)


def stale_limit(poll_interval: float, options: dict | None = None) -> float:
    """Seconds after its last successful read at which a good value is shown as stale."""
    if options and options.get("stale_after") is not None:
        return float(options["stale_after"])
    return max(STALE_POLL_INTERVALS * poll_interval, STALE_MIN_SECONDS)


def next_backoff(current: float | None, poll_interval: float, cap: float) -> float:
    """Delay before the next connection attempt after one more failure."""
    if current is None:
        return min(cap, max(poll_interval, RECONNECT_MIN_SECONDS))
    return min(cap, current * 2)


class DevicePoller:
    """The poll loop and write path of one device.

    ``online`` carries what a previous poller of the same device knew when the
    engine replaces it after a configuration change: ``False`` (the device was
    unreachable) makes this poller's first good read log ``comm_restored`` and a
    failure no second ``comm_lost``, so the event log shows one outage with its end.
    """

    def __init__(
        self,
        config: DeviceConfig,
        image: ProcessImage,
        on_change: Callable[[], None],
        on_event: EventSink,
        online: bool | None = None,
        phase: float = 0.0,
        turns: TurnBudget | None = None,
    ) -> None:
        self.config = config
        #: shared with the engine's other pollers: a turn of the loop applies at most a slice of their answers
        #: (None: no limit, a poller on its own)
        self.turns = turns
        #: where in its interval this device's polls fall after the first (a fraction, 0 to 1): the engine gives
        #: its devices evenly spread phases, so that polls started together do not answer together
        self.phase = min(max(phase, 0.0), 1.0)
        self.image = image
        self.on_change = on_change
        self.on_event = on_event
        self.driver: Driver = driver_class(config.driver)(config.spec)
        # Readings a device pushes between polls (BACnet COV) enter the image like polled ones.
        self.driver.set_listener(self._apply)
        self.points = {point.name: point for point in config.points}
        self.specs = [point.spec for point in config.points]
        self.online: bool | None = online
        self._wrong_device_reported = False  # a WrongDevice loss is named once, even after a silent one
        self.connect_attempts = 0
        self.reconnect_cap = float(config.spec.options.get("reconnect_max", RECONNECT_MAX_SECONDS))
        self._backoff: float | None = None
        self._retry_at = 0.0
        self.bad_points: set[str] = set()
        self.cycles = 0
        self._lock = asyncio.Lock()
        self._poke = Alarm()
        self._task: asyncio.Task | None = None
        self.stale_after = stale_limit(config.poll_interval, dict(config.spec.options))
        #: points the watchdog marked stale and no read has refreshed yet
        self.stale_points: set[str] = set()
        self._watchdog: asyncio.Task | None = None
        self._polling_since: float | None = None
        self.started_at: float | None = None  # time.monotonic() of start()
        # A request's names tuple -> what this poller last applied from it (see the module docstring), and the
        # same entries by id() of the tuple: the lookup on every answer, no hashing of 100 names (drivers that
        # build a new, equal tuple per answer fall back to the hash once per answer).
        self._answers: dict[tuple[str, ...], _Answer] = {}
        self._answers_by_id: dict[int, _Answer] = {}
        # time.monotonic() of the last good reading of points read outside batches (a device's pushed readings)
        # or of requests no longer remembered
        self._read_at: dict[str, float] = {}
        self.refresh_every = self.stale_after / 10
        #: whether every point is named by a remembered request or in _read_at (None: not known, see _all_read_since)
        self._covered: bool | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        # The image may have been written by someone else while this poller was stopped (replication on a
        # standby): compare the next answers with the image, not with what this poller saw before.
        self._answers.clear()
        self._answers_by_id.clear()
        self._read_at.clear()
        self._covered = None
        if self.driver.holds_values:
            # Virtual points live in the driver: start from the image (the values replicated from the node that
            # was in control, or the previous poller's after a reconfiguration), not from nothing.
            self.driver.seed(self._image_values())
        self.started_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"poll:{self.name}")
        self._watchdog = asyncio.create_task(self._watch_staleness(), name=f"stale:{self.name}")

    def _image_values(self) -> dict[str, RawValue]:
        """The image's values of this device's points, raw (what the driver would have read)."""
        values: dict[str, RawValue] = {}
        for name, point in self.points.items():
            state = self.image.points.get(name)
            if state is None or state.value is None or isinstance(state.value, dict | list | str):
                continue
            try:
                values[name] = point.scaling.to_raw(state.value)
            except (TypeError, ValueError, ZeroDivisionError):
                continue
        return values

    async def stop(self) -> None:
        await cancel_and_wait(self._watchdog)
        await cancel_and_wait(self._task)
        self._task = self._watchdog = None
        await self.driver.close()

    def poll_soon(self) -> None:
        """Read the device now instead of at the next tick (after a write, so operators see the result)."""
        self._poke.ring()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval
        next_at = loop.time()
        # The first poll at once (fresh values after a start or a takeover), then on a grid shifted by the phase:
        # a hundred devices started together would otherwise answer in the same instant of every interval, and
        # the engine would work off a hundred answers (and what they raise) in one turn of its loop.
        shift = self.phase * interval
        while True:
            await self.poll_once()
            self.cycles += 1
            now = loop.time()
            next_at, missed = next_due(next_at + shift - interval if shift else next_at, now, interval)
            if shift:
                shift, missed = 0.0, 0  # the first regular slot, placed by the phase: not an overrun
            if missed and interval >= MIN_REPORTED_INTERVAL:
                log.debug(
                    "device %s: poll overran %d slot(s); interval %.3f s is too short", self.name, missed, interval
                )
            await self._poke.sleep_until(next_at)

    async def poll_once(self) -> None:
        if not self.specs:
            return
        if not self.driver.connected and asyncio.get_running_loop().time() < self._retry_at:
            return  # backing off; the points already show comm_failure
        async with self._lock:
            self._polling_since = asyncio.get_running_loop().time()
            try:
                if not self.driver.connected:  # checked here too: no coroutine per cycle when connected
                    await self._ensure_connected()
                # Each request's readings enter the image as soon as they arrive,
                # so a change does not wait for the rest of the poll cycle.
                turns = self.turns
                async for batch in self.driver.read_batches(self.specs):
                    if turns is not None and turns.spent():
                        await turns.wait_turn()
                    self._apply_batch(batch)
            except WrongDevice as exc:
                self._wrong_device(str(exc))
            except CommunicationError as exc:
                self._went_offline(str(exc))
            except Exception as exc:
                # A driver bug, or an answer no check of the driver caught, must neither end this device's
                # polling nor leave its values looking current: handle it like a lost link, and say why.
                log.exception("device %s: unexpected error while polling", self.name)
                await self.driver.close()
                self._went_offline(f"unexpected {type(exc).__name__} in the {self.config.driver} driver: {exc}")
            finally:
                self._polling_since = None

    def _apply_batch(self, batch: Batch) -> None:
        """The hot path: one request's answer. Unchanged raw values only move their points' source time."""
        when = datetime.now(UTC)
        if self.online is not True or self._backoff is not None:
            self._mark_online()
        names, values, special = batch.names, batch.values, batch.special
        image, points = self.image, self.points
        update = image.update
        changed = self._apply_readings(dict(special), when) if special else False
        # By id first: hashing a 100-name tuple on every answer costs more than the rest of this method.
        answer = self._answers_by_id.get(id(names))
        if answer is None or answer.names is not names:
            answer = self._answer_for(names)
        last = answer.values
        candidates: Sequence[int]
        if last is not None and batch.changed is not None:
            candidates = batch.changed  # the driver knows what moved since the answer applied last
        elif values != last:
            candidates = range(len(names))
        else:
            candidates = ()
        convert = answer.convert or self._prepare(answer)
        deadbands = answer.deadbands
        if answer.layout != image.layout:  # the points' state objects, looked up once, not per value or refresh
            answer.states, answer.layout = image.states(names), image.layout
        states = answer.states
        # The changed values go to the image in one call (update_many: the same result as one update each, in the
        # same order); a point that goes bad in between first flushes what came before it, so the image and the
        # events see everything in the order of the answer.
        moved: list[str] = []
        engineering: list[RawValue] = []
        bands: list[float] = []
        targets: list[PointState | None] = []
        for index in candidates:
            value = values[index]
            if value is None or (last is not None and value == last[index]):
                continue
            if value - value:  # not _finite(value), inlined: this loop is the hot path
                if moved:
                    changed |= self._update_good(moved, engineering, bands, when, targets)
                    moved, engineering, bands, targets = [], [], [], []
                changed |= self._point_bad(names[index], _not_a_number(value), when)
                continue
            moved.append(names[index])
            engineering.append(convert[index](value))
            bands.append(deadbands[index])
            targets.append(states[index])
        if moved:
            changed |= self._update_good(moved, engineering, bands, when, targets)
        answer.values = None if special else values  # after special readings, the next answer is applied in full
        now = answer.read_at = time.monotonic()
        if now - answer.refreshed_at >= self.refresh_every:
            answer.refreshed_at = now
            # Read and unchanged, but not shown good (stale, comm_failure, or marked by anyone else): good again.
            if special:
                good: list[str] | tuple[str, ...] = [name for name in names if name not in special]
                again = image.observe(good, GOOD, when)
            else:
                good = names
                again = image.observe(names, GOOD, when, states)
            if again:
                by_name = dict(zip(names, values, strict=True))
                for name in again:
                    raw = by_name[name]
                    if not _finite(raw):
                        continue  # not a number: stays bad
                    point = points[name]
                    changed |= update(name, point.scaling.to_engineering(raw), GOOD, when, point.deadband)
            if self.stale_points:
                self._read_again(good)
        if changed:
            self.on_change()

    def _update_good(
        self,
        names: list[str],
        engineering: list[RawValue],
        deadbands: list[float],
        when: datetime,
        states: list[PointState | None],
    ) -> bool:
        """Good readings of ``names`` into the image; True if the image changed. Ends a bad point's bad state."""
        changed = self.image.update_many(names, engineering, deadbands, GOOD, when, states)
        bad_points = self.bad_points
        if bad_points:
            for name in names:
                if name in bad_points:
                    self._point_ok(name)
        return changed

    def _prepare(self, answer: _Answer) -> tuple[Callable[[RawValue], RawValue], ...]:
        """Each of the answer's points' conversion and deadband, looked up once instead of per changed value."""
        convert: list[Callable[[RawValue], RawValue]] = []
        deadbands: list[float] = []
        # one function per distinct scaling, not per point: a few objects stay in the CPU cache instead of
        # thousands that each changed value would fetch from memory
        functions: dict[Scaling, Callable[[RawValue], RawValue]] = {}
        for name in answer.names:
            point = self.points.get(name)
            if point is None:
                convert.append(_unknown(name))
                deadbands.append(0.0)
                continue
            function = functions.get(point.scaling)
            if function is None:
                function = functions[point.scaling] = point.scaling.engineering_function()
            convert.append(function)
            deadbands.append(point.deadband)
        answer.convert = tuple(convert)
        answer.deadbands = tuple(deadbands)
        return answer.convert

    def _apply(self, readings: dict[str, Reading]) -> None:
        """The general path: one Reading per point (readings a device pushes, or a batch's special ones)."""
        when = datetime.now(UTC)
        self._mark_online()
        if self._apply_readings(readings, when):
            self.on_change()

    def _mark_online(self) -> None:
        self._backoff = None
        self._wrong_device_reported = False
        if self.online is not True:
            if self.online is False:
                self.on_event("comm_restored", self.name, "communication restored", "info")
            self.online = True

    def _point_bad(self, name: str, error: str, when: datetime) -> bool:
        """Show the point bad (keeping its last value); report it once per transition. True if the image changed."""
        changed = bool(self.image.observe([name], BAD, when))
        if name not in self.bad_points:
            self.bad_points.add(name)
            self.on_event("point_bad", name, error, "warning")
        return changed

    def _point_ok(self, name: str) -> None:
        self.bad_points.discard(name)
        self.on_event("point_ok", name, "point reads again", "info")

    def _apply_readings(self, readings: dict[str, Reading], when: datetime) -> bool:
        changed = False
        for name, reading in readings.items():
            point = self.points[name]
            value = reading.value
            if not reading.ok:
                changed |= self._point_bad(name, reading.error or "read failed", when)
            elif value is not None and not _finite(value):
                changed |= self._point_bad(name, _not_a_number(value), when)
            else:
                changed |= self.image.update(
                    name, point.scaling.to_engineering(value), reading.quality or GOOD, when, point.deadband
                )
                if name in self.bad_points:
                    self._point_ok(name)
        fresh = [name for name, reading in readings.items() if reading.ok]
        self.image.observe(fresh, GOOD, when)  # the unchanged ones were read too: their source time moves
        read_at = time.monotonic()
        known = len(self._read_at)
        for name in fresh:
            self._read_at[name] = read_at
        if len(self._read_at) != known:
            self._covered = None  # a point read for the first time this way
        if self.stale_points:
            self._read_again(fresh)
        return changed

    def _read_again(self, names: list[str] | tuple[str, ...]) -> None:
        self.stale_points.difference_update(names)
        if not self.stale_points:
            self.on_event("values_current", self.name, "values are read again", "info")

    async def _watch_staleness(self) -> None:
        # Beside the poll loop, not in it: the loop may be the thing that hangs.
        period = min(1.0, max(0.05, self.stale_after / 4))
        while True:
            await asyncio.sleep(period)
            self.check_stale()

    def check_stale(self, now: float | None = None) -> list[str]:
        """Show as stale every good point not read successfully for ``stale_after``; return those points.

        Ages are measured on the monotonic clock (``now``: ``time.monotonic()``), not from the points'
        wall-clock source times: a clock step (NTP at boot) must neither hide a hung poll nor invent one.
        A point's age counts from when this poller became responsible for it: after a takeover the image
        holds the old active node's times, and a point must not flash stale (with an event) before the
        new poller has had ``stale_after`` to read it.
        """
        now = time.monotonic() if now is None else now
        limit = now - self.stale_after
        if self.started_at is None or self.started_at >= limit or self._all_read_since(limit):
            return []
        last = dict.fromkeys(self.points, self.started_at)
        for answer in self._answers.values():
            read_at = answer.read_at
            for name in answer.names:
                if last.get(name, math.inf) < read_at:
                    last[name] = read_at
        for name, read_at in self._read_at.items():
            if last.get(name, math.inf) < read_at:
                last[name] = read_at
        states = self.image.points
        old = [
            name
            for name, read_at in last.items()
            if read_at < limit and (state := states.get(name)) is not None and state.quality == GOOD
        ]
        if not old:
            return []
        marked = self.image.observe(old, STALE, datetime.now(UTC))
        self._refresh_soon()  # the next answers show them good again at once
        if not self.stale_points:
            waiting = ""
            if self._polling_since is not None:
                waiting = f"; a poll has been waiting {asyncio.get_running_loop().time() - self._polling_since:.1f} s"
            message = f"{len(marked)} point(s) not read for more than {self.stale_after:g} s{waiting}"
            self.on_event("values_stale", self.name, message, "warning")
            log.warning("device %s: %s", self.name, message)
        self.stale_points.update(marked)
        self.on_change()
        return marked

    def _all_read_since(self, limit: float) -> bool:
        """True if every point was read at ``limit`` or later, so none can be stale.

        The watchdog's usual case, answered per request instead of per point: a device polled on time has every
        request answered within ``stale_after``. Otherwise (a request not answered lately, a point not read yet,
        a request the plan no longer sends) check_stale looks at each point.
        """
        if self._covered is None:
            named: set[str] = set(self._read_at)
            for answer in self._answers.values():
                named.update(answer.names)
            self._covered = named >= self.points.keys()
        return (
            self._covered
            and all(answer.read_at >= limit for answer in self._answers.values())
            and all(read_at >= limit for read_at in self._read_at.values())
        )

    def _answer_for(self, names: tuple[str, ...]) -> _Answer:
        answer = self._answers.get(names)
        if answer is None:
            if len(self._answers) >= MAX_REMEMBERED_REQUESTS:
                self._forget_answers()
            answer = self._answers[names] = _Answer(names)
            self._covered = None
        else:
            # an equal tuple in a new object: index the entry by the new one (the dict key keeps the old one alive,
            # so its id cannot be reused meanwhile)
            self._answers_by_id.pop(id(answer.names), None)
            answer.names = names
        self._answers_by_id[id(names)] = answer
        return answer

    def _forget_answers(self) -> None:
        # keep their read times: forgetting must not make the watchdog think the points were never read
        for answer in self._answers.values():
            for name in answer.names:
                if self._read_at.get(name, -math.inf) < answer.read_at:
                    self._read_at[name] = answer.read_at
        self._answers.clear()
        self._answers_by_id.clear()
        self._covered = None

    def _refresh_soon(self) -> None:
        for answer in self._answers.values():
            answer.refreshed_at = -math.inf

    async def _ensure_connected(self) -> None:
        if not self.driver.connected:
            self.connect_attempts += 1
            await self.driver.connect()

    def _wrong_device(self, reason: str) -> None:
        """Another device answers at this address: say so once, even if the address had fallen silent before."""
        if self.online is False and not self._wrong_device_reported:
            self.on_event("comm_lost", self.name, f"communication lost: {reason}", "error")
            log.warning("device %s: %s", self.name, reason)
        self._wrong_device_reported = True
        self._went_offline(reason)

    def _went_offline(self, reason: str) -> None:
        self._backoff = next_backoff(self._backoff, self.config.poll_interval, self.reconnect_cap)
        self._retry_at = asyncio.get_running_loop().time() + self._backoff
        if self.online is not False:
            self.online = False
            self.on_event("comm_lost", self.name, f"communication lost: {reason}", "error")
            log.warning("device %s: communication lost: %s", self.name, reason)
        self.stale_points.clear()  # comm_failure says more than stale, and comm_restored will end it
        self._refresh_soon()
        if self.image.observe(list(self.points), COMM_FAILURE, datetime.now(UTC)):
            self.on_change()

    async def write(
        self, point: PointConfig, value: RawValue | None, may_send: Callable[[], bool], priority: int | None = None
    ) -> None:
        """Convert to raw and send, checking ``may_send`` (the role fence) right before the request.

        ``None`` is a relinquish (drivers with ``relinquish``): it releases ``priority``.
        """
        raw = None if value is None else point.scaling.to_raw(value)
        async with self._lock:
            await self._ensure_connected()
            if not may_send():
                raise PermissionError("this node is no longer active; the write was not sent")
            try:
                await self.driver.write(point.spec, raw, priority)
            except WriteUncertain:
                raise
            except CommunicationError as exc:
                # The request may have left before the link failed or the answer timed out.
                raise WriteUncertain(str(exc)) from exc
        self.poll_soon()
