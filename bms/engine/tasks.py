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
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bms.engine.turns import TurnBudget

log = logging.getLogger(__name__)

#: how long the end of the engine's process or thread waits for tasks a node stop left behind (end_tasks_left)
LEFT_TASKS_GRACE_SECONDS = 5.0


async def cancel_and_wait(task: asyncio.Task | None, retry_every: float = 0.2) -> None:
    """Cancel ``task`` and wait until it is done, re-cancelling if a cancellation was swallowed."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def end_tasks_left(grace: float) -> None:
    """Cancel every other task of the running loop and wait until they end (again if one swallowed it), up to
    ``grace`` s; name in one error any that did not.

    The last step of a process or thread whose node stop failed or did not finish: closing its loop's async
    generators while a task is inside one's ``await`` (a poller in ``ModbusDriver.read_batches`` with a request on
    the wire) fails with "aclose(): asynchronous generator is already running" and skips its cleanup, and
    ``asyncio.run``'s own clean-up cancels once and then waits without end for a task that swallowed it."""
    current = asyncio.current_task()
    left = {task for task in asyncio.all_tasks() if task is not current}
    try:
        # a task's cleanup may start tasks of its own: look again until none is left
        async with asyncio.timeout(grace):
            while left:
                await asyncio.gather(*(cancel_and_wait(task) for task in left))
                left = {task for task in asyncio.all_tasks() if task is not current and not task.done()}
    except TimeoutError:
        names = sorted(task.get_name() for task in left if not task.done())
        log.error("%d task(s) still running %g s after being cancelled at the end: %s", len(names), grace, names)


async def woken_or_due(wake: asyncio.Event, due: datetime | None) -> None:
    """Wait until ``wake`` is set or the wall-clock time ``due`` (None: no deadline) has come; clear ``wake``.

    The wait of the engine modules that react to image changes and run timers (alarms, logic, schedules, trend
    sampling). They are woken with every poll answer (hundreds of times a second at building scale) and nearly
    always have a timer, so the wait is one timer handle on the loop, not ``asyncio.wait_for`` (a task, a timeout
    and a cancellation per wake). Always yields to the loop once, also when ``wake`` was already set: a module
    that sets its own ``wake`` while it runs never starves the others."""
    if wake.is_set():
        await asyncio.sleep(0)
    elif due is None:
        await wake.wait()
    else:
        delay = (due - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            await asyncio.sleep(0)
        else:
            handle = asyncio.get_running_loop().call_later(delay, wake.set)
            try:
                await wake.wait()
            finally:
                handle.cancel()
    wake.clear()


async def run_slices(
    run_once: Callable[[datetime], bool], may_run: Callable[[], bool], what: str, turns: TurnBudget | None = None
) -> None:
    """Call ``run_once(now)`` while it says more is due at once, yielding to the loop between slices.

    How the engine modules that evaluate many things (alarms, trends, logic rules) work off a flood: the loop
    polls, publishes and replicates between slices, and stops as soon as ``may_run()`` turns false (control
    moved). With the engine's ``turns``, each slice waits its turn with the poll answers and the other modules'
    slices (bms/engine/turns.py) and should end by ``turns.slice_end()``. An exception is logged and ends this
    round only: the next change or timer starts a new one."""
    try:
        while True:
            if turns is not None and turns.spent():
                await turns.wait_turn()
                if not may_run():
                    break
            if not run_once(datetime.now(UTC)):
                break
            await asyncio.sleep(0)
            if not may_run():
                break
    except Exception:
        log.exception("%s failed; continuing with the next change", what)


async def keep_flushing(
    wake: asyncio.Event,
    flush: Callable[[], Awaitable[None]],
    refused: Callable[[], bool],
    unavailable: tuple[type[BaseException], ...],
    retry_seconds: float,
) -> None:
    """Run ``flush()`` whenever ``wake`` is set: what the engine's writers off the loop do (outboxes, commands).

    While the database is away (``unavailable``) it waits ``retry_seconds`` and tries again (the outage is
    logged once by the engine's health); any other failure calls ``refused()``, which logs it and says whether
    the failed batch was dropped (then the next one goes at once) or kept (then it is retried after
    ``retry_seconds``, not in a busy loop)."""
    while True:
        await wake.wait()
        wake.clear()
        try:
            await flush()
        except asyncio.CancelledError:
            raise
        except unavailable:
            await asyncio.sleep(retry_seconds)
            wake.set()
        except Exception:
            if not refused():
                await asyncio.sleep(retry_seconds)
            wake.set()


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
