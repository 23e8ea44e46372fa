"""Ask the engine for a snapshot of the process image over the channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import get_channel_layer

from bms.engine import bus


class EngineUnavailable(RuntimeError):
    """The engine did not answer in time (not running, or the channel layer is down)."""


async def fetch_snapshot(wait_seconds: float = 3.0) -> dict[str, Any]:
    """Return ``{"seq", "points"}`` from the engine, or raise :class:`EngineUnavailable`."""
    layer = get_channel_layer()
    reply_to = await layer.new_channel()
    try:
        await layer.send(bus.ENGINE_CHANNEL, {"type": bus.SNAPSHOT_REQUEST, "reply_to": reply_to})
        reply = await asyncio.wait_for(layer.receive(reply_to), wait_seconds)
    except (TimeoutError, OSError) as exc:
        raise EngineUnavailable("the engine did not answer; live values are unavailable") from exc
    return {"seq": reply["seq"], "points": reply["points"]}
