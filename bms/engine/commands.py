"""Executes recorded commands: claim (at most once), fence, write, record the outcome.

The database row is the command; a channel-layer message only wakes this
executor early. Without it, pending commands are still found by the
periodic scan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bms.control.models import Command
from bms.engine import store
from bms.engine.poller import DevicePoller
from bms.engine.role import RoleGate
from bms.engine.tasks import cancel_and_wait
from drivers.base import DriverError

log = logging.getLogger(__name__)

RunInDb = Callable[..., Awaitable[Any]]
#: awaited after a command is claimed and before it is sent: the redundancy
#: layer uses it to make sure the standby knows the command is executing, so
#: that a takeover marks it unknown instead of sending it a second time. False:
#: that could not be made sure of, and the command must not be sent.
Barrier = Callable[[Command], Awaitable[bool]]
UNCONFIRMED = "the standby did not confirm this command in time, so it was not sent (to rule out a double execution)"


class CommandExecutor:
    """Picks up pending commands and executes each at most once."""

    def __init__(
        self,
        run_in_db: RunInDb,
        pollers: Callable[[], dict[str, DevicePoller]],
        role: RoleGate,
        scan_interval: float = 0.5,
    ) -> None:
        self.run_in_db = run_in_db
        self.pollers = pollers
        self.role = role
        self.scan_interval = scan_interval
        self.barrier: Barrier | None = None
        self.executed = 0
        self.scans = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commands")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.scan_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            self.scans += 1
            if not self.role.active:
                continue
            try:
                for pk in await self.run_in_db(store.pending_command_ids):
                    await self.execute(pk)
            except Exception:
                log.exception("command scan failed; retrying at the next scan")

    async def execute(self, pk: int) -> None:
        epoch = self.role.epoch
        command = await self.run_in_db(store.claim_command, pk)
        if command is None:
            return
        if self.barrier is not None and not await self.barrier(command):
            status, error = Command.FAILED, UNCONFIRMED
        else:
            status, error = await self._send(command, epoch)
        await self.run_in_db(store.finish_command, pk, status, error)
        self.executed += 1
        log.info("command %s %s := %r: %s %s", command.command_id, command.point_name, command.value, status, error)

    async def _send(self, command: Command, epoch: int) -> tuple[str, str]:
        for poller in self.pollers().values():
            point = poller.points.get(command.point_name)
            if point is None:
                continue
            try:
                await poller.write(point, command.value, lambda: self.role.may_write(epoch), command.priority)
            except (DriverError, PermissionError, ValueError) as exc:
                return Command.FAILED, str(exc)
            except Exception as exc:
                # A driver bug: the request may or may not have left, so the
                # outcome is unknown (never "executing" for ever, never resent).
                log.exception("command %s: unexpected error while sending", command.command_id)
                return Command.UNKNOWN, f"unexpected error while sending ({exc}); check the device before repeating it"
            return Command.SUCCEEDED, ""
        return Command.FAILED, f"point {command.point_name} is not (or no longer) polled by this engine"
