"""The partner clock offset from heartbeat timestamps (NTP's four timestamps; the least-delay sample wins)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from redundancy.clock import ClockOffset
from redundancy.service import stale_start_reason

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def exchange(ours: ClockOffset, skew: float, there: float, back: float, hold: float = 0.01) -> None:
    """We send at T0 (our clock); it arrives ``there`` s later, is held ``hold`` s, and comes back in ``back`` s."""
    t1 = T0
    t3_theirs = T0 + timedelta(seconds=there + hold + skew)
    t4 = T0 + timedelta(seconds=there + hold + back)
    ours.heard({"time": t3_theirs, "echo": t1, "hold": hold}, t4)


@pytest.mark.parametrize("skew", [0.0, 300.0, -299.9996, 0.0125])
def test_a_symmetric_link_gives_the_exact_offset_and_the_round_trip(skew):
    clock = ClockOffset()
    exchange(clock, skew, there=0.002, back=0.002)
    assert clock.offset == pytest.approx(skew, abs=1e-6)
    assert clock.delay == pytest.approx(0.004, abs=1e-6)


def test_a_sample_delayed_in_one_direction_loses_to_a_quicker_one():
    clock = ClockOffset()
    exchange(clock, 300.0, there=0.200, back=0.001)  # queued on the way: off by 100 ms
    exchange(clock, 300.0, there=0.001, back=0.001)
    assert clock.offset == pytest.approx(300.0, abs=1e-6)


def test_heartbeats_without_an_echo_or_with_a_nonsense_hold_measure_nothing():
    clock = ClockOffset()
    clock.heard({"time": T0}, T0)
    clock.heard({"time": T0, "echo": T0, "hold": -1}, T0)
    clock.heard({"time": "yesterday", "echo": T0, "hold": 0.1}, T0)
    assert clock.offset is None
    assert set(clock.echo()) == {"echo", "hold"}  # but the next heartbeat of ours can echo the first


def test_a_node_is_stale_at_start_unless_it_was_in_control_or_never_ran_in_a_pair():
    assert stale_start_reason(None, 0) == ""
    assert stale_start_reason("active", 3) == ""
    assert stale_start_reason("handing_over", 3) == ""
    for role in ("standby", "syncing", "isolated", "starting"):
        assert f"was {role} in epoch 3" in stale_start_reason(role, 3)
