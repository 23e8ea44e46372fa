"""An active node's pair service with its heartbeat and status loops running, for tests of what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import InMemoryChannelLayer

from bms.engine.runner import Engine
from bms.engine.tasks import cancel_and_wait
from redundancy import config as pair_config
from redundancy.roles import Decision, Role, RoleMachine, Timing
from redundancy.service import PairService


@contextlib.asynccontextmanager
async def active_service(
    settings: Any, period_ms: int, timeout_ms: int, active: bool = True
) -> AsyncIterator[PairService]:
    """Node ``main``, active in epoch 3 (``active`` False: still starting), its partner unreachable; its database
    threads closed at the end."""
    settings.BMS_PARTNER_ADDRESS = "127.0.0.1:1"
    settings.BMS_SYNC_SECRET = "0123456789abcdef-test"
    settings.BMS_NODE_NAME = "main"
    settings.BMS_HEARTBEAT_PERIOD_MS = period_ms
    settings.BMS_HEARTBEAT_TIMEOUT_MS = timeout_ms
    service = PairService(pair_config.load())
    engine = Engine(InMemoryChannelLayer(), role=service.role)
    service.attach(engine)
    timeout = timeout_ms / 1000
    service.machine = RoleMachine("main", True, 3, Timing(timeout, 1, 1, 1), True, False, time.monotonic())
    if active:
        service.machine.enter(Decision(Role.ACTIVE, 3, "test"), time.monotonic())
    service.role.machine = service.machine
    tasks = [asyncio.create_task(service._pulse_loop()), asyncio.create_task(service._status_loop())]
    try:
        yield service
    finally:
        await asyncio.gather(*(cancel_and_wait(task) for task in tasks))
        await engine.close_database()
