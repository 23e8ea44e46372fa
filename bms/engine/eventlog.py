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

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bms.engine import store
from bms.engine.outbox import Outbox
from bms.outage import Outage

BATCH = 200

#: (kind, source, message, severity, time)
EventRow = tuple[str, str, str, str, datetime]


class EventOutbox(Outbox[EventRow]):
    """Events on their way to the event log; ``record`` never blocks and never touches the database."""

    def __init__(self, run_in_db: Callable[..., Awaitable[Any]], source: str, capacity: int = 10_000) -> None:
        super().__init__(run_in_db, store.log_events, "event", capacity, BATCH)
        self.source = source

    def record(self, kind: str, source: str, message: str, severity: str, when: datetime | None = None) -> None:
        self.put((kind, source, message, severity, when or datetime.now(UTC)))

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
