"""Writing trend rows: this node's samples by COPY, the partner's idempotently, roll-ups newest-wins; the tiers' upkeep.

Every function here is blocking: it runs on the trend writer's thread, the
engine's database thread (replication) or a Celery worker, never on the loop.

**Samples written here** (:func:`write_samples`) take a block of consecutive
history stamps (``next_stamps``) and go to PostgreSQL by binary ``COPY`` in
one transaction, with the buckets they touch marked for roll-up. ``COPY``
cannot skip duplicates, so a batch that meets a sample already stored (a
replayed spool record, the same sample from both nodes around a takeover) is
written again through a temporary table with ``INSERT ... ON CONFLICT DO
NOTHING``: idempotent by ``(point, time)``, nothing stored twice. A row whose
partition does not exist yet makes its partition (:mod:`bms.trends.partitions`)
and is written again.

**Rows from the partner** (:func:`store_replicated`, called by
``redundancy.history.store_rows`` through the models' hook) keep the stamps
they were written with: samples through the same duplicate-skipping path,
roll-ups by an upsert in which the newer version (epoch, origin, origin_seq:
the order ``redundancy.history`` uses for every mutable row) wins.

**Upkeep** (:func:`upkeep`): partitions ahead, expired partitions dropped
(rows deleted where nothing is partitioned: SQLite, the daily tier). The
active node's periodic task runs it; every node also runs it from its
storing path once per UTC day (:func:`upkeep_if_due`), which is how a
standby, whose periodic tasks do nothing, keeps its storage bounded too.

SQLite (the embedded shape) has the same API and tables without partitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Min
from django.utils.dateparse import parse_datetime

from bms.engine.dbconn import sqlstate
from bms.history.models import next_stamps
from bms.trends import conf, partitions
from bms.trends.models import DailyRollup, HourlyRollup, RollupDue, Sample, TrendHistory

log = logging.getLogger(__name__)

#: a sample as the engine hands it over: (point id, time (aware UTC), value or None, quality code)
SampleRow = tuple[int, datetime, float | None, int]
SAMPLE_COLUMNS = ("point_id", "time", "value", "quality", "origin", "epoch", "origin_seq")
SAMPLE_TYPES = ("int8", "timestamptz", "float8", "int2", "varchar", "int8", "int8")
ROLLUP_COLUMNS = (
    *("point_id", "bucket", "minimum", "maximum", "average", "samples", "last", "last_time"),
    *("origin", "epoch", "origin_seq"),
)
ROLLUP_TYPES = (
    *("int8", "timestamptz", "float8", "float8", "float8", "int4", "float8", "timestamptz"),
    *("varchar", "int8", "int8"),
)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_PARTITION = "23514"  # check_violation: "no partition of relation ... found for row"
_DUPLICATE = "23505"  # unique_violation


@dataclass(frozen=True, slots=True)
class Tier:
    """One storage tier: its model, time column, and whether PostgreSQL partitions it."""

    key: str
    model: type[TrendHistory]
    column: str
    partitioned: bool

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def retention_days(self) -> int:
        return conf.retention_days(self.key)

    @property
    def partition_days(self) -> int:
        return conf.partition_days(self.key)

    def cutoff(self, now: datetime) -> datetime | None:
        """Rows before this time have expired (None: kept forever)."""
        days = self.retention_days
        return now - timedelta(days=days) if days > 0 else None


RAW = Tier("raw", Sample, "time", True)
HOURLY = Tier("hourly", HourlyRollup, "bucket", True)
DAILY = Tier("daily", DailyRollup, "bucket", False)
TIERS = (RAW, HOURLY, DAILY)
_BY_MODEL = {tier.model: tier for tier in TIERS}


def postgres() -> bool:
    return connection.vendor == "postgresql"


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def day_of(when: datetime) -> datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def hours(times: Iterable[datetime]) -> set[datetime]:
    """The UTC hours that hold ``times``."""
    seconds = {int((when - _EPOCH).total_seconds()) // 3600 for when in times}
    return {_EPOCH + timedelta(hours=hour) for hour in seconds}


# ---- samples ----------------------------------------------------------------------------------------------------


def write_samples(rows: Sequence[SampleRow], now: datetime | None = None) -> int:
    """Store samples taken on this node, with consecutive fresh stamps, in one transaction; how many were new.

    Samples older than the raw tier's retention are left out (they would be dropped at once)."""
    now = now or datetime.now(UTC)
    upkeep_if_due(now)
    cutoff = RAW.cutoff(now)
    if cutoff is not None and rows and min(row[1] for row in rows) < cutoff:
        rows = [row for row in rows if row[1] >= cutoff]
    if not rows:
        return 0
    with transaction.atomic():
        # The counter row stays locked until commit, so this block's seqs commit in order (ADR 0006).
        origin, epoch, seqs = next_stamps(len(rows))
        first = seqs.start
        records = [
            (point, when, value, quality, origin, epoch, first + index)
            for index, (point, when, value, quality) in enumerate(rows)
        ]
        new = _insert_samples(records)
        mark_due(RollupDue.HOUR, hours(row[1] for row in rows))
    return new


def store_replicated(model: type[TrendHistory], records: list[dict[str, Any]]) -> None:
    """Store the partner's rows of ``model`` with their stamps, idempotently (the storing transaction is open)."""
    now = datetime.now(UTC)
    upkeep_if_due(now)
    tier = _BY_MODEL[model]
    cutoff = tier.cutoff(now)
    if cutoff is not None:
        records = [record for record in records if record[tier.column] >= cutoff]
    if not records:
        return
    if tier is RAW:
        _insert_samples([tuple(record[name] for name in SAMPLE_COLUMNS) for record in records])
        mark_due(RollupDue.HOUR, hours(record["time"] for record in records))
    else:
        upsert_rollups(tier, [tuple(record[name] for name in ROLLUP_COLUMNS) for record in records])


def _insert_samples(records: list[tuple]) -> int:
    """Insert stamped sample rows (:data:`SAMPLE_COLUMNS` order), skipping ``(point, time)`` already stored."""
    if not postgres():
        return _insert_sqlite(RAW, SAMPLE_COLUMNS, records, "INSERT OR IGNORE")
    try:
        return _with_partitions(RAW, records, lambda: _copy(RAW.table, SAMPLE_COLUMNS, SAMPLE_TYPES, records))
    except IntegrityError as exc:
        if sqlstate(exc) != _DUPLICATE:
            raise
    return _with_partitions(RAW, records, lambda: _copy_skipping_duplicates(records))


def _with_partitions(tier: Tier, records: list[tuple], write: Callable[[], int]) -> int:
    """Run ``write`` in a savepoint; if a row has no partition, make the partitions ``records`` need, once."""
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                return write()
        except IntegrityError as exc:
            if sqlstate(exc) != _NO_PARTITION or attempt == 2:
                raise
            at = SAMPLE_COLUMNS.index("time") if tier is RAW else ROLLUP_COLUMNS.index("bucket")
            ranges = [(when, when + timedelta(microseconds=1)) for when in {row[at] for row in records}]
            partitions.ensure(tier.table, ranges, tier.partition_days)
    raise AssertionError("unreachable")


def _copy(table: str, columns: Sequence[str], types: Sequence[str], records: Iterable[tuple]) -> int:
    """Binary COPY of ``records`` into ``table``; psycopg's errors become Django's (IntegrityError, ...)."""
    names = ", ".join(columns)
    count = 0
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.copy(f"COPY {connection.ops.quote_name(table)} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(types))
            write = copy.write_row
            for record in records:
                write(record)
                count += 1
    return count


def _incoming(tier: Tier) -> str:
    """This session's temporary twin of ``tier``'s table (emptied at every commit), created on first use."""
    name = f"{tier.table}_incoming"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {name} (LIKE {connection.ops.quote_name(tier.table)}) "
            "ON COMMIT DELETE ROWS"
        )
    return name


def _copy_skipping_duplicates(records: list[tuple]) -> int:
    temporary = _incoming(RAW)
    _copy(temporary, SAMPLE_COLUMNS, SAMPLE_TYPES, records)
    names = ", ".join(SAMPLE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {RAW.table} ({names}) SELECT {names} FROM {temporary} ON CONFLICT DO NOTHING")
        new = cursor.rowcount
        cursor.execute(f"DELETE FROM {temporary}")  # it is emptied at commit too; a second use must start empty
    return new


def _insert_sqlite(tier: Tier, columns: Sequence[str], records: list[tuple], verb: str, tail: str = "") -> int:
    adapt = connection.ops.adapt_datetimefield_value
    positions = [index for index, name in enumerate(columns) if name in ("time", "bucket", "last_time")]
    rows = []
    for record in records:
        row = list(record)
        for index in positions:
            row[index] = adapt(row[index])
        rows.append(row)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"{verb} INTO {tier.table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}){tail}",
            rows,
        )
        return max(cursor.rowcount, 0)


# ---- roll-ups ---------------------------------------------------------------------------------------------------

_VALUES = ("minimum", "maximum", "average", "samples", "last", "last_time")


def upsert_rollups(tier: Tier, records: list[tuple], changed_only: bool = False) -> int:
    """Insert or replace roll-up rows (:data:`ROLLUP_COLUMNS` order); how many were written.

    A stored row is replaced only by a newer version (epoch, then origin, then origin_seq), so both nodes
    keep the same row whatever order versions arrive in. ``changed_only`` (a recomputation on this node) also
    keeps a stored row whose values are the same: its stamp stays, nothing travels again."""
    if not records:
        return 0
    key = (ROLLUP_COLUMNS.index("point_id"), ROLLUP_COLUMNS.index("bucket"))
    version = (ROLLUP_COLUMNS.index("epoch"), ROLLUP_COLUMNS.index("origin"), ROLLUP_COLUMNS.index("origin_seq"))
    newest: dict[tuple, tuple] = {}
    for record in records:  # one version per key: an upsert may not touch a row twice
        ident = (record[key[0]], record[key[1]])
        held = newest.get(ident)
        if held is None or [record[i] for i in version] > [held[i] for i in version]:
            newest[ident] = record
    records = list(newest.values())
    table = tier.table
    collate = ' COLLATE "C"' if postgres() else ""
    newer = (
        f"({table}.epoch, {table}.origin{collate}, {table}.origin_seq) "
        f"< (EXCLUDED.epoch, EXCLUDED.origin{collate}, EXCLUDED.origin_seq)"
    )
    if changed_only:
        differs = "IS DISTINCT FROM" if postgres() else "IS NOT"
        stored = ", ".join(f"{table}.{name}" for name in _VALUES)
        incoming = ", ".join(f"EXCLUDED.{name}" for name in _VALUES)
        newer += f" AND ({stored}) {differs} ({incoming})"
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in ROLLUP_COLUMNS[2:])
    tail = f" ON CONFLICT (point_id, bucket) DO UPDATE SET {updates} WHERE {newer}"
    if not postgres():
        return _insert_sqlite(tier, ROLLUP_COLUMNS, records, "INSERT", tail)

    def write() -> int:
        temporary = _incoming(tier)
        _copy(temporary, ROLLUP_COLUMNS, ROLLUP_TYPES, records)
        names = ", ".join(ROLLUP_COLUMNS)
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {temporary}{tail}")
            written = cursor.rowcount
            cursor.execute(f"DELETE FROM {temporary}")
        return written

    if tier.partitioned:
        return _with_partitions(tier, records, write)
    with transaction.atomic():
        return write()


def stamp_rollups(rows: list[tuple]) -> list[tuple]:
    """Give computed roll-ups (``ROLLUP_COLUMNS`` without the stamp) consecutive stamps; inside the transaction."""
    if not rows:
        return []
    origin, epoch, seqs = next_stamps(len(rows))
    return [(*row, origin, epoch, seq) for row, seq in zip(rows, seqs, strict=True)]


def mark_due(tier: str, buckets: Iterable[datetime]) -> None:
    """Mark ``buckets`` of ``tier`` (``RollupDue.HOUR`` or ``DAY``) for (re)computation; in the writing transaction."""
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(tier, adapt(bucket)) for bucket in sorted(set(buckets))]
    if not rows:
        return
    table = RollupDue._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (tier, bucket, version) VALUES (%s, %s, 1) "
            f"ON CONFLICT (tier, bucket) DO UPDATE SET version = {table}.version + 1",
            rows,
        )


def from_db_datetime(value: Any) -> datetime:
    """A datetime read by raw SQL as an aware UTC datetime (SQLite returns Django's text form)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---- upkeep -----------------------------------------------------------------------------------------------------

_upkeep_lock = threading.Lock()
_upkept_on: date | None = None


def upkeep_if_due(now: datetime) -> None:
    """Run :func:`upkeep` if this process has not yet today (UTC); a failed run is tried again on the next write.

    Never waits: a write that finds another thread doing it goes on."""
    global _upkept_on
    if _upkept_on == now.date() or not _upkeep_lock.acquire(blocking=False):
        return
    try:
        if _upkept_on != now.date():
            upkeep(now)
            _upkept_on = now.date()
    except OperationalError as exc:
        if not partitions.lock_timed_out(exc):
            raise
        log.warning("trend storage upkeep postponed: a table stayed locked")
    finally:
        _upkeep_lock.release()


def upkeep(now: datetime | None = None) -> dict[str, Any]:
    """Partitions ahead for every partitioned tier, expired data dropped; what it did. Idempotent."""
    now = now or datetime.now(UTC)
    done: dict[str, Any] = {"created": [], "dropped": [], "deleted": {}}
    ahead = now + timedelta(days=conf.partitions_ahead_days())
    for tier in TIERS:
        cutoff = tier.cutoff(now)
        if postgres() and tier.partitioned:
            done["created"] += partitions.ensure(tier.table, [(now, ahead)], tier.partition_days)
            if cutoff is not None:
                done["dropped"] += partitions.drop_before(tier.table, cutoff)
        elif cutoff is not None:
            done["deleted"][tier.key] = _delete_before(tier, cutoff)
    raw_cutoff = RAW.cutoff(now)
    if raw_cutoff is not None:
        RollupDue.objects.filter(bucket__lt=raw_cutoff - DAY).delete()
    return done


def _delete_before(tier: Tier, cutoff: datetime) -> int:
    """Delete the rows of an unpartitioned tier before ``cutoff``, a day of them per transaction."""
    deleted = 0
    expired = tier.model.objects.filter(**{f"{tier.column}__lt": cutoff})
    while True:
        oldest = expired.aggregate(oldest=Min(tier.column))["oldest"]
        if oldest is None:
            return deleted
        with transaction.atomic():
            deleted += expired.filter(**{f"{tier.column}__lt": min(day_of(oldest) + DAY, cutoff)}).delete()[0]
