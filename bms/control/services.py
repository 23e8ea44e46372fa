"""The one path every device write takes: permission, validation, command log, audit, hand-off.

Web manager, REST API and code (later: schedules and logic) all call
:func:`submit_write`. It records the command in the database (the carrier)
and then nudges the engine through the channel layer (a hint only).

Every write names a priority slot (ADR 0016): on a point whose device keeps
no array of its own (Modbus) a write without a priority goes to slot 16, a
null value relinquishes (clears) the slot, and ``expires_in`` makes an
override end by itself. Operators may write and relinquish at priority 8
(manual) or without a priority; any other priority needs an engineer
(``points.change_point``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from bms.audit.values import bounded_text, recordable
from bms.control import outcomes
from bms.control.models import AuditEntry, Command
from bms.control.priority import DEFAULT_PRIORITY, MANUAL, MAX_HOLD, server_keeps_array
from bms.control.target import point_with_device
from bms.engine import bus
from bms.engine.scaling import Scaling, ValueRejected, preview, validate_value
from bms.engine.sink import ENGINE_SOURCES
from bms.history.lockwait import bound_lock_wait, create_without_waiting, is_lock_timeout
from bms.history.models import next_stamp
from drivers.registry import driver_class

log = logging.getLogger(__name__)
COMMAND_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SOURCES = ("web", "api", "code", "schedule", "logic")
MAX_LIFETIME = 3600.0


class CommandRejected(Exception):
    """A write that was refused before anything was recorded or sent; ``code`` is machine-readable."""

    http_status = {
        "forbidden": 403,
        "unknown_point": 404,
        "conflict": 409,
        "read_only": 409,
        "busy": 503,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return self.http_status.get(self.code, 400)


@dataclass(frozen=True, slots=True)
class Submission:
    """The recorded command and whether this call created it (False: an idempotent repeat)."""

    command: Command
    created: bool


def payload_hash(point_name: str, value: object, priority: int | None, expires_in: float | None = None) -> str:
    payload: dict[str, object] = {"point": point_name, "value": value, "priority": priority}
    if expires_in is not None:  # only then: the hashes of writes without an end stay what they were
        payload["expires_in"] = expires_in
    body = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def submit_write(
    *,
    user,
    point_name: object,
    value: object,
    command_id: object = None,
    priority: object = None,
    source: str = "api",
    epoch: int = 0,
    lifetime: object = None,
    expires_in: object = None,
) -> Submission:
    """Validate and record a write; raise :class:`CommandRejected` (and record nothing but an audit line).

    ``epoch``: the fencing epoch this node is active in (the caller read it
    with the role, e.g. from the node view); the command is bound to it, so
    only this node in this epoch will ever send it. ``lifetime``: seconds
    within which it must be started (default ``BMS_COMMAND_LIFETIME_SECONDS``).
    ``expires_in``: seconds after which this override's slot empties by
    itself (server-kept arrays only; the engine then writes the next
    effective value).
    """
    username = getattr(user, "username", "") or ""
    try:
        return _submit(user, point_name, value, command_id, priority, source, epoch, lifetime, expires_in)
    except CommandRejected as exc:
        if exc.code == "busy":  # the lock that an audit row needs is the one that was not free: log only
            log.warning("write refused for %s by %s: %s", point_name, username or "-", exc.message)
            raise
        entry = {
            "user": user if getattr(user, "pk", None) else None,
            "username": username,
            "action": "write.rejected",
            "target": bounded_text(point_name if isinstance(point_name, str) else preview(point_name), 128),
            "detail": {
                "code": exc.code,
                "message": bounded_text(exc.message, 300),
                "value": recordable(value),
                "command_id": recordable(command_id),
            },
        }
        if _record_rejection(source, entry):
            log.info("write refused for %s by %s: %s", point_name, username or "-", exc.message)
        else:
            log.warning(
                "write refused for %s by %s: %s (not in the audit trail: the history stamp stayed locked for %g ms)",
                point_name,
                username or "-",
                exc.message,
                settings.BMS_WRITE_LOCK_WAIT_MS,
            )
        raise


def _record_rejection(source: str, entry: dict) -> bool:
    """The audit row of a refused write; False if the web side's bounded wait for the history stamp ran out.

    The engine's own functions wait for the stamp, as all their writes do (:mod:`bms.history.lockwait`)."""
    if source in ENGINE_SOURCES:
        AuditEntry.objects.create(**entry)
        return True
    try:
        create_without_waiting(AuditEntry, **entry)
    except OperationalError as error:
        if not is_lock_timeout(error):
            raise
        return False
    return True


def _lifetime(lifetime: object) -> timedelta:
    if lifetime is None:
        return timedelta(seconds=settings.BMS_COMMAND_LIFETIME_SECONDS)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not 0.1 <= lifetime <= MAX_LIFETIME:
        raise CommandRejected("invalid", f"lifetime must be a number of seconds from 0.1 to {MAX_LIFETIME:.0f}")
    return timedelta(seconds=float(lifetime))


def _hold(expires_in: object) -> float | None:
    if expires_in is None:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not 1 <= expires_in <= MAX_HOLD:
        raise CommandRejected("invalid", f"expires_in must be a number of seconds from 1 to {MAX_HOLD:.0f}")
    return float(expires_in)


def _submit(user, point_name, value, command_id, priority, source, epoch, lifetime, expires_in) -> Submission:
    if source not in SOURCES:
        raise ValueError(f"unknown command source {source!r}")
    if source in ("web", "api"):
        if user is None or not user.is_authenticated:
            raise CommandRejected("forbidden", "log in to write values")
        if not user.has_perm("points.write_point"):
            raise CommandRejected("forbidden", f"user {user.username} may not write values")
    if not isinstance(point_name, str) or not point_name:
        raise CommandRejected("invalid", "name the point to write")
    if "\x00" in point_name:  # no point has one (PostgreSQL cannot store it), and the lookup would fail
        raise CommandRejected("unknown_point", f"there is no point named {preview(point_name)}")
    if command_id is None:
        command_id = uuid.uuid4().hex
    if not isinstance(command_id, str) or not COMMAND_ID_PATTERN.match(command_id):
        raise CommandRejected("invalid", "command_id must be 1 to 64 letters, digits or _ . : -")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 16
    ):
        raise CommandRejected("invalid", "priority must be a whole number from 1 to 16")
    if source in ("web", "api") and priority not in (None, MANUAL) and not user.has_perm("points.change_point"):
        raise CommandRejected(
            "forbidden",
            f"user {user.username} may write at priority {MANUAL} (manual) only; other priorities are "
            "for engineers (points.change_point)",
        )
    lifespan = _lifetime(lifetime)
    hold = _hold(expires_in)

    # one statement written once: the ORM's query compiled at every command was most of recording one
    point = point_with_device(point_name)
    if point is None:
        raise CommandRejected("unknown_point", f"there is no point named {point_name!r}")
    if not point.writable:
        raise CommandRejected("read_only", f"point {point_name} is read-only")
    if not point.enabled or not point.device.enabled:
        raise CommandRejected("read_only", f"point {point_name} is disabled")
    driver = driver_class(point.device.driver)
    server_array = server_keeps_array(point.device.driver)
    if hold is not None and not server_array:
        raise CommandRejected(
            "invalid",
            f"{point_name}: expires_in is for server-kept priority arrays; a {driver.name} device keeps "
            "its own array (relinquish the priority when the override should end)",
        )
    if value is None:
        # A relinquish: release this priority slot so a lower priority (or the default) takes over.
        if hold is not None:
            raise CommandRejected("invalid", f"{point_name}: a relinquish cannot have expires_in")
        if priority is None and server_array:
            raise CommandRejected(
                "wrong_type", f"{point_name}: a value is required (a null value relinquishes, and needs the priority)"
            )
        if priority is None:
            raise CommandRejected("invalid", f"{point_name}: a relinquish (null value) needs the priority to release")
        normalised = None
    else:
        scaling = Scaling(point.data_type, point.scale, point.offset)
        try:
            normalised = validate_value(
                value, scaling, point.min_value, point.max_value, driver.value_range(point.data_type)
            )
        except ValueRejected as exc:
            raise CommandRejected(exc.code, f"{point_name}: {exc.message}") from None

    if server_array and priority is None:
        priority = DEFAULT_PRIORITY
    digest = payload_hash(point_name, normalised, priority, hold)
    # The engine's functions record thousands of commands and repeat one only after a takeover: for them the
    # unique command_id alone finds a repeat (IntegrityError below), a query less per command.
    if source not in ENGINE_SOURCES:
        existing = Command.objects.filter(command_id=command_id).first()
        if existing is not None:
            return _repeat(existing, digest)
    now = timezone.now()
    try:
        with transaction.atomic():
            if source not in ENGINE_SOURCES:
                bound_lock_wait()
            # The stamp taken here, in this transaction, rather than by HistoryRow.save (which would wrap it and
            # the insert in a savepoint of their own: two more round trips per command).
            origin, stamp_epoch, origin_seq = next_stamp()
            command = Command.objects.create(
                origin=origin,
                epoch=stamp_epoch,
                origin_seq=origin_seq,
                command_id=command_id,
                point=point,
                point_name=point_name,
                value=normalised,
                priority=priority,
                payload_hash=digest,
                source=source,
                user=user if getattr(user, "pk", None) else None,
                username=getattr(user, "username", "") or "",
                accepted_by=settings.BMS_NODE_NAME,
                accepted_epoch=epoch,
                expires_at=now + lifespan,
                hold_until=now + timedelta(seconds=hold) if hold is not None else None,
            )
            if source in ENGINE_SOURCES:
                # The engine's own functions: the command row is their record (a PID makes one per change,
                # an audit row each would bury the operators' actions), and the engine's command sink wakes
                # its executor itself once the batch is recorded.
                return Submission(command, True)
            AuditEntry.objects.create(
                user=command.user,
                username=command.username,
                action="write.requested",
                target=point_name,
                detail={
                    "command_id": command_id,
                    "value": normalised,
                    "priority": priority,
                    "source": source,
                    **({"expires_in": hold} if hold is not None else {}),
                },
            )
            transaction.on_commit(wake_engine)
    except IntegrityError:
        # Another request recorded the same command_id between our check and insert.
        return _repeat(Command.objects.get(command_id=command_id), digest)
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        raise CommandRejected(
            "busy",
            f"{point_name}: the database did not give this write its history stamp within "
            f"{settings.BMS_WRITE_LOCK_WAIT_MS:g} ms (another process holds it: a node's engine stopped or stalled "
            "in the middle of a write); nothing was recorded: try again",
        ) from exc
    return Submission(command, True)


def _repeat(existing: Command, digest: str) -> Submission:
    if existing.payload_hash != digest:
        raise CommandRejected(
            "conflict", f"command_id {existing.command_id} was already used for a different write; use a new id"
        )
    return Submission(existing, False)


def wake_engine() -> None:
    """Tell the engine to look for new commands now (best effort: it also scans on its own)."""
    try:
        async_to_sync(get_channel_layer().send)(bus.engine_channel(), {"type": bus.COMMANDS_PENDING})
    except Exception as exc:  # the periodic scan still finds the command
        log.warning("could not wake the engine (%s); it will find the command at its next scan", exc)


def wait_for_outcome(command: Command, timeout: float) -> Command:
    """Wait until the command row is final or ``timeout`` passes; return the latest row.

    With the engine in this process, its executor says when the row has an
    outcome (:mod:`bms.control.outcomes`) and the row is read then (and at
    least every ``FALLBACK_SECONDS``). Otherwise the row is polled every 10 ms
    at first (most writes finish within a few), then less often, up to every
    100 ms. Between reads a pooled connection goes back to the pool: 50
    operators writing at once must not hold 50 connections for seconds while
    other requests and websocket logins wait for one.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    with outcomes.watch(command.pk) as told:
        while True:
            command.refresh_from_db()
            if command.status in Command.FINAL or time.monotonic() >= deadline:
                return command
            if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
                connection.close()  # back to the pool; the next refresh takes one again
            left = max(0.0, deadline - time.monotonic())
            if outcomes.told_here():
                told.wait(min(outcomes.FALLBACK_SECONDS, left))
                told.clear()
            else:
                time.sleep(min(pause, left))
                pause = min(pause * 1.5, 0.1)
