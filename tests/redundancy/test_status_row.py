"""The node state row stays fresh while the engine's database thread is busy, against the real database.

A web process of its own (``runbms --no-engine``) knows the node's role only
from this row, and calls the node "unknown" (refusing every write) once the
row is older than the heartbeat timeout. The row's writes used to queue on
the engine's one database thread behind commands, replication and history:
under 50 API writers a beat came later than the timeout, and an active node
refused writes (bench/stress.py --layout processes). Here that thread is
held by a real query for longer than the timeout while the status loop runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from redundancy.models import NodeState
from redundancy.service import PairService
from tests.redundancy.activenode import active_service

pytestmark = pytest.mark.django_db(transaction=True)

PERIOD_MS = 100
TIMEOUT_MS = 600  # wide, so that a loaded machine's scheduling does not age the row by itself
TIMEOUT = TIMEOUT_MS / 1000
BUSY_SECONDS = 4 * TIMEOUT  # how long the engine's database thread is held


@pytest.fixture
async def service(settings: Any) -> AsyncIterator[PairService]:
    """An active node's pair service with its heartbeat and status loops running, writing the real row."""
    async with active_service(settings, PERIOD_MS, TIMEOUT_MS) as service:
        yield service


def row_age() -> float | None:
    """Seconds since the row's ``updated_at`` (None: no row yet), read on a connection of the test's own."""
    try:
        updated_at = NodeState.objects.filter(node="main").values_list("updated_at", flat=True).first()
        return None if updated_at is None else (datetime.now(UTC) - updated_at).total_seconds()
    finally:
        connection.close()


def hold_the_database_thread() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [BUSY_SECONDS])


async def test_the_row_stays_fresh_while_the_engines_database_thread_is_busy(service):
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(row_age) is None:
        assert time.monotonic() < deadline, "the status loop never wrote the row"
        await asyncio.sleep(0.05)
    busy = asyncio.ensure_future(service.engine.run_in_db(hold_the_database_thread))
    ages = []
    while not busy.done():
        ages.append(await asyncio.to_thread(row_age))
        await asyncio.sleep(0.05)
    await busy
    assert len(ages) >= 10, ages
    # Beats every PERIOD_MS: the row is never older than the timeout (it was BUSY_SECONDS old before the fix).
    assert max(ages) < TIMEOUT, [round(age, 3) for age in ages]


async def test_a_restarted_nodes_first_row_write_is_its_whole_status_not_a_beat_on_its_old_role(settings):
    # The row left by the node's previous life says "active". A liveness beat (updated_at only) before the first
    # whole status made that old role look current for a moment: the web side, /healthz/active and the pair tests'
    # role sampler saw a restarting node as active beside its active partner (test_failback_under_load).
    last_life = datetime(2026, 1, 1, tzinfo=UTC)

    def old_life() -> None:
        try:
            NodeState.objects.update_or_create(node="main", defaults={"role": "active", "epoch": 3})
            # updated_at is auto_now on save: an update sets it to the old life's time
            NodeState.objects.filter(node="main").update(updated_at=last_life)
        finally:
            connection.close()

    def row() -> tuple[str, datetime]:
        try:
            return NodeState.objects.filter(node="main").values_list("role", "updated_at").get()
        finally:
            connection.close()

    await asyncio.to_thread(old_life)
    async with active_service(settings, PERIOD_MS, TIMEOUT_MS, active=False) as service:
        assert service.machine.role == "starting"
        deadline = time.monotonic() + 10
        while (found := await asyncio.to_thread(row))[1] == last_life:
            assert time.monotonic() < deadline, "the status loop never wrote the row"
            await asyncio.sleep(0.01)
    assert found[0] == "starting", found
