"""The command path's statements written in SQL (bms/engine/sqlrows.py) give what the ORM gives, on PostgreSQL.

The claim, the plan's point lookup and the recording of outcomes run for
every command; they no longer go through the ORM's query compiler. These
tests pin that the rows they return are the ORM's rows field for field
(JSON values, datetimes, deferred fields), that the claim's conditions hold,
and that each changed row takes a history stamp of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from bms.control.models import Command
from bms.control.target import point_with_device
from bms.engine import store
from bms.points.models import Device, Point

pytestmark = pytest.mark.django_db

NODE = settings.BMS_NODE_NAME


def command(n: int, **fields) -> Command:
    base = {
        "command_id": f"c{n}",
        "point_name": "sp",
        "value": {"n": n, "list": [1.5, None, "x"]} if n % 2 else 20.5 + n,
        "priority": 12,
        "payload_hash": "x",
        "source": "logic",
        "accepted_by": NODE,
        "accepted_epoch": 3,
        "expires_at": timezone.now() + timedelta(minutes=5),
        "hold_until": datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC),
        "origin": NODE,
        "epoch": 3,
        "origin_seq": 10_000 + n,
    }
    return Command.objects.create(**(base | fields))


def fields_of(row: Command) -> dict:
    return {field.attname: getattr(row, field.attname) for field in Command._meta.concrete_fields}


def test_a_claim_returns_the_rows_it_changed_as_the_orm_reads_them_each_with_a_stamp_of_its_own():
    rows = [command(n) for n in range(1, 5)]
    command(5, accepted_epoch=2)  # bound to an earlier epoch: never this claim's
    command(6, expires_at=timezone.now() - timedelta(seconds=1))  # past its lifetime
    command(7, status=Command.SUCCEEDED)  # done
    wanted = [row.pk for row in rows]

    claimed = store.claim_commands(NODE, 3, 10, settle=False).commands

    assert [row.pk for row in claimed] == wanted
    for row in claimed:
        stored = Command.objects.get(pk=row.pk)
        assert fields_of(row) == fields_of(stored)
        assert row.status == Command.EXECUTING and row.started_at.tzinfo is not None
    assert isinstance(claimed[0].value, dict) and claimed[0].value["list"] == [1.5, None, "x"]
    assert len({row.origin_seq for row in claimed}) == 4
    assert set(Command.objects.exclude(pk__in=wanted).values_list("status", flat=True)) == {
        Command.PENDING,
        Command.SUCCEEDED,
    }
    # claimed already: a second claim finds nothing, a claim of given rows only those still sendable
    assert store.claim_commands(NODE, 3, 10, settle=False).commands == []
    assert store.claim_commands(NODE, 3, 10, pks=wanted, settle=False).commands == []


def test_outcomes_recorded_together_each_keep_their_own_status_error_and_stamp():
    rows = [command(n, status=Command.EXECUTING) for n in range(1, 4)]
    before = {row.pk: row.origin_seq for row in rows}
    store.finish_commands(
        {rows[0].pk: (Command.SUCCEEDED, ""), rows[1].pk: (Command.FAILED, "x" * 3000), rows[2].pk: ("unknown", "?")}
    )
    after = {row.pk: row for row in Command.objects.filter(pk__in=before)}
    assert [(after[row.pk].status, len(after[row.pk].error)) for row in rows] == [
        (Command.SUCCEEDED, 0),
        (Command.FAILED, 2000),
        (Command.UNKNOWN, 1),
    ]
    assert all(row.observed and row.finished_at is not None for row in after.values())
    seqs = [row.origin_seq for row in after.values()]
    assert len(set(seqs)) == 3 and set(seqs).isdisjoint(before.values())
    # an observed outcome is final: recording another changes nothing
    store.finish_command(rows[0].pk, Command.FAILED, "late")
    assert Command.objects.get(pk=rows[0].pk).status == Command.SUCCEEDED


def test_the_point_lookup_reads_the_point_and_its_device_as_the_orm_does_and_defers_the_rest():
    device = Device.objects.create(name="plc", host="127.0.0.1", port=1502, enabled=False)
    setpoint = {"name": "sp", "address": "hr:3", "data_type": "float32", "writable": True, "scale": 0.5}
    limits = {"offset": -3, "min_value": 5, "max_value": 30, "relinquish_default": {"a": [1, 2]}}
    Point.objects.create(device=device, description="zone setpoint", **setpoint, **limits)
    found = point_with_device("sp")
    stored = Point.objects.select_related("device").get(name="sp")
    for name in ("pk", "name", "writable", "enabled", "data_type", "scale", "offset", "min_value", "max_value"):
        assert getattr(found, name) == getattr(stored, name), name
    assert found.relinquish_default == {"a": [1, 2]}
    assert (found.device.pk, found.device.name, found.device.enabled, found.device.driver) == (
        device.pk,
        "plc",
        False,
        "modbus",
    )
    assert "description" in found.get_deferred_fields() and found.description == "zone setpoint"
    assert point_with_device("nothing") is None
