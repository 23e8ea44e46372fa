"""Closing live websockets whose login ended: a logout closes the session's, a password change the user's.

The web request that logs out runs in one web process; the websockets may be held by any of the node's web
processes. So the request sends one message to the group :data:`GROUP` on the channel layer, which each
process's live hub (one channel per process, not per client: :mod:`bms.realtime.hub`) has joined, and each hub
hands it to :func:`close_local`, which closes the matching consumers of its own loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

GROUP = "sessions"
REVOKE = "live.revoke"  # {"session": digest | None, "user": pk | None}
#: the close code of a websocket whose session logged out (as for a connection without a login: pages stop)
CLOSE_LOGGED_OUT = 4401
#: the close code after a password change: clients reconnect, and only a session still valid is let in again
CLOSE_LOGIN_CHANGED = 4001


class Revocable(Protocol):
    user_id: Any
    session: str

    async def logged_out(self, close_code: int) -> None: ...


_closing: set[asyncio.Future] = set()
_open: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet] = weakref.WeakKeyDictionary()


def register(consumer: Revocable) -> None:
    _open.setdefault(asyncio.get_running_loop(), weakref.WeakSet()).add(consumer)


def unregister(consumer: Revocable) -> None:
    found = _open.get(asyncio.get_running_loop())
    if found is not None:
        found.discard(consumer)


def close_local(message: dict[str, Any]) -> int:
    """Close this loop's consumers that ``message`` names; returns how many."""
    session, user = message.get("session"), message.get("user")
    matching = [
        consumer
        for consumer in list(_open.get(asyncio.get_running_loop(), ()))
        if (session is not None and consumer.session == session) or (user is not None and consumer.user_id == user)
    ]
    for consumer in matching:
        code = CLOSE_LOGGED_OUT if session is not None else CLOSE_LOGIN_CHANGED
        task = asyncio.ensure_future(consumer.logged_out(code))
        _closing.add(task)  # held until done: the loop keeps only a weak reference to a task
        task.add_done_callback(_closing.discard)
    return len(matching)


def close_live(*, session: str | None = None, user: Any = None) -> None:
    """Ask every web process of this node to close the live websockets of ``session`` (a digest) or ``user``.

    Called from the request (sync code). Never fails the logout: with the channel layer away the sockets stay
    open until they drop (they are closed then anyway, as the layer's outage closes every live socket).
    """
    message = {"type": REVOKE, "session": session, "user": user}
    try:
        async_to_sync(get_channel_layer().group_send)(GROUP, message)
    except Exception:
        log.warning("could not ask the web processes to close websockets of %s", session or f"user {user}")
