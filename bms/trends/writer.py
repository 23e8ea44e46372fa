"""The trend writer: samples from the engine loop to the database by COPY, through a disk spool when it is away.

On the loop, :meth:`TrendWriter.add` appends a sample to a list: no lock,
no ORM, no I/O. Every ``flush_seconds`` (or as soon as ``flush_rows``
samples are waiting) the list is handed over as one *batch* to two threads
of the writer's own, so the engine loop never waits for the database, and
neither does the engine's database thread (a stalled trend write must not
delay commands or replication):

* ``bms-trend-db`` writes the oldest batch there is, from the spool first,
  else from memory, with :func:`bms.trends.storage.write_samples` (stamps,
  binary COPY, one transaction), on a connection of its own. A batch leaves
  memory, or the spool advances past it, only once it is committed.
* ``bms-trend-spool`` moves the batches waiting in memory to the spool
  (:class:`bms.trends.spool.Spool`, fsynced) when the database is away (a
  write failed for an outage), when it stalls (the oldest batch waited more
  than ``stall_seconds``), or when memory holds more than ``memory_rows``.
  It moves *every* batch in memory, oldest first, so the spool only ever
  holds samples older than those in memory, and draining the spool first
  keeps the order. A batch written by the database at the very moment it
  was moved is later written again from the spool, and stored once (the
  insert is idempotent by ``(point, time)``).

Losses are counted and never silent (:attr:`TrendWriter.lost`): the spool
full (its oldest samples dropped), a batch the database refuses for its
content (not an outage: dropped so that it cannot block every later one),
and memory beyond twice its bound while the spool cannot be written. Each
is logged, reported as an event, and visible in the status the spool
thread writes next to the spool (:mod:`bms.trends.status`, read by
``/metrics`` and ``/healthz``). An event also warns when the spool is
``warn_percent`` full, well before anything is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connections

from bms.engine.dbconn import drop_broken_connections
from bms.engine.dbhealth import UNAVAILABLE_ERRORS
from bms.engine.tasks import cancel_and_wait
from bms.outage import OutageLog, one_line
from bms.trends import conf, status, storage
from bms.trends.spool import Position, Spool
from bms.trends.storage import SampleRow

log = logging.getLogger(__name__)
#: how a thread reports an event: (kind, message, severity)
Report = Callable[[str, str, str], None]
LOSS_EVENT_SECONDS = 60.0


@dataclass(slots=True)
class Batch:
    """Samples handed over together, and when (monotonic seconds)."""

    rows: list[SampleRow]
    handed: float = field(default_factory=time.monotonic)


class TrendWriter:
    """Buffers samples on the loop and stores them off it; ``start()`` in the loop, ``await stop()`` to end."""

    def __init__(
        self,
        spool: Spool,
        store: Callable[[list[SampleRow]], int] = storage.write_samples,
        *,
        report: Report | None = None,
        flush_seconds: float | None = None,
        flush_rows: int | None = None,
        memory_rows: int | None = None,
        stall_seconds: float | None = None,
        warn_percent: float | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self.spool = spool
        self.store = store
        self.report = report
        self.flush_seconds = conf.flush_seconds() if flush_seconds is None else flush_seconds
        self.flush_rows = conf.flush_rows() if flush_rows is None else flush_rows
        self.memory_rows = conf.memory_rows() if memory_rows is None else memory_rows
        self.stall_seconds = conf.stall_seconds() if stall_seconds is None else stall_seconds
        self.warn_percent = conf.spool_warn_percent() if warn_percent is None else warn_percent
        self.retry_seconds = retry_seconds
        # loop side
        self._pending: list[SampleRow] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task | None = None
        # shared with the threads, under _cond
        self._cond = threading.Condition()
        self._memory: deque[Batch] = deque()
        self._memory_held = 0
        self._db_down = False
        self._force_spool = False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # counters (each written by one thread)
        self.added = 0
        self.written = 0  # samples the database took (new or already stored)
        self.spooled = 0  # samples moved to the spool
        self.refused = 0  # samples in batches the database refused for their content
        self.memory_lost = 0  # samples dropped from memory while the spool could not be written
        self._outage = OutageLog(
            "trend samples cannot be written to the database",
            "trend samples are written to the database again",
            f"they wait in the spool at {spool.directory}",
            log,
        )
        self._warned = False
        self._held_since_empty = 0
        self._lost_reported = 0
        self._lost_reported_at = 0.0
        self._status_at = 0.0

    # ---- the loop side --------------------------------------------------------------------------------------------

    def add(self, row: SampleRow) -> None:
        """Buffer one sample ``(point id, time, value, quality code)``; never blocks."""
        pending = self._pending
        pending.append(row)
        if len(pending) >= self.flush_rows:
            self._full.set()

    def hand_over(self) -> None:
        """Hand the buffered samples to the threads now, as one batch."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        self.added += len(rows)
        with self._cond:
            self._memory.append(Batch(rows))
            self._memory_held += len(rows)
            while self._memory_held > 2 * self.memory_rows and len(self._memory) > 1:
                dropped = self._memory.popleft()  # the spool cannot take them either: the oldest go, counted
                self._memory_held -= len(dropped.rows)
                self.memory_lost += len(dropped.rows)
            self._cond.notify_all()

    @property
    def lost(self) -> int:
        """Samples lost for good: the spool full, refused by the database, or memory beyond its bound."""
        return self.spool.dropped + self.refused + self.memory_lost

    @property
    def spool_percent(self) -> float:
        """How full the disk spool is, in percent of its bound (the node gauge ``trend_spool_percent``)."""
        return 100.0 * self.spool.bytes / self.spool.capacity

    @property
    def waiting(self) -> int:
        """Samples not yet in the database: buffered on the loop, in memory and in the spool."""
        return len(self._pending) + self._memory_held + self.spool.samples

    def start(self) -> None:
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._db_loop, name="bms-trend-db", daemon=True),
            threading.Thread(target=self._spool_loop, name="bms-trend-spool", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._task = asyncio.create_task(self._flush_loop(), name="trend-flush")

    async def stop(self, grace: float = 5.0) -> None:
        """Hand over what is buffered, give the database ``grace`` seconds to take what waits in memory, spool
        the rest, and end the threads. Nothing is lost: the spool is drained first at the next start."""
        await cancel_and_wait(self._task)
        self.hand_over()
        await asyncio.to_thread(self._close, grace)

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), self.flush_seconds)
            except TimeoutError:
                pass
            self._full.clear()
            self.hand_over()

    def stats(self) -> dict[str, Any]:
        return {
            "added": self.added + len(self._pending),
            "written": self.written,
            "waiting": self.waiting,
            "memory": self._memory_held,
            "spooled": self.spooled,
            "spool_samples": self.spool.samples,
            "spool_bytes": self.spool.bytes,
            "spool_capacity_bytes": self.spool.capacity,
            "lost": self.lost,
            "lost_spool_full": self.spool.dropped,
            "lost_refused": self.refused,
            "lost_memory": self.memory_lost,
            "database": "down" if self._db_down else "ok",
            "database_problem": self._outage.reason,
        }

    # ---- the database thread --------------------------------------------------------------------------------------

    def _next(self) -> tuple[Position | Batch, list[SampleRow]] | None:
        """The oldest batch not yet stored: the spool's first, else memory's."""
        if self.spool.samples:
            found = self.spool.peek()
            if found is not None:
                return found
        with self._cond:
            if self._memory:
                batch = self._memory[0]
                return batch, batch.rows
        return None

    def _db_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                item = self._next()
                if item is None:
                    with self._cond:
                        if not self._memory and not self._stopping.is_set():
                            self._cond.wait(0.5)
                    continue
                key, rows = item
                try:
                    drop_broken_connections()
                    self.store(rows)
                except UNAVAILABLE_ERRORS as exc:
                    self._database_failed(exc)
                    self._stopping.wait(self.retry_seconds)
                    continue
                except Exception as exc:
                    # Not an outage: the database refuses these rows. Retrying would block every later sample.
                    self.refused += len(rows)
                    log.exception("the database refused %d trend sample(s); dropped (counted)", len(rows))
                    self._event("trend_samples_refused", f"{len(rows)} trend samples refused: {one_line(exc)}", "error")
                else:
                    self.written += len(rows)
                self._stored(key, rows)
        finally:
            connections.close_all()

    def _database_failed(self, error: BaseException) -> None:
        began = self._outage.failed(error)
        with self._cond:
            self._db_down = True
            self._cond.notify_all()
        if began:
            self._event(
                "trend_store_unavailable",
                f"trend samples cannot be written to the database ({self._outage.reason}); "
                f"they are kept in the spool at {self.spool.directory}",
                "warning",
                logged=True,
            )

    def _stored(self, key: Position | Batch, rows: list[SampleRow]) -> None:
        if isinstance(key, Position):
            self.spool.consume(key, len(rows))
        else:
            with self._cond:
                if self._memory and self._memory[0] is key:
                    self._memory.popleft()
                    self._memory_held -= len(rows)
        outage = self._outage.worked()
        if outage is not None:
            with self._cond:
                self._db_down = False
            self._event(
                "trend_store_available",
                f"trend samples are written to the database again after {outage.seconds:.1f} s; "
                f"{self.spool.samples} spooled sample(s) are written first, in order",
                "info",
                logged=True,
            )

    # ---- the spool thread -----------------------------------------------------------------------------------------

    def _spool_loop(self) -> None:
        broken = OutageLog("the trend spool cannot be written", "the trend spool can be written again", logger=log)
        while True:
            with self._cond:
                self._cond.wait(0.2)
                moving = list(self._memory) if self._memory and self._must_spool() else []
                stopping = self._stopping.is_set()
            if moving:
                try:
                    # samples dropped to make room are counted by the spool, reported by _watch_levels
                    self.spool.append([batch.rows for batch in moving])
                except OSError as exc:
                    if broken.failed(exc):
                        self._event("trend_spool_failed", f"the trend spool cannot be written: {exc}", "error")
                else:
                    broken.worked()
                    with self._cond:
                        moved = {id(batch) for batch in moving}
                        while self._memory and id(self._memory[0]) in moved:
                            self._memory_held -= len(self._memory.popleft().rows)
                    self.spooled += sum(len(batch.rows) for batch in moving)
            self._watch_levels()
            if stopping:
                self._write_status()
                return
            if time.monotonic() - self._status_at >= 1.0:
                self._write_status()

    def _must_spool(self) -> bool:
        """Under ``_cond``: memory's batches go to disk now (the database is away or stalls, or memory is full)."""
        return (
            self._db_down
            or self._force_spool
            or time.monotonic() - self._memory[0].handed > self.stall_seconds
            or self._memory_held > self.memory_rows
        )

    def _watch_levels(self) -> None:
        """Events: the spool filling (once per filling), samples lost (at once, then at most once a minute),
        and the spool drained after it held samples."""
        held = self.spool.samples
        percent = self.spool_percent
        if held:
            self._held_since_empty = max(self._held_since_empty, held)
        if percent >= self.warn_percent and held and not self._warned:
            self._warned = True
            self._event(
                "trend_spool_filling",
                f"the trend spool is {percent:.0f} % full ({held} samples waiting for the database, "
                f"{self.spool.bytes} of {self.spool.capacity} bytes); when it is full the oldest samples are dropped",
                "warning",
            )
        elif percent < self.warn_percent / 2:
            self._warned = False
        lost = self.lost
        now = time.monotonic()
        if lost > self._lost_reported and (
            self._lost_reported_at == 0.0 or now - self._lost_reported_at >= LOSS_EVENT_SECONDS
        ):
            self._event(
                "trend_samples_lost",
                f"{lost - self._lost_reported} trend sample(s) lost ({lost} since the engine started: "
                f"{self.spool.dropped} dropped from the full spool, {self.refused} refused by the database, "
                f"{self.memory_lost} beyond the memory bound)",
                "error",
            )
            self._lost_reported, self._lost_reported_at = lost, now
        if not held and self._held_since_empty and not self._db_down:
            self._event(
                "trend_spool_drained",
                f"the trend spool is drained: up to {self._held_since_empty} sample(s) waited in it; "
                f"{self.lost} lost since the engine started",
                "warning" if self.lost else "info",
            )
            self._held_since_empty = 0

    def _write_status(self) -> None:
        self._status_at = time.monotonic()
        try:
            status.write(
                self.spool.directory,
                {"node": settings.BMS_NODE_NAME, "updated_at": datetime.now(UTC).isoformat(), **self.stats()},
            )
        except OSError as exc:
            log.debug("trend status not written: %s", exc)

    def _event(self, kind: str, message: str, severity: str, logged: bool = False) -> None:
        """Log (unless ``logged`` already) and report one event."""
        if not logged:
            (log.error if severity == "error" else log.warning if severity == "warning" else log.info)("%s", message)
        if self.report is not None:
            try:
                self.report(kind, message, severity)
            except Exception:  # the loop may be closing; the message is in the log
                log.debug("trend event %s not reported", kind, exc_info=True)

    # ---- stopping -------------------------------------------------------------------------------------------------

    def _close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._memory and not self._db_down and time.monotonic() < deadline:
                self._cond.wait(0.05)
            self._force_spool = True  # what the database did not take in time goes to disk
            self._cond.notify_all()
            while self._memory and time.monotonic() < deadline + timeout:
                self._cond.wait(0.05)
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)  # the database thread may be stuck in a stalled call: it is a daemon
        if self._memory_held:
            log.error("%d trend sample(s) could neither be written nor spooled at shutdown", self._memory_held)
        self.spool.close()
