"""Samples are history of the pair (issue 10 item 6): after a kill -9 failover and a failback, both nodes hold
the same samples, and the record of a changing point has a gap only around the takeover.

Real nodes (``runbms``, production shape) on their own databases, the simulated building with its physics
running (its temperatures change every half second), every point trended by default (on change, at least
every 15 minutes).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]


def samples(node, before: datetime) -> set[tuple]:
    rows = node.query("SELECT point_id, time, value, quality FROM trends_sample WHERE time < %s", [before])
    return {(row["point_id"], row["time"], row["value"], row["quality"]) for row in rows}


def count(node, origin: str, after: datetime | None = None) -> int:
    rows = node.query(
        "SELECT count(*) AS n FROM trends_sample WHERE origin = %s AND time > %s",
        [origin, after or datetime(2000, 1, 1, tzinfo=UTC)],
    )
    return rows[0]["n"]


def test_after_a_failover_and_a_failback_both_nodes_hold_the_same_samples(make_pair):
    pair = make_pair(period_ms=100)
    pair.up()
    wait_until(lambda: count(pair.main, "main") > 50, 30, message="main records samples")
    wait_until(lambda: count(pair.backup, "main") > 50, 30, message="the backup holds them by replication")
    assert count(pair.backup, "backup") == 0  # a standby does not sample

    killed = datetime.fromtimestamp(pair.main.kill9(), UTC)
    pair.wait_for_roles(10, backup="active")
    took_over = datetime.fromtimestamp(pair.backup.takeover(after=killed.timestamp()).time, UTC)
    wait_until(
        lambda: count(pair.backup, "backup", took_over + timedelta(seconds=1)) > 10, 30, message="backup samples"
    )

    pair.main.start()
    pair.wait_for_roles(90, main="active", backup="standby")
    back = datetime.now(UTC)
    wait_until(lambda: count(pair.main, "main", back) > 10, 30, message="main samples again after the failback")
    bound = datetime.now(UTC) - timedelta(seconds=1)
    wait_until(
        lambda: samples(pair.main, bound) == samples(pair.backup, bound), 60, message="the same samples on both nodes"
    )
    held = samples(pair.main, bound)
    origins = {row["origin"] for row in pair.main.query("SELECT DISTINCT origin FROM trends_sample")}
    assert origins == {"main", "backup"}, origins

    # The busiest point's record around the kill: no gap longer than the takeover plus what main had not flushed.
    busiest = max({point for point, *_ in held}, key=lambda point: sum(1 for row in held if row[0] == point))
    times = sorted(when for point, when, *_ in held if point == busiest)
    around = [when for when in times if killed - timedelta(seconds=10) <= when <= took_over + timedelta(seconds=10)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(around)]
    takeover = (took_over - killed).total_seconds()
    print(
        f"takeover {takeover:.2f} s; longest gap of point {busiest} around it {max(gaps):.2f} s ({len(around)} samples)"
    )
    assert max(gaps) <= takeover + 2.5, (takeover, max(gaps))
