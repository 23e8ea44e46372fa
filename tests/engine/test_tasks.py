"""The engine functions' wait (bms.engine.tasks.woken_or_due): woken, due, always a yield, nothing left behind."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from bms.engine.tasks import woken_or_due


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_wake_ends_the_wait_long_before_the_deadline_and_is_cleared():
    wake = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, wake.set)
    began = time.monotonic()
    await woken_or_due(wake, _in(30))
    assert time.monotonic() - began < 10
    assert not wake.is_set()


async def test_the_deadline_ends_the_wait_without_a_wake():
    wake = asyncio.Event()
    began = time.monotonic()
    await woken_or_due(wake, _in(0.2))
    assert time.monotonic() - began >= 0.19
    assert not wake.is_set()


async def test_without_a_deadline_only_a_wake_ends_it():
    wake = asyncio.Event()
    waiting = asyncio.create_task(woken_or_due(wake, None))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    wake.set()
    await asyncio.wait_for(waiting, 10)
    assert not wake.is_set()


async def test_a_wake_already_set_or_a_deadline_passed_still_lets_the_other_tasks_run():
    """A function that sets its own wake while it runs would otherwise take the loop for itself."""
    ran = []

    async def other() -> None:
        ran.append(True)

    for due in (None, _in(-1)):
        ran.clear()
        wake = asyncio.Event()
        if due is None:
            wake.set()
        asyncio.get_running_loop().create_task(other())
        await woken_or_due(wake, due)
        assert ran == [True]
        assert not wake.is_set()


async def test_a_cancelled_wait_leaves_no_timer_that_wakes_later():
    wake = asyncio.Event()
    waiting = asyncio.create_task(woken_or_due(wake, _in(0.1)))
    await asyncio.sleep(0.02)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.sleep(0.3)
    assert not wake.is_set()


async def test_a_woken_wait_leaves_no_timer_that_wakes_later():
    wake = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, wake.set)
    await woken_or_due(wake, _in(0.2))
    await asyncio.sleep(0.4)
    assert not wake.is_set()
