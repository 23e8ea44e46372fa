"""Database connections of long-lived threads: drop a broken one before the next call, keep healthy ones."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import connections

P = ParamSpec("P")
T = TypeVar("T")


def with_fresh_connection(func: Callable[P, T]) -> Callable[P, T]:
    """Drop a connection that broke (the database restarted, a network cut) before the next engine call."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        drop_broken_connections()
        return func(*args, **kwargs)

    return wrapper


def drop_broken_connections() -> None:
    """Close this thread's connections that saw an error and no longer answer; keep the healthy ones.

    Not ``close_old_connections``: connections are not persistent for web
    requests (``CONN_MAX_AGE`` 0: Daphne gives each request a thread of its
    own), and by that setting the engine's one database thread would open a
    new connection for every call.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or not connection.errors_occurred:
            continue
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of the database error behind a Django ``DatabaseError`` (None if there is none)."""
    return getattr(error.__cause__, "sqlstate", None)
