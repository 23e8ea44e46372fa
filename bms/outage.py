"""One kind of failure in a row, told once: the first logged with its reason, the rest counted, the end noted.

A database or a Redis that is away makes every call that needs it fail,
each as fast as the connection is refused; a log line (let alone a
traceback) per failure would bury the log. The engine's database calls, the
web side's requests, live publishing, the engine's request loop and the
channel-layer probe all report their outages through :class:`OutageLog`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error as one short line for logs, events and answers (driver errors can span lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:limit]


@dataclass(frozen=True, slots=True)
class Outage:
    """One finished outage: when it began and ended (aware UTC), why, and how many calls failed meanwhile."""

    began: datetime
    ended: datetime
    reason: str
    failures: int

    @property
    def seconds(self) -> float:
        return (self.ended - self.began).total_seconds()


class OutageLog:
    """The current outage of one thing, if any: ``failed()`` on every failure, ``worked()`` on every success.

    ``what`` starts the first line ("database unavailable"), ``meanwhile`` says
    what happens during the outage, ``back`` starts the last line ("database
    available again"); ``remind_every`` repeats a line every that many
    failures (0: never); ``traceback`` adds it to the first line, for callers
    whose failures may be bugs rather than outages.
    """

    def __init__(
        self,
        what: str,
        back: str,
        meanwhile: str = "",
        logger: logging.Logger | None = None,
        remind_every: int = 0,
        traceback: bool = False,
    ) -> None:
        self.what = what
        self.back = back
        self.meanwhile = meanwhile
        self.log = logger or log
        self.remind_every = remind_every
        self.traceback = traceback
        self.count = 0
        self.began: datetime | None = None
        self.reason = ""
        self.outages = 0
        self._since = 0.0

    @property
    def down(self) -> bool:
        return self.began is not None

    def failed(self, error: BaseException | str) -> bool:
        """Note a failure; True if it began an outage (the caller may record that)."""
        self.count += 1
        if self.began is None:
            self.began, self._since = datetime.now(UTC), time.monotonic()
            self.reason = one_line(error)
            self.outages += 1
            then = f"; {self.meanwhile}" if self.meanwhile else ""
            exc_info = error if self.traceback and isinstance(error, BaseException) else None
            self.log.error("%s: %s%s", self.what, self.reason, then, exc_info=exc_info)
            return True
        if self.remind_every and self.count % self.remind_every == 0:
            self.log.error("%s, still: %d failure(s) in a row: %s", self.what, self.count, one_line(error))
        return False

    def worked(self) -> Outage | None:
        """Note a success; the outage it ends, if any."""
        if self.began is None:
            return None
        outage = Outage(self.began, datetime.now(UTC), self.reason, self.count)
        self.log.warning(
            "%s after %.1f s (%d failure(s) meanwhile)", self.back, time.monotonic() - self._since, self.count
        )
        self.began, self.reason, self.count = None, "", 0
        return outage
