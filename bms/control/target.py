"""The point a write targets, with its device, read in one statement written once: made for every command.

Recording a command (:func:`bms.control.services.submit_write`) and planning
it (:func:`bms.engine.store.plan_command`) each read the point it writes; the
ORM's ``select_related`` query compiled at every call cost about 1 ms of the
engine's database thread, ten times the statement (bench/logic.py, ADR 0018).
"""

from __future__ import annotations

import functools

from django.db import connection

from bms.engine.sqlrows import Table, table_of
from bms.points.models import Device, Point

#: what the command path reads of a point (the other fields are deferred: loaded if ever touched)
POINT_FIELDS = (
    "id",
    "name",
    "device",
    "writable",
    "enabled",
    "data_type",
    "scale",
    "offset",
    "min_value",
    "max_value",
    "relinquish_default",
)
#: and of its device
DEVICE_FIELDS = ("id", "name", "enabled", "driver")


@functools.cache
def _tables() -> tuple[Table, Table, str]:
    points, devices = table_of(Point), table_of(Device)
    sql = (
        f"SELECT {points.columns(POINT_FIELDS, 'p.')}, {devices.columns(DEVICE_FIELDS, 'd.')} "
        f"FROM {points.name} p JOIN {devices.name} d ON d.{devices.column('id')} = p.{points.column('device')} "
        f"WHERE p.{points.column('name')} = %s"
    )
    return points, devices, sql


def point_with_device(name: str) -> Point | None:
    """The point named ``name`` with its device (:data:`POINT_FIELDS`, :data:`DEVICE_FIELDS`); None if none."""
    points, devices, sql = _tables()
    with connection.cursor() as cursor:
        cursor.execute(sql, [name])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(POINT_FIELDS)
    [point] = points.build([row[:split]], POINT_FIELDS)
    [device] = devices.build([row[split:]], DEVICE_FIELDS)
    point.device = device
    return point
