"""The engine's only door to the database; every function here is blocking and runs off the loop.

Called on the engine's dedicated database thread (see :class:`Engine`), at
reload, on command execution and on state transitions: never per sample.
"""

from __future__ import annotations

from datetime import datetime
from typing import ParamSpec, TypeVar

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from bms.alarms.store import read_alarm_specs
from bms.control.models import Command
from bms.engine.config import DeviceConfig, EngineConfig, PointConfig
from bms.engine.dbconn import with_fresh_connection
from bms.engine.scaling import Scaling
from bms.events.models import Event
from bms.history.models import stamped_update
from bms.points.models import ConfigRevision, Device
from drivers.base import DeviceSpec, PointSpec

P = ParamSpec("P")
T = TypeVar("T")


@with_fresh_connection
def config_revision() -> int:
    return ConfigRevision.current()


def read_config() -> EngineConfig:
    """Read all enabled devices and points in one transaction, so the view is consistent."""
    with transaction.atomic():
        revision = ConfigRevision.current()
        devices = []
        for device in Device.objects.filter(enabled=True).prefetch_related("points"):
            points = tuple(
                PointConfig(
                    spec=PointSpec(point.name, point.address, point.data_type, dict(point.options or {})),
                    scaling=Scaling(point.data_type, point.scale, point.offset),
                    deadband=point.deadband,
                    device=device.name,
                )
                for point in device.points.all()
                if point.enabled
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
    return EngineConfig(revision, tuple(devices), alarms)


#: the engine's variant, on its long-lived database thread
load_config = with_fresh_connection(read_config)


@with_fresh_connection
def log_events(rows: list[tuple[str, str, str, str, datetime]]) -> None:
    """Store a batch of ``(kind, source, message, severity, time)`` in order, in one transaction."""
    with transaction.atomic():
        for kind, source, message, severity, when in rows:
            Event.objects.create(time=when, kind=kind, source=source, message=message, severity=severity)


@with_fresh_connection
def pending_command_ids() -> list[int]:
    return list(Command.objects.filter(status=Command.PENDING).order_by("id").values_list("id", flat=True))


@with_fresh_connection
def claim_command(pk: int, node: str, epoch: int) -> Command | None:
    """Move one command bound to ``(node, epoch)`` from pending to executing; None if it may not be sent now.

    The conditional UPDATE is what makes execution at-most-once, even with
    two engines or a duplicated wake-up; the binding is what keeps a
    successor (or this node in a later epoch) from sending a command its
    sender may still be sending (ADR 0008). A pending command that is not
    this node's to send, or that outlived its lifetime, is settled here
    instead (see :func:`settle_unsendable`).
    """
    now = timezone.now()
    claimed = stamped_update(
        Command.objects.filter(pk=pk, status=Command.PENDING, accepted_by=node, accepted_epoch=epoch).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        ),
        status=Command.EXECUTING,
        started_at=now,
    )
    if not claimed:
        settle_unsendable(node, epoch, pk)
        return None
    return Command.objects.get(pk=pk)


@with_fresh_connection
def finish_command(pk: int, status: str, error: str = "") -> None:
    """Record the outcome seen by the node that claimed the command (``observed``: it wins every merge).

    It overwrites any version that knows less, including a successor's
    ``unknown`` that replication delivered while this node was sending.
    """
    stamped_update(
        Command.objects.filter(pk=pk, observed=False),
        status=status,
        error=error[:2000],
        observed=True,
        finished_at=timezone.now(),
    )


def _unbound(node: str, epoch: int) -> Q:
    return ~Q(accepted_by=node) | ~Q(accepted_epoch=epoch)


@with_fresh_connection
def settle_unsendable(node: str, epoch: int, pk: int | None = None) -> int:
    """Settle the pending commands this node must not send, now that it is active in ``epoch``.

    * bound to another node or epoch: ``expired`` (not observed): this node
      never sent it; the node that accepted it did not start it as far as
      this node knows, and its own outcome replaces this one if it did;
    * this node's own but past its lifetime: ``expired``, observed (this node
      is the one that could have sent it, and did not).
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
    for command_pk in pending.filter(accepted_by=node, accepted_epoch=epoch, expires_at__lte=now).values_list(
        "pk", flat=True
    ):
        settled += stamped_update(
            Command.objects.filter(pk=command_pk, status=Command.PENDING),
            status=Command.EXPIRED,
            error="not started within its lifetime, so it was never sent; submit it again if it is still wanted",
            observed=True,
            finished_at=now,
        )
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
