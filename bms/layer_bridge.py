"""A channel layer owned by one event loop, used from another (the engine's thread).

The in-memory layer (the embedded shape) keeps ``asyncio.Queue`` objects that
belong to the loop that created them and is not thread-safe; the engine runs
on its own loop in its own thread (ADR 0013). Every coroutine method called
through the bridge runs on the owner loop and its result comes back to the
caller's loop; cancelling the caller cancels the call on the owner loop.
Layers that are safe on several loops (channels_redis keeps one connection
set per loop) are used directly, without a bridge.

A group with a **local sink** (the live hub of the web loop registers one for
the live group) gets its messages handed over directly, in order, with no
copy and no queue: the engine's deltas are fresh objects it never touches
again, and the hop through the in-memory layer (a deep copy, a queue, two
wake-ups across threads) was most of the live path's latency in the
one-process shape.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import InMemoryChannelLayer

#: group -> handler called on the owner loop with each message sent to the group through a bridge
_local_sinks: dict[str, Callable[[dict[str, Any]], None]] = {}
#: the loops that a bridge serves (a hub on such a loop may take its group's messages as a local sink)
_bridged_loops: set[asyncio.AbstractEventLoop] = set()


def serves(loop: asyncio.AbstractEventLoop) -> bool:
    """True if an engine in this process sends through a bridge to ``loop``."""
    return loop in _bridged_loops


def sink(group: str, handler: Callable[[dict[str, Any]], None] | None) -> None:
    """Hand every message sent to ``group`` through a bridge to ``handler`` (None: through the layer again)."""
    if handler is None:
        _local_sinks.pop(group, None)
    else:
        _local_sinks[group] = handler


class LoopBridge:
    """Forwards the coroutine methods of ``layer`` to ``owner`` (the loop the layer belongs to)."""

    def __init__(self, layer: Any, owner: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.owner = owner
        _bridged_loops.add(owner)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        handler = _local_sinks.get(group)
        if handler is not None:
            self.owner.call_soon_threadsafe(handler, message)
            return
        await self._forwarding(self.layer.group_send)(group, message)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.layer, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return self._forwarding(attribute)

    def _forwarding(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def forwarded(*args: Any, **kwargs: Any) -> Any:
            if asyncio.get_running_loop() is self.owner:
                return await method(*args, **kwargs)
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self.owner))

        return forwarded


def layer_for_another_loop(layer: Any, owner: asyncio.AbstractEventLoop) -> Any:
    """``layer`` as a coroutine on another loop may use it: bridged to ``owner`` if it is the in-memory layer."""
    return LoopBridge(layer, owner) if isinstance(layer, InMemoryChannelLayer) else layer
