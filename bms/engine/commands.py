"""Executes recorded commands: claim (at most once, only its own epoch's), fence, write, record the outcome.

The database row is the command; a channel-layer message only wakes this
executor early. Without it, pending commands are still found by the
periodic scan.

Server-kept priority arrays (ADR 0016): after the claim, the point's array
(derived from the command log) decides what the command writes
(:func:`store.plan_command`). The executor also keeps the arrays' effects on
the device: once per epoch in which it is active it records one write of
each array's effective value (a takeover re-asserts them), and when an
override's ``hold_until`` passes it records the write of the next effective
value. Those are command rows like any other, bound to this node and epoch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from bms.control.models import Command
from bms.control.priority import Effective
from bms.engine import store
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.image import GOOD, PointState
from bms.engine.poller import DevicePoller
from bms.engine.role import RoleGate
from bms.engine.tasks import cancel_and_wait
from drivers.base import DriverError, WriteUncertain

log = logging.getLogger(__name__)

RunInDb = Callable[..., Awaitable[Any]]
#: awaited after a command is claimed and before it is sent: the redundancy
#: layer uses it to make sure the standby knows the command is executing, so
#: that a takeover marks it unknown instead of reporting it never sent. False:
#: the command must not be sent.
Barrier = Callable[[Command], Awaitable[bool]]
UNCONFIRMED = "the standby did not confirm this command in time, so it was not sent (to rule out a double execution)"
EXPIRED_AT_SEND = "its lifetime ended before it could be sent, so it was never sent; submit it again if still wanted"
NOT_ACTIVE = "this node lost control before sending it, so the write was not sent"
NO_PLAN = "the database went away before its priority array could be read, so it was not sent"
#: after taking control, how long to wait for a point's first read before re-asserting its array anyway (seconds)
REASSERT_READ_WAIT = 5.0


def _same(read: object, wanted: object) -> bool:
    """Does the device's value (read back, scaled) equal the effective value? Floats to float32 precision."""
    if isinstance(read, bool) or isinstance(wanted, bool):
        return bool(read) == bool(wanted)
    if isinstance(read, int | float) and isinstance(wanted, int | float):
        return math.isclose(read, wanted, rel_tol=1e-6, abs_tol=1e-9)
    return read == wanted


def _expired(command: Command) -> bool:
    return command.expires_at is not None and timezone.now() >= command.expires_at


class CommandExecutor:
    """Picks up pending commands bound to this node's current epoch and executes each at most once (ADR 0008)."""

    def __init__(
        self,
        run_in_db: RunInDb,
        pollers: Callable[[], dict[str, DevicePoller]],
        role: RoleGate,
        scan_interval: float = 0.5,
        node: str | None = None,
    ) -> None:
        self.run_in_db = run_in_db
        self.pollers = pollers
        self.role = role
        self.scan_interval = scan_interval
        self.node = node or settings.BMS_NODE_NAME
        self.barrier: Barrier | None = None
        self.executed = 0
        self.scans = 0
        self._claim_delay = settings.BMS_FAULT_CLAIM_DELAY_MS / 1000 if settings.BMS_ALLOW_FAULT_INJECTION else 0.0
        # Outcomes observed while the database was away: the device answered, the row could not say so yet.
        self.unrecorded: dict[int, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # Server-kept priority arrays: the epoch whose effective values were re-asserted, the time up to
        # which ended overrides were handled, and the next end of an override (None: none known).
        self.asserted_epoch: int | None = None
        self._expiry_mark: datetime | None = None
        self.next_expiry: datetime | None = None
        # Arrays to re-assert after taking control, each waiting for the device's first read (or the deadline).
        self._control_since: datetime | None = None
        self._reassert: dict[str, Effective] = {}
        self._reassert_deadline = 0.0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commands")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        try:
            await self._record_kept_outcomes()
        except DatabaseUnavailable:
            for pk, (status, error) in self.unrecorded.items():
                log.error("command row %d: outcome %s %s could not be recorded before stopping", pk, status, error)

    def _pause(self) -> float:
        """How long to wait for a wake-up: the scan interval, or less if an override ends sooner.

        An end already past was not handled by the last scan (the database is away, or this node is not in
        control): then the normal interval, never a busy loop.
        """
        if self.next_expiry is None or not self.role.active:
            return self.scan_interval
        remaining = (self.next_expiry - timezone.now()).total_seconds()
        return min(self.scan_interval, remaining) if remaining > 0 else self.scan_interval

    async def _keep_arrays(self) -> None:
        """Keep server-kept arrays' effects on the devices (ADR 0016).

        Once per epoch in which this node is active: each array's effective
        value is compared with the device's first read since control was
        taken and written (an engine command row) where the device holds
        another value, or was not read within :data:`REASSERT_READ_WAIT`.
        Whenever an override ends: the next effective value is written.
        """
        epoch = self.role.epoch
        if self.asserted_epoch != epoch:
            if not self.role.may_write(epoch):
                return
            since = timezone.now()
            self._reassert = await self.run_in_db(store.array_targets, self.node, epoch, since)
            self._reassert_deadline = time.monotonic() + REASSERT_READ_WAIT
            self.asserted_epoch, self._control_since, self._expiry_mark = epoch, since, since
        if self._reassert:
            await self._reassert_arrays(epoch)
        now = timezone.now()
        if self.next_expiry is not None and self.next_expiry <= now:
            created = await self.run_in_db(store.expire_holds, self.node, epoch, self._expiry_mark, now)
            if created:
                log.info("%d override(s) ended: writing the next effective value(s)", len(created))
            self._expiry_mark = now
        self.next_expiry = await self.run_in_db(store.next_hold_expiry, self._expiry_mark)

    def _read_since(self, name: str, since: datetime) -> PointState | None:
        """The point's image state if this node's poller has read it (good) since ``since``."""
        for poller in self.pollers().values():
            if name in poller.points:
                state = poller.image.points.get(name)
                fresh = state is not None and state.quality == GOOD and state.source_time is not None
                return state if fresh and state.source_time >= since else None
        return None

    async def _reassert_arrays(self, epoch: int) -> None:
        late = time.monotonic() >= self._reassert_deadline
        due = []
        for name, wanted in list(self._reassert.items()):
            state = self._read_since(name, self._control_since)
            if state is None and not late:
                continue
            del self._reassert[name]
            if state is None or not _same(state.value, wanted.value):
                due.append(name)
        if due:
            created = await self.run_in_db(store.reassert_arrays, self.node, epoch, due, self._control_since)
            log.info("control taken in epoch %d: re-asserting %d priority array value(s)", epoch, len(created))

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._pause())
            except TimeoutError:
                pass
            self._wake.clear()
            self.scans += 1
            try:
                await self._record_kept_outcomes()  # whatever the role: this node saw them
            except DatabaseUnavailable:
                continue
            if not self.role.active:
                continue
            try:
                # Rows the former active node was sending, delivered after this node took control.
                await self.run_in_db(store.settle_foreign_executing, self.node, self.role.epoch)
                await self._keep_arrays()
                for pk in await self.run_in_db(store.pending_command_ids):
                    await self.execute(pk)
            except DatabaseUnavailable:
                pass  # logged once per outage by the engine; commands wait in the database anyway
            except Exception:
                log.exception("command scan failed; retrying at the next scan")

    async def execute(self, pk: int) -> None:
        epoch = self.role.epoch
        if self._claim_delay:
            log.warning(
                "fault injection: holding command %s for %.0f ms before claiming it", pk, self._claim_delay * 1000
            )
            await asyncio.sleep(self._claim_delay)
        if not self.role.may_write(epoch):
            return  # not now: in doubt after a stall, or no longer active; the next scan (or a successor) settles it
        command = await self.run_in_db(store.claim_command, pk, self.node, epoch)
        if command is None:
            return
        try:
            plan = await self.run_in_db(store.plan_command, pk)
        except DatabaseUnavailable:
            plan = store.WritePlan(False, status=Command.FAILED, detail=NO_PLAN)
        if not plan.send:
            status, error = plan.status, plan.detail
        elif self.barrier is not None and not await self.barrier(command):
            status, error = Command.FAILED, UNCONFIRMED
        else:
            status, error = await self._send(command, epoch, plan.value, plan.priority)
            if status == Command.SUCCEEDED:
                error = plan.detail
        self.executed += 1  # before the outcome is stored: whoever sees the outcome sees the count
        try:
            await self.run_in_db(store.finish_command, pk, status, error)
        except DatabaseUnavailable:
            # The device has answered: that outcome must reach the row, not be lost with the connection.
            self.unrecorded[pk] = (status, error)
            log.warning("command %s: %s, kept in memory until the database returns", command.command_id, status)
            return
        log.info("command %s %s := %r: %s %s", command.command_id, command.point_name, command.value, status, error)

    async def _record_kept_outcomes(self) -> None:
        while self.unrecorded:
            pk, (status, error) = next(iter(self.unrecorded.items()))
            await self.run_in_db(store.finish_command, pk, status, error)
            del self.unrecorded[pk]
            log.info("command row %d: outcome %s recorded now that the database is back", pk, status)

    async def _send(self, command: Command, epoch: int, value: Any, priority: int | None) -> tuple[str, str]:
        for poller in self.pollers().values():
            point = poller.points.get(command.point_name)
            if point is None:
                continue
            try:
                await poller.write(point, value, lambda: self.role.may_write(epoch) and not _expired(command), priority)
            except WriteUncertain as exc:
                return Command.UNKNOWN, f"{exc}; the device may have received the write: check it before repeating it"
            except PermissionError:
                return (Command.EXPIRED, EXPIRED_AT_SEND) if _expired(command) else (Command.FAILED, NOT_ACTIVE)
            except (DriverError, ValueError) as exc:
                return Command.FAILED, str(exc)
            except Exception as exc:
                # A driver bug: the request may or may not have left, so the
                # outcome is unknown (never "executing" for ever, never resent).
                log.exception("command %s: unexpected error while sending", command.command_id)
                return Command.UNKNOWN, f"unexpected error while sending ({exc}); check the device before repeating it"
            return Command.SUCCEEDED, ""
        return Command.FAILED, f"point {command.point_name} is not (or no longer) polled by this engine"
