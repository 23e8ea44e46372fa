"""Whether the engine's database answers: one outage logged once, counted, and reported when it ends.

The engine keeps polling and publishing while its database is away (DESIGN:
nothing on the hot path waits for it). What must not happen is a log line
and a traceback for every failed call, twice a second, from every periodic
task: :class:`DatabaseHealth` sees every call of ``Engine.run_in_db``, logs
the first failure of an outage with its reason, counts the rest, and says
once when the database is back and how long it was away.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import InterfaceError, OperationalError

log = logging.getLogger(__name__)

#: errors that mean "the database cannot be reached or used", not "this query is wrong"
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


class DatabaseUnavailable(Exception):
    """A database call failed because the database is away; the outage is already logged (once)."""


@dataclass(frozen=True, slots=True)
class Outage:
    """One finished outage: when it began and ended (aware UTC), why, and how many calls failed meanwhile."""

    began: datetime
    ended: datetime
    reason: str
    failed_calls: int

    @property
    def seconds(self) -> float:
        return (self.ended - self.began).total_seconds()


class DatabaseHealth:
    """The state of the engine's database as its calls find it."""

    def __init__(self) -> None:
        self.down_since: datetime | None = None
        self._down_monotonic: float | None = None
        self.reason = ""
        self.failed_calls = 0
        self.outages = 0

    @property
    def available(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException) -> bool:
        """Note a failed call; True if it began an outage (the caller may record that)."""
        self.failed_calls += 1
        if self.down_since is not None:
            return False
        self.down_since = datetime.now(UTC)
        self._down_monotonic = time.monotonic()
        self.reason = _one_line(exc)
        self.outages += 1
        log.error("database unavailable: %s; the engine keeps polling, events wait in memory", self.reason)
        return True

    def succeeded(self) -> Outage | None:
        """Note a call that worked; the outage it ends, if any."""
        if self.down_since is None:
            return None
        outage = Outage(self.down_since, datetime.now(UTC), self.reason, self.failed_calls)
        log.warning(
            "database available again after %.1f s (%d call(s) failed meanwhile)",
            time.monotonic() - (self._down_monotonic or time.monotonic()),
            outage.failed_calls,
        )
        self.down_since = self._down_monotonic = None
        self.reason = ""
        self.failed_calls = 0
        return outage

    def describe(self) -> dict[str, object]:
        """For status pages: ``{"available", "down_since", "reason", "failed_calls", "outages"}``."""
        return {
            "available": self.available,
            "down_since": self.down_since.isoformat() if self.down_since else None,
            "reason": self.reason,
            "failed_calls": self.failed_calls,
            "outages": self.outages,
        }


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
