"""Bounded waits for the node's history stamp: the web side is refused in time, never held by a frozen engine.

Every history row takes its stamp from one counter row per node (:func:`bms.history.models.next_stamp`), locked
until its transaction ends. An engine frozen in the middle of such a transaction (SIGSTOP, a stalled VM) holds
that lock for as long as the freeze lasts (until PostgreSQL's idle-in-transaction timeout ends its session: 30 s
in CI runs of test_split_liveness). A request of the web side that writes a history row must not wait that long:
it waits at most ``BMS_WRITE_LOCK_WAIT_MS`` and then gets PostgreSQL's lock timeout (:func:`is_lock_timeout`).
The engine's own writes keep waiting: they are the work itself, and a lock held by another engine thread ends.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, models, transaction

from bms.engine.dbconn import sqlstate

#: PostgreSQL's "lock_not_available": a statement gave up waiting for a lock after ``lock_timeout``
LOCK_NOT_AVAILABLE = "55P03"

ModelT = TypeVar("ModelT", bound=models.Model)


def bound_lock_wait() -> None:
    """Within the current transaction, wait at most ``BMS_WRITE_LOCK_WAIT_MS`` for any lock (PostgreSQL only)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{settings.BMS_WRITE_LOCK_WAIT_MS:g}ms"])


def is_lock_timeout(error: BaseException) -> bool:
    """Whether a Django database error is a lock wait that :func:`bound_lock_wait` ended."""
    return sqlstate(error) == LOCK_NOT_AVAILABLE


def create_without_waiting(model: type[ModelT], **fields: Any) -> ModelT:
    """``model.objects.create(**fields)`` in a transaction of its own whose lock waits are bounded.

    For the records the web side writes around an answer (a refused write, a token's use): a frozen engine
    holding the stamp makes this raise ``OperationalError`` (:func:`is_lock_timeout`) in time, and the caller
    answers without the record, saying so in the log."""
    with transaction.atomic():
        bound_lock_wait()
        return model.objects.create(**fields)
