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
from typing import Any

from bms.engine.bus import LIVE_DELTA, LIVE_GROUP
from bms.engine.image import ProcessImage
from bms.engine.tasks import cancel_and_wait
from bms.outage import OutageLog

log = logging.getLogger(__name__)


class Publisher:
    """Coalescing sender of :class:`ProcessImage` deltas to the channel layer."""

    def __init__(self, image: ProcessImage, channel_layer: Any, min_interval: float = 0.02, burst: int = 8) -> None:
        self.image = image
        self.layer = channel_layer
        self.min_interval = min_interval
        self.burst = max(1, burst)
        self._dirty = asyncio.Event()
        self.send_failures = OutageLog(
            "publishing live changes failed", "publishing live changes works again", logger=log, remind_every=500
        )
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
