"""A snapshot of the process image for the API: from this process's live hub, else asked of the engine."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.layers import get_channel_layer

from bms.engine import bus
from bms.realtime import wire
from bms.realtime.hub import hub
from bms.realtime.layer_health import LAYER_ERRORS


class EngineUnavailable(RuntimeError):
    """The engine did not answer in time (not running, or the channel layer is down)."""


async def fetch_snapshot(wait_seconds: float = 3.0) -> dict[str, Any]:
    """Return ``{"seq", "points": {name: keyed state}}``, or raise :class:`EngineUnavailable`.

    The live hub of this process holds the image already while websocket clients are connected; only
    without it is the engine asked (one request over the channel layer).
    """
    live = hub()
    if live.ready and live.clients:
        seq, rows = live.seq, live.rows
    else:
        seq, rows = await _ask_engine(wait_seconds)
    memo: dict[int, str] = {}
    return {"seq": seq, "points": {name: wire.keyed_state(row, memo) for name, row in rows.items()}}


async def _ask_engine(wait_seconds: float) -> tuple[int, dict[str, Any]]:
    reply = await ask_engine({"type": bus.SNAPSHOT_REQUEST}, wait_seconds, "live values are unavailable")
    return reply["seq"], reply["points"]


async def ask_engine(message: dict[str, Any], wait_seconds: float, consequence: str) -> dict[str, Any]:
    """Send ``message`` to this node's engine with a one-shot reply channel and return the reply.

    Raises :class:`EngineUnavailable` (its text ends with ``consequence``) if the channel layer is down or the
    engine does not answer within ``wait_seconds``."""
    layer = get_channel_layer()
    try:
        reply_to = await layer.new_channel()
    except LAYER_ERRORS as exc:
        raise EngineUnavailable(f"the channel layer is unavailable ({exc}); {consequence}") from exc
    try:
        await layer.send(bus.engine_channel(), {**message, "reply_to": reply_to})
        return await asyncio.wait_for(layer.receive(reply_to), wait_seconds)
    except (TimeoutError, *LAYER_ERRORS) as exc:
        raise EngineUnavailable(f"the engine did not answer; {consequence}") from exc
    finally:
        await release_channel(layer, reply_to)


async def release_channel(layer: Any, channel: str) -> None:
    """Forget a one-shot reply channel.

    The layers have no "delete channel" call; channels_redis' pub/sub layer
    unsubscribes a channel when a receive on it is cancelled (the in-memory
    layer drops an empty queue either way). Without this, every request would
    leave a Redis subscription and a queue behind.
    """
    pending = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await pending
