"""An event batch whose commit went through while its answer was lost is written again, and logged once.

Real database, the real event outbox and writer. The fault injected is the one no real part produces on demand:
the connection breaking between a commit and its answer (the write runs and commits, then the engine's database
call raises what a broken connection gives). Found with the command claim of the same window
(``tests/control/test_lost_claim.py``).
"""

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from bms.engine import store
from bms.engine.dbhealth import DatabaseUnavailable
from bms.engine.eventlog import EventOutbox
from bms.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def close_thread_connections():
    yield
    # The shared sync_to_async thread keeps its connection; close it so the test database can be dropped.
    await sync_to_async(connections.close_all)()


async def test_a_batch_written_again_after_a_lost_answer_is_stored_once():
    calls: list[int] = []

    async def run_in_db(func, *args):
        stored = await sync_to_async(func)(*args)
        calls.append(stored)
        if len(calls) == 1:
            raise DatabaseUnavailable("consuming input failed: server closed the connection unexpectedly")
        return stored

    outbox = EventOutbox(run_in_db, "main")
    start = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    for n in range(5):
        outbox.record("comm_lost", f"dev{n}", f"device dev{n} lost", "warning", start + timedelta(microseconds=n))
    with pytest.raises(DatabaseUnavailable):
        await outbox.flush()  # committed, but the engine was told it failed: the rows stay queued
    assert outbox.waiting == 5
    outbox.record("comm_restored", "dev0", "device dev0 back", "info", start + timedelta(seconds=1))
    await outbox.flush()
    assert calls == [5, 1]  # the second write found the first five stored and added only the new one
    rows = await sync_to_async(list)(Event.objects.order_by("time").values_list("kind", "source"))
    assert rows == [("comm_lost", f"dev{n}") for n in range(5)] + [("comm_restored", "dev0")]


async def test_events_at_the_same_time_from_different_sources_are_all_stored():
    when = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    batch = [("comm_lost", f"dev{n}", "lost", "warning", when) for n in range(3)]
    assert await sync_to_async(store.log_events)(batch) == 3
    assert await sync_to_async(store.log_events)([*batch, ("comm_restored", "dev0", "back", "info", when)]) == 1
    assert await sync_to_async(Event.objects.count)() == 4
