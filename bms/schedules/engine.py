"""The schedule engine: schedules run on the engine loop, their state in the process image, writes as commands.

Runs inside the node's real-time engine (:class:`bms.engine.runner.Engine`),
on its loop, and acts only while the node is active (ADR 0017):

* **The value in force.** At take-control and at every configuration load,
  each schedule's value in force at ``now`` and the occurrence that set it
  come from the pure evaluator (:meth:`ScheduleSpec.value_at`, DST-exact).
* **Timers.** The engine waits (:func:`~bms.engine.tasks.woken_or_due`) for
  the earliest next transition of all schedules, an aware UTC instant from
  :meth:`ScheduleSpec.next_transitions`, and at it evaluates the schedule
  again: the occurrence in force then is done. Transitions missed while no
  node was in control are never replayed one by one: only the one in force
  is done, once.
* **Doing an occurrence** is one :class:`~bms.engine.sink.CommandRequest`
  per target (source ``schedule``, the target's priority, the role's epoch,
  a ``null`` value relinquishes the slot) with a command id that depends only
  on the occurrence, its value and the target (:func:`command_id`), so the
  same occurrence made again, by this node or by the one that takes over,
  is recorded once and executed at most once (the command path's
  idempotency).
* **The state is the image entry** ``schedule:<name>``: the value in force,
  since when, the occurrence that set it, the last occurrence done, the next
  transition (for pages) and the epoch it was published in. It replicates
  to the standby with the points; a node that takes over continues from it.
* **Takeover.** The new active node adopts the replicated entry and makes
  the occurrence in force again: a repeat of a recorded command is not sent
  again, and one the old node recorded but never sent (the row ended
  ``expired`` or ``failed`` in an earlier epoch, or still waits bound to
  it) is made once more under a new id bound to this epoch. So an
  occurrence is done exactly once whether the old node died before, during
  or after it; the device is kept at the effective value by the priority
  arrays' re-assert (ADR 0016).
* **A command that never reached its device** (the executor reports it
  ``failed``, ``expired`` or ``unknown``: the device was away at the
  transition) is made again while its step is still the one in force,
  under a new id (:func:`retry_id`), the first time at once, then after a
  back-off doubling up to a minute (:mod:`bms.engine.retry`): a start at
  07:00 that met a device rebooting is at the device when it answers again,
  not at the next transition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time as time_
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from bms.engine.config import EngineConfig
from bms.engine.function import EngineFunction
from bms.engine.image import GOOD
from bms.engine.retry import retry_delay
from bms.engine.sink import CommandRequest, Recorded
from bms.engine.tasks import woken_or_due
from bms.schedules.evaluate import InForce, Occurrence, local_instant
from bms.schedules.evaluate import _same as same_value
from bms.schedules.spec import ScheduleSpec, TargetSpec

log = logging.getLogger(__name__)

SOURCE = "schedule"
#: the longest wait without looking at the clock again: a wall-clock step is noticed within this (seconds)
MAX_WAIT_SECONDS = 60.0
#: at take-control, the loop is yielded after this long of evaluation (a schedule whose value never changes costs
#: ~15 ms: the evaluator looks back 400 days and ahead 800 for a transition)
SLICE_SECONDS = 0.02
MAX_COMMAND_ID = 64
#: statuses of a command that never reached the device: made again once by a node in a later epoch
NEVER_SENT = ("pending", "expired", "failed")
#: outcomes after which a step's command is made again in the same epoch (a level written again is harmless)
NOT_AT_DEVICE = frozenset({"failed", "expired", "unknown"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NOTHING: Any = object()


def _us(when: datetime | None) -> int | None:
    return None if when is None else (when - _EPOCH) // _MICROSECOND


def _digest(text: str, length: int) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:length]


def command_id(identity: str, value: Any, rev: int, target: TargetSpec) -> str:
    """The command id of doing step ``identity`` (an occurrence) with ``value`` on ``target``.

    ``sched:<identity>:<step>:<target>``: the step is a short hash of the
    value and ``rev`` (how often a configuration change rewrote the value of
    this occurrence), the target one of its point and priority, so the same
    occurrence done again (by either node) gives the same id, and a changed
    value or target a new one. Within the command path's limit (64
    characters of ``[A-Za-z0-9_.:-]``); a long identity is hashed.
    """
    tail = [_digest(json.dumps([value, rev]), 8), _digest(f"{target.point}@{target.priority}", 8)]
    text = ":".join(["sched", identity, *tail])
    if len(text) > MAX_COMMAND_ID:
        text = ":".join(["sched", _digest(identity, 20), *tail])
    return text


def again_id(original: str, epoch: int) -> str:
    """The id under which ``original``, never sent, is made once more in ``epoch`` (one per epoch)."""
    text = f"{original}:e{epoch}"
    return text if len(text) <= MAX_COMMAND_ID else f"sched:{_digest(original, 32)}:e{epoch}"


def retry_id(original: str, epoch: int, attempt: int) -> str:
    """The id of the ``attempt``-th retry of ``original`` in ``epoch`` (see the module docstring)."""
    text = f"{original}:e{epoch}r{attempt}"
    return text if len(text) <= MAX_COMMAND_ID else f"sched:{_digest(original, 28)}:e{epoch}r{attempt}"


@dataclass(frozen=True, slots=True)
class _Followed:
    """A command whose end the engine awaits: made for the step ``(done, rev)`` of ``schedule``."""

    schedule: str
    done: str | None
    rev: int
    request: CommandRequest
    #: the step's own command id (retries are named after it)
    original: str
    failures: int = 0


@dataclass(slots=True)
class ScheduleRuntime:
    """One schedule on the engine: its definition, the last step it did and when it must look again."""

    spec: ScheduleSpec
    #: identity of the last occurrence done (``<key>:steady`` for a value older than the evaluator's look-back)
    done: str | None = None
    #: rewrites of ``done`` with another value after configuration changes
    rev: int = 0
    #: the value written for ``done``
    written: Any = _NOTHING
    state: InForce | None = None
    next: Occurrence | None = None
    #: when to evaluate it again (its next transition, or the end of its effective period)
    due: datetime | None = None


class ScheduleEngine(EngineFunction):
    """All schedules of one node (see the module docstring)."""

    task_name = "schedules"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtimes: dict[str, ScheduleRuntime] = {}
        self.running = False
        self.transitions = 0
        self.requests = 0
        self.again = 0
        #: commands made again in the same epoch because they did not reach the device
        self.retries = 0
        #: command id -> the step it was made for, until the executor reports its end
        self._following: dict[str, _Followed] = {}

    # ---- configuration and role -----------------------------------------------------------------------------

    @staticmethod
    def entry_names(config: EngineConfig) -> list[str]:
        return [spec.entry for spec in config.schedules]

    async def configure(self, config: EngineConfig) -> None:
        """Run exactly ``config.schedules``; a new or changed one is evaluated now (nothing done twice)."""
        wanted = {spec.name: spec for spec in config.schedules}
        for name in [name for name in self.runtimes if name not in wanted]:
            del self.runtimes[name]
        changed = []
        for name, spec in wanted.items():
            runtime = self.runtimes.get(name)
            if runtime is None:
                runtime = self.runtimes[name] = ScheduleRuntime(spec)
                self._adopt(runtime)
                changed.append(runtime)
            elif runtime.spec != spec:
                runtime.spec = spec
                changed.append(runtime)
        if self.running and self.role.active and changed:
            await self._refresh_all(changed, again=True)
        self._wake.set()

    async def take_control(self) -> None:
        """Adopt the replicated entries, then make the occurrence in force of every schedule (idempotently)."""
        self.running = False
        for runtime in self.runtimes.values():
            self._adopt(runtime)
        self.running = True
        await self._refresh_all(list(self.runtimes.values()), again=True)
        self._wake.set()
        log.info("schedules: %d in control (epoch %d)", len(self.runtimes), self.role.epoch)

    def release_control(self) -> None:
        self.running = False
        self._following.clear()  # the successor makes the steps in force again
        self._wake.set()

    def command_ended(self, source: str, command_id: str, status: str) -> None:
        """A schedule command ended: one that did not reach its device is made again (see the module docstring)."""
        if source != SOURCE:
            return
        followed = self._following.pop(command_id, None)
        if followed is None or status not in NOT_AT_DEVICE or not self._current(followed):
            return
        failures = followed.failures + 1
        delay = retry_delay(failures).total_seconds()
        log.warning(
            "schedule %s: command %s ended %s; writing %r to %s again in %.0f s",
            followed.schedule,
            command_id,
            status,
            followed.request.value,
            followed.request.point,
            delay,
        )
        asyncio.get_running_loop().call_later(delay, self._retry, replace(followed, failures=failures))

    def _current(self, followed: _Followed) -> bool:
        """Is ``followed``'s step still the one in force on this node, with its target still a target?"""
        runtime = self.runtimes.get(followed.schedule)
        request = followed.request
        return (
            self.running
            and runtime is not None
            and (runtime.done, runtime.rev) == (followed.done, followed.rev)
            and any(t.point == request.point and t.priority == request.priority for t in runtime.spec.targets)
        )

    def _retry(self, followed: _Followed) -> None:
        if not (self.role.active and self._current(followed)):
            return
        epoch = self.role.epoch
        request = replace(
            followed.request, command_id=retry_id(followed.original, epoch, followed.failures), epoch=epoch
        )
        self.retries += 1
        self._submit(request, replace(followed, request=request))

    def wake(self) -> None:
        """Schedules read no points: a change in the image is no news to them."""

    def stats(self) -> dict[str, Any]:
        return {
            "schedules": len(self.runtimes),
            "transitions": self.transitions,
            "requests": self.requests,
            "made_again": self.again,
            "retries": self.retries,
        }

    def _adopt(self, runtime: ScheduleRuntime) -> None:
        """Take the schedule's last step from its image entry (replicated from the node that ran it)."""
        runtime.due = None  # a timer from an earlier time in control says nothing now
        entry = self.image.points.get(runtime.spec.entry)
        value = entry.value if entry is not None else None
        if not isinstance(value, dict):
            runtime.done, runtime.rev, runtime.written = None, 0, _NOTHING
            return
        done = value.get("done")
        runtime.done = done if isinstance(done, str) else None
        rev = value.get("rev", 0)
        runtime.rev = rev if isinstance(rev, int) else 0
        runtime.written = value["written"] if "written" in value else _NOTHING

    # ---- the task ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            now = datetime.now(UTC)
            due = now + timedelta(seconds=MAX_WAIT_SECONDS)
            if self.running:
                due = min([due, *(runtime.due for runtime in self.runtimes.values() if runtime.due is not None)])
            await woken_or_due(self._wake, due)
            if not (self.running and self.role.active):
                continue
            try:
                self.run_due(datetime.now(UTC))
            except Exception:
                log.exception("schedule evaluation failed; continuing with the next transition")

    def run_due(self, now: datetime) -> int:
        """Evaluate every schedule whose transition (or end of period) has come by ``now``; return how many."""
        due = [runtime for runtime in self.runtimes.values() if runtime.due is not None and runtime.due <= now]
        for runtime in due:
            try:
                self._refresh(runtime, now, again=False)
            except Exception:
                # One broken schedule must not stop the others, nor spin the loop: look at it again later.
                log.exception("schedule %s could not be evaluated; trying again in a minute", runtime.spec.name)
                runtime.due = now + timedelta(seconds=MAX_WAIT_SECONDS)
        if due:
            self.notify()
        return len(due)

    async def _refresh_all(self, runtimes: list[ScheduleRuntime], again: bool) -> None:
        began = time_.monotonic()
        for runtime in runtimes:
            if time_.monotonic() - began > SLICE_SECONDS:
                await asyncio.sleep(0)  # many schedules: the loop polls and replicates in between
                began = time_.monotonic()
                if not (self.running and self.role.active):
                    return
            if runtime.spec.name in self.runtimes:
                self._refresh(runtime, datetime.now(UTC), again)
        self.notify()

    # ---- evaluation ------------------------------------------------------------------------------------------

    def _refresh(self, runtime: ScheduleRuntime, now: datetime, again: bool) -> None:
        """Evaluate at ``now``: do the occurrence in force if it is not done; publish; set the next timer.

        ``again``: also make the commands of an occurrence already done (take-control, configuration): a
        repeat is recorded once and never sent twice, and targets new to the schedule get the value.
        """
        spec = runtime.spec
        state = runtime.state = spec.value_at(now)
        if state.active:
            identity = state.occurrence.identity if state.occurrence else f"{spec.definition.key}:steady"
            if identity != runtime.done:
                runtime.done, runtime.rev, runtime.written = identity, 0, state.value
                self.transitions += 1
                log.info("schedule %s: %s, value %r", spec.name, identity, state.value)
                self._command(runtime)
            elif runtime.written is _NOTHING or not same_value(state.value, runtime.written):
                # The configuration changed the value of the occurrence in force: write the new one.
                runtime.rev += 1
                runtime.written = state.value
                log.info("schedule %s: %s now has value %r (configuration)", spec.name, identity, state.value)
                self._command(runtime)
            elif again:
                self._command(runtime)
        upcoming = spec.next_transitions(now, 1)
        runtime.next = upcoming[0] if upcoming else None
        runtime.due = runtime.next.at if runtime.next else None
        effective = spec.definition.effective
        if state.active and effective is not None and effective.end is not None:
            # Leaving the effective period is no transition (nothing is written) but the entry must say so.
            leave = local_instant(spec.definition.zone, effective.end + timedelta(days=1), time(0, 0))
            if leave > now and (runtime.due is None or leave < runtime.due):
                runtime.due = leave
        self._publish(runtime, now)

    def _command(self, runtime: ScheduleRuntime) -> None:
        """One request per target for the step ``runtime.done`` with ``runtime.written``."""
        epoch = self.role.epoch
        for target in runtime.spec.targets:
            request = CommandRequest(
                point=target.point,
                value=runtime.written,
                priority=target.priority,
                command_id=command_id(runtime.done, runtime.written, runtime.rev, target),
                source=SOURCE,
                epoch=epoch,
            )
            self._submit(request, _Followed(runtime.spec.name, runtime.done, runtime.rev, request, request.command_id))

    def _submit(self, request: CommandRequest, followed: _Followed) -> None:
        self.requests += 1
        self._following[request.command_id] = followed
        self.sink.submit(request).add_done_callback(self._answered)

    def _answered(self, future: asyncio.Future[Recorded]) -> None:
        """A request made again found a command that never reached the device: make it once more, in this epoch."""
        if future.cancelled():
            return
        answer = future.result()
        request = answer.request
        followed = self._following.get(request.command_id)
        executing_here = answer.outcome == "created" or (
            answer.outcome == "repeat"
            and answer.status in ("pending", "executing")
            and answer.accepted_epoch == request.epoch
        )
        if not executing_here:
            self._following.pop(request.command_id, None)  # its end will not be reported to this node
        if (
            answer.outcome != "repeat"
            or answer.status not in NEVER_SENT
            or answer.accepted_epoch == request.epoch
            or not (self.running and self.role.may_write(request.epoch))
        ):
            return
        again = CommandRequest(
            point=request.point,
            value=request.value,
            priority=request.priority,
            command_id=again_id(request.command_id, request.epoch),
            source=SOURCE,
            epoch=request.epoch,
        )
        self.again += 1
        if followed is not None:
            self._following[again.command_id] = replace(followed, request=again)
        log.warning(
            "schedule command %s was never sent (%s in epoch %s): made again as %s",
            request.command_id,
            answer.status,
            answer.accepted_epoch,
            again.command_id,
        )
        self.sink.submit(again).add_done_callback(self._answered)  # a refused one is no longer followed

    def _publish(self, runtime: ScheduleRuntime, now: datetime) -> None:
        state = runtime.state
        upcoming = runtime.next
        entry = {
            "active": bool(state and state.active),
            "value": state.value if state and state.active else None,
            "since_us": _us(state.since) if state else None,
            "occurrence": state.occurrence.identity if state and state.occurrence else None,
            "done": runtime.done,
            "rev": runtime.rev,
            "next_us": _us(upcoming.at) if upcoming else None,
            "next_value": upcoming.value if upcoming else None,
            "targets": len(runtime.spec.targets),
            "epoch": self.role.epoch,
        }
        if runtime.written is not _NOTHING:
            entry["written"] = runtime.written
        self.image.put(runtime.spec.entry, entry, GOOD, now)
