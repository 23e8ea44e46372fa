"""The engine's only door to the database; every function here is blocking and runs off the loop.

Called on the engine's dedicated database thread (see :class:`Engine`), at
reload, on command execution and on state transitions: never per sample.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import ParamSpec, TypeVar

from django.db import close_old_connections, transaction
from django.utils import timezone

from bms.control.models import Command
from bms.engine.config import DeviceConfig, EngineConfig, PointConfig
from bms.engine.scaling import Scaling
from bms.events.models import Event
from bms.history.models import stamped_update
from bms.points.models import ConfigRevision, Device
from drivers.base import DeviceSpec, PointSpec

P = ParamSpec("P")
T = TypeVar("T")


def with_fresh_connection(func: Callable[P, T]) -> Callable[P, T]:
    """Drop connections that went stale between the engine's sparse database calls."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        close_old_connections()
        return func(*args, **kwargs)

    return wrapper


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
    return EngineConfig(revision, tuple(devices))


#: the engine's variant, on its long-lived database thread
load_config = with_fresh_connection(read_config)


@with_fresh_connection
def log_event(kind: str, source: str, message: str, severity: str, when: datetime) -> None:
    Event.objects.create(time=when, kind=kind, source=source, message=message, severity=severity)


@with_fresh_connection
def pending_command_ids() -> list[int]:
    return list(Command.objects.filter(status=Command.PENDING).order_by("id").values_list("id", flat=True))


@with_fresh_connection
def claim_command(pk: int) -> Command | None:
    """Move one command from pending to executing; None if someone else already did.

    The conditional UPDATE is what makes execution at-most-once, even with
    two engines or a duplicated wake-up.
    """
    claimed = stamped_update(
        Command.objects.filter(pk=pk, status=Command.PENDING), status=Command.EXECUTING, started_at=timezone.now()
    )
    if not claimed:
        return None
    return Command.objects.get(pk=pk)


@with_fresh_connection
def finish_command(pk: int, status: str, error: str = "") -> None:
    stamped_update(
        Command.objects.filter(pk=pk, status=Command.EXECUTING),
        status=status,
        error=error[:2000],
        finished_at=timezone.now(),
    )


@with_fresh_connection
def mark_interrupted_commands() -> int:
    """When taking control: a command left executing may or may not have reached the device; say so, never resend.

    Rows left ``executing`` are this engine's own from before a crash, or the
    former active node's, replicated before it sent them.
    """
    marked = 0
    for pk in Command.objects.filter(status=Command.EXECUTING).values_list("pk", flat=True):
        marked += stamped_update(
            Command.objects.filter(pk=pk, status=Command.EXECUTING),
            status=Command.UNKNOWN,
            error="control moved while this command was being sent; check the device before repeating it",
            finished_at=timezone.now(),
        )
    return marked
