"""A bounded in-memory queue of rows on their way to the database, written in batches off the engine loop.

The engine never waits for the database: :meth:`Outbox.put` appends and
returns, and a writer task stores the rows in order, ``batch`` at a time,
on the engine's database thread. While the database is away the rows wait
(the outage is logged once by the engine); when the queue is full the
oldest are dropped and counted, and a batch the database refuses (not an
outage: bad data) is dropped and counted too, so one bad row never blocks
every later one. A loss is never silent: it is logged and counted in
:attr:`Outbox.dropped`. The event log and the alarm journal use it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.tasks import cancel_and_wait, keep_flushing

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0
T = TypeVar("T")


class Outbox(Generic[T]):
    """Rows waiting for ``write`` (a blocking function taking a list, run through ``run_in_db``)."""

    def __init__(
        self,
        run_in_db: Callable[..., Awaitable[Any]],
        write: Callable[[list[T]], Any],
        what: str,
        capacity: int = 10_000,
        batch: int = 200,
    ) -> None:
        self.run_in_db = run_in_db
        self.write = write
        self.what = what
        self.capacity = capacity
        self.batch = batch
        self.queue: deque[T] = deque()
        self.dropped = 0
        self.written = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def put(self, row: T) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "%s outbox full (%d): %d oldest row(s) dropped so far", self.what, self.capacity, self.dropped
                )
        self.queue.append(row)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.what}-outbox")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self.queue:
            try:
                await self.flush()
            except Exception as exc:
                log.error("%d %s row(s) could not be written at shutdown: %s", len(self.queue), self.what, exc)

    async def flush(self) -> None:
        """Write everything waiting, in order; raises if the database refuses (the rows stay queued)."""
        while self.queue:
            rows = [self.queue[i] for i in range(min(self.batch, len(self.queue)))]
            await self.run_in_db(self.write, rows)
            for _ in rows:
                self.queue.popleft()
            self.written += len(rows)

    def _refused(self) -> bool:
        # Not an outage but a batch the database refuses: retrying it would block every later row.
        refused = min(self.batch, len(self.queue))
        for _ in range(refused):
            self.queue.popleft()
        self.dropped += refused
        log.exception("the database refused %d %s row(s); dropped (counted), continuing", refused, self.what)
        return True

    async def _run(self) -> None:
        await keep_flushing(self._wake, self.flush, self._refused, (DatabaseUnavailable,), RETRY_SECONDS)
