"""History replication on a real pair cannot be stopped by a hostile value, a bad row or a failed store (ADR 0011).

Every figure comes from the nodes' databases (history rows, quarantine
records, the status row) and from ``/metrics``; waits poll them with
generous deadlines.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import psycopg
import pytest

from tests.support import services
from tests.support.pair import admin
from tests.support.processes import wait_until

pytestmark = [pytest.mark.system, pytest.mark.pair]
WRITE = "/api/points/zone1_setpoint/write"


def post_raw(node, body: str) -> tuple[int, str, str]:
    """POST a body exactly as given (not re-encoded by json.dumps): status, content type, text."""
    session = node.session()
    request = urllib.request.Request(
        f"{node.base_url}{WRITE}",
        data=body.encode(),
        headers={"Content-Type": "application/json", "X-CSRFToken": session.csrf, "Referer": node.base_url + "/"},
        method="POST",
    )
    try:
        response = session.opener.open(request, timeout=30)
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def sync(node) -> dict:
    return (node.state()["status"] or {}).get("sync") or {}


def this(node) -> dict:
    return (node.state()["status"] or {}).get("this") or {}


def metrics(node) -> str:
    with urllib.request.urlopen(f"{node.base_url}/metrics", timeout=30) as response:
        return response.read().decode()


def audit_rows(node, command_id: str) -> list[dict]:
    return node.query(
        "SELECT origin, origin_seq FROM control_auditentry WHERE detail->>'command_id' = %s", [command_id]
    )


def test_hostile_values_are_refused_with_json_400s_and_replication_goes_on(make_pair):
    pair = make_pair(period_ms=100)
    pair.up()
    for label, body in (
        ("a 400-digit integer", '{"value": 1' + "0" * 400 + "}"),
        ("a value nested 600 deep", '{"value": ' + "[" * 600 + "]" * 600 + "}"),
        ("a value nested 1000 deep", '{"value": ' + "[" * 1000 + "]" * 1000 + "}"),
        ("a NUL character", '{"value": "2\\u00001"}'),
    ):
        status, content_type, text = post_raw(pair.main, body)
        assert status == 400, (label, status, text[:300])
        assert content_type.startswith("application/json"), (label, content_type)
        assert len(text) < 1000, label

    status, answer = pair.main.submit("zone1_setpoint", 21.5, "guard-ok")
    assert (status, answer.get("status")) == (200, "succeeded"), answer
    pair.wait_history_identical(60)
    # The refused values reached the backup as the short, bounded stand-ins recorded at write time.
    refused = pair.backup.query("SELECT detail FROM control_auditentry WHERE action = 'write.rejected'")
    assert len(refused) == 3 and all(len(str(row["detail"])) < 1000 for row in refused)
    wait_until(lambda: sync(pair.main).get("history_backlog") == 0, 30, 0.1, "no backlog on main")
    assert sync(pair.main).get("history_quarantined") == 0  # bounded at write time: nothing had to be skipped


def test_a_row_that_cannot_be_packed_is_quarantined_and_the_rows_after_it_still_replicate(make_pair):
    pair = make_pair(period_ms=100)
    pair.up()
    main, backup = pair.main, pair.backup
    # A row as an older node could write it: a 400-digit integer in the detail, under a fresh stamp of main.
    seq = main.query("UPDATE history_origincounter SET value = value + 1 WHERE origin = 'main' RETURNING value")[0]
    bad = seq["value"]
    main.execute(
        "INSERT INTO control_auditentry (time, username, action, target, detail, origin, epoch, origin_seq) "
        "SELECT now(), 'old', 'write.rejected', 'zone1_setpoint', %s::jsonb, 'main', epoch, %s "
        "FROM history_origincounter WHERE origin = 'main'",
        ['{"value": 1' + "0" * 400 + "}", bad],
    )
    status, answer = main.submit("zone1_setpoint", 22.5, "after-bad-row")
    assert (status, answer.get("status")) == (200, "succeeded"), answer

    def the_write_on_backup() -> bool:
        command = backup.query("SELECT status FROM control_command WHERE command_id = 'after-bad-row'")
        return bool(command) and command[0]["status"] == "succeeded" and bool(audit_rows(backup, "after-bad-row"))

    wait_until(the_write_on_backup, 60, 0.1, "the write's command and audit rows on the backup")
    assert audit_rows(main, "after-bad-row")[0]["origin_seq"] > bad  # they really lie behind the bad row
    quarantined = main.query('SELECT "table", origin, origin_seq, reason FROM redundancy_quarantinedrow')
    assert [(q["table"], q["origin"], q["origin_seq"]) for q in quarantined] == [("control.auditentry", "main", bad)]
    events = main.query("SELECT severity, message FROM events_event WHERE kind = 'history_quarantined'")
    assert len(events) == 1 and events[0]["severity"] == "warning" and f"main/{bad}" in events[0]["message"]
    assert not backup.query("SELECT 1 FROM control_auditentry WHERE origin = 'main' AND origin_seq = %s", [bad])

    wait_until(lambda: sync(main).get("history_quarantined") == 1, 30, 0.1, "the quarantined count in the status")
    wait_until(
        lambda: re.search(r'^bms_sync_quarantined_rows\{[^}]*node="main"[^}]*\} 1$', metrics(main), re.M),
        30,
        0.2,
        "bms_sync_quarantined_rows 1 on main's /metrics",
    )
    # The quarantine event itself replicates, and nothing else waits: the backlog is empty again.
    wait_until(
        lambda: backup.query("SELECT 1 FROM events_event WHERE kind = 'history_quarantined'"), 30, 0.1, "the event"
    )
    wait_until(lambda: sync(main).get("history_backlog") == 0, 30, 0.1, "no backlog on main")


def test_rows_the_backup_failed_to_store_are_sent_again_and_counted_meanwhile(make_pair):
    pair = make_pair(period_ms=100)
    main, backup = pair.main, pair.backup
    # The backup gives up on a locked table quickly, so its store fails for real while the test holds the lock.
    admin(f"ALTER DATABASE \"{backup.db_name}\" SET lock_timeout = '100ms'")
    pair.up()
    with psycopg.connect(services.database_url(backup.db_name)) as locker:
        locker.execute("SET lock_timeout = 0")
        locker.execute("LOCK TABLE control_auditentry IN ACCESS EXCLUSIVE MODE")
        try:
            status, answer = main.submit("zone1_setpoint", 22.25, "while-locked")
            assert status in (200, 202), answer
            # Main keeps counting the row the backup has not acknowledged, sends it again, and stops calling the
            # pair verified once it has waited longer than the resend delay.
            wait_until(
                lambda: sync(main).get("history_backlog", 0) >= 1 and sync(main).get("history_resends", 0) >= 2,
                60,
                0.1,
                "main's backlog and resends while the backup cannot store",
            )
            wait_until(lambda: this(main).get("verified") is False, 60, 0.1, "main not verified while rows are stuck")
            assert sync(main).get("history_stuck") is True
            found = locker.execute(
                "SELECT count(*) FROM control_auditentry WHERE detail->>'command_id' = 'while-locked'"
            ).fetchone()[0]
            assert found == 0
        finally:
            locker.rollback()
    wait_until(lambda: audit_rows(backup, "while-locked"), 60, 0.1, "the audit row on the backup after the lock")
    pair.wait_history_identical(60)
    wait_until(lambda: sync(main).get("history_backlog") == 0, 30, 0.1, "no backlog on main")
    wait_until(lambda: this(main).get("verified") is True, 30, 0.1, "main verified again")
