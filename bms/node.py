"""The composition root of a node: the engine, and the pair service when a partner is configured.

The engine never imports ``redundancy`` (DESIGN section 3): it is handed a
role gate. This module is the one place that knows both and wires them:
``runbms`` and ``runengine`` start and stop a node through it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from bms.engine.runner import Engine

log = logging.getLogger(__name__)


class Node:
    """An engine plus, in a pair, its :class:`~redundancy.service.PairService`."""

    def __init__(self, channel_layer: Any = None, with_web: bool = False) -> None:
        """``with_web``: the web side runs in this process too (runbms without ``--web-workers``)."""
        from redundancy import config as pair_config

        self.pair = None
        role = None
        if pair_config.pair_configured():
            config = pair_config.load()
            if config.activate:
                from redundancy.service import PairService

                self.pair = PairService(config)
                role = self.pair.role
            else:
                log.warning("redundancy is configured but not activated (BMS_REDUNDANCY_ACTIVATE=0): running alone")
        self.engine = Engine(
            channel_layer if channel_layer is not None else get_channel_layer(),
            role=role,
            publish_min_interval=settings.BMS_PUBLISH_MIN_INTERVAL,
            publish_burst=settings.BMS_PUBLISH_BURST,
            config_check_interval=settings.BMS_CONFIG_CHECK_INTERVAL,
            turn_budget_seconds=settings.BMS_TURN_BUDGET_MS / 1000,
        )
        self.engine.spread_polls = settings.BMS_POLL_SPREAD
        if with_web:
            self.engine.one_process_points = settings.BMS_ONE_PROCESS_POINTS or None
        if self.pair is not None:
            self.pair.attach(self.engine)
        self._share_memory_with_the_web_side()
        from bms.notifications.runner import NotificationRunner, runner_wanted

        # Without a Celery worker (embedded shape, or BMS_NOTIFY_RUNNER=on) a thread of this process drains the
        # notification outbox, only while the node is active (docs/notifications.md).
        engine_role = self.engine.role
        self.notifications = NotificationRunner(lambda: engine_role.active) if runner_wanted() else None

    def _share_memory_with_the_web_side(self) -> None:
        """In the embedded shape the web side runs in this process: it may answer from the engine's memory."""
        from redundancy import nodeview

        health = self.engine.db_health
        nodeview.use_memory(
            self.pair.memory_row if self.pair is not None else None,
            lambda: f"database unavailable since {health.began:%H:%M:%S} UTC: {health.reason}" if health.down else "",
        )
        nodeview.use_loop_watch(self.engine.loop_watch.summary)

    async def start(self) -> None:
        await self.engine.start()
        if self.pair is not None:
            await self.pair.start()
        if self.notifications is not None:
            self.notifications.start()

    async def stop(self) -> None:
        if self.notifications is not None:
            await asyncio.to_thread(self.notifications.stop)
        if self.pair is not None:
            await self.pair.stop()
        await self.engine.stop()
