"""Stopping engine tasks reliably, and a sleep that can be cut short.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives
in the same loop iteration as the awaited result (fixed in 3.12; pymodbus
uses ``wait_for`` for every request). A single ``task.cancel()`` may then be
lost and a poller would run on forever, hanging shutdown. So we cancel until
the task has really finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime


async def cancel_and_wait(task: asyncio.Task | None, retry_every: float = 0.2) -> None:
    """Cancel ``task`` and wait until it is done, re-cancelling if a cancellation was swallowed."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def woken_or_due(wake: asyncio.Event, due: datetime | None) -> None:
    """Wait until ``wake`` is set or the wall-clock time ``due`` (None: no deadline) has come; clear ``wake``.

    The wait of the engine modules that react to image changes and run timers (alarms, trend sampling)."""
    timeout = None if due is None else max(0.0, (due - datetime.now(UTC)).total_seconds())
    try:
        await asyncio.wait_for(wake.wait(), timeout)
    except TimeoutError:
        pass
    wake.clear()


class Alarm:
    """Sleep until a time on the loop's clock, or until :meth:`ring` (which also counts if it came first).

    What a poll loop waits on between cycles. Cheaper than
    ``wait_for(event.wait(), timeout)`` or ``asyncio.timeout``: one future and
    one timer handle per wait, no task and no exception, which matters when a
    device is polled back to back.
    """

    def __init__(self) -> None:
        self._rung = False
        self._waiter: asyncio.Future[None] | None = None

    def ring(self) -> None:
        self._rung = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def sleep_until(self, when: float) -> None:
        if self._rung:
            await asyncio.sleep(0)  # never starve the other tasks
        else:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            handle = loop.call_at(when, _release, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None
        self._rung = False


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
