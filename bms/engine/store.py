"""The engine's only door to the database; every function here is blocking and runs off the loop.

Called on the engine's dedicated database thread (see :class:`Engine`), at
reload, on command execution and on state transitions: never per sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from bms.alarms.store import read_alarm_specs
from bms.control import priority as arrays
from bms.control.models import AuditEntry, Command
from bms.control.services import payload_hash
from bms.control.target import point_with_device
from bms.engine.config import DeviceConfig, EngineConfig, PointConfig
from bms.engine.dbconn import with_fresh_connection
from bms.engine.scaling import Scaling
from bms.engine.sqlrows import placeholders, table_of
from bms.events.models import Event
from bms.history.models import next_stamps, stamped_update
from bms.logic.store import read_rule_specs
from bms.points.models import ConfigRevision, Device, Point
from bms.schedules.store import read_schedule_specs
from bms.trends.spec import read_trend_specs
from drivers.base import DeviceSpec, PointSpec

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


@with_fresh_connection
def config_revision() -> int:
    return ConfigRevision.current()


#: what the engine reads of each point (plain rows: at 100,000 points, model instances made the engine's peak memory
#: on every configuration load about 200 MB higher than what it keeps)
_POINT_FIELDS = ("device_id", "name", "address", "data_type", "options", "scale", "offset", "deadband")


#: how long the configuration read may pause between two of its reads. The server ends any other transaction of
#: ours idle for 30 s (``SILENT_DATABASE_LIMITS``: a session orphaned by a silent network must not keep its locks);
#: this one takes no lock, so an orphan of it blocks no one, and the Python work between its reads (5,000 rule
#: expressions parsed while the web side shares the process) took longer than that (bench/logic.py, 2 December
#: 2026): every reload failed and the rules never ran.
CONFIG_READ_IDLE_LIMIT = "10min"


def read_config() -> EngineConfig:
    """Read all enabled devices and points in one transaction, so the view is consistent."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{CONFIG_READ_IDLE_LIMIT}'")
        revision = ConfigRevision.current()
        rows: dict[int, list[tuple]] = {}
        enabled_points = Point.objects.filter(enabled=True, device__enabled=True).order_by("device_id", "name")
        for row in enabled_points.values_list(*_POINT_FIELDS).iterator(chunk_size=5000):
            rows.setdefault(row[0], []).append(row)
        devices = []
        for device in Device.objects.filter(enabled=True):
            points = tuple(
                PointConfig(
                    spec=PointSpec(name, address, data_type, dict(options or {})),
                    scaling=Scaling(data_type, scale, offset),
                    deadband=deadband,
                    device=device.name,
                )
                for _, name, address, data_type, options, scale, offset, deadband in rows.pop(device.pk, ())
            )
            spec = DeviceSpec(
                name=device.name,
                host=device.host,
                port=device.port,
                unit_id=device.unit_id,
                timeout=device.timeout,
                options=dict(device.options or {}),
            )
            devices.append(DeviceConfig(spec, device.driver, device.poll_interval, points))
        alarms = read_alarm_specs()
        trends = read_trend_specs()
        schedules = read_schedule_specs()
        rules = read_rule_specs()
    return EngineConfig(revision, tuple(devices), alarms, trends, schedules, rules)


#: the engine's variant, on its long-lived database thread
load_config = with_fresh_connection(read_config)


@with_fresh_connection
def log_events(rows: list[tuple[str, str, str, str, datetime]]) -> int:
    """Store a batch of ``(kind, source, message, severity, time)`` in order, in one transaction; how many were new.

    Rows already stored (same time to the microsecond, kind and source) are skipped: a batch whose commit went
    through while its answer was lost (the database host stopped between the two) is written again by the
    outbox, and must not appear twice in the log.
    """
    with transaction.atomic():
        stored = set(Event.objects.filter(time__in={row[4] for row in rows}).values_list("time", "kind", "source"))
        new = [row for row in rows if (row[4], row[0], row[1]) not in stored]
        for kind, source, message, severity, when in new:
            Event.objects.create(time=when, kind=kind, source=source, message=message, severity=severity)
    return len(new)


def _sendable(node: str, epoch: int, now: datetime) -> tuple[str, list[object]]:
    """Pending, bound to ``(node, epoch)`` and within its lifetime: what this node may claim (ADR 0008); a WHERE
    condition and its parameters."""
    table = table_of(Command)
    expires = table.column("expires_at")
    condition = (
        f"{table.column('status')} = %s AND {table.column('accepted_by')} = %s "
        f"AND {table.column('accepted_epoch')} = %s AND ({expires} IS NULL OR {expires} > %s)"
    )
    return condition, [Command.PENDING, node, epoch, table.prep("expires_at", now)]


def _sendable_ids(node: str, epoch: int, limit: int, among: list[int] | None = None) -> list[int]:
    """The oldest ``limit`` commands this node may claim now (of ``among`` if given), oldest first."""
    table = table_of(Command)
    pk = table.column(table.pk)
    condition, params = _sendable(node, epoch, timezone.now())
    if among is not None:
        condition += f" AND {pk} IN ({placeholders(len(among))})"
        params += among
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk} FROM {table.name} WHERE {condition} ORDER BY {pk} LIMIT %s", [*params, limit])
        return [row[0] for row in cursor.fetchall()]


def _update_stamping_each(
    pks: list[int],
    condition: str,
    condition_params: list[object],
    fields: dict[str, object],
    each: dict[str, dict[int, object]] | None = None,
    returning: bool = False,
) -> list[Command]:
    """Set ``fields`` (and per row, ``each``) on those of ``pks`` that meet ``condition``, each with a history
    stamp of its own, in one statement (inside the caller's transaction). ``returning``: the rows changed, as
    they are now (else nothing is read back)."""
    table = table_of(Command)
    origin, epoch, seqs = next_stamps(len(pks))
    assignments, params = table.assignments({"origin": origin, "epoch": epoch, **fields})
    for name, values in {"origin_seq": dict(zip(pks, seqs, strict=True)), **(each or {})}.items():
        value, more = table.each(name, values)
        assignments += f", {table.column(name)} = {value}"
        params += more
    sql = (
        f"UPDATE {table.name} SET {assignments} "
        f"WHERE {table.column(table.pk)} IN ({placeholders(len(pks))}) AND {condition}"
    )
    params += [*pks, *condition_params]
    if returning:
        sql += f" RETURNING {table.columns(table.all)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return table.build(cursor.fetchall()) if returning else []


def _claim(node: str, epoch: int, pks: list[int]) -> list[Command]:
    """Move ``pks`` (if still sendable) to executing, one stamp each, in one statement; the rows claimed."""
    now = timezone.now()
    condition, params = _sendable(node, epoch, now)
    with transaction.atomic():
        # The conditional UPDATE is what makes execution at-most-once, even with two engines or a duplicated
        # wake-up: PostgreSQL re-checks the condition on a row another transaction changed meanwhile, and
        # RETURNING gives exactly the rows this statement changed.
        claimed = _update_stamping_each(
            pks, condition, params, {"status": Command.EXECUTING, "started_at": now}, returning=True
        )
    return sorted(claimed, key=lambda command: command.pk)


@with_fresh_connection
def claim_command(pk: int, node: str, epoch: int) -> Command | None:
    """Move one command bound to ``(node, epoch)`` from pending to executing; None if it may not be sent now.

    The binding is what keeps a successor (or this node in a later epoch)
    from sending a command its sender may still be sending (ADR 0008). A
    pending command that is not this node's to send, or that outlived its
    lifetime, is settled here instead (see :func:`settle_unsendable`).
    """
    claimed = _claim(node, epoch, [pk])
    if not claimed:
        settle_unsendable(node, epoch, pk)
        return None
    return claimed[0]


def _release_lost_claims(node: str, epoch: int, since: datetime, held: frozenset[int]) -> list[int]:
    """Commands this engine claimed in a trip whose answer never reached it: back to pending, one stamp each.

    A claim's transaction can commit while the connection breaks before its answer arrives (the database host
    stops between the two). The engine queues only what a claim returned to it, so it never sent those rows:
    claiming them again is safe, and left alone they would stay executing forever. ``held``: every command
    the executor holds (queued, being sent, outcome not yet recorded); ``since``: when this engine started
    (rows an earlier run left executing are settled as interrupted when it takes control, never resent).
    """
    lost = list(
        Command.objects.filter(status=Command.EXECUTING, accepted_by=node, accepted_epoch=epoch, started_at__gte=since)
        .exclude(pk__in=held)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if lost:
        with transaction.atomic():
            _update_stamping_each(
                lost,
                f"{table_of(Command).column('status')} = %s",
                [Command.EXECUTING],
                {"status": Command.PENDING, "started_at": None},
            )
    return lost


@dataclass(slots=True)
class Claimed:
    """What :func:`claim_commands` claimed, in claim order, and the plans it could already make.

    ``released``: commands of a claim whose answer was lost, made pending again before this claim (see
    :func:`_release_lost_claims`).
    """

    commands: list[Command]
    plans: dict[int, WritePlan]
    #: ``(source, command_id)`` of this node's own pending commands the claim found past their lifetime (expired)
    expired: list[tuple[str, str]] = field(default_factory=list)
    released: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LostClaims:
    """Asks a claim to release first what an earlier claim of this engine took without the engine learning it.

    ``since``: when the engine started; ``held``: the commands the executor holds (see :func:`_release_lost_claims`).
    """

    since: datetime
    held: frozenset[int]


@with_fresh_connection
def claim_commands(
    node: str,
    epoch: int,
    limit: int,
    pks: list[int] | None = None,
    busy: frozenset[str] = frozenset(),
    lost: LostClaims | None = None,
    settle: bool = True,
) -> Claimed:
    """Claim the oldest ``limit`` sendable commands (of ``pks`` if given) in one transaction, and plan what it can.

    :func:`claim_command` for many: one stamp per row, all from one counter
    update, so the standby's acknowledgement of the highest one covers them
    all (the barrier waits once per batch). Pending commands this node must
    not send are settled as in :func:`claim_command`, and executing ones of
    another node or epoch as in :func:`settle_foreign_executing`: one trip
    to the database for a whole scan.

    The first claimed command of each point not in ``busy`` (points with a
    command still queued, being sent or not yet recorded) is planned too:
    everything before it on its point is recorded. The others are planned
    when their turn comes (:func:`finish_and_plan`).

    ``lost`` (after a claim whose answer the engine never got): those rows are released first, and claimed
    again here if still sendable. ``settle`` False: leave the settling of rows this node must not send to a
    later claim (they are never sendable: the claim's filter leaves them out either way).
    """
    released = _release_lost_claims(node, epoch, lost.since, lost.held) if lost is not None else []
    if settle:
        settle_foreign_executing(node, epoch)
    if pks is not None:
        pks = [*pks, *released]
    chosen = _sendable_ids(node, epoch, limit, pks) if pks != [] else []
    claimed = _claim(node, epoch, chosen) if chosen else []
    expired: list[tuple[str, str]] = []
    if settle:
        settle_unsendable(node, epoch, expired=expired)
    plans = {}
    seen = set(busy)
    for command in claimed:
        if command.point_name not in seen:
            seen.add(command.point_name)
            plans[command.pk] = _plan(command)
    return Claimed(claimed, plans, expired, released)


@with_fresh_connection
def sendable_command_ids(node: str, epoch: int, limit: int) -> list[int]:
    """The oldest ``limit`` pending commands this node may claim now, oldest first (without claiming them)."""
    return _sendable_ids(node, epoch, limit)


def _finish(outcomes: dict[int, tuple[str, str]]) -> None:
    """Record outcomes of many commands in one statement (one stamp each); see :func:`finish_command`."""
    table = table_of(Command)
    with transaction.atomic():
        _update_stamping_each(
            list(outcomes),
            f"{table.column('observed')} = %s",
            [table.prep("observed", False)],
            {"observed": True, "finished_at": timezone.now()},
            each={
                "status": {pk: status for pk, (status, _) in outcomes.items()},
                "error": {pk: error[:2000] for pk, (_, error) in outcomes.items()},
            },
        )


@with_fresh_connection
def finish_command(pk: int, status: str, error: str = "") -> None:
    """Record the outcome seen by the node that claimed the command (``observed``: it wins every merge).

    It overwrites any version that knows less, including a successor's
    ``unknown`` that replication delivered while this node was sending.
    """
    _finish({pk: (status, error)})


@with_fresh_connection
def finish_commands(outcomes: dict[int, tuple[str, str]]) -> None:
    """:func:`finish_command` for many commands, in one transaction."""
    if outcomes:
        _finish(outcomes)


@with_fresh_connection
def finish_and_plan(outcomes: dict[int, tuple[str, str]], pks: list[int]) -> dict[int, WritePlan]:
    """Record ``outcomes``, then plan each of ``pks`` (claimed commands): one trip to the database thread.

    The outcomes are recorded first, so a command planned here sees the
    priority array as every command recorded with it left it: a later
    command on a point is planned after the earlier one's outcome is stored.
    """
    if outcomes:
        _finish(outcomes)
    return {pk: _plan(pk) for pk in pks}


def _unbound(node: str, epoch: int) -> Q:
    return ~Q(accepted_by=node) | ~Q(accepted_epoch=epoch)


@with_fresh_connection
def settle_unsendable(
    node: str, epoch: int, pk: int | None = None, expired: list[tuple[str, str]] | None = None
) -> int:
    """Settle the pending commands this node must not send, now that it is active in ``epoch``.

    * bound to another node or epoch: ``expired`` (not observed): this node
      never sent it; the node that accepted it did not start it as far as
      this node knows, and its own outcome replaces this one if it did;
    * this node's own but past its lifetime: ``expired``, observed (this node
      is the one that could have sent it, and did not); ``expired`` (if
      given) gets each one's ``(source, command_id)``.
    """
    now = timezone.now()
    pending = Command.objects.filter(status=Command.PENDING)
    if pk is not None:
        pending = pending.filter(pk=pk)
    settled = 0
    for command in pending.filter(_unbound(node, epoch)).only("pk", "accepted_by", "accepted_epoch"):
        settled += stamped_update(
            Command.objects.filter(pk=command.pk, status=Command.PENDING),
            status=Command.EXPIRED,
            error=(
                f"not sent by {node}: accepted by {command.accepted_by} in epoch {command.accepted_epoch}, "
                f"and control moved (epoch {epoch}) before {command.accepted_by} reported sending it; "
                f"if {command.accepted_by} was cut off rather than stopped, its own outcome replaces this one"
            ),
            finished_at=now,
        )
    overdue = pending.filter(accepted_by=node, accepted_epoch=epoch, expires_at__lte=now)
    for command_pk, source, command_id in overdue.values_list("pk", "source", "command_id"):
        done = stamped_update(
            Command.objects.filter(pk=command_pk, status=Command.PENDING),
            status=Command.EXPIRED,
            error="not started within its lifetime, so it was never sent; submit it again if it is still wanted",
            observed=True,
            finished_at=now,
        )
        settled += done
        if done and expired is not None:
            expired.append((source, command_id))
    return settled


def _mark_unknown(executing: QuerySet) -> int:
    marked = 0
    for pk in executing.values_list("pk", flat=True):
        marked += stamped_update(
            Command.objects.filter(pk=pk, status=Command.EXECUTING),
            status=Command.UNKNOWN,
            error="control moved while this command was being sent; check the device before repeating it",
            finished_at=timezone.now(),
        )
    return marked


@with_fresh_connection
def settle_foreign_executing(node: str, epoch: int) -> int:
    """Commands another node (or this node in an earlier epoch) was sending: ``unknown``, never resent.

    Called on every scan while active, for rows that replication delivers
    late. The sender's own outcome, if it ever arrives, replaces this (it
    knows what the device answered).
    """
    return _mark_unknown(Command.objects.filter(status=Command.EXECUTING).filter(_unbound(node, epoch)))


@with_fresh_connection
def mark_interrupted_commands(node: str, epoch: int) -> int:
    """When taking control: a command left executing may or may not have reached the device; say so, never resend.

    Rows left ``executing`` are this engine's own from before a crash (a
    node alone restarts in the same epoch, so its own rows count too), or
    the former active node's, replicated before it sent them. Pending rows
    that are not this node's to send in ``epoch`` are settled as well.
    """
    return _mark_unknown(Command.objects.filter(status=Command.EXECUTING)) + settle_unsendable(node, epoch)


# --- server-kept priority arrays (ADR 0016) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WritePlan:
    """What executing one claimed command means for its device, decided from the point's priority array.

    ``send``: write ``value`` (engineering units) at ``priority`` (the
    driver's own array: BACnet) or without one (server-kept arrays). Not
    sending: the outcome is ``status`` with ``detail``. ``detail`` also goes
    with a successful send (what the write did to the array).
    """

    send: bool
    value: object = None
    priority: int | None = None
    status: str = Command.SUCCEEDED
    detail: str = ""


def slot_of(command: Command) -> int:
    """The priority array slot a command sets or clears (no priority: the default slot)."""
    return command.priority or arrays.DEFAULT_PRIORITY


def _in_control(priority: int, array: dict[int, arrays.Slot]) -> arrays.Slot | None:
    """The slot above ``priority`` that is in control, if any."""
    higher = [p for p in array if p < priority]
    return array[min(higher)] if higher else None


@with_fresh_connection
def plan_command(pk: int) -> WritePlan:
    """Decide what the claimed (executing) command ``pk`` writes (see :func:`_plan`)."""
    return _plan(pk)


def _plan(claimed: int | Command) -> WritePlan:
    """Decide what the claimed (executing) command writes, if anything (blocking; after the claim).

    ``claimed``: its row id, or the row the claim just read (what a plan reads of it, point, value, priority,
    source and ``hold_until``, never changes after it is recorded: one query less per command).

    A point whose device keeps its own array (BACnet) is written through at
    the command's priority, as before. On a server-kept array the command
    is the latest of its slot: it writes its value if no higher slot is set,
    else it ends ``held`` (slot set, device untouched); a relinquish writes
    the next effective value (or the relinquish default, or nothing). An
    engine row (``source="engine"``) writes the effective value it was made
    for, if that is still the effective value.
    """
    command = claimed if isinstance(claimed, Command) else Command.objects.get(pk=claimed)
    point = point_with_device(command.point_name)
    if point is None or not arrays.server_keeps_array(point.device.driver):
        return WritePlan(True, command.value, command.priority)
    now = timezone.now()
    array = arrays.slots(point.name, now)
    default, problem = arrays.relinquish_default(point)
    if command.source == Command.ENGINE:
        winner = arrays.effective(array, default)
        if winner is None or (winner.value, winner.priority) != (command.value, command.priority):
            now_text = winner.describe() if winner else "nothing (every slot empty, no relinquish default)"
            return WritePlan(
                False, status=Command.HELD, detail=f"not sent: the priority array changed since; it now asks {now_text}"
            )
        return WritePlan(True, winner.value, detail=f"effective value {winner.describe()} written")
    slot = slot_of(command)
    if command.hold_until is not None and command.hold_until <= now:
        return WritePlan(
            False,
            status=Command.EXPIRED,
            detail=f"its override ended ({command.hold_until.isoformat()}) before it "
            "could be applied, so neither its slot nor the device was changed",
        )
    above = _in_control(slot, array)
    if command.value is not None:
        if above is not None:
            return WritePlan(
                False,
                status=Command.HELD,
                detail=f"slot {slot} set to {command.value!r}; priority {above.priority} ({above.value!r}) is in "
                "control, so the device was not written",
            )
        return WritePlan(True, command.value, detail=f"slot {slot} set and in control")
    # A relinquish: the slot is empty from now on.
    array.pop(slot, None)
    if above is not None:
        return WritePlan(
            False,
            status=Command.HELD,
            detail=f"slot {slot} cleared; priority {above.priority} ({above.value!r}) is in control, "
            "so the device was not written",
        )
    winner = arrays.effective(array, default)
    if winner is None:
        why = f"; {problem}" if problem else ""
        return WritePlan(
            False,
            status=Command.SUCCEEDED,
            detail=f"slot {slot} cleared; every slot is empty and the point has no relinquish default{why}, "
            "so the device was left as it is",
        )
    return WritePlan(True, winner.value, detail=f"slot {slot} cleared; {winner.describe()} written")


def _record_assert(point: Point, winner: arrays.Effective, node: str, epoch: int, reason: str, cause: str) -> int:
    """Record one engine write of ``point``'s effective value, bound to ``(node, epoch)``; return its row id.

    ``cause`` names what the write is for (a taking of control, an override's end): the same cause in the same
    epoch records one row. A trip whose commit went through while its answer was lost runs again, and must not
    write the device twice.
    """
    command_id = f"assert-e{epoch}-{cause}-p{point.pk}"[:64]
    with transaction.atomic():
        recorded = Command.objects.filter(command_id=command_id).values_list("pk", flat=True).first()
        if recorded is not None:
            return recorded
        command = Command.objects.create(
            command_id=command_id,
            point=point,
            point_name=point.name,
            value=winner.value,
            priority=winner.priority,
            payload_hash=payload_hash(point.name, winner.value, winner.priority),
            source=Command.ENGINE,
            accepted_by=node,
            accepted_epoch=epoch,
            expires_at=timezone.now() + timedelta(seconds=settings.BMS_COMMAND_LIFETIME_SECONDS),
        )
        AuditEntry.objects.create(
            action="write.asserted",
            target=point.name,
            detail={
                "command_id": command_id,
                "value": winner.value,
                "priority": winner.priority,
                "reason": reason,
            },
        )
    return command.pk


def _server_array_points(names: list[str] | None = None) -> list[Point]:
    points = Point.objects.select_related("device").filter(writable=True, enabled=True, device__enabled=True)
    if names is not None:
        points = points.filter(name__in=names)
    return [point for point in points if arrays.server_keeps_array(point.device.driver)]


def _last_claimed_is_unknown(point_name: str) -> bool:
    """True if the latest command sent (or maybe sent) to the point ended ``unknown``: the device may hold it."""
    last = sent_to(point_name).exclude(status=Command.EXECUTING).only("status").first()
    return last is not None and last.status == Command.UNKNOWN


def sent_in_epoch(node: str, epoch: int, since: datetime) -> QuerySet:
    """The names of the points ``node`` sent a command to in ``epoch`` since ``since`` (``control_cmd_epoch_sent``)."""
    return (
        Command.objects.filter(accepted_by=node, accepted_epoch=epoch, started_at__gte=since)
        .order_by()
        .values_list("point_name", flat=True)
        .distinct()
    )


def sent_to(point_name: str) -> QuerySet:
    """The commands sent (or maybe sent) to a point, latest first (the ``control_cmd_last_sent`` index)."""
    return (
        Command.objects.filter(point_name=point_name, started_at__isnull=False)
        .exclude(source=Command.ENGINE)
        .order_by("-accepted_epoch", "-started_at", "-pk")
    )


def _targets(node: str, epoch: int, since: datetime, names: list[str] | None) -> dict[str, arrays.Effective]:
    now = timezone.now()
    points = _server_array_points(names)
    # Points with any slot set (one probe of control_cmd_slot_latest each, not a DISTINCT over the whole log)
    with_slots = set(
        Point.objects.filter(pk__in=[point.pk for point in points])
        .filter(
            Exists(
                Command.objects.filter(point_name=OuterRef("name"), status__in=Command.SETS_SLOT).exclude(
                    source=Command.ENGINE
                )
            )
        )
        .values_list("name", flat=True)
    )
    # Points this node already wrote in this epoch: their device holds what the array says since then.
    written = set(sent_in_epoch(node, epoch, since))
    targets = {}
    for point in points:
        if point.name in written or (point.name not in with_slots and point.relinquish_default is None):
            continue
        if _last_claimed_is_unknown(point.name):
            log.warning(
                "%s: its latest command ended unknown (the device may hold it), so its array is not re-asserted",
                point.name,
            )
            continue
        default, _ = arrays.relinquish_default(point)
        winner = arrays.effective(arrays.slots(point.name, now), default)
        if winner is not None:
            targets[point.name] = winner
    return targets


@with_fresh_connection
def array_targets(node: str, epoch: int, since: datetime) -> dict[str, arrays.Effective]:
    """What each server-kept array asks of its device now that this node controls it (since ``since``).

    Points with an effective value only (a non-empty slot or a relinquish
    default); not the ones this node has already written in ``epoch``, nor
    those whose latest command ended ``unknown`` (re-asserting the older
    value could undo a write the device may have applied).
    """
    return _targets(node, epoch, since, None)


@with_fresh_connection
def reassert_arrays(node: str, epoch: int, names: list[str], since: datetime) -> list[int]:
    """One engine write of the effective value of each of ``names`` (their device was read holding another).

    The targets are computed again first (a command may have moved one
    meanwhile). Each write is a new command row bound to this node and
    epoch, so it is claimed, fenced and recorded like any other and never
    sent by another node or in another epoch; no old command is re-sent.
    """
    return [
        _record_assert(
            point,
            winner,
            node,
            epoch,
            f"control taken in epoch {epoch}; the device held another value",
            f"t{since:%Y%m%d%H%M%S%f}",
        )
        for point, winner in (
            (Point.objects.select_related("device").get(name=name), winner)
            for name, winner in _targets(node, epoch, since, names).items()
        )
    ]


@with_fresh_connection
def next_hold_expiry(after: datetime) -> datetime | None:
    """The earliest end of an override after ``after`` among slot-setting commands (None: no override ends)."""
    return hold_ends(after).values_list("hold_until", flat=True).first()


def hold_ends(after: datetime) -> QuerySet:
    """Slot-setting commands whose override ends after ``after``, soonest first (the ``control_cmd_hold`` index)."""
    return (
        Command.objects.filter(status__in=Command.SETS_SLOT, hold_until__gt=after)
        .exclude(source=Command.ENGINE)
        .order_by("hold_until")
    )


@with_fresh_connection
def expire_holds(node: str, epoch: int, since: datetime, until: datetime) -> list[int]:
    """Overrides that ended in ``(since, until]``: where one was in control, write the next effective value.

    An override that had been replaced in its slot, or that a higher slot
    overrode, changes nothing on the device. With every slot empty and no
    relinquish default the device is left as it is (nothing recorded).
    Returns the ids of the engine rows created (executed by the scan).
    """
    ended = (
        Command.objects.filter(status__in=Command.SETS_SLOT, hold_until__gt=since, hold_until__lte=until)
        .exclude(source=Command.ENGINE)
        .order_by("hold_until")
    )
    created = []
    done: set[str] = set()
    for hold in ended:
        if hold.point_name in done:
            continue
        points = _server_array_points([hold.point_name])
        if not points:
            continue
        point = points[0]
        in_slots = arrays.latest_in_slots(point.name)
        latest = in_slots.get(hold.priority)
        array = arrays.array_of(in_slots, until)
        if latest is None or latest.pk != hold.pk or _in_control(slot_of(hold), array):
            continue  # replaced in its slot, or not in control when it ended: the device keeps its value
        done.add(point.name)
        default, problem = arrays.relinquish_default(point)
        winner = arrays.effective(array, default)
        if winner is None:
            log.info(
                "override %s of %s ended; every slot is empty and %s, so the device is left as it is",
                hold.command_id,
                point.name,
                problem or "there is no relinquish default",
            )
            continue
        reason = f"override {hold.command_id} at priority {hold.priority} ended"
        created.append(_record_assert(point, winner, node, epoch, reason, f"end{hold.pk}"))
    return created
