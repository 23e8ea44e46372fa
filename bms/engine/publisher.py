"""Publishes process-image changes to the live group, coalesced.

A change schedules a flush; the flush sends every change accumulated since
the previous one as a single message. At most one message goes out per
``min_interval``, so a lone change leaves at once while a burst of
thousands of changes leaves as a few messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bms.engine.bus import LIVE_DELTA, LIVE_GROUP
from bms.engine.image import ProcessImage
from bms.engine.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Publisher:
    """Coalescing sender of :class:`ProcessImage` deltas to the channel layer."""

    def __init__(self, image: ProcessImage, channel_layer: Any, min_interval: float = 0.02) -> None:
        self.image = image
        self.layer = channel_layer
        self.min_interval = min_interval
        self.messages_sent = 0
        self.changes_sent = 0
        self._dirty = asyncio.Event()
        self._last_sent = -1e9
        self._task: asyncio.Task | None = None

    def notify(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="publisher")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            wait = self._last_sent + self.min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.flush()
            self._last_sent = loop.time()

    async def flush(self) -> None:
        delta = self.image.take_delta()
        if delta is None:
            return
        try:
            await self.layer.group_send(LIVE_GROUP, {"type": LIVE_DELTA, **delta})
        except Exception:
            # Subscribers will see the seq gap and ask for a snapshot; the image is intact.
            log.exception("publishing delta %s..%s failed", delta["from"], delta["seq"])
            return
        self.messages_sent += 1
        self.changes_sent += len(delta["points"])
