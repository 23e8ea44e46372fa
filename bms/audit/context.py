"""Who is changing the configuration right now: the request's user, a command line, or nobody to record.

A :class:`~contextvars.ContextVar`, so it follows the request through sync
and async code alike: :class:`~bms.audit.middleware.AuditContextMiddleware`
sets it for each request (the user is read when a change is saved, because
an API token's user is known only once the view authenticated it), and
management commands that change configuration set it with :func:`acting`.
:func:`not_recorded` turns recording off where a change is not anybody's:
the standby applying the active node's configuration (those changes were
recorded on the active node, and their audit rows arrive as history).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Actor:
    """Where a change comes from: ``via`` (admin, api, web, import, command, ...) and who, when known."""

    via: str
    user: Callable[[], Any] | None = None  # called when a change is saved: the request's user at that moment
    name: str = ""

    def resolve(self) -> tuple[Any, str]:
        """``(user or None, username)`` of this actor now."""
        user = self.user() if self.user is not None else None
        if user is not None and getattr(user, "is_authenticated", False):
            return user, user.get_username()
        return None, self.name


#: None: the system itself (migrations, the engine); recorded as such
_actor: ContextVar[Actor | None] = ContextVar("bms_audit_actor", default=None)
_recording: ContextVar[bool] = ContextVar("bms_audit_recording", default=True)


def current() -> Actor | None:
    return _actor.get()


def recording() -> bool:
    return _recording.get()


@contextlib.contextmanager
def acting(actor: Actor) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@contextlib.contextmanager
def not_recorded() -> Iterator[None]:
    token = _recording.set(False)
    try:
        yield
    finally:
        _recording.reset(token)
