"""Sharing the engine loop's turns: at most a slice of work per turn, so timers get in between.

asyncio runs, in one turn of its loop, every callback that was ready when
the turn began. A hundred devices answering in the same instant are a
hundred poll steps in one turn (a few hundred µs of CPU each; several times
that in wall time on a host whose cores are busy), and whatever fell due
meanwhile (the pair service's heartbeat, a slice of alarm evaluation, the
LoopWatch tick that measures the loop's lag) waits for all of them. In an
alarm flood on a two-core host that was the longest wait on the loop
(issue 9, bench/alarms.py).

A :class:`TurnBudget` lets gated work through until it has used
``seconds`` (wall time) of the current turn; what comes later waits for a
later turn, in the order it arrived. The engine has one, shared by the
answers of its devices (many small callbacks) and the slices of alarm
evaluation, trend sampling and logic (``run_slices``): each of those used to
take its own 10 ms per turn, and in a flood one turn held them all, one
after the other, plus the publisher; the loop's lag is about two turns. Now
a turn holds at most the budget of them together (plus the one piece that
began inside it), and they take turns first come, first served. The budget
costs a clock read per piece; a quiet loop never waits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

#: the longest a turn spends on gated work (poll answers, evaluation slices) before the rest waits for a later turn
TURN_SLICE_SECONDS = 0.01
#: the fewest waiters a turn's end wakes; it wakes twice as many as the closing turn let through, if more
WAKE_AT_LEAST = 4


def slice_deadline(turns: TurnBudget | None, seconds: float) -> float:
    """When a slice of at most ``seconds`` that starts now ends (time.perf_counter()): sooner if the engine's
    shared ``turns`` budget runs out first."""
    end = time.perf_counter() + seconds
    return end if turns is None else min(end, turns.slice_end())


class TurnBudget:
    """At most ``seconds`` of gated work per turn of the running loop; the rest waits, first come first served.

    Use from the loop's thread only::

        if budget.spent():
            await budget.wait_turn()
        ...  # the work (a slice may end at :meth:`slice_end`)

    First come, first served holds across turns too: the closing callback of a turn wakes every waiter, but a
    woken task runs only a turn later, and work arriving in between would take the new turn's budget first.
    So a waiter keeps its ticket, newcomers wait while woken ones have not run yet, and whoever has to wait
    again queues by its first ticket.

    A turn's end wakes only about as many waiters as the next turn can take (twice as many as the closing turn
    let through): waking all of 800 queued poll answers each turn, to let 30 through and queue the rest again,
    cost 5 % of the work it ordered (a task switch, a future and a heap push per waiter and turn).
    """

    __slots__ = ("_admitted", "_ends", "_loop", "_tickets", "_waiting", "_woken", "deferred", "seconds", "wakeups")

    def __init__(self, seconds: float = TURN_SLICE_SECONDS) -> None:
        self.seconds = seconds
        #: time.perf_counter() at which this turn's budget runs out; None while no turn is open
        self._ends: float | None = None
        #: (ticket, future) of the work waiting for a later turn, earliest ticket first
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._tickets = itertools.count()
        #: waiters woken by the last closing callback whose tasks have not run yet: newcomers queue behind them
        self._woken = 0
        #: pieces of work let through in the open turn
        self._admitted = 0
        #: the loop of the open turn
        self._loop: asyncio.AbstractEventLoop | None = None
        #: how many pieces of work (poll answers, slices) waited for a later turn, each counted once (the engine's
        #: stats)
        self.deferred = 0
        #: how many times a waiter was woken (it may have to wait again): the cost of the waiting
        self.wakeups = 0

    def spent(self) -> bool:
        """Whether work arriving now must wait for a later turn: the turn's budget is used up, or others wait.

        The first call in a turn opens the turn's budget (and answers False): a callback scheduled now runs in the
        next turn and closes it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # a new loop (the old one ended with a turn open, its closing callback never run): whatever waited
            # there ended with it, and this loop's first turn starts now
            self._loop, self._ends, self._waiting, self._woken, self._admitted = loop, None, [], 0, 0
        if self._waiting or self._woken:
            return True
        return self._used_up(loop)

    def slice_end(self) -> float:
        """The time.perf_counter() by which a slice that started in this turn should end (the turn's budget)."""
        return self._ends if self._ends is not None else time.perf_counter() + self.seconds

    async def wait_turn(self) -> None:
        """Wait for a later turn with budget left (those waiting before this caller go first)."""
        if not self.spent():
            return
        loop = asyncio.get_running_loop()
        self.deferred += 1
        ticket = next(self._tickets)
        while True:
            future: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiting, (ticket, future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._cancelled_after_waking(loop)
                raise
            self._woken -= 1
            if not self._used_up(loop):  # opens the turn if it is the first to run: its closing callback is due
                return

    def _used_up(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the open turn's budget is used up; if not, the caller's piece is let through (counted)."""
        now = time.perf_counter()
        if self._ends is None:
            self._ends = now + self.seconds
            loop.call_soon(self._next_turn)
        elif now >= self._ends:
            return True
        self._admitted += 1
        return False

    def _cancelled_after_waking(self, loop: asyncio.AbstractEventLoop) -> None:
        """A woken waiter was cancelled before it ran (a poller stopped): it must not hold the others."""
        self._woken -= 1
        if not self._woken and self._waiting and self._ends is None:
            # every woken waiter left without opening a turn: nobody would close one for those queued behind them
            loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        # Nothing waits for a turn that nobody will close: while anything waits, either a turn is open (this
        # callback is pending), or woken waiters have not run yet (the first to run opens a turn), or the last
        # woken one was cancelled before it ran (_cancelled_after_waking schedules this callback).
        self._ends = None
        wake = max(WAKE_AT_LEAST, 2 * self._admitted)
        self._admitted = 0
        waiting = self._waiting
        while waiting and wake:
            _, future = heapq.heappop(waiting)
            if not future.done():  # a poller stopped while it waited: its future was cancelled
                future.set_result(None)
                self._woken += 1
                self.wakeups += 1
                wake -= 1
