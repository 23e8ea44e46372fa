"""Commands made by the engine's own BMS functions (schedules, logic), recorded through the one command path.

A schedule transition or a logic output is a write like an operator's: it
is validated and recorded by :func:`bms.control.services.submit_write` (a
``Command`` row bound to the epoch it was made in, with a stable
``command_id``) and executed by the :class:`~bms.engine.commands.CommandExecutor`
at most once. The functions run on the engine loop, which never waits for the
database, so :meth:`CommandSink.submit` only queues the request; a task
records the queue in order, in batches, on the engine's database thread,
then wakes the executor.

* **Idempotent**: a request whose ``command_id`` is already recorded (the
  same occurrence of a schedule, the same numbered command of a rule, made
  again by a node that took over) is recorded once; the repeat is counted in
  :attr:`CommandSink.repeated`, never sent twice.
* **Bound to its epoch**: a request made in an epoch this node is no longer
  active in is dropped (counted): its successor re-asserts from the
  replicated state, with its own epoch.
* **Refusals are never silent**: a request the command path refuses (a
  point deleted, disabled or made read-only since the configuration was
  loaded, a value out of range) is logged, recorded as an event and counted
  in :attr:`CommandSink.refused`; the queue goes on.
* **Database away**: requests wait in memory (bounded: the oldest are
  dropped, counted and logged) and are recorded when it returns.
* **Lifetime**: ``BMS_FUNCTION_COMMAND_LIFETIME_SECONDS`` (300 s), not the
  operators' 5 s: a function's output is a level it keeps wanting and
  commands again only when it moves or its command did not reach the device,
  so a burst must not expire unsent (each would be made again; ADR 0018).
* **Answers**: :meth:`CommandSink.submit` returns a future of the
  :class:`Recorded` answer (``created``, ``repeat`` with the recorded
  command's status and epoch, ``refused``, ``stale`` or ``dropped``), for a
  function that must know what became of a request made again (a schedule
  after a takeover); the others ignore it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from bms.engine.dbconn import with_fresh_connection
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.role import RoleGate
from bms.engine.tasks import cancel_and_wait, keep_flushing

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
BATCH = 200
#: the sources the engine's own functions write as (one of bms.control.services.SOURCES each)
ENGINE_SOURCES = ("schedule", "logic")
#: how the engine records an event: (kind, source, message, severity), called on the loop
LogEvent = Callable[[str, str, str, str], None]


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One write a BMS function asks for. ``value`` None relinquishes ``priority``."""

    point: str
    value: Any
    priority: int
    command_id: str
    #: schedule or logic
    source: str
    #: the epoch the function ran in (the role's epoch when it made the request)
    epoch: int


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of one request: ``created``, ``repeat`` or ``refused`` (with why), ``stale`` or ``dropped``.

    ``status`` and ``accepted_epoch``: those of the command row (for a
    repeat, the row recorded before, perhaps by the other node in an
    earlier epoch)."""

    request: CommandRequest
    outcome: str
    detail: str = ""
    status: str = ""
    accepted_epoch: int | None = None


@with_fresh_connection  # after an outage, the thread's broken connection must not fail every later batch
def record_requests(requests: list[CommandRequest]) -> list[Recorded]:
    """Record ``requests`` in order through :func:`~bms.control.services.submit_write` (database thread)."""
    from bms.control.services import CommandRejected, submit_write

    lifetime = settings.BMS_FUNCTION_COMMAND_LIFETIME_SECONDS
    answers = []
    for request in requests:
        try:
            submission = submit_write(
                user=None,
                point_name=request.point,
                value=request.value,
                command_id=request.command_id,
                priority=request.priority,
                source=request.source,
                epoch=request.epoch,
                lifetime=lifetime,
            )
        except CommandRejected as exc:
            answers.append(Recorded(request, "refused", exc.message))
        else:
            command = submission.command
            outcome = "created" if submission.created else "repeat"
            answers.append(Recorded(request, outcome, status=command.status, accepted_epoch=command.accepted_epoch))
    return answers


class CommandSink:
    """The queue between the engine's functions and the command path (see the module docstring)."""

    def __init__(
        self,
        run_in_db: Callable[..., Awaitable[Any]],
        role: RoleGate,
        wake_executor: Callable[[], None],
        log_event: LogEvent,
        capacity: int = 10_000,
        record: Callable[[list[CommandRequest]], list[Recorded]] = record_requests,
    ) -> None:
        self.run_in_db = run_in_db
        self.role = role
        self.wake_executor = wake_executor
        self.log_event = log_event
        self.capacity = capacity
        self.record = record
        self.queue: deque[CommandRequest] = deque()
        #: the answer of each queued request, in the queue's order
        self._answers: deque[asyncio.Future[Recorded]] = deque()
        #: how many requests at the head of the queue a flush is recording
        self._in_flight = 0
        self.created = 0
        self.repeated = 0
        self.refused = 0
        self.dropped = 0
        self.stale = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def submit(self, request: CommandRequest) -> asyncio.Future[Recorded]:
        """Queue ``request`` (on the loop; returns at once) and return the future of its :class:`Recorded` answer."""
        if request.source not in ENGINE_SOURCES:
            raise ValueError(f"unknown engine command source {request.source!r}")
        answer: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        if len(self.queue) >= self.capacity:
            # The oldest not being recorded right now (a flush holds its batch at the head of the queue); if the
            # whole queue is being recorded, this new one.
            oldest = self._in_flight
            if oldest < len(self.queue):
                lost, lost_answer = self.queue[oldest], self._answers[oldest]
                del self.queue[oldest]
                del self._answers[oldest]
            else:
                lost, lost_answer = request, answer
            _answer(lost_answer, Recorded(lost, "dropped"))
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "engine command queue full (%d): oldest request %s dropped (%d so far)",
                    self.capacity,
                    lost.command_id,
                    self.dropped,
                )
            if lost is request:
                return answer
        self.queue.append(request)
        self._answers.append(answer)
        self._wake.set()
        return answer

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine-commands")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self.queue:
            try:
                await self.flush()
            except Exception as exc:
                log.error("%d engine command request(s) not recorded at shutdown: %s", len(self.queue), exc)

    async def flush(self) -> None:
        """Record everything waiting, in order; raises :class:`DatabaseUnavailable` (requests stay queued)."""
        recorded_any = False
        while self.queue:
            batch = [self.queue[i] for i in range(min(BATCH, len(self.queue)))]
            fresh = [self.role.may_write(request.epoch) for request in batch]
            current = [request for request, ok in zip(batch, fresh, strict=True) if ok]
            self._in_flight = len(batch)
            try:
                answers = iter(await self.run_in_db(self.record, current) if current else [])
            finally:
                self._in_flight = 0
            for ok in fresh:
                request = self.queue.popleft()
                future = self._answers.popleft()
                if ok:
                    answer = next(answers)
                    self._count(answer)
                    recorded_any = recorded_any or answer.outcome == "created"
                else:
                    answer = Recorded(request, "stale")
                _answer(future, answer)
            self.stale += len(batch) - len(current)
        if recorded_any:
            self.wake_executor()

    def _count(self, answer: Recorded) -> None:
        if answer.outcome == "created":
            self.created += 1
        elif answer.outcome == "repeat":
            self.repeated += 1
        else:
            self.refused += 1
            request = answer.request
            log.warning("%s command %s refused: %s", request.source, request.command_id, answer.detail)
            self.log_event(
                "command_refused",
                request.point,
                f"{request.source} command {request.command_id} refused: {answer.detail}",
                "warning",
            )

    def stats(self) -> dict[str, int]:
        return {
            "waiting": self.waiting,
            "created": self.created,
            "repeated": self.repeated,
            "refused": self.refused,
            "dropped": self.dropped,
            "stale": self.stale,
        }

    async def _run(self) -> None:
        def failed() -> bool:
            log.exception("recording engine commands failed; retrying")
            return False  # the requests stay queued: retried after a pause

        await keep_flushing(self._wake, self.flush, failed, (DatabaseUnavailable,), RETRY_SECONDS)


def _answer(future: asyncio.Future[Recorded], answer: Recorded) -> None:
    if not future.done():  # a caller may have cancelled its wait
        future.set_result(answer)
