"""Store and forward with a private PostgreSQL that the tests stop, freeze and bring back.

The writer (its threads, its own database connection, its spool on disk) is the product's; the database
is a real PostgreSQL of the test's own (``tests/support/postgres_server.py``), migrated like a node's.
A producer task on the loop adds samples in time order throughout, as the sampler does, and measures
how long each of its turns took: the loop must never wait for the database.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections

from bms.trends.spool import HEADER, ROW, Spool
from bms.trends.writer import TrendWriter
from tests.support.postgres_server import PostgresServer
from tests.support.waiting import eventually

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
PER_TURN = 20


@pytest.fixture(scope="module")
def server(django_db_blocker):
    """A private PostgreSQL with a migrated database ``bms``, which Django's default connection points at."""
    pg = PostgresServer()
    pg.start()
    pg.create_database("bms")
    settings_dict = connections.settings["default"]
    saved = dict(settings_dict)
    with django_db_blocker.unblock():
        connections.close_all()
        settings_dict.update(NAME="bms", HOST="127.0.0.1", PORT=str(pg.port), USER="postgres", PASSWORD="")
        call_command("migrate", verbosity=0)
        connections.close_all()
    try:
        yield pg
    finally:
        with django_db_blocker.unblock():
            connections.close_all()
        settings_dict.clear()
        settings_dict.update(saved)
        pg.destroy()


@pytest.fixture
def database(server, django_db_blocker):
    """The private database, emptied of samples, reachable from the writer's threads."""
    with psycopg.connect(server.url("bms"), autocommit=True) as connection:
        connection.execute("TRUNCATE trends_sample, trends_rollupdue")
    with django_db_blocker.unblock():
        yield server


def stored_times(server: PostgresServer) -> list[datetime]:
    """The samples' times in the order they were stored (their history stamps)."""
    with psycopg.connect(server.url("bms")) as connection:
        return [row[0] for row in connection.execute("SELECT time FROM trends_sample ORDER BY origin_seq")]


class Producer:
    """Adds PER_TURN samples every 10 ms, each a millisecond after the previous one; records each turn's lateness."""

    def __init__(self, writer: TrendWriter) -> None:
        self.writer = writer
        self.count = 0
        self.worst = 0.0
        self.task: asyncio.Task | None = None

    def time_of(self, number: int) -> datetime:
        return T0 + timedelta(milliseconds=number)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time()
        while True:
            expected += 0.01
            await asyncio.sleep(max(0.0, expected - loop.time()))
            self.worst = max(self.worst, loop.time() - expected)
            for _ in range(PER_TURN):
                self.writer.add((self.count % 50, self.time_of(self.count), float(self.count), 0))
                self.count += 1

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_samples_wait_in_the_spool_while_postgresql_is_stopped_and_drain_in_order(database, tmp_path):
    events: list[tuple[str, str]] = []
    writer = TrendWriter(
        Spool(tmp_path / "spool", 64 * 1024 * 1024),
        report=lambda kind, message, severity: events.append((kind, severity)),
        flush_seconds=0.05,
        stall_seconds=1.0,
        retry_seconds=0.2,
    )
    writer.start()
    producer = Producer(writer)
    producer.start()
    try:
        await eventually(lambda: writer.written > 500, 10, message="samples written while PostgreSQL is up")
        await asyncio.to_thread(database.stop)
        stopped_at = producer.count
        await eventually(lambda: writer.spool.samples > 1000, 10, message="samples in the spool")
        assert ("trend_store_unavailable", "warning") in events
        await asyncio.sleep(1.0)
        assert writer.spool.samples > 1000 and writer.written <= stopped_at
        await asyncio.to_thread(database.start)
        await asyncio.sleep(0.5)
    finally:
        await producer.stop()
    writer.hand_over()
    await eventually(lambda: writer.waiting == 0, 30, message="the spool drained")
    await writer.stop()
    times = await asyncio.to_thread(stored_times, database)
    assert len(times) == producer.count and writer.lost == 0
    assert times == [producer.time_of(number) for number in range(producer.count)]  # every one, in order, once
    assert {"trend_store_available", "trend_spool_drained"} <= {kind for kind, _ in events}
    assert producer.worst < 0.25, f"the loop was held up {producer.worst:.3f} s"


async def test_a_stalled_postgresql_sends_samples_to_the_spool_and_they_follow_when_it_moves_again(database, tmp_path):
    writer = TrendWriter(Spool(tmp_path / "spool", 64 * 1024 * 1024), flush_seconds=0.05, stall_seconds=1.0)
    writer.start()
    producer = Producer(writer)
    producer.start()
    try:
        await eventually(lambda: writer.written > 500, 10, message="samples written")
        await asyncio.to_thread(database.freeze)  # connections stay open; every statement hangs
        frozen_at = time.monotonic()
        await eventually(lambda: writer.spool.samples > 500, 10, message="samples in the spool")
        assert time.monotonic() - frozen_at < 4.0
        await asyncio.sleep(1.0)
        await asyncio.to_thread(database.thaw)
        await asyncio.sleep(0.5)
    finally:
        await producer.stop()
        await asyncio.to_thread(database.thaw)
    writer.hand_over()
    await eventually(lambda: writer.waiting == 0, 30, message="the spool drained")
    await writer.stop()
    times = await asyncio.to_thread(stored_times, database)
    assert times == [producer.time_of(number) for number in range(producer.count)]
    assert producer.worst < 0.25, f"the loop was held up {producer.worst:.3f} s"


async def test_a_full_spool_drops_the_oldest_samples_counted_logged_and_reported(database, tmp_path):
    events: list[tuple[str, str]] = []
    record = HEADER.size + 100 * ROW.size
    writer = TrendWriter(
        Spool(tmp_path / "spool", 60 * record, segment_bytes=6 * record),
        report=lambda kind, message, severity: events.append((kind, severity)),
        flush_seconds=0.05,
        flush_rows=100,
        stall_seconds=1.0,
        warn_percent=50.0,
    )
    writer.start()
    await asyncio.to_thread(database.stop)
    producer = Producer(writer)
    producer.start()
    try:
        await eventually(lambda: writer.lost > 0, 20, message="the spool full")
        await asyncio.sleep(0.5)
    finally:
        await producer.stop()
    writer.hand_over()
    await eventually(lambda: writer._memory_held == 0, 10, message="every batch spooled")
    lost = writer.lost
    assert lost == writer.spool.dropped and lost + writer.spool.samples == producer.count
    assert writer.stats()["lost_spool_full"] == lost
    assert ("trend_spool_filling", "warning") in events and ("trend_samples_lost", "error") in events
    await asyncio.to_thread(database.start)
    await eventually(lambda: writer.waiting == 0, 30, message="the spool drained")
    await writer.stop()
    times = await asyncio.to_thread(stored_times, database)
    assert len(times) + lost == producer.count
    assert times == [producer.time_of(number) for number in range(lost, producer.count)]  # the oldest went
