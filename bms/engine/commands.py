"""Executes recorded commands: claim (at most once, only its own epoch's), fence, write, record the outcome.

The database row is the command; a channel-layer message only wakes this
executor early. Without it, pending commands are still found by the
periodic scan.

Under load (ADR 0019) commands are claimed in batches (one transaction, one
standby barrier per batch), executed by one worker per device (devices in
parallel, one request in flight each, a point's commands in claim order),
and their plans and outcomes share trips to the database thread.

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
import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from bms.control import outcomes as outcome_notices
from bms.control.models import Command
from bms.control.priority import Effective
from bms.engine import store
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.image import GOOD, PointState
from bms.engine.poller import DevicePoller
from bms.engine.role import RoleGate
from bms.engine.sink import ENGINE_SOURCES
from bms.engine.tasks import cancel_and_wait
from drivers.base import DriverError, WriteUncertain

log = logging.getLogger(__name__)

RunInDb = Callable[..., Awaitable[Any]]
#: awaited after a command is claimed and before it is sent: the redundancy
#: layer uses it to make sure the standby knows the command is executing, so
#: that a takeover marks it unknown instead of reporting it never sent. False:
#: the command must not be sent.
Barrier = Callable[[Command], Awaitable[bool]]
#: told (on the loop) of each outcome of a command made by the engine's functions: (source, command_id, status)
FunctionOutcome = Callable[[str, str, str], None]
UNCONFIRMED = "the standby did not confirm this command in time, so it was not sent (to rule out a double execution)"
EXPIRED_AT_SEND = "its lifetime ended before it could be sent, so it was never sent; submit it again if still wanted"
NOT_ACTIVE = "this node lost control before sending it, so the write was not sent"
NO_PLAN = "the database went away before its priority array could be read, so it was not sent"
STOPPED = "the engine stopped before sending it, so it was not sent"
#: commands claimed in one transaction (and confirmed by the standby with one acknowledgement)
CLAIM_BATCH = 256
#: after taking control, how long to wait for a point's first read before re-asserting its array anyway (seconds)
REASSERT_READ_WAIT = 5.0


def _same(read: object, wanted: object) -> bool:
    """Does the device's value (read back, scaled) equal the effective value? Floats to float32 precision."""
    if isinstance(read, bool) or isinstance(wanted, bool):
        return bool(read) == bool(wanted)
    if isinstance(read, int | float) and isinstance(wanted, int | float):
        return math.isclose(read, wanted, rel_tol=1e-6, abs_tol=1e-9)
    return read == wanted


def _independent(command: Command, lowest_before: int) -> bool:
    """May ``command`` be planned before its point's earlier commands (in slots ``lowest_before`` and below) end?

    A value write (not a relinquish, not an engine row, which writes whatever the whole array says) is planned
    from the slots above its own only (:func:`store._plan`), and a command changes its own slot only: so
    earlier commands in its slot or below cannot change its plan, whatever their outcomes.
    """
    return command.value is not None and command.source != Command.ENGINE and lowest_before >= store.slot_of(command)


def _not_polled(point_name: str) -> str:
    return f"point {point_name} is not (or no longer) polled by this engine"


@dataclass(slots=True)
class _Job:
    """A claimed command queued on its device, with its batch's barrier."""

    command: Command
    epoch: int
    barrier: asyncio.Future[bool] | None
    plan: store.WritePlan | None = None  # made with the claim (else asked when its turn comes)
    sending: bool = False  # handed to the driver: from here on, only the device knows whether it arrived


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
        self.function_outcome: FunctionOutcome | None = None
        self.executed = 0
        self.scans = 0
        self._claim_delay = settings.BMS_FAULT_CLAIM_DELAY_MS / 1000 if settings.BMS_ALLOW_FAULT_INJECTION else 0.0
        # Outcomes observed while the database was away: the device answered, the row could not say so yet.
        self.unrecorded: dict[int, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # Claimed commands waiting for their device, one queue and one worker per device (a driver has one
        # request in flight; the queue keeps the claim order, so a point's commands are planned one after another).
        self._queues: dict[str, collections.deque[_Job]] = {}
        self._workers: dict[str, asyncio.Task] = {}
        # What the workers ask of the database, carried together on the next trip (see _flush).
        self._plans: dict[int, asyncio.Future[store.WritePlan]] = {}
        self._outcomes: dict[int, tuple[str, str]] = {}
        self._recording: dict[int, _Job] = {}
        self._flusher: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._barriers: set[asyncio.Future] = set()
        self._claiming: asyncio.Future | None = None  # a claim whose scan was cancelled (stopping)
        # One claim at a time: a claim that releases lost claims (see store.LostClaims) must know every command
        # the executor holds, including those of a claim whose answer is on its way.
        self._claim_lock = asyncio.Lock()
        self._claim_in_doubt = False  # a claim trip failed: it may have committed without the answer arriving
        self._started_at = timezone.now()
        self._full = False
        # When a claim last settled the rows this node must not send (epoch, monotonic time); see _settle_now.
        self._settled: tuple[int, float] | None = None
        # Server-kept priority arrays: the epoch whose effective values were re-asserted, the time up to
        # which ended overrides were handled, and the next end of an override (None: none known).
        self.asserted_epoch: int | None = None
        self._expiry_mark: datetime | None = None
        self.next_expiry: datetime | None = None
        self._expiry_read: float | None = None  # monotonic time next_expiry was read
        # Arrays to re-assert after taking control, each waiting for the device's first read (or the deadline).
        self._control_since: datetime | None = None
        self._reassert: dict[str, Effective] = {}
        self._reassert_deadline = 0.0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commands")
        outcome_notices.serve(True)

    async def stop(self) -> None:
        if self._task is not None:
            outcome_notices.serve(False)
        await cancel_and_wait(self._task)
        if self._claiming is not None:
            with contextlib.suppress(Exception):
                for command in (await self._claiming).commands:  # claimed as the scan was cancelled: never queued
                    self._outcomes[command.pk] = (Command.FAILED, STOPPED)
        for task in list(self._workers.values()):
            await cancel_and_wait(task)
        # Queued commands not yet passed to their driver were never sent: say so. One being sent when the
        # workers stopped stays executing (its outcome is not known), and is marked unknown at the next start.
        for queue in self._queues.values():
            for job in queue:
                if not job.sending:
                    self._outcomes[job.command.pk] = (Command.FAILED, STOPPED)
        self._queues.clear()
        self._workers.clear()
        for barrier in list(self._barriers):
            barrier.cancel()
        await cancel_and_wait(self._flusher)
        self.unrecorded.update(self._outcomes)
        self._outcomes.clear()
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
            self._expiry_read = None
        # Once per scan interval, not on every wake-up: under load every submitted write wakes a scan. An
        # override lasts at least 1 s, longer than the interval, so its end is known before it comes.
        if self._expiry_read is None or time.monotonic() - self._expiry_read >= self.scan_interval:
            self._expiry_read = time.monotonic()
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
                await self._keep_arrays()
                # The claim also settles rows the former active node was sending, delivered after this node took
                # control, and pending rows this node must not send.
                while await self._claim(None):
                    pass  # as many as there was room for: there may be more waiting
            except DatabaseUnavailable:
                pass  # logged once per outage by the engine; commands wait in the database anyway
            except Exception:
                log.exception("command scan failed; retrying at the next scan")

    async def execute(self, pk: int) -> None:
        """Claim and execute one command now (if it may be sent), and wait until its outcome is recorded."""
        await self._claim([pk])
        await self.drain()

    async def drain(self) -> None:
        """Wait until every claimed command has run and every outcome is recorded (or kept in memory)."""
        while self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._idle.wait()

    async def _claim(self, pks: list[int] | None) -> bool:
        """Claim a batch of sendable commands in one transaction and queue them on their devices.

        True if it took as many as there was room for (there may be more).

        One barrier for the whole batch: the standby acknowledges stamps in
        order, so its acknowledgement of the batch's highest stamp covers
        every row claimed with it.
        """
        epoch = self.role.epoch
        if self._claim_delay and self._room():
            if pks is None:
                pks = await self.run_in_db(store.sendable_command_ids, self.node, epoch, self._room())
            if pks:
                log.warning(
                    "fault injection: holding command(s) %s for %.0f ms before claiming them",
                    pks,
                    self._claim_delay * 1000,
                )
                await asyncio.sleep(self._claim_delay)
        async with self._claim_lock:
            return await self._claim_and_queue(epoch, pks)

    def _settle_now(self, epoch: int, pks: list[int] | None) -> bool:
        """Whether this claim also settles the rows this node must not send (three queries, see
        :func:`store.claim_commands`): a claim of given commands, the first in an epoch, and then at most once
        per scan interval. A scan runs at every submitted command too, and those rows are never sendable
        anyway (the claim's own filter leaves them out), so settling them on each of those scans only cost
        three database trips a scan when commands arrive together."""
        now = time.monotonic()
        if pks is None and self._settled is not None:
            settled_epoch, settled_at = self._settled
            if settled_epoch == epoch and now - settled_at < self.scan_interval:
                return False
        self._settled = (epoch, now)
        return True

    def _room(self) -> int:
        """How many more commands may be claimed: the queues hold at most ``CLAIM_BATCH``."""
        return CLAIM_BATCH - sum(len(queue) for queue in self._queues.values())

    async def _claim_and_queue(self, epoch: int, pks: list[int] | None) -> bool:
        room = self._room()
        if room <= 0:
            self._full = True  # the devices are this far behind: claim more when a worker has done one
            return False
        if not self.role.may_write(epoch):
            # Not now: in doubt after a stall, or no longer active; the next scan (or a successor) settles them.
            return False
        # Points whose last command is not recorded yet: their next command is planned after that (by the worker).
        busy = frozenset(
            [job.command.point_name for queue in self._queues.values() for job in queue]
            + [job.command.point_name for job in self._recording.values()]
        )
        lost = store.LostClaims(self._started_at, self._held()) if self._claim_in_doubt else None
        settle = self._settle_now(epoch, pks)
        claiming = asyncio.ensure_future(
            self.run_in_db(store.claim_commands, self.node, epoch, room, pks, busy, lost, settle)
        )
        try:
            batch = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            self._claiming = claiming  # stopping: the claim may still commit; stop() settles what it claimed
            raise
        except Exception:
            # The claim may have committed and only its answer been lost (the connection broke in between):
            # the next claim releases what it took, which this engine never queued and so never sent.
            self._claim_in_doubt = True
            raise
        self._claim_in_doubt = False
        if batch.released:
            log.warning(
                "the answer to an earlier claim was lost with the database connection: command row(s) %s it "
                "claimed were never sent; they are claimed again (or expire, if past their lifetime)",
                batch.released,
            )
        for source, command_id in batch.expired:
            self._tell_function(source, command_id, Command.EXPIRED)
        claimed = batch.commands
        if not claimed:
            return False
        barrier = None
        if self.barrier is not None:
            barrier = asyncio.ensure_future(self.barrier(max(claimed, key=lambda command: command.origin_seq)))
            self._barriers.add(barrier)
            barrier.add_done_callback(self._barrier_done)
        for command in claimed:
            job = _Job(command, epoch, barrier, batch.plans.get(command.pk))
            device = self._device_of(command.point_name)
            if device is None:
                self.executed += 1
                self._record(job, Command.FAILED, _not_polled(command.point_name), now=True)
                continue
            self._queues.setdefault(device, collections.deque()).append(job)
            if device not in self._workers:
                self._workers[device] = asyncio.create_task(self._work(device), name=f"commands-{device}")
        return len(claimed) == room

    def _held(self) -> frozenset[int]:
        """Every command this executor holds: queued or being sent, or its outcome not yet recorded."""
        return frozenset(
            [job.command.pk for queue in self._queues.values() for job in queue]
            + list(self._recording)
            + list(self._outcomes)
            + list(self.unrecorded)
        )

    def _barrier_done(self, barrier: asyncio.Future) -> None:
        self._barriers.discard(barrier)
        if not barrier.cancelled():
            barrier.exception()  # seen: each job that awaited it has logged it; the others did not need it

    def _device_of(self, point_name: str) -> str | None:
        for poller in self.pollers().values():
            point = poller.points.get(point_name)
            if point is not None:
                return point.device
        return None

    async def _work(self, device: str) -> None:
        """Execute one device's queued commands one at a time, in the order claimed (per point: planning order)."""
        queue = self._queues[device]
        try:
            while queue:
                job = queue[0]
                try:
                    if job.plan is None:
                        await self._plan_ahead(queue)
                    status, error = await self._execute(job)
                except Exception as exc:
                    log.exception("command %s: unexpected error while executing it", job.command.command_id)
                    sent = job.sending
                    status = Command.UNKNOWN if sent else Command.FAILED
                    error = f"unexpected error {'while' if sent else 'before'} sending ({exc})"
                self.executed += 1  # before the outcome is stored: whoever sees the outcome sees the count
                # Recorded at once, unless the next job will ask for its plan: then one trip carries both.
                following = queue[1] if len(queue) > 1 else None
                self._record(job, status, error, now=following is None or following.plan is not None)
                queue.popleft()
                if self._full:
                    self._full = False
                    self.wake()
        finally:
            if not queue:  # else cancelled (stopping): :meth:`stop` settles what is left
                del self._queues[device]
                del self._workers[device]

    async def _execute(self, job: _Job) -> tuple[str, str]:
        command = job.command
        plan = job.plan or await self._plan(command.pk)
        if not plan.send:
            status, error = plan.status, plan.detail
        elif not await self._confirmed(job):
            status, error = Command.FAILED, UNCONFIRMED
        else:
            job.sending = True
            status, error = await self._send(command, job.epoch, plan.value, plan.priority)
            if status == Command.SUCCEEDED:
                error = plan.detail
        return status, error

    async def _confirmed(self, job: _Job) -> bool:
        if job.barrier is None:
            return True
        try:
            return await asyncio.shield(job.barrier)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("command %s: the barrier failed; not sent", job.command.command_id)
            return False

    # -- the database side of execution: plans asked and outcomes recorded by all devices at once ----------------

    async def _plan_ahead(self, queue: collections.deque[_Job]) -> None:
        """Plan the queue's head and, in the same trip, every queued job whose plan cannot change before its turn.

        That is each job that is the first of its point: nothing before it on its point but recorded outcomes
        (the trip records the ones still waiting first), and no command of another device can change its
        point's array. And each later value write whose predecessors still queued on its point all sit in its
        own slot or below (:func:`_independent`): its plan reads only the slots above its own, which those
        cannot touch whatever their outcomes. So many writers on one point share a trip per round of plans
        instead of one trip per command (issue 11, ``bench/stress.py``).
        """
        lowest: dict[str, int] = {}  # per point: the highest-priority (lowest-numbered) slot queued so far
        wanted = []
        for job in queue:
            command = job.command
            slot = store.slot_of(command)
            before = lowest.get(command.point_name)
            if job.plan is None and (before is None or _independent(command, before)):
                wanted.append(job)
            lowest[command.point_name] = slot if before is None else min(before, slot)
        futures = [self._ask_plan(job.command.pk) for job in wanted]
        self._flush_soon()
        for job, future in zip(wanted, futures, strict=True):
            job.plan = await future

    def _ask_plan(self, pk: int) -> asyncio.Future[store.WritePlan]:
        future = asyncio.get_running_loop().create_future()
        self._plans[pk] = future
        return future

    async def _plan(self, pk: int) -> store.WritePlan:
        """The command's plan, computed on the next trip to the database (after the outcomes recorded so far)."""
        future = self._ask_plan(pk)
        self._flush_soon()
        return await future

    def _record(self, job: _Job, status: str, error: str, now: bool) -> None:
        """Record the outcome on the next trip to the database, with every other outcome and plan waiting.

        ``now``: start that trip; else the worker's next plan will (one trip for both).
        """
        self._outcomes[job.command.pk] = (status, error)
        self._recording[job.command.pk] = job
        self._tell_function(job.command.source, job.command.command_id, status)
        self._idle.clear()
        if now:
            self._flush_soon()

    def _tell_function(self, source: str, command_id: str, status: str) -> None:
        if self.function_outcome is not None and source in ENGINE_SOURCES:
            try:
                self.function_outcome(source, command_id, status)
            except Exception:
                log.exception("command %s: its function failed to take its outcome %s", command_id, status)

    def _flush_soon(self) -> None:
        self._idle.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="commands-db")

    async def _flush(self) -> None:
        """Record the outcomes and compute the plans asked meanwhile, in one call, until nothing is asked."""
        try:
            while self._outcomes or self._plans:
                outcomes, self._outcomes = self._outcomes, {}
                plans, self._plans = self._plans, {}
                jobs = {pk: self._recording[pk] for pk in outcomes}  # busy points until the outcome is stored
                try:
                    planned = await self.run_in_db(store.finish_and_plan, outcomes, list(plans))
                except asyncio.CancelledError:
                    self.unrecorded.update(outcomes)  # stopping: recorded (again: it is idempotent) at the next start
                    raise
                except Exception as exc:
                    # The devices have answered: those outcomes must reach the rows, not be lost.
                    self.unrecorded.update(outcomes)
                    if isinstance(exc, DatabaseUnavailable):
                        detail = NO_PLAN
                        for pk, (status, _) in outcomes.items():
                            log.warning("command %s: %s, kept in memory until the database returns", pk, status)
                    else:
                        log.exception("recording command outcomes failed; they are kept in memory and retried")
                        detail = f"its priority array could not be read ({exc}), so it was not sent"
                    planned = {pk: store.WritePlan(False, status=Command.FAILED, detail=detail) for pk in plans}
                else:
                    outcome_notices.recorded(outcomes)  # committed: waiting API requests of this process read them
                    for pk, (status, error) in outcomes.items():
                        command = jobs[pk].command
                        log.info(
                            "command %s %s := %r: %s %s",
                            command.command_id,
                            command.point_name,
                            command.value,
                            status,
                            error,
                        )
                finally:
                    for pk in outcomes:
                        del self._recording[pk]
                for pk, future in plans.items():
                    if not future.done():
                        future.set_result(planned[pk])
        finally:
            if not self._outcomes and not self._plans:
                self._idle.set()

    async def _record_kept_outcomes(self) -> None:
        if not self.unrecorded:
            return
        kept = dict(self.unrecorded)
        await self.run_in_db(store.finish_commands, kept)
        outcome_notices.recorded(kept)
        for pk, (status, _) in kept.items():
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
        return Command.FAILED, _not_polled(command.point_name)
