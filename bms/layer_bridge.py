"""A channel layer owned by one event loop, used from another (the engine's thread).

The in-memory layer (the embedded shape) keeps ``asyncio.Queue`` objects that
belong to the loop that created them and is not thread-safe; the engine runs
on its own loop in its own thread (ADR 0013). Every coroutine method called
through the bridge runs on the owner loop and its result comes back to the
caller's loop; cancelling the caller cancels the call on the owner loop.
Layers that are safe on several loops (channels_redis keeps one connection
set per loop) are used directly, without a bridge.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import InMemoryChannelLayer


class LoopBridge:
    """Forwards the coroutine methods of ``layer`` to ``owner`` (the loop the layer belongs to)."""

    def __init__(self, layer: Any, owner: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.owner = owner

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
