"""The turn budget, on a real asyncio loop: answers that arrive together are applied over several turns, in order,
and what falls due meanwhile (a timer, another task) runs in between instead of after all of them."""

import asyncio
import time
from datetime import datetime

from bms.engine.tasks import run_slices
from bms.engine.turns import TurnBudget, slice_deadline


def busy(seconds: float) -> None:
    """CPU work of at least ``seconds`` (a poll step); a busy host only makes it longer."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class TurnCounter:
    """Counts the loop's turns: a callback that schedules itself again each turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


async def test_answers_arriving_together_are_applied_a_slice_per_turn_in_arrival_order():
    budget = TurnBudget(seconds=0.01)
    arrived = asyncio.Event()
    applied: list[tuple[int, int]] = []  # (answer, turn)
    counter = TurnCounter()

    async def poller(number: int) -> None:
        await arrived.wait()  # every answer arrives in the same instant
        if budget.spent():
            await budget.wait_turn()
        applied.append((number, counter.turn))
        busy(0.003)

    tasks = [asyncio.create_task(poller(number)) for number in range(12)]
    await asyncio.sleep(0)
    arrived.set()
    await asyncio.gather(*tasks)
    counter.stop()
    assert [number for number, _ in applied] == list(range(12))  # first come, first served
    per_turn: dict[int, int] = {}
    for _, turn in applied:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    # 3 ms each against a 10 ms budget: at most four in one turn (a starved host makes each longer: fewer)
    assert max(per_turn.values()) <= 4 and len(per_turn) >= 3, per_turn
    # each answer that waited is counted once, however many turns it waited
    assert budget.deferred == 12 - per_turn[min(per_turn)], (budget.deferred, per_turn)


async def test_a_timer_due_meanwhile_runs_between_slices_not_after_every_answer():
    budget = TurnBudget(seconds=0.01)
    arrived = asyncio.Event()
    done: list[int] = []
    timer_saw: list[int] = []

    async def poller(number: int) -> None:
        await arrived.wait()
        if budget.spent():
            await budget.wait_turn()
        busy(0.003)
        done.append(number)

    tasks = [asyncio.create_task(poller(number)) for number in range(20)]
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    loop.call_later(0.005, lambda: timer_saw.append(len(done)))  # the heartbeat, the LoopWatch tick
    arrived.set()
    await asyncio.gather(*tasks)
    assert len(timer_saw) == 1 and timer_saw[0] < 20  # it did not wait for all 60 ms of answers
    assert sorted(done) == list(range(20))


async def test_a_quiet_loop_never_waits_and_a_cancelled_waiter_does_not_hold_the_others():
    budget = TurnBudget(seconds=0.01)
    for _ in range(5):
        assert not budget.spent()  # cheap work: within the turn's budget
        await asyncio.sleep(0)
    assert budget.deferred == 0

    async def hog_then_wait() -> None:
        budget.spent()
        busy(0.011)  # this turn's budget is used up
        await budget.wait_turn()

    first = asyncio.create_task(hog_then_wait())
    second = asyncio.create_task(budget.wait_turn())  # the same turn: it waits too
    await asyncio.sleep(0)
    assert budget.deferred == 2
    first.cancel()  # a poller stopped while it waited
    await asyncio.wait_for(second, timeout=5)
    assert second.done() and not second.cancelled()
    await asyncio.sleep(0)
    assert first.cancelled()


def test_a_budget_whose_loop_ended_with_a_turn_open_opens_a_fresh_turn_on_the_next_loop():
    """An engine's budget outlives one loop (a node stopped and started again in one process): the turn the old loop
    left open (its closing callback never ran) must not make the next loop's pollers wait for ever."""
    budget = TurnBudget(seconds=0.01)

    def open_a_turn_and_spend_it() -> None:
        budget.spent()
        busy(0.011)
        assert budget.spent()

    loop = asyncio.new_event_loop()
    loop.call_soon(open_a_turn_and_spend_it)
    loop.call_soon(loop.stop)  # the loop ends with this turn: the closing callback, due next turn, never runs
    loop.run_forever()
    loop.close()

    async def poll_on_a_new_loop() -> bool:
        answered = not budget.spent()
        await asyncio.wait_for(budget.wait_turn(), timeout=5)
        return answered

    assert asyncio.run(poll_on_a_new_loop())


async def test_waiters_woken_by_a_turns_end_go_before_work_that_arrives_in_the_next_turn():
    """The closing callback wakes the waiters, but their tasks run a turn later: work arriving in the turn in
    between (a socket's answer) must queue behind them, not take the budget first (first come, first served)."""
    budget = TurnBudget(seconds=0.01)
    order: list[str] = []

    async def waiter(name: str) -> None:
        if budget.spent():
            await budget.wait_turn()
        order.append(name)
        busy(0.004)

    def newcomer() -> None:  # a plain callback of the next turn, like a protocol's data_received
        if budget.spent():
            late.append(asyncio.ensure_future(waiter("newcomer")))
        else:
            order.append("newcomer")
            busy(0.004)

    late: list[asyncio.Future[None]] = []
    arrived = asyncio.Event()

    async def hog() -> None:
        await arrived.wait()
        budget.spent()
        busy(0.011)  # this turn's budget is used up: the three behind it wait
        asyncio.get_running_loop().call_soon(newcomer)  # runs in the turn that wakes them, before they run

    async def waiter_after_arrival(name: str) -> None:
        await arrived.wait()
        await waiter(name)

    tasks = [asyncio.create_task(hog())] + [asyncio.create_task(waiter_after_arrival(f"w{n}")) for n in range(3)]
    await asyncio.sleep(0)
    arrived.set()
    await asyncio.gather(*tasks)
    await asyncio.gather(*late)
    assert budget.deferred == 4  # the three, and the newcomer
    assert order == ["w0", "w1", "w2", "newcomer"]


async def test_evaluation_slices_and_poll_answers_share_one_budget_per_turn():
    """run_slices with the engine's budget: a slice waits its turn with the poll answers and ends at the turn's
    budget. Counted, not timed, so a slow host only makes the bounds easier: answers of 3 ms against 10 ms, so a
    turn lets at most four through, a slice after at most three of them, and nothing after a slice."""
    budget = TurnBudget(seconds=0.01)
    counter = TurnCounter()
    pieces: list[tuple[int, str]] = []  # (turn, kind) in the order they ran
    slices_left = [6]
    arrived = asyncio.Event()

    def run_once(now: datetime) -> bool:  # a module's slice: works until its deadline
        pieces.append((counter.turn, "slice"))
        deadline = slice_deadline(budget, 0.01)
        busy(0.001)
        while time.perf_counter() < deadline:
            busy(0.001)
        slices_left[0] -= 1
        return slices_left[0] > 0

    async def poller() -> None:
        await arrived.wait()
        if budget.spent():
            await budget.wait_turn()
        pieces.append((counter.turn, "answer"))
        busy(0.003)

    pollers = [asyncio.create_task(poller()) for _ in range(12)]
    await asyncio.sleep(0)
    arrived.set()
    await asyncio.gather(run_slices(run_once, lambda: True, "test slices", budget), *pollers)
    counter.stop()
    assert [kind for _, kind in pieces].count("slice") == 6 and len(pieces) == 18
    by_turn: dict[int, list[str]] = {}
    for turn, kind in pieces:
        by_turn.setdefault(turn, []).append(kind)
    for turn, kinds in by_turn.items():
        assert kinds.count("slice") <= 1 and kinds.count("answer") <= 4, (turn, kinds)
        if "slice" in kinds:
            before = kinds.index("slice")
            # the slice began inside the budget, so after at most 3 answers (9 ms), and ran to the turn's end
            assert before <= 3 and before == len(kinds) - 1, (turn, kinds)


async def test_a_turns_end_wakes_about_as_many_waiters_as_a_turn_takes_not_all_of_them():
    """800 poll answers queued and 30 let through a turn: waking all of them each turn to queue most again cost 5 %
    of the work. The end of a turn wakes twice as many as it let through (at least 4)."""
    budget = TurnBudget(seconds=0.01)
    counter = TurnCounter()
    arrived = asyncio.Event()
    turns: list[int] = []

    async def poller() -> None:
        await arrived.wait()
        if budget.spent():
            await budget.wait_turn()
        turns.append(counter.turn)
        busy(0.001)

    tasks = [asyncio.create_task(poller()) for _ in range(100)]
    await asyncio.sleep(0)
    arrived.set()
    await asyncio.gather(*tasks)
    counter.stop()
    used = len(set(turns))
    assert len(turns) == 100 and budget.deferred >= 50, (budget.deferred, used)
    # each turn's end woke at most twice what the turn before let through, or 4 (waking all: a few hundred here)
    assert budget.wakeups <= 2 * 100 + 4 * used, (budget.wakeups, used)
