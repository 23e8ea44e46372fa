"""Timing health: how late the engine's asyncio loop runs its tasks, and how regular a periodic sender is.

Everything on the engine's loop (polling, publishing, the pair service's
heartbeats) is only as punctual as the loop: a callback that blocks it, or a
process starved of CPU or of the GIL by busy web threads, delays them all.

* :class:`LoopWatch` is a task that sleeps a short tick (20 ms) and records
  how late it wakes up: the loop's lag, as every other task on it sees it.
* :class:`PeriodJitter` records how far the interval between consecutive
  events (heartbeats sent or received) is from their period.

Both keep their samples in a :class:`RollingWindow` (the last 60 s) and
report p50, p99 and the maximum in milliseconds. Samples are added by one
thread (the loop's); summaries may be read from any thread (the web side of
an embedded node). Memory is bounded by the window: one small tuple per
sample, at most one sample per tick.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bms.engine.tasks import cancel_and_wait

WINDOW_SECONDS = 60.0
LOOP_TICK_SECONDS = 0.02
SLOW_LAG_SECONDS = 0.05


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of sorted values, interpolated linearly between closest ranks (numpy's default)."""
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class RollingWindow:
    """The samples of the last ``seconds`` (at most ``max_samples`` of them), summarised on demand.

    :meth:`add` takes the sample's time on :func:`time.monotonic`'s clock and
    drops what has left the window, so the window never holds more than it
    covers. Call it from one thread; :meth:`values` and :meth:`summary` copy
    the window first and can be called from any thread.
    """

    __slots__ = ("_samples", "seconds")

    def __init__(self, seconds: float = WINDOW_SECONDS, max_samples: int = 10_000) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, value: float, now: float) -> None:
        samples = self._samples
        samples.append((now, value))
        horizon = now - self.seconds
        while samples[0][0] < horizon:
            samples.popleft()

    def clear(self) -> None:
        self._samples.clear()

    def values(self, now: float | None = None) -> list[float]:
        """The values still in the window at ``now`` (default: the current monotonic time), oldest first."""
        horizon = (time.monotonic() if now is None else now) - self.seconds
        return [value for at, value in list(self._samples) if at >= horizon]

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """:func:`summarize` of the values in the window, in milliseconds."""
        return summarize(self.values(now))


def summarize(values: Sequence[float], scale: float = 1000.0, digits: int = 2) -> dict[str, Any]:
    """``{"n", "p50", "p99", "max"}`` of ``values``, each times ``scale`` (seconds to ms); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.5) * scale, digits),
        "p99": round(percentile(ordered, 0.99) * scale, digits),
        "max": round(ordered[-1] * scale, digits),
    }


class LoopWatch:
    """Measures the lag of the running asyncio loop: a task sleeps ``tick`` and records how late it wakes up.

    ``start()`` in the running loop, ``await stop()`` to end. A lag above
    ``slow`` (50 ms) is also counted since the start (``slow_total``), with
    the wall-clock time of the latest one (aware UTC).
    """

    def __init__(
        self, tick: float = LOOP_TICK_SECONDS, window: float = WINDOW_SECONDS, slow: float = SLOW_LAG_SECONDS
    ) -> None:
        self.tick = tick
        self.slow = slow
        self.lags = RollingWindow(window, max_samples=math.ceil(window / tick) + 1)
        self.samples_total = 0
        self.slow_total = 0
        self.last_slow_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-watch")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        tick, clock = self.tick, time.monotonic
        while True:
            due = clock() + tick
            await asyncio.sleep(tick)
            now = clock()
            self.record(max(0.0, now - due), now)

    def record(self, lag: float, now: float) -> None:
        """One tick woke ``lag`` seconds late at ``now`` (monotonic clock)."""
        self.lags.add(lag, now)
        self.samples_total += 1
        if lag > self.slow:
            self.slow_total += 1
            self.last_slow_at = datetime.now(UTC)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Lag in ms over the window (p50, p99, max; None before the first tick) and the slow ticks, for the status."""
        values = self.lags.values(now)
        window = summarize(values)
        return {
            "tick_ms": round(self.tick * 1000, 3),
            "window_s": self.lags.seconds,
            "samples": window["n"],
            "p50_ms": window["p50"],
            "p99_ms": window["p99"],
            "max_ms": window["max"],
            "slow_ms": round(self.slow * 1000, 3),
            "slow": sum(1 for lag in values if lag > self.slow),
            "slow_total": self.slow_total,
            "last_slow_at": self.last_slow_at.isoformat() if self.last_slow_at else None,
        }


class PeriodJitter:
    """How regular a periodic event is: ``|interval - period|`` between consecutive events, over a window.

    :meth:`event` at every occurrence (monotonic time); :meth:`restart` when
    the next interval is not a regular one (the link went down, or a
    heartbeat is sent early on purpose), so that gap is not counted.
    """

    def __init__(self, period: float, window: float = WINDOW_SECONDS) -> None:
        self.period = period
        # Generous bound: events closer together than a tenth of the period are not expected.
        self.deviations = RollingWindow(window, max_samples=max(16, math.ceil(10 * window / period)))
        self._last: float | None = None

    def event(self, now: float) -> None:
        if self._last is not None:
            self.deviations.add(abs(now - self._last - self.period), now)
        self._last = now

    def restart(self) -> None:
        self._last = None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """``{"intervals", "p50_ms", "p99_ms", "max_ms"}`` of the deviations in the window (None if there are none)."""
        window = self.deviations.summary(now)
        return {"intervals": window["n"], "p50_ms": window["p50"], "p99_ms": window["p99"], "max_ms": window["max"]}
