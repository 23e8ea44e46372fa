"""A node that was standby when it stopped never takes control alone from its old state (issue 15 item 2).

The issue's sequence with real processes: the backup is stopped while the
main goes on executing writes; the main is killed; the old backup is started
alone. It must wait and say why, refuse the writes a client re-sends with
the main's command ids (so the device's own log shows none executed twice),
and take control only on an operator's explicit, audited command, recorded
as an alarm-level event. When the main returns, its outcomes are kept.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.pair import ZONE_REGISTER, setpoint_writes
from tests.support.processes import ROOT, wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]


def test_a_stale_backup_started_alone_waits_refuses_writes_and_takes_control_only_when_told(make_pair, pair_device):
    pair = make_pair(period_ms=100, startup_allowance_ms=1500, failback="manual")
    pair.up()
    pair.backup.stop()  # a clean stop: its last word is "standby"
    since = time.time()
    values = {f"while-backup-away-{n}": 16.0 + n / 4 for n in range(3)}
    for command_id, value in values.items():
        status, body = pair.main.submit("zone2_setpoint", value, command_id)
        assert status == 200 and body["status"] == "succeeded", body
    pair.main.kill9()

    pair.backup.start()
    pair.backup.wait_web()
    waiting = wait_until(
        lambda: next((c for c in pair.backup.role_changes("backup") if c.new == "isolated"), None),
        30,
        message="the backup says it will not take control alone",
    )
    print(f"stale start: {waiting.reason}")
    assert "not taking control alone" in waiting.reason and "standby" in waiting.reason
    time.sleep(1.0)  # well past the startup allowance: still not active
    assert pair.backup.role() == "isolated"
    severity = pair.backup.query("SELECT severity FROM events_event WHERE message LIKE '%%not taking control alone%%'")
    assert severity and severity[0]["severity"] == "error"
    # A client re-sends the main's commands to the backup: refused, nothing reaches the device.
    for command_id, value in values.items():
        status, body = pair.backup.submit("zone2_setpoint", value, command_id)
        assert status == 503, (status, body)

    # The operator decides: without the confirmation flag the command explains and refuses.
    refused = subprocess.run(
        [sys.executable, "manage.py", "redundancy", "take-control"],
        cwd=ROOT,
        env=pair.backup.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "--yes-stale" in refused.stderr
    told = subprocess.run(
        [sys.executable, "manage.py", "redundancy", "take-control", "--yes-stale"],
        cwd=ROOT,
        env=pair.backup.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert told.returncode == 0, told.stderr
    taken = wait_until(
        lambda: next((c for c in pair.backup.role_changes("backup") if c.new == "active"), None),
        30,
        message="the backup takes control on the operator's word",
    )
    assert "operator" in taken.reason
    audit = pair.backup.query("SELECT username FROM control_auditentry WHERE action = 'redundancy.take_control'")
    assert audit and audit[0]["username"].startswith("cli:")

    # Every value the main wrote reached the device exactly once.
    counts = setpoint_writes(pair.write_log, since - 1)
    assert all(counts[(ZONE_REGISTER["zone2_setpoint"], value)] == 1 for value in values.values()), counts
    # The main returns: it syncs from the backup, and its outcomes for its commands are kept on both nodes.
    pair.main.start()
    pair.wait_for_roles(60, main="standby", backup="active")
    pair.wait_history_identical(60)
    for node in (pair.main, pair.backup):
        rows = node.commands()
        assert all(rows[command_id]["status"] == "succeeded" for command_id in values), rows
