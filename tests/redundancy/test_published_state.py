"""The state the pair service publishes in memory for the web side of its process (``PairService.memory_row``).

It must age only when the node's own loop does (a stuck loop, or a node in
doubt after a stall): a database that hangs or is away must not make a live
node look "unknown". With the production pool a call waits up to
``BMS_DB_POOL_TIMEOUT`` (5 s) for a connection that never comes, far beyond
the heartbeat timeout; the node must still say what it is meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.db import OperationalError

from redundancy import nodeview, state
from redundancy.service import PairService
from tests.redundancy.activenode import active_service

PERIOD_MS = 100
TIMEOUT_MS = 600  # wide, so that a loaded machine's scheduling does not age the state by itself
TIMEOUT = TIMEOUT_MS / 1000
DATABASE_HANG = 0.9  # every database call waits this long, then fails (a pool waiting for a connection)


@pytest.fixture
async def service(settings: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PairService]:
    """An active node's pair service with its heartbeat and status loops running; its row writes go nowhere."""
    monkeypatch.setattr(state, "save_status", lambda *args: None)
    monkeypatch.setattr(state, "beat", lambda: None)
    monkeypatch.setattr(state, "take_operator_requests", lambda: set())
    async with active_service(settings, PERIOD_MS, TIMEOUT_MS) as service:
        health = service.engine.db_health
        nodeview.use_memory(service.memory_row, lambda: f"database unavailable: {health.reason}" if health.down else "")
        try:
            yield service
        finally:
            nodeview.use_memory(None, None)


@pytest.fixture
def hanging_database(monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, int]]:
    """Every status write waits DATABASE_HANG on the engine's database thread, then fails; returns the counts."""
    released = threading.Event()
    counts = {"calls": 0}
    lock = threading.Lock()

    def hang(*args: Any) -> None:
        with lock:
            counts["calls"] += 1
        released.wait(DATABASE_HANG)
        raise OperationalError("couldn't get a connection after 0.90 sec")

    for name in ("save_status", "beat", "take_operator_requests"):
        monkeypatch.setattr(state, name, hang)
    yield lambda: counts
    released.set()


async def first_publication(service: PairService) -> None:
    deadline = time.monotonic() + 5
    while service.memory_row() is None:
        assert time.monotonic() < deadline, "nothing published"
        await asyncio.sleep(0.01)


async def roles_seen(seconds: float) -> list[tuple[str, str]]:
    """The web side's role and database word, read every 20 ms for ``seconds`` (as /healthz would)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = nodeview.load_view()
        seen.append((view.role, view.degraded))
        await asyncio.sleep(0.02)
    return seen


async def test_a_live_node_says_it_is_active_while_its_database_hangs(service, hanging_database):
    await first_publication(service)
    seen = await roles_seen(4 * DATABASE_HANG)  # several calls that each outlast the heartbeat timeout
    assert {role for role, _ in seen} == {"active"}, [role for role, _ in seen]
    assert seen[-1][1].startswith("database unavailable"), seen[-1]
    row = service.memory_row()
    assert row is not None and (time.time() - row.updated_at.timestamp()) < TIMEOUT
    # The writes still go one at a time: slots that come while one hangs are skipped, not queued behind it.
    assert hanging_database()["calls"] <= 4 * 2 + 1, hanging_database()


async def test_writes_are_not_queued_behind_a_hanging_one(service, monkeypatch):
    in_flight, most = 0, 0
    run_in_db = service.engine.run_in_status_db

    async def counted(func: Callable[..., Any], *args: Any) -> Any:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(DATABASE_HANG)
            return await run_in_db(func, *args)
        finally:
            in_flight -= 1

    monkeypatch.setattr(service.engine, "run_in_status_db", counted)
    await first_publication(service)
    seen = await roles_seen(3 * DATABASE_HANG)
    assert {role for role, _ in seen} == {"active"}
    assert most == 1


async def test_a_stuck_loop_still_makes_the_node_unknown(service, hanging_database):
    await first_publication(service)
    assert nodeview.load_view().role == "active"
    time.sleep(TIMEOUT * 1.5)  # noqa: ASYNC251 - on purpose: the engine's loop is stuck, nothing publishes
    view = nodeview.load_view()
    assert (view.role, view.fresh) == ("unknown", False)


async def test_a_node_in_doubt_after_a_stall_stops_vouching_for_its_role(service):
    await first_publication(service)
    assert nodeview.load_view().role == "active"
    service._doubt_until = time.monotonic() + 30  # as after a stall, until the partner is heard
    await asyncio.sleep(TIMEOUT * 1.5)
    assert nodeview.load_view().role == "unknown"
