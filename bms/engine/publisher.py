"""Publishes process-image changes to the live group, coalesced.

A change schedules a flush; the flush sends every change accumulated since
the previous one as a single message. The rate of messages is limited by a
token bucket: up to ``burst`` messages may leave back to back (so at low load
every change leaves at once, even when one poll cycle's requests are
answered a fraction of a millisecond apart), and beyond that one message per
``min_interval``, so a storm of thousands of changes leaves as a few large
messages instead of thousands of small ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bms.engine.bus import LIVE_DELTA, LIVE_GROUP
from bms.engine.image import ProcessImage
from bms.engine.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Publisher:
    """Coalescing sender of :class:`ProcessImage` deltas to the channel layer."""

    def __init__(self, image: ProcessImage, channel_layer: Any, min_interval: float = 0.02, burst: int = 8) -> None:
        self.image = image
        self.layer = channel_layer
        self.min_interval = min_interval
        self.burst = max(1, burst)
        self._dirty = asyncio.Event()
        self.send_failures = SendFailures("publishing live changes")
        self._tokens = float(self.burst)
        self._refilled_at = 0.0
        self._task: asyncio.Task | None = None

    def notify(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="publisher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._refilled_at = loop.time()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            wait = self._take_token(loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            await self.flush()

    def _take_token(self, now: float) -> float:
        """Spend one token; return how long to wait first if the bucket is empty."""
        if self.min_interval <= 0:
            return 0.0
        self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) / self.min_interval)
        self._refilled_at = now
        self._tokens -= 1
        return max(0.0, -self._tokens * self.min_interval)

    async def flush(self) -> None:
        delta = self.image.take_delta()
        if delta is None:
            return
        try:
            await self.layer.group_send(LIVE_GROUP, {"type": LIVE_DELTA, **delta})
        except Exception as exc:
            # Subscribers will see the seq gap and ask for a snapshot; the image is intact.
            self.send_failures.failed(exc)
            return
        self.send_failures.worked()

    @property
    def failures(self) -> int:
        """Failed sends in a row (0 while the channel layer works)."""
        return self.send_failures.count


class SendFailures:
    """Failed channel-layer sends in a row: the first is logged with its reason, the rest counted, the end noted.

    With Redis down every send fails, each one as fast as the connection is
    refused; a log line (let alone a traceback) for each would bury the log.
    """

    def __init__(self, what: str, remind_every: int = 500, traceback: bool = False) -> None:
        self.what = what
        self.remind_every = remind_every
        self.traceback = traceback  # on the first failure only: for callers whose errors may be bugs, not outages
        self.count = 0
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        self.count += 1
        if self.count == 1:
            self.since = time.monotonic()
            log.error(
                "%s failed: %s: %s (further failures are counted)",
                self.what,
                type(exc).__name__,
                exc,
                exc_info=exc if self.traceback else None,
            )
        elif self.count % self.remind_every == 0:
            log.error("%s still failing: %d time(s) in a row: %s", self.what, self.count, exc)

    def worked(self) -> None:
        if self.count:
            away = time.monotonic() - (self.since or time.monotonic())
            log.warning("%s works again after %d failure(s) in %.1f s", self.what, self.count, away)
            self.count = 0
            self.since = None
