"""The periodic trend work: storage upkeep (partitions ahead, retention) and roll-ups, on the active node only.

Production runs it from Celery beat (``bms.trends.tasks``). The embedded
shape has no broker and no beat: the engine runs :class:`MaintenanceThread`
instead, a thread of its own beside the trend writer (so a long roll-up never
delays a flush), asking the engine's role before every pass. Both call
:func:`maintain` and :func:`roll_up`, which are idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from bms.engine.dbconn import drop_broken_connections
from bms.outage import OutageLog
from bms.trends import conf, rollups, storage

log = logging.getLogger(__name__)


def maintain(now: datetime | None = None) -> dict[str, Any]:
    """Partitions ahead and expired data dropped, for every tier."""
    return storage.upkeep(now)


def roll_up(now: datetime | None = None, passes: int = 20) -> dict[str, Any]:
    """Compute the due hourly and daily roll-ups, in up to ``passes`` passes, until none is left that is ready."""
    total = {"hours": 0, "days": 0, "rows": 0, "skipped": 0}
    for _ in range(passes):
        done = rollups.run(now)
        for key, value in done.items():
            total[key] += value
        if not (done["hours"] or done["days"] or done["skipped"]):
            break
    return total


class MaintenanceThread:
    """Runs :func:`roll_up` every ``rollup_seconds`` and :func:`maintain` every ``maintain_seconds`` while
    ``is_active()`` says so; a failing pass (the database away) is logged once per outage and tried again."""

    def __init__(
        self,
        is_active: Callable[[], bool],
        rollup_seconds: float | None = None,
        maintain_seconds: float | None = None,
    ) -> None:
        self.is_active = is_active
        self.rollup_seconds = conf.rollup_seconds() if rollup_seconds is None else rollup_seconds
        self.maintain_seconds = conf.maintenance_seconds() if maintain_seconds is None else maintain_seconds
        self.passes = 0
        self.last: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = OutageLog("trend maintenance failed", "trend maintenance works again", logger=log)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="bms-trend-maintenance", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        next_maintain = 0.0
        try:
            while not self._stop.is_set():
                if self.is_active():
                    try:
                        drop_broken_connections()
                        if time.monotonic() >= next_maintain:
                            self.last["maintain"] = maintain(datetime.now(UTC))
                            next_maintain = time.monotonic() + self.maintain_seconds
                        self.last["roll_up"] = roll_up(datetime.now(UTC))
                        self.passes += 1
                        self._failures.worked()
                    except Exception as exc:
                        self._failures.failed(exc)
                self._stop.wait(self.rollup_seconds)
        finally:
            connection.close()
