"""Fault tests of the hot-standby pair with real processes: cold start, kill -9, restart, failback under load.

Every figure comes from the nodes' databases (role rows, role-change
events, command log, history stamps) and from the simulated device's write
log; waits poll those with generous deadlines, assertions compare counts
and sequence numbers.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.pair import FINAL, ZONE_REGISTER, Load, RoleSampler, read_writes, setpoint_writes
from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]


def activations(changes):
    return [change for change in changes if change.new == "active"]


def sync_seq(node) -> int:
    return int((node.state()["status"] or {}).get("sync", {}).get("image_seq") or 0)


def submit_all(node, prefix: str, count: int, point: str = "zone1_setpoint", base: float = 20.0) -> dict[str, float]:
    sent = {}
    for index in range(count):
        command_id, value = f"{prefix}-{index}", round(base + index * 0.01, 2)
        status, body = node.submit(point, value, command_id)
        assert (status, body.get("status")) == (200, "succeeded"), body
        sent[command_id] = value
    return sent


def assert_prefix(origin_node, replica, origin: str) -> int:
    """The replica holds every row ``origin`` wrote up to the highest stamp it has: no hole in the middle."""
    mine, theirs = origin_node.stamps(origin), replica.stamps(origin)
    top = max((seq for rows in theirs.values() for seq in rows), default=0)
    for table in ("events.event", "control.auditentry"):
        expected = {seq for seq in mine.get(table, {}) if seq <= top}
        assert set(theirs.get(table, {})) == expected, f"{table}: replica of {origin} has a gap below {top}"
    # Commands change (and take a new stamp) in place: compare the latest version of each by its id.
    latest = {row["command_id"]: row for row in mine.get("control.command", {}).values()}
    for seq, row in theirs.get("control.command", {}).items():
        assert row["command_id"] in latest and seq <= latest[row["command_id"]]["origin_seq"]
    for command_id, row in latest.items():
        if row["origin_seq"] <= top:
            copy = next((r for r in theirs.get("control.command", {}).values() if r["command_id"] == command_id), None)
            assert copy is not None and copy["origin_seq"] == row["origin_seq"], f"command {command_id} missing"
    return top


def test_cold_start_both_nodes_at_once_gives_exactly_one_active(make_pair):
    pair = make_pair(period_ms=100)
    pair.up()  # both processes started together; returns once both start-up role changes are in the event logs
    changes = pair.all_role_changes()
    assert [(c.node, c.epoch) for c in activations(changes)] == [("main", 1)], changes
    assert all(change.new != "active" for change in changes if change.node == "backup")
    # And it stays that way: no further role change while both run.
    time.sleep(10 * pair.timeout)
    assert pair.all_role_changes() == changes


def test_kill9_of_the_active_node_and_the_restarted_main_stays_standby(make_pair, pair_device):
    pair = make_pair(period_ms=100, failback="manual")
    pair.up()
    since = time.time()  # the device is shared by the session's pair tests: count only this test's writes
    before = submit_all(pair.main, "k9-before", 5)
    pair.wait_history_identical()
    epoch = pair.main.state()["epoch"]
    seq_before = sync_seq(pair.backup)
    assert seq_before > 0

    killed_at = pair.main.kill9()
    pair.wait_for_roles(10, backup="active")
    takeover = pair.backup.takeover(after=killed_at)
    elapsed = takeover.time - killed_at
    print(f"takeover {elapsed * 1000:.0f} ms after kill -9 (timeout {pair.timeout * 1000:.0f} ms)")
    assert elapsed <= pair.timeout + 0.5, elapsed
    assert takeover.epoch == epoch + 1
    # The image stream continues from the replicated seq, never from zero.
    seq_after = wait_until(lambda: (s := sync_seq(pair.backup)) > seq_before and s, 10, message="image seq moves")
    assert seq_after > seq_before

    # History: the survivor holds main's history without a gap; nothing main wrote is lost up to what reached it.
    assert assert_prefix(pair.main, pair.backup, "main") > 0
    after = submit_all(pair.backup, "k9-after", 5, base=22.0)
    commands = pair.backup.commands()
    assert all(commands[c]["status"] == "succeeded" for c in [*before, *after])

    # Restart main with its old "I was active" row: it comes up standby and stays there (failback is manual).
    assert pair.main.state()["role"] == "active"
    restarted_at = time.time()
    with RoleSampler(pair, interval=0.01) as sampler:
        pair.main.start()
        pair.wait_for_roles(60, main="standby", backup="active")
    # Its row said "active" from its last life: the restarted node's first write of the row is its whole status
    # (starting, syncing, standby), never a liveness beat that would make the old role look current.
    print(f"roles sampled over the restart: {dict(sampler.seen)}")
    assert not [roles for roles in sampler.seen if roles[0] == "active"], sampler.seen
    assert sampler.overlaps == []
    time.sleep(pair.options.hold_down_ms / 1000 + 2)
    assert pair.roles() == {"main": "standby", "backup": "active"}
    mains = [c for c in pair.main.role_changes(source="main") if c.time >= restarted_at]
    assert mains and all(c.new != "active" for c in mains), mains
    digest = pair.wait_history_identical()
    print(f"history after catch-up: {digest}")

    # Each command reached the device exactly once.
    writes = setpoint_writes(pair.write_log, since)
    for value in [*before.values(), *after.values()]:
        assert writes[(ZONE_REGISTER["zone1_setpoint"], value)] == 1, value


def test_failback_under_load(make_pair, pair_device):
    # Timeout 600 ms, not 300: under this test's own load on a 2-core CI machine a
    # node's loop has paused for over 300 ms, a takeover without a fault (correct,
    # fenced, but not what this test is about). docs/redundancy.md: choosing the timeout.
    pair = make_pair(period_ms=200, hold_down_ms=2000, command_wait_s=1.0)
    pair.up()
    started = time.time()
    with RoleSampler(pair) as sampler, Load(pair, "fb") as load:
        wait_until(lambda: load.count >= 10, 30, message="load running")
        killed_at = pair.main.kill9()
        pair.wait_for_roles(15, backup="active")
        wait_until(lambda: load.count >= 30, 30, message="load on the backup")
        pair.main.start()
        pair.wait_for_roles(60, main="active", backup="standby")
        count_at_failback = load.count
        wait_until(lambda: load.count >= count_at_failback + 10, 30, message="load after failback")
    print(f"{load.count} commands submitted; {sampler.samples} role samples; seen {dict(sampler.seen)}")
    assert sampler.overlaps == []

    changes = pair.all_role_changes()
    acts = activations(changes)
    assert [(c.node, c.epoch) for c in acts] == [("main", 1), ("backup", 2), ("main", 3)], changes
    handover = [c for c in changes if c.node == "backup" and c.new in ("handing_over", "standby")]
    assert handover and handover[0].time <= acts[-1].time + 0.5

    # At the device: writers never interleave; control moved twice (main -> backup at the kill, back at failback).
    pids = {"main": set(), "backup": set()}
    for name, node in pair.nodes.items():
        pids[name] = node.pids
    writers = [w.pid for w in read_writes(pair.write_log, started) if w.pid is not None]
    owners = [next((n for n, p in pids.items() if pid in p), "old-main") for pid in writers]
    switches = [b for a, b in itertools.pairwise(owners) if a != b]
    assert len(switches) <= 2, switches

    # No command lost: every command either node recorded ends final, with the same outcome on both.
    def settled() -> dict | None:
        main, backup = pair.main.commands(), pair.backup.commands()
        if set(main) != set(backup):
            return None
        if any(main[c]["status"] not in FINAL or main[c]["status"] != backup[c]["status"] for c in main):
            return None
        return main

    commands = wait_until(settled, 30, 0.2, "every command final and equal on both nodes")
    accepted = [c for c, r in load.results.items() if r["http"] in (200, 202, 502)]
    missing = [c for c in accepted if c not in commands]
    assert not missing, missing
    statuses = {s: sum(1 for r in commands.values() if r["status"] == s) for s in FINAL}
    print(f"commands: {len(commands)} recorded, {len(accepted)} accepted by the API, outcomes {statuses}")

    writes = setpoint_writes(pair.write_log, started)
    register = ZONE_REGISTER[load.point]
    for command_id, row in commands.items():
        if not command_id.startswith("fb-"):
            continue
        count = writes[(register, round(float(row["value"]), 3))]
        assert count <= 1, (command_id, count)
        if row["status"] == "succeeded":
            assert count == 1, command_id

    digest = pair.wait_history_identical()
    print(f"history identical: {digest}")
    assert killed_at > started
