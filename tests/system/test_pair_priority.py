"""Server-kept priority arrays across a takeover and a failback (issue 12 item 1, ADR 0016).

An operator override made on the backup while it is in control survives the
failback to main with its expiry: main shows the same array (the override,
who set it, when it ends), never sends the override again, and when the
override ends it is main that writes the next effective value to the device,
once. The device's own write log (every write with the pid that sent it)
is the judge.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.support.pair import ZONE_REGISTER, read_writes
from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]

POINT = "zone2_setpoint"
URL = f"/api/v1/points/{POINT}/priority-array"
BASE, OVERRIDE = 21.75, 24.25
#: the override's lifetime: long enough for main's restart and failback (a few seconds; guarded below), not more,
#: since the test then waits for the override to end
HOLD_SECONDS = 20


def writes(pair, since: float, value: float) -> list:
    return [
        w
        for w in read_writes(pair.write_log, since)
        if w.table == "hr" and w.address == ZONE_REGISTER[POINT] and round(w.float32, 3) == value
    ]


def array_on(node) -> dict:
    status, body = node.session().get_json(URL)
    assert status == 200, body
    return body


def test_an_operator_override_made_on_the_backup_survives_failback_with_its_expiry(make_pair, pair_device):
    pair = make_pair(period_ms=100, failback="auto")
    pair.up()
    since = time.time()
    status, body = pair.main.submit(POINT, BASE, "prio-base")  # no priority: the default slot, 16
    assert status == 200 and (body["status"], body["priority"]) == ("succeeded", 16), body
    pair.wait_history_identical()

    pair.main.kill9()
    pair.wait_for_roles(15, backup="active")
    status, body = pair.backup.session().post_json(
        URL, {"value": OVERRIDE, "priority": 8, "expires_in": HOLD_SECONDS, "command_id": "prio-override"}
    )
    assert status == 200, body
    assert body["command"]["status"] == "succeeded", body
    hold_until = body["command"]["hold_until"]
    assert (body["priority_array"]["effective_value"], body["priority_array"]["effective_priority"]) == (OVERRIDE, 8)
    assert len(writes(pair, since, OVERRIDE)) == 1

    pair.main.start()
    pair.wait_for_roles(90, main="active", backup="standby")
    failback_at = time.time()
    left = datetime.fromisoformat(hold_until).timestamp() - failback_at
    print(f"failback done {left:.1f} s before the override ends")
    assert left > 5, "the failback took too long to test"

    # The array moved with the command log: main shows the backup's override with its end, and it is in control.
    shown = array_on(pair.main)
    slot = shown["slots"][7]
    assert (slot["value"], slot["command_id"], slot["user"], slot["expires_at"]) == (
        OVERRIDE,
        "prio-override",
        "demo",
        hold_until,
    ), shown
    assert (shown["effective_value"], shown["effective_priority"]) == (OVERRIDE, 8)
    assert shown["slots"][15]["value"] == BASE
    time.sleep(2)  # main has read the device since it took control: it holds the override, nothing to re-assert
    override_writes = writes(pair, since, OVERRIDE)
    assert len(override_writes) == 1 and override_writes[0].pid in pair.backup.pids, override_writes

    # The override ends on main's engine, from the replicated end time: main writes the base value, once.
    ended = datetime.fromisoformat(hold_until).timestamp()
    wait_until(lambda: [w for w in writes(pair, ended - 0.5, BASE)], HOLD_SECONDS + 15, 0.1, "the base written")
    time.sleep(2)
    after = writes(pair, ended - 0.5, BASE)
    print(f"override ended at {hold_until}; writes of the base value since: {after}")
    assert len(after) == 1 and after[0].pid in pair.main.pids, after
    assert after[0].ts >= ended - 0.05, (after[0].ts, ended)  # not before its end (clocks of one machine)
    assert len(writes(pair, since, OVERRIDE)) == 1  # never re-sent

    shown = array_on(pair.main)
    assert (shown["effective_value"], shown["effective_priority"]) == (BASE, 16)
    assert shown["slots"][7]["value"] is None
    engine_rows = [row for row in pair.main.commands().values() if row["command_id"].startswith("assert-")]
    assert any(row["status"] == "succeeded" and row["accepted_by"] == "main" for row in engine_rows), engine_rows
    pair.wait_history_identical()
    assert array_on(pair.backup)["slots"] == shown["slots"]  # the standby derives the same array
