"""Stopping engine tasks reliably.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives
in the same loop iteration as the awaited result (fixed in 3.12; pymodbus
uses ``wait_for`` for every request). A single ``task.cancel()`` may then be
lost and a poller would run on forever, hanging shutdown. So we cancel until
the task has really finished.
"""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task | None, retry_every: float = 0.2) -> None:
    """Cancel ``task`` and wait until it is done, re-cancelling if a cancellation was swallowed."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
