"""The Redis pub/sub channel layer of the production shape, with a receive loop that cannot spin.

channels_redis' pub/sub layer reads each shard's subscriptions in a loop of
``get_message(timeout=0.1)`` calls with nothing else that waits. With Redis
silent (packets dropped: its host gone without a reset, a firewall), redis-py
8.1's ``get_message`` began, about 45 s into the silence, to return ``None``
at once on every call while the connection still counted as connected, and
kept doing so after Redis answered again: the loop never yielded, the event
loop it runs on (the engine's, or a web process's) was starved, and live data
never came back (``tests/system/test_redis_outage.py``, found 2 December
2026). A killed Redis (connections refused or reset) never showed it.

:class:`SteadyShardConnection` reads the same way, but a read that comes back
empty long before its wait ran out waits out the rest of it, so the loop
never spins; and after :data:`QUICK_LIMIT` such reads in a row it drops the
connection, which redis-py re-opens (subscriptions included) on the next read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
    _wrap_close,
)

log = logging.getLogger(__name__)
#: channels_redis' own logger, whose receive-task tracebacks bms.realtime.layer_health keeps to one line per outage
_channels_log = logging.getLogger("channels_redis.pubsub")

#: how long one read waits for a message (channels_redis' own value)
RECEIVE_WAIT = 0.1
#: empty reads that returned before half their wait, in a row, after which the connection is dropped and re-opened
QUICK_LIMIT = 20


class SteadyShardConnection(RedisSingleShardConnection):
    """One Redis host's publish and subscribe connections; its receive loop waits even when redis-py does not."""

    async def _do_receiving(self) -> None:
        loop = asyncio.get_running_loop()
        quick = 0
        while True:
            try:
                if not (self._pubsub and self._pubsub.subscribed):
                    await asyncio.sleep(RECEIVE_WAIT)
                    continue
                started = loop.time()
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=RECEIVE_WAIT)
                self._receive_message(message)
                took = loop.time() - started
                if message is not None or took >= RECEIVE_WAIT / 2:
                    quick = 0
                    continue
                # Empty at once: a subscription's confirmation does that once; many in a row are the broken state.
                quick += 1
                if quick > 2:
                    await asyncio.sleep(RECEIVE_WAIT - took)
                if quick >= QUICK_LIMIT:
                    quick = 0
                    await self._reopen()
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException:
                _channels_log.exception("Unexpected exception in receive task")
                await asyncio.sleep(1)

    async def _reopen(self) -> None:
        """Drop the subscription connection; the next read connects again and redis-py subscribes anew."""
        connection: Any = self._pubsub.connection if self._pubsub is not None else None
        log.warning("channel layer: Redis reads return at once without data; reconnecting the subscriptions")
        if connection is not None:
            await connection.disconnect(nowait=True)


class SteadyPubSubChannelLayer(RedisPubSubChannelLayer):
    """channels_redis' pub/sub layer (one per event loop) whose shards are :class:`SteadyShardConnection`."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = RedisPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            layer._shards = [SteadyShardConnection(shard.host, layer) for shard in layer._shards]
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer
