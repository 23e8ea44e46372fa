"""A waiting API write is told its outcome by the engine of its own process instead of polling the row."""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bms.control import outcomes
from bms.control.models import Command
from bms.control.services import submit_write, wait_for_outcome


def test_a_notice_wakes_only_the_waiters_of_its_commands():
    with outcomes.watch(1) as first, outcomes.watch(1) as again, outcomes.watch(2) as other:
        outcomes.recorded([1, 3])
        assert first.is_set() and again.is_set() and not other.is_set()
    outcomes.recorded([1])  # nobody waits any more: nothing to wake, nothing kept
    with outcomes.watch(1) as later:
        assert not later.is_set()


def test_waiters_poll_unless_an_engine_of_this_process_tells_outcomes():
    assert not outcomes.told_here()
    outcomes.serve(True)
    try:
        assert outcomes.told_here()
    finally:
        outcomes.serve(False)
    assert not outcomes.told_here()


async def test_an_api_write_hears_its_outcome_from_the_engine_of_its_process(engine, plant, monkeypatch):
    # The fallback read is pushed beyond the wait: only the engine's notice can end the wait before its deadline.
    monkeypatch.setattr(outcomes, "FALLBACK_SECONDS", 60.0)
    assert outcomes.told_here()
    submission = await sync_to_async(submit_write)(
        user=None, point_name="zone2_setpoint", value=24.5, command_id="told-1", source="code"
    )

    def wait() -> tuple[Command, float, int]:
        started = time.monotonic()
        try:
            with CaptureQueriesContext(connection) as queries:
                command = wait_for_outcome(submission.command, 30.0)
            return command, time.monotonic() - started, len(queries)
        finally:
            connection.close()  # this worker thread's connection must not outlive the test database

    command, waited, reads = await sync_to_async(wait, thread_sensitive=False)()
    assert command.status == Command.SUCCEEDED, (command.status, command.error)
    assert waited < 20, f"the wait ran to its deadline ({waited:.1f} s): the engine's notice never came"
    assert reads <= 3, f"{reads} reads of the row: it was polled"
    assert await plant.get("zone2_setpoint") == 24.5
