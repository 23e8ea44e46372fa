"""What an operator is told about the partner's clock and about the witness (issue 15 items 6 and 7).

* Clock skew: the backup runs with its wall clock 300 s ahead (Debian's
  libfaketime, preloaded into its processes). Both nodes measure the offset
  from the heartbeats, show it, warn once, and the standby's replication lag
  stays a real lag, not the skew.
* The witness: frozen (SIGSTOP) it is unreachable; both nodes record that as
  an event and again when it answers; a standby whose partner falls silent
  meanwhile says the witness is unreachable, not that it hears the partner.
"""

from __future__ import annotations

import glob

import pytest

from tests.support.processes import paused, wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]

LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)


def partner_status(node) -> dict:
    return ((node.state()["status"] or {}).get("partners") or [{}])[0]


def events_of(node, kind: str, source: str) -> list[dict]:
    return node.query(
        "SELECT message, severity FROM events_event WHERE kind = %s AND source = %s ORDER BY time, id", [kind, source]
    )


@pytest.mark.skipif(LIBFAKETIME is None, reason="Debian's faketime package is not installed (.ci/run installs it)")
def test_a_skewed_partner_clock_is_measured_shown_warned_and_kept_out_of_the_lag(make_pair):
    pair = make_pair(period_ms=100)
    pair.backup.env |= {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+300s"}
    pair.up()

    def measured(node, expected: float):
        offset = partner_status(node).get("clock_offset_ms")
        return offset if offset is not None and abs(offset - expected) < 500 else None

    on_main = wait_until(lambda: measured(pair.main, 300_000), 20, 0.2, "main measures +300 s")
    on_backup = wait_until(lambda: measured(pair.backup, -300_000), 20, 0.2, "backup measures -300 s")
    lag = wait_until(lambda: pair.backup.state()["status"]["sync"].get("lag_ms"), 20, 0.2, "a replicated delta")
    print(f"clock offset: main sees {on_main:+.1f} ms, backup sees {on_backup:+.1f} ms; standby lag {lag:.1f} ms")
    assert abs(lag) < 1000, lag  # on today's code: about 300,000 ms
    warned = wait_until(lambda: events_of(pair.main, "clock_skew", "main"), 10, 0.2, "a clock-skew event on main")
    assert warned[0]["severity"] == "warning" and "NTP" in warned[0]["message"]
    metrics = pair.main.session().opener.open(f"{pair.main.base_url}/metrics").read().decode()
    assert "bms_redundancy_partner_clock_offset_seconds" in metrics
    assert pair.roles() == {"main": "active", "backup": "standby"}


def test_losing_and_regaining_the_witness_are_events_and_named_as_such(make_pair):
    pair = make_pair(period_ms=100, proxied=True, witness=True)
    pair.up()
    with paused(pair.witness):
        for node in (pair.main, pair.backup):
            lost = wait_until(
                lambda node=node: events_of(node, "witness_unreachable", node.name), 10, 0.1, "witness lost"
            )
            assert lost[0]["severity"] == "warning" and "unreachable" in lost[0]["message"], lost
        pair.cut()  # the partner falls silent while the witness cannot be asked
        isolated = wait_until(
            lambda: next((c for c in pair.backup.role_changes("backup") if c.new == "isolated"), None),
            10,
            message="the backup isolated",
        )
        print(f"witness frozen, link cut: {isolated.reason}")
        assert "the witness is unreachable" in isolated.reason
    pair.restore()
    for node in (pair.main, pair.backup):
        wait_until(lambda node=node: events_of(node, "witness_reachable", node.name), 10, 0.1, "witness back")
    pair.wait_for_roles(30, main="active", backup="standby")
