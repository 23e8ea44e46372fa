"""Waiting on a condition with a deadline, for asyncio tests (never a bare sleep)."""

import asyncio

from asgiref.sync import sync_to_async


async def eventually(predicate, wait: float = 5.0, message: str = "condition", db: bool = False):
    """Await until ``predicate()`` is truthy; fail with ``message`` after ``wait`` seconds.

    ``db=True`` runs the predicate on a thread, as the ORM requires.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    check = sync_to_async(predicate) if db else None
    while True:
        value = await check() if check else predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {wait} s waiting for {message}")
        await asyncio.sleep(0.01)
