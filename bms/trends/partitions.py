"""PostgreSQL range partitions by time: list them, create them ahead or on demand, drop the expired ones.

A partitioned table (``trends_sample`` by ``time``, ``trends_hourly`` by
``bucket``) holds one partition per span of ``days`` days; spans are aligned
to Monday 2000-01-03 00:00 UTC, so weekly partitions run Monday to Monday.
Partitions are found by their bounds in the catalogue, not by their names,
so a changed span only shapes the partitions created from then on (around
existing ones, never overlapping them).

Creating and dropping take an ACCESS EXCLUSIVE lock on the parent table;
both are done under ``lock_timeout`` (:data:`LOCK_TIMEOUT`) in a savepoint,
so a long trend query on the web side delays upkeep (which tries again later),
never the writer or replication behind it. Two sessions never race: an
advisory lock per table serialises them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

log = logging.getLogger(__name__)

ALIGN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday
LOCK_TIMEOUT = "2s"
#: a range of times ``[start, end)``
Range = tuple[datetime, datetime]
_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its table name and the range ``[start, end)`` it holds."""

    name: str
    start: datetime
    end: datetime


def span_start(when: datetime, days: int) -> datetime:
    """The start of the aligned span of ``days`` days that holds ``when``."""
    span = timedelta(days=days)
    return ALIGN + ((when - ALIGN) // span) * span


def partitions(table: str) -> list[Partition]:
    """The range partitions of ``table``, by start (a default partition, if someone made one, is left out)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table],
        )
        found = []
        for name, bound in cursor.fetchall():
            match = _BOUNDS.search(bound or "")
            if match is None:
                continue
            found.append(Partition(name, _timestamp(match.group(1)), _timestamp(match.group(2))))
    return sorted(found, key=lambda partition: partition.start)


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _name(table: str, start: datetime) -> str:
    suffix = start.strftime("%Y%m%d") if start.time() == datetime.min.time() else start.strftime("%Y%m%d_%H%M%S")
    return f"{table}_p{suffix}"


def missing(existing: list[Partition], ranges: list[Range], days: int) -> list[Range]:
    """The ranges to create so that every ``[start, end)`` of ``ranges`` is covered: the aligned spans that
    meet them, minus what ``existing`` holds (so a changed span never overlaps an older partition)."""
    span = timedelta(days=days)
    starts: set[datetime] = set()
    for start, end in ranges:
        at = span_start(start, days)
        while at < end:
            starts.add(at)
            at += span
    wanted: list[Range] = []
    for at in sorted(starts):
        pieces = [(at, at + span)]
        for partition in existing:
            cut = []
            for low, high in pieces:
                if partition.end <= low or partition.start >= high:
                    cut.append((low, high))
                    continue
                if low < partition.start:
                    cut.append((low, partition.start))
                if partition.end < high:
                    cut.append((partition.end, high))
            pieces = cut
        wanted.extend(pieces)
    return wanted


def ensure(table: str, ranges: list[Range], days: int) -> list[str]:
    """Create the partitions ``table`` lacks for the ``[start, end)`` ranges; return their names. Idempotent.

    Only the spans that meet a range are created (samples from long ago make one partition, not every one
    since). Runs in the caller's transaction (a savepoint) under a lock timeout; raises OperationalError if
    the parent table stayed locked (the caller tries again later)."""
    created: list[str] = []
    quoted = connection.ops.quote_name(table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"bms.trends.partitions:{table}"])
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for low, high in missing(partitions(table), ranges, days):
            name = _name(table, low)
            cursor.execute(
                f"CREATE TABLE {connection.ops.quote_name(name)} PARTITION OF {quoted} "
                f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
            )
            created.append(name)
        cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    if created:
        log.info("created partition(s) of %s: %s", table, ", ".join(created))
    return created


def drop_before(table: str, cutoff: datetime) -> list[str]:
    """Drop every partition of ``table`` that holds only times before ``cutoff``; return their names."""
    dropped: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"bms.trends.partitions:{table}"])
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for partition in partitions(table):
            if partition.end <= cutoff:
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(partition.name)}")
                dropped.append(partition.name)
        cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    if dropped:
        log.info("dropped expired partition(s) of %s: %s", table, ", ".join(dropped))
    return dropped


def lock_timed_out(error: BaseException) -> bool:
    """True if ``error`` is the lock timeout of :func:`ensure` or :func:`drop_before` (try again later)."""
    return "lock timeout" in str(error)
