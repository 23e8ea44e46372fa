"""Server-kept priority arrays (ADR 0016): derived from the command log, never stored anywhere else.

A point whose driver has no priority array of its own (``Driver.relinquish``
is False: Modbus) gets one from the server. Slot ``p`` (1 highest, 8 manual
operator, 16 lowest) holds the latest command at priority ``p`` whose
outcome set the slot (``Command.SETS_SLOT``), ordered by the epoch that
accepted it, then its claim time (one node claims in one epoch, so these are
one clock), then its row. The slot is empty if that command was a relinquish
(value null) or its override ended (``hold_until`` passed). The highest
non-empty slot is in control; with every slot empty the point's
``relinquish_default`` is, or nothing (the device is left as it is).

Because the array is a function of replicated command rows (and their
``hold_until``, on the source node's clock), both nodes of a pair hold the
same array without any state of its own to replicate or to lose.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from bms.control.models import Command
from bms.engine.scaling import Scaling, ValueRejected, validate_value
from bms.engine.sqlrows import Table, table_of
from bms.points.models import Point
from drivers.registry import driver_class

PRIORITIES = range(1, 17)
#: the operator's manual slot
MANUAL = 8
#: where a write without a priority goes on a server-kept array (BACnet's default for WriteProperty)
DEFAULT_PRIORITY = 16
#: the longest override an operator can set (seconds)
MAX_HOLD = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Slot:
    """One non-empty slot: the value and the command that put it there."""

    priority: int
    value: object
    command_id: str
    source: str
    username: str
    set_at: datetime | None
    hold_until: datetime | None

    def as_dict(self) -> dict:
        return {
            "priority": self.priority,
            "value": self.value,
            "source": self.source,
            "user": self.username,
            "command_id": self.command_id,
            "set_at": self.set_at.isoformat() if self.set_at else None,
            "expires_at": self.hold_until.isoformat() if self.hold_until else None,
        }


@dataclass(frozen=True, slots=True)
class Effective:
    """What the device should hold: a slot's value (``priority``) or the relinquish default (``priority`` None)."""

    value: object
    priority: int | None

    def describe(self) -> str:
        where = f"priority {self.priority}" if self.priority is not None else "the relinquish default"
        return f"{self.value!r} from {where}"


def server_keeps_array(driver_name: str) -> bool:
    """True if the server keeps this driver's points' priority arrays (the device has none of its own)."""
    return not driver_class(driver_name).relinquish


def slots(point_name: str, now: datetime | None = None) -> dict[int, Slot]:
    """The non-empty slots of a point's server-kept array at ``now`` (default: now), by priority.

    Blocking (ORM); one query of 16 index probes (:func:`latest_in_slots`), whatever the length of the point's
    command log. Rows still ``executing`` do not count yet: the executor decides them one at a time.
    """
    return array_of(latest_in_slots(point_name), now)


def array_of(latest: dict[int, Command], now: datetime | None = None) -> dict[int, Slot]:
    """The non-empty slots at ``now`` (default: now) from :func:`latest_in_slots`' rows."""
    now = now or timezone.now()
    result: dict[int, Slot] = {}
    for priority, row in sorted(latest.items()):
        if row.value is None or (row.hold_until is not None and row.hold_until <= now):
            continue
        result[priority] = Slot(
            priority, row.value, row.command_id, row.source, row.username, row.started_at, row.hold_until
        )
    return result


def latest_in_slots(point_name: str) -> dict[int, Command]:
    """Per priority, the latest command whose outcome set that slot of the point (relinquishes included).

    Each priority's latest row is one probe of the ``control_cmd_slot_latest`` index (a partial index on exactly
    these rows, in this order), so a plan costs the same with 100 or 10 million commands in the point's log:
    before, every plan read the point's whole history (80 ms at 100,000 rows, on the engine's database thread).
    """
    commands, sql = _latest_rows()
    with connection.cursor() as cursor:
        cursor.execute(sql, [point_name])
        rows = commands.build(cursor.fetchall(), SLOT_FIELDS)
    return {row.priority: row for row in rows}


#: what an array reads of each slot's row (the others are deferred: loaded if ever touched)
SLOT_FIELDS = ("id", "command_id", "value", "priority", "source", "username", "started_at", "hold_until")


@functools.cache
def _latest_rows() -> tuple[Table, str]:
    """The command log's table and the query of :func:`latest_in_slots`: written once, neither compiled by the
    ORM nor mapped by ``raw()`` at each plan (each was a fifth of the CPU of planning a command)."""
    commands = table_of(Command)
    pk = commands.column(commands.pk)
    sql = _LATEST_ROWS.format(columns=commands.columns(SLOT_FIELDS), table=commands.name, pk=pk)
    return commands, sql


#: the latest slot-setting row per priority 1..16 (NULL where none): a correlated ``LIMIT 1`` per priority over a
#: ``VALUES`` list, which PostgreSQL and SQLite both run as index probes. The status and source terms are literals,
#: written as the partial index's condition is, so both planners can match it.
_LATEST_IN_SLOT = (
    "SELECT (SELECT c.{pk} FROM {table} c WHERE c.point_name = %s AND c.priority = p.column1 "
    "AND c.status IN ("
    + ", ".join(f"'{status}'" for status in Command.SETS_SLOT)
    + f") AND NOT (c.source = '{Command.ENGINE}') "
    "ORDER BY c.accepted_epoch DESC, c.started_at DESC, c.{pk} DESC LIMIT 1) "
    "FROM (VALUES " + ", ".join(f"({priority})" for priority in PRIORITIES) + ") AS p"
)

#: the rows themselves (NULL, a slot without one, matches no row)
_LATEST_ROWS = "SELECT {columns} FROM {table} WHERE {pk} IN (" + _LATEST_IN_SLOT + ")"


def relinquish_default(point: Point) -> tuple[object, str]:
    """The point's relinquish default, validated like a write: ``(value or None, problem or "")``."""
    if point.relinquish_default is None:
        return None, ""
    scaling = Scaling(point.data_type, point.scale, point.offset)
    try:
        value = validate_value(
            point.relinquish_default,
            scaling,
            point.min_value,
            point.max_value,
            driver_class(point.device.driver).value_range(point.data_type),
        )
    except ValueRejected as exc:
        return None, f"its relinquish default {point.relinquish_default!r} is not valid ({exc.message})"
    return value, ""


def effective(array: dict[int, Slot], default: object) -> Effective | None:
    """The highest non-empty slot's value, else the relinquish default, else None (leave the device as it is)."""
    if array:
        top = array[min(array)]
        return Effective(top.value, top.priority)
    if default is not None:
        return Effective(default, None)
    return None


def describe(point: Point, now: datetime | None = None) -> dict:
    """The whole server-kept array of ``point`` for the API: 16 slots, the effective value and priority."""
    array = slots(point.name, now)
    default, problem = relinquish_default(point)
    winner = effective(array, default)
    return {
        "point": point.name,
        "device": point.device.name,
        "kept_by": "server",
        "slots": [
            array[p].as_dict()
            if p in array
            else {
                "priority": p,
                "value": None,
                "source": None,
                "user": None,
                "command_id": None,
                "set_at": None,
                "expires_at": None,
            }
            for p in PRIORITIES
        ],
        "effective_value": winner.value if winner else None,
        "effective_priority": winner.priority if winner else None,
        "relinquish_default": default,
        "relinquish_default_problem": problem or None,
    }
