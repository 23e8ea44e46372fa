"""The engine's event outbox: events wait in memory (bounded, counted) until the database takes them.

Communication losses, points going stale and role changes happen exactly
when something else is failing, often the database too. The engine never
waits for the database to record them: :meth:`EventOutbox.record` appends to
a bounded queue, and a writer task stores them in batches, in order. While
the database is away they wait; when the queue is full the oldest are
dropped and counted, and the count is itself recorded as an event when the
database returns, so a loss is never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bms.engine import store
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.tasks import cancel_and_wait
from bms.outage import Outage

log = logging.getLogger(__name__)
BATCH = 200
RETRY_SECONDS = 1.0

#: (kind, source, message, severity, time)
EventRow = tuple[str, str, str, str, datetime]


class EventOutbox:
    """Events on their way to the event log; ``record`` never blocks and never touches the database."""

    def __init__(self, run_in_db: Callable[..., Awaitable[Any]], source: str, capacity: int = 10_000) -> None:
        self.run_in_db = run_in_db
        self.source = source
        self.capacity = capacity
        self.queue: deque[EventRow] = deque()
        self.dropped = 0
        self.written = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def record(self, kind: str, source: str, message: str, severity: str, when: datetime | None = None) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("event outbox full (%d): %d oldest event(s) dropped so far", self.capacity, self.dropped)
        self.queue.append((kind, source, message, severity, when or datetime.now(UTC)))
        self._wake.set()

    def outage_began(self, reason: str, when: datetime) -> None:
        self.record("database_unavailable", self.source, f"database unavailable: {reason}", "warning", when)

    def outage_ended(self, outage: Outage) -> None:
        held = len(self.queue)
        dropped = f", {self.dropped} dropped because the outbox was full" if self.dropped else ""
        self.record(
            "database_available",
            self.source,
            f"database available again after {outage.seconds:.1f} s (unavailable since {outage.began.isoformat()}: "
            f"{outage.reason}); {held} event(s) held meanwhile are written now{dropped}",
            "warning" if self.dropped else "info",
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-outbox")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self.queue:
            try:
                await self.flush()
            except Exception as exc:
                log.error("%d event(s) could not be written at shutdown: %s", len(self.queue), exc)

    async def flush(self) -> None:
        """Write everything waiting, in order; raises if the database refuses (the events stay queued)."""
        while self.queue:
            batch = [self.queue[i] for i in range(min(BATCH, len(self.queue)))]
            await self.run_in_db(store.log_events, batch)
            for _ in batch:
                self.queue.popleft()
            self.written += len(batch)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                await asyncio.sleep(RETRY_SECONDS)  # the outage is logged once by the engine's health
                self._wake.set()
            except Exception:
                # Not an outage but a batch the database refuses: retrying it would block every later event.
                refused = min(BATCH, len(self.queue))
                for _ in range(refused):
                    self.queue.popleft()
                self.dropped += refused
                log.exception("the database refused %d event(s); dropped (counted), continuing", refused)
                self._wake.set()
