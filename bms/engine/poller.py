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
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

from bms.engine.config import DeviceConfig, PointConfig
from bms.engine.image import BAD, COMM_FAILURE, GOOD, ProcessImage
from bms.engine.tasks import cancel_and_wait
from drivers.base import CommunicationError, Driver, RawValue, Reading
from drivers.registry import driver_class

log = logging.getLogger(__name__)
RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0

EventSink = Callable[[str, str, str, str], None]  # kind, source, message, severity


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


def next_backoff(current: float | None, poll_interval: float, cap: float) -> float:
    """Delay before the next connection attempt after one more failure."""
    if current is None:
        return min(cap, max(poll_interval, RECONNECT_MIN_SECONDS))
    return min(cap, current * 2)


class DevicePoller:
    """The poll loop and write path of one device."""

    def __init__(
        self,
        config: DeviceConfig,
        image: ProcessImage,
        on_change: Callable[[], None],
        on_event: EventSink,
    ) -> None:
        self.config = config
        self.image = image
        self.on_change = on_change
        self.on_event = on_event
        self.driver: Driver = driver_class(config.driver)(config.spec)
        self.points = {point.name: point for point in config.points}
        self.specs = [point.spec for point in config.points]
        self.online: bool | None = None
        self.connect_attempts = 0
        self.reconnect_cap = float(config.spec.options.get("reconnect_max", RECONNECT_MAX_SECONDS))
        self._backoff: float | None = None
        self._retry_at = 0.0
        self.bad_points: set[str] = set()
        self.cycles = 0
        self._lock = asyncio.Lock()
        self._poke = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"poll:{self.name}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.driver.close()

    def poll_soon(self) -> None:
        """Read the device now instead of at the next tick (after a write, so operators see the result)."""
        self._poke.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval
        next_at = loop.time()
        while True:
            await self.poll_once()
            self.cycles += 1
            now = loop.time()
            next_at, missed = next_slot(next_at, now, interval)
            if missed:
                log.debug(
                    "device %s: poll overran %d slot(s); interval %.3f s is too short", self.name, missed, interval
                )
            try:
                await asyncio.wait_for(self._poke.wait(), timeout=next_at - now)
            except TimeoutError:
                pass
            self._poke.clear()

    async def poll_once(self) -> None:
        if not self.specs:
            return
        if not self.driver.connected and asyncio.get_running_loop().time() < self._retry_at:
            return  # backing off; the points already show comm_failure
        async with self._lock:
            try:
                await self._ensure_connected()
                # Each request's readings enter the image as soon as they arrive,
                # so a change does not wait for the rest of the poll cycle.
                async for readings in self.driver.read_iter(self.specs):
                    self._apply(readings)
            except CommunicationError as exc:
                self._went_offline(str(exc))

    def _apply(self, readings: dict[str, Reading]) -> None:
        when = datetime.now(UTC)
        self._backoff = None
        if self.online is not True:
            if self.online is False:
                self.on_event("comm_restored", self.name, "communication restored", "info")
            self.online = True
        changed = False
        for name, reading in readings.items():
            point = self.points[name]
            if reading.ok:
                changed |= self.image.update(
                    name, point.scaling.to_engineering(reading.value), GOOD, when, point.deadband
                )
                if name in self.bad_points:
                    self.bad_points.discard(name)
                    self.on_event("point_ok", name, "point reads again", "info")
            else:
                changed |= self.image.update(name, None, BAD, when)
                if name not in self.bad_points:
                    self.bad_points.add(name)
                    self.on_event("point_bad", name, reading.error or "read failed", "warning")
        if changed:
            self.on_change()

    async def _ensure_connected(self) -> None:
        if not self.driver.connected:
            self.connect_attempts += 1
            await self.driver.connect()

    def _went_offline(self, reason: str) -> None:
        self._backoff = next_backoff(self._backoff, self.config.poll_interval, self.reconnect_cap)
        self._retry_at = asyncio.get_running_loop().time() + self._backoff
        if self.online is not False:
            self.online = False
            self.on_event("comm_lost", self.name, f"communication lost: {reason}", "error")
            log.warning("device %s: communication lost: %s", self.name, reason)
        if self.image.mark(list(self.points), COMM_FAILURE, datetime.now(UTC)):
            self.on_change()

    async def write(self, point: PointConfig, value: RawValue, may_send: Callable[[], bool]) -> None:
        """Convert to raw and send, checking ``may_send`` (the role fence) right before the request."""
        raw = point.scaling.to_raw(value)
        async with self._lock:
            await self._ensure_connected()
            if not may_send():
                raise PermissionError("this node is no longer active; the write was not sent")
            await self.driver.write(point.spec, raw)
        self.poll_soon()
