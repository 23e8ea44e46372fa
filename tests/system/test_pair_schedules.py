"""Schedules across a kill -9 of the active node, with real processes (issue 12, ADR 0017).

Each test defines, on the active main, a schedule writing ``zone3_setpoint``
(Modbus float32 at hr:4 of the shared simulated building) whose transition
comes ten seconds after it is created, waits until the main has written the value
in force and the backup holds the schedule, its image entry and the command,
then kills the main with SIGKILL: one second before the transition, or just
after the main wrote it. The judge is the device's own write log (every
write with the pid of the process that sent it) and the command ids in the
command log: the transition is written once, by the right node, at the right
time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.support.alarms import image, manage
from tests.support.pair import Pair, read_writes
from tests.support.processes import wait_until
from tests.support.schedules import identity, local, site_zone

pytestmark = [pytest.mark.system, pytest.mark.pair, pytest.mark.timeout(360)]

OPTIONS = {"period_ms": 200, "hold_down_ms": 2000, "failback": "auto"}
POINT, REGISTER, PRIORITY = "zone3_setpoint", 4, 12
#: exact in float32; no other test writes them
BEFORE, AFTER = 18.25, 23.75
#: seconds from creating the schedule (in a manage.py shell that has already started) to its transition: the main
#: loads it and writes the value in force, and the backup receives both, in a few seconds on a loaded machine
LEAD = 10.0
#: how late the transition may reach the device after max(transition, takeover) on a loaded two-core machine
LATE = 1.0


def writes(pair: Pair, since: float, value: float) -> list:
    return [
        write
        for write in read_writes(pair.write_log, since)
        if write.table == "hr" and write.address == REGISTER and round(write.float32, 3) == value
    ]


def entry(node, name: str) -> dict | None:
    row = (image(node) or {}).get(f"schedule:{name}")
    return row[0] if row is not None and isinstance(row[0], dict) else None


def schedule_rows(node) -> list[dict]:
    return node.query(
        "SELECT command_id, value, status, accepted_by, accepted_epoch FROM control_command "
        "WHERE source = 'schedule' ORDER BY id"
    )


def define(pair: Pair, name: str) -> tuple[float, str, str]:
    """The schedule on the main: BEFORE since midnight, AFTER from a transition LEAD seconds ahead.

    Returns (transition time, identity of the morning occurrence, identity of the transition), once the main
    wrote BEFORE and the backup holds the schedule, its entry (the morning occurrence done) and that command."""
    zone = site_zone()
    # The transition time is taken in the shell, once Django has started: its start-up (seconds on a loaded
    # machine) is no part of the lead, which only has to cover loading, writing and replicating.
    code = (
        "from zoneinfo import ZoneInfo; from bms.schedules.models import Schedule, ScheduleTarget; "
        "from bms.points.models import Point; from tests.support.schedules import local, today_only, whole_second; "
        f"zone = ZoneInfo({str(zone)!r}); at = whole_second({LEAD}); "
        f"weekly = today_only(zone, [('00:00', {BEFORE}), (local(at, zone), {AFTER})]); "
        f"s = Schedule.objects.create(name={name!r}, value_type='real', time_zone=str(zone), weekly=weekly); "
        f"ScheduleTarget.objects.create(schedule=s, point=Point.objects.get(name={POINT!r}), priority={PRIORITY}); "
        "print('SCHEDULE', s.pk, at.timestamp())"
    )
    out = manage(pair.main, "shell", "-c", code)
    _, pk_text, at_text = next(line for line in out.splitlines() if line.startswith("SCHEDULE ")).split()
    pk, at = int(pk_text), datetime.fromtimestamp(float(at_text), UTC)
    morning, transition = identity(pk, zone, "00:00:00"), identity(pk, zone, local(at, zone))
    since = at.timestamp() - LEAD - 5
    wait_until(lambda: writes(pair, since, BEFORE), 30, 0.1, "the main writes the value in force")
    wait_until(
        lambda: (e := entry(pair.backup, name)) and e["done"] == morning and e["next_value"] == AFTER,
        30,
        0.2,
        "the schedule's entry replicated to the backup",
    )
    wait_until(
        lambda: [row for row in schedule_rows(pair.backup) if row["status"] == "succeeded"],
        30,
        0.2,
        "the schedule's command replicated to the backup",
    )
    margin = at.timestamp() - time.time()
    print(f"schedule {name} (sch{pk}, {zone}) ready {margin:.1f} s before its transition at {at.isoformat()}")
    if margin < 3:
        pytest.fail(f"setting the schedule up took too long: {margin:.1f} s left before its transition")
    return at.timestamp(), morning, transition


def takeover(pair: Pair, killed_at: float) -> tuple[float, int]:
    pair.wait_for_roles(20, backup="active")
    change = pair.backup.takeover(killed_at - 1)
    print(f"backup active in epoch {change.epoch}, {(change.time - killed_at) * 1000:.0f} ms after kill -9")
    return change.time, change.epoch


def test_a_transition_one_second_after_the_active_node_was_killed_is_done_once_by_the_new_one_on_time(make_pair):
    pair = make_pair(**OPTIONS)
    pair.up()
    started = time.time()
    at, morning, transition = define(pair, "pair_sched_late")
    main_pids = pair.main.pids
    time.sleep(max(0.0, at - 1.0 - time.time()))  # the scenario: kill -9 one second before the transition
    killed_at = pair.main.kill9()
    taken_at, epoch = takeover(pair, killed_at)

    wait_until(lambda: writes(pair, started, AFTER), 30, 0.05, "the transition written at the device")
    # Nothing more may come: the new node publishes the entry with the transition done, then a quiet while.
    wait_until(
        lambda: (e := entry(pair.backup, "pair_sched_late")) and e["done"] == transition and e["epoch"] == epoch,
        20,
        0.2,
        "the backup's entry with the transition done",
    )
    time.sleep(2)  # a second write (a repeat, a re-assert) would come within this; none may
    after, before = writes(pair, started, AFTER), writes(pair, started, BEFORE)
    late = after[0].ts - at
    print(f"transition at {at:.3f}: written {late * 1000:+.0f} ms from it, takeover {taken_at - at:+.3f} s from it")
    assert len(after) == 1 and after[0].pid in pair.backup.pids, after
    assert at - 0.05 <= after[0].ts <= max(at, taken_at) + LATE, (after[0].ts, at, taken_at)
    assert len(before) == 1 and before[0].pid in main_pids, before  # the morning value is not written again
    rows = schedule_rows(pair.backup)
    print(rows)
    assert [(row["value"], row["status"], row["accepted_by"]) for row in rows] == [
        (BEFORE, "succeeded", "main"),
        (AFTER, "succeeded", "backup"),
    ]
    assert rows[1]["command_id"].startswith(f"sched:{transition}:") and rows[1]["accepted_epoch"] == epoch
    assert morning in rows[0]["command_id"]


def test_a_transition_the_killed_node_had_written_is_not_written_again_by_the_new_one(make_pair):
    pair = make_pair(**OPTIONS)
    pair.up()
    started = time.time()
    at, _morning, transition = define(pair, "pair_sched_done")
    main_pids = pair.main.pids
    wait_until(lambda: writes(pair, started, AFTER), at - time.time() + 20, 0.01, "the main writes the transition")
    killed_at = pair.main.kill9()  # just after the device received it
    _taken_at, epoch = takeover(pair, killed_at)

    wait_until(
        lambda: (e := entry(pair.backup, "pair_sched_done")) and e["done"] == transition and e["epoch"] == epoch,
        20,
        0.2,
        "the backup adopted the entry and made the occurrence in force again",
    )
    time.sleep(3)  # its repeat is answered and the array re-assert looked at the device within this; no write
    after = writes(pair, started, AFTER)
    print(f"writes of the transition: {after}; killed {killed_at - after[0].ts:.3f} s after it")
    assert len(after) == 1 and after[0].pid in main_pids, after
    assert not [
        w for w in read_writes(pair.write_log, killed_at) if w.address == REGISTER and w.pid in pair.backup.pids
    ]
    rows = schedule_rows(pair.backup)
    print(rows)
    assert [row["value"] for row in rows] == [BEFORE, AFTER]  # no second command, no ":e<epoch>" repeat
    assert rows[1]["command_id"].startswith(f"sched:{transition}:") and rows[1]["accepted_by"] == "main"
    assert rows[1]["status"] in ("succeeded", "unknown"), rows[1]
