"""Sharing the engine loop's turns: at most a slice of poll answers per turn, so timers get in between.

asyncio runs, in one turn of its loop, every callback that was ready when
the turn began. A hundred devices answering in the same instant are a
hundred poll steps in one turn (a few hundred µs of CPU each; several times
that in wall time on a host whose cores are busy), and whatever fell due
meanwhile (the pair service's heartbeat, a slice of alarm evaluation, the
LoopWatch tick that measures the loop's lag) waits for all of them. In an
alarm flood on a two-core host that was the longest wait on the loop
(issue 9, bench/alarms.py).

A :class:`TurnBudget` lets the work of one kind through until it has used
``seconds`` (wall time) of the current turn; what comes later waits for a
later turn, in the order it arrived. Alarm evaluation, trend sampling and
logic already cut themselves into slices of about 10 ms (``run_slices``);
this does the same for the answers of many devices, which are many small
callbacks rather than one long one. The budget costs a clock read per
answer; a quiet loop never waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

#: the longest a turn spends on poll answers before the rest waits for a later turn
TURN_SLICE_SECONDS = 0.01


class TurnBudget:
    """At most ``seconds`` of gated work per turn of the running loop; the rest waits, first come first served.

    Use from the loop's thread only::

        if budget.spent():
            await budget.wait_turn()
        ...  # the work
    """

    __slots__ = ("_ends", "_loop", "_waiting", "deferred", "seconds")

    def __init__(self, seconds: float = TURN_SLICE_SECONDS) -> None:
        self.seconds = seconds
        #: time.perf_counter() at which this turn's budget runs out; None while no turn is open
        self._ends: float | None = None
        self._waiting: deque[asyncio.Future[None]] = deque()
        #: the loop of the open turn
        self._loop: asyncio.AbstractEventLoop | None = None
        #: how many pieces of work (poll answers) waited for a later turn, each counted once (the engine's stats)
        self.deferred = 0

    def spent(self) -> bool:
        """Whether the current turn's budget is used up. The first call in a turn opens the turn's budget (and
        answers False): a callback scheduled now runs in the next turn and closes it."""
        now = time.perf_counter()
        ends = self._ends
        loop = asyncio.get_running_loop()
        if ends is None or loop is not self._loop:
            if loop is not self._loop:
                # a new loop (the old one ended with a turn open, its closing callback never run): whatever waited
                # there ended with it, and this loop's first turn starts now
                self._loop, self._waiting = loop, deque()
            self._ends = now + self.seconds
            loop.call_soon(self._next_turn)
            return False
        return now >= ends

    async def wait_turn(self) -> None:
        """Wait for a later turn with budget left (those waiting before this caller go first)."""
        loop = asyncio.get_running_loop()
        # spent() is True only while a turn is open, and an open turn always has its closing callback pending
        # (_next_turn), which wakes this future: nothing waits for a turn that nobody will close.
        if not self.spent():
            return
        self.deferred += 1
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiting.append(future)
            await future
            if not self.spent():
                return

    def _next_turn(self) -> None:
        self._ends = None
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():  # a poller stopped while it waited: its future was cancelled
                future.set_result(None)
