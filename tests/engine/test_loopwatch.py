"""Timing health (bms.engine.loopwatch): the rolling percentiles, heartbeat-style jitter and the loop's lag."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from bms.engine.loopwatch import LoopWatch, PeriodJitter, RollingWindow, percentile, summarize
from bms.engine.runner import Engine

# --- the rolling window ------------------------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks():
    ordered = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(ordered, 0.0) == 1.0
    assert percentile(ordered, 0.5) == 3.0
    assert percentile(ordered, 0.9) == pytest.approx(7.6)  # 4 + (10 - 4) * 0.6
    assert percentile(ordered, 1.0) == 10.0
    assert percentile([5.0], 0.99) == 5.0


def test_summary_of_a_hundred_values_in_ms():
    window = RollingWindow(seconds=60)
    for i in range(100):  # 1 ms ... 100 ms, shuffled order must not matter
        window.add(((i * 37) % 100 + 1) / 1000, now=1000.0 + i * 0.01)
    assert window.summary(now=1001.0) == {"n": 100, "p50": 50.5, "p99": 99.01, "max": 100.0}


def test_the_window_forgets_samples_older_than_its_length():
    window = RollingWindow(seconds=5)
    for t in range(11):  # one sample a second, value = its time
        window.add(float(t), now=float(t))
    assert window.values(now=10.0) == [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    # Reading later (no new samples) leaves out what has aged, without changing the window.
    assert window.values(now=13.5) == [9.0, 10.0]
    assert window.summary(now=100.0) == {"n": 0, "p50": None, "p99": None, "max": None}


def test_the_window_holds_at_most_max_samples():
    window = RollingWindow(seconds=60, max_samples=3)
    for i in range(10):
        window.add(float(i), now=i / 100)
    assert window.values(now=0.1) == [7.0, 8.0, 9.0]


def test_summarize_nothing():
    assert summarize([]) == {"n": 0, "p50": None, "p99": None, "max": None}


# --- jitter of a periodic event ------------------------------------------------------------------------------------


def test_jitter_is_the_distance_of_each_interval_from_the_period():
    jitter = PeriodJitter(period=0.1, window=60)
    for t in (0.0, 0.1, 0.25, 0.33, 0.43):  # intervals 100, 150, 80, 100 ms
        jitter.event(t)
    summary = jitter.summary(now=0.5)
    assert summary["intervals"] == 4
    assert summary["max_ms"] == pytest.approx(50.0)
    assert summary["p50_ms"] == pytest.approx(10.0)  # of 0, 0, 20, 50


def test_a_restart_leaves_the_gap_out():
    jitter = PeriodJitter(period=0.1)
    jitter.event(0.0)
    jitter.event(0.1)
    jitter.restart()  # the link was down for a while
    jitter.event(5.0)
    jitter.event(5.1)
    summary = jitter.summary(now=5.2)
    assert summary["intervals"] == 2
    assert summary["max_ms"] == pytest.approx(0.0, abs=1e-6)


def test_no_intervals_yet():
    jitter = PeriodJitter(period=1.0)
    jitter.event(3.0)
    assert jitter.summary(now=3.0) == {"intervals": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


# --- the loop watch on a real loop --------------------------------------------------------------------------------


async def until(predicate, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_blocked_loop_is_recorded_as_lag():
    watch = LoopWatch(tick=0.02, window=60, slow=0.05)
    watch.start()
    try:
        await until(lambda: watch.samples_total >= 5)
        before = watch.slow_total
        blocked_at = datetime.now(UTC)
        # A callback that blocks the loop for 150 ms, as a synchronous call on the loop would.
        asyncio.get_running_loop().call_soon(time.sleep, 0.15)
        ticks = watch.samples_total
        await until(lambda: watch.samples_total >= ticks + 3)
        summary = watch.summary()
        # The tick that was due within 20 ms of the block's start woke when it ended: at least 130 ms late.
        assert summary["max_ms"] >= 120, summary
        assert summary["slow"] >= 1 and watch.slow_total >= before + 1, summary
        assert watch.last_slow_at is not None and watch.last_slow_at.tzinfo is UTC
        assert watch.last_slow_at >= blocked_at - timedelta(milliseconds=1)
        assert summary["samples"] == len(watch.lags.values())
        assert summary["p50_ms"] < summary["max_ms"]
    finally:
        await watch.stop()
    assert not watch.running
    stopped_at = watch.samples_total
    await asyncio.sleep(0.06)
    assert watch.samples_total == stopped_at  # stopped means stopped


async def test_an_idle_loop_has_little_lag():
    watch = LoopWatch(tick=0.01)
    watch.start()
    try:
        await until(lambda: watch.samples_total >= 20)
    finally:
        await watch.stop()
    summary = watch.summary()
    assert summary["samples"] >= 20
    assert summary["p50_ms"] < 10, summary  # generous: a loaded test machine, but nothing blocks this loop


async def test_the_engine_starts_and_stops_its_loop_watch(plant, layer):
    engine = Engine(layer, publish_min_interval=0.0, config_check_interval=0.05, command_scan_interval=0.05)
    assert not engine.loop_watch.running
    await engine.start()
    try:
        assert engine.loop_watch.running
        await until(lambda: engine.loop_watch.samples_total >= 3)
    finally:
        await engine.stop()
    assert not engine.loop_watch.running
    assert engine.loop_watch.summary()["samples"] >= 3
