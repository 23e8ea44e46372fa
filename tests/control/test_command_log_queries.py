"""The command log's queries on the command path stay index probes, whatever the length of a point's history.

A server-kept priority array is derived from the command log (ADR 0016); planning a write used to read every
slot-setting row the point ever had (80 ms at 100,000 rows, on the engine's one database thread, for every
command), and the executor's look for the next override end read every succeeded command twice a second.
These tests pin the answers of the rewritten queries on a real PostgreSQL log, and that PostgreSQL runs them
through their partial indexes (a plan, not a timing: ``bench/command_log.py`` measures the cost).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from bms.control import priority as arrays
from bms.control.models import Command
from bms.engine import store
from tests.support.explain import plan_of as _plan

pytestmark = pytest.mark.django_db

POINT = "ahu1_sat_sp"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def row(n: int, priority: int | None, value, status: str = Command.SUCCEEDED, **fields) -> Command:
    base = {
        "command_id": f"c{n}",
        "point_name": POINT,
        "value": value,
        "priority": priority,
        "payload_hash": "x",
        "source": "api",
        "accepted_by": "main",
        "accepted_epoch": 0,
        "status": status,
        "started_at": T0 + timedelta(seconds=n),
        "origin": "main",
        "epoch": 0,
        "origin_seq": n,
    }
    return Command(**(base | fields))


def test_each_slot_holds_its_latest_slot_setting_command():
    Command.objects.bulk_create(
        [
            row(1, 16, 20.0),
            row(2, 16, 21.0, Command.HELD),  # held: its slot is set although the device was not written
            row(3, 16, 22.0, Command.FAILED),  # failed: sets nothing
            row(4, 8, 25.0),
            row(5, 8, None),  # a relinquish empties slot 8
            row(6, 5, 30.0, hold_until=T0 - timedelta(seconds=1)),  # an override that has ended
            row(7, 3, 40.0, started_at=T0 + timedelta(hours=1)),  # epoch 0, claimed late ...
            row(8, 3, 41.0, accepted_epoch=1, started_at=T0),  # ... a later epoch wins over a later claim time
            row(9, 2, 50.0, source=Command.ENGINE),  # the engine's own writes set no slot
            row(10, 1, 60.0, Command.EXECUTING),  # not decided yet
            row(11, 12, 70.0, point_name="other_point"),
        ]
    )
    latest = arrays.latest_in_slots(POINT)
    assert {priority: command.command_id for priority, command in latest.items()} == {
        16: "c2",
        8: "c5",
        5: "c6",
        3: "c8",
    }
    array = arrays.slots(POINT, T0)
    assert {priority: slot.value for priority, slot in array.items()} == {16: 21.0, 3: 41.0}
    assert arrays.effective(array, None) == arrays.Effective(41.0, 3)


def test_no_command_leaves_every_slot_empty():
    assert arrays.latest_in_slots(POINT) == {}
    assert arrays.slots(POINT) == {}


@pytest.fixture
def long_history():
    """10,000 commands on the point, at two priorities, and a few overrides; the planner's statistics fresh."""
    Command.objects.bulk_create(
        [
            row(n, 16 if n % 10 else 8, 20.0 + n % 7, hold_until=T0 + timedelta(hours=n) if n % 1000 == 0 else None)
            for n in range(1, 10_001)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE control_command")


def test_planning_a_write_probes_the_slot_index_instead_of_reading_the_points_history(long_history):
    table, pk = Command._meta.db_table, Command._meta.pk.column
    plan = _plan(arrays._LATEST_IN_SLOT.format(table=table, pk=pk), [POINT])
    assert "control_cmd_slot_latest" in plan, plan
    assert "Sort" not in plan, plan  # the index gives each priority's latest row: no sort of the point's rows
    assert arrays.latest_in_slots(POINT)[16].command_id == "c9999"


def test_the_next_override_end_and_the_last_sent_command_are_index_lookups(long_history):
    sql, params = store.hold_ends(T0).values_list("hold_until", flat=True)[:1].query.sql_with_params()
    assert "control_cmd_hold" in _plan(sql, list(params))
    assert store.next_hold_expiry(T0) == T0 + timedelta(hours=1000)
    last = store.sent_to(POINT).exclude(status=Command.EXECUTING).only("status")[:1]
    sql, params = last.query.sql_with_params()
    plan = _plan(sql, list(params))
    assert "control_cmd_last_sent" in plan and "Sort" not in plan, plan


def test_a_takeovers_look_at_what_it_already_wrote_and_the_command_list_are_index_scans(long_history):
    sql, params = store.sent_in_epoch("main", 0, T0).query.sql_with_params()
    assert "control_cmd_epoch_sent" in _plan(sql, list(params))
    newest = Command.objects.order_by("-created_at", "-id")[:50]
    sql, params = newest.query.sql_with_params()
    plan = _plan(sql, list(params))
    assert "control_cmd_created" in plan and "Sort" not in plan, plan
