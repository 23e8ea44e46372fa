"""Trend storage: raw samples and their hourly and daily roll-ups, all history rows of the pair (ADR 0015).

* :class:`Sample`: one recorded value of one point, keyed by ``(point, time)``
  (its primary key), stamped ``(origin, epoch, origin_seq)`` like every
  history row. On PostgreSQL the table is partitioned by ``time``
  (``bms.trends.partitions``), which is why the stamp has an index, not a
  unique constraint: a unique key of a partitioned table must contain the
  partition key. Replication finds rows by that index and stores them
  idempotently by ``(point, time)`` (:meth:`TrendHistory.store_replicated`).
* :class:`HourlyRollup`, :class:`DailyRollup`: min, max, average, count and
  last of the good samples of a point in one UTC hour (day). Computed on the
  active node (``bms.trends.rollups``) and replicated as mutable history
  rows: a recomputation takes a new stamp and the newest version wins on
  both nodes. Hourly rows are partitioned on PostgreSQL too.
* :class:`RollupDue`: node-local, not replicated: the buckets whose roll-ups
  must be computed (again) because samples arrived for them.

Samples refer to their point by id without a database constraint: history
outlives configuration (a deleted point's samples stay until retention drops
them), and a COPY of thousands of rows must not check a foreign key per row.
"""

from __future__ import annotations

from django.db import models

from bms.engine.image import BAD, COMM_FAILURE, GOOD, OUT_OF_SERVICE, STALE, UNCERTAIN
from bms.history.models import HistoryRow

#: the stored code of each quality; never renumber (rows on disk and on the partner keep their codes)
QUALITY_CODES = {GOOD: 0, UNCERTAIN: 1, BAD: 2, COMM_FAILURE: 3, STALE: 4, OUT_OF_SERVICE: 5}
QUALITY_NAMES = {code: name for name, code in QUALITY_CODES.items()}
GOOD_CODE = QUALITY_CODES[GOOD]


class TrendHistory(HistoryRow):
    """A history table that grows large: replication's questions are answered from the stamp index.

    Its origins and their highest ``origin_seq`` come from the stamp index
    as for every history table (:meth:`HistoryRow.stored_origins`); far
    behind, the rows waiting are also estimated from the stamps. Each
    replication round serves the other history tables first (``BULK``).
    Storing replicated rows is the table's own (``bms.trends.storage``).
    """

    BULK = True

    class Meta:
        abstract = True

    @classmethod
    def count_pending(cls, rows: models.QuerySet, origin: str, after: int) -> int:
        """As every history table when at most :attr:`COUNT_LIMIT` stamps lie above ``after``; beyond, the
        stamps' span.

        Counting the rows above a cursor costs as much as there are: after an outage, millions per round,
        which would stop the catch-up it measures. The span (top stamp - cursor) is an upper bound (stamps of
        other tables and skipped rows are gaps in this one) and costs one index descent; for samples, which
        take most stamps, it is close, where the count's "at least the limit" would say little."""
        top = cls.stored_tops(origin).get(origin, 0)
        if top - after > cls.COUNT_LIMIT:
            return top - after
        return super().count_pending(rows, origin, after)

    @classmethod
    def store_replicated(cls, records: list[dict]) -> bool:
        from bms.trends import storage  # storage reads these models

        storage.store_replicated(cls, records)
        return True


class Sample(TrendHistory):
    """One recorded value of one point at one time: on change, on an interval, or a quality change.

    ``value`` is None when the point has no number to show (no value yet, or
    one that is not a finite number); ``quality`` says how far it can be
    trusted (:data:`QUALITY_CODES`). Append-only: a sample written twice (a
    replayed batch, the same sample from both nodes around a takeover) is
    stored once.
    """

    NATURAL_KEY = ("point", "time")

    pk = models.CompositePrimaryKey("point", "time")
    point = models.ForeignKey(
        "points.Point", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    time = models.DateTimeField(help_text="when the point had this value and quality (UTC)")
    value = models.FloatField(null=True, blank=True, help_text="engineering value; empty: none to show")
    quality = models.PositiveSmallIntegerField(choices=[(code, name) for name, code in QUALITY_CODES.items()])

    class Meta:
        # No unique (origin, origin_seq): impossible on a table partitioned by time (see the module docstring).
        indexes = [
            models.Index(fields=["origin", "origin_seq"], name="trends_sample_stamp"),
            models.Index(fields=["time"], name="trends_sample_time"),  # BRIN on PostgreSQL (the migration)
        ]

    def __str__(self) -> str:
        return f"{self.point_id} {self.time.isoformat()} {self.value} ({QUALITY_NAMES.get(self.quality)})"


class Rollup(TrendHistory):
    """The good samples of one point in one bucket (an hour, a day): min, max, average, count and the last.

    Only samples of quality ``good`` with a value count. The average is the
    mean of the samples (not weighted by time). A recomputation of the bucket
    (samples arrived late) replaces the row with a new stamp; replication
    keeps the newest version on both nodes.
    """

    NATURAL_KEY = ("point", "bucket")

    pk = models.CompositePrimaryKey("point", "bucket")
    point = models.ForeignKey(
        "points.Point", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    bucket = models.DateTimeField(help_text="start of the hour or day (UTC)")
    minimum = models.FloatField()
    maximum = models.FloatField()
    average = models.FloatField()
    samples = models.PositiveIntegerField(help_text="good samples with a value in the bucket")
    last = models.FloatField(help_text="value of the latest good sample")
    last_time = models.DateTimeField(help_text="time of the latest good sample")

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.point_id} {self.bucket.isoformat()}: {self.samples} sample(s), avg {self.average}"


class HourlyRollup(Rollup):
    """The hourly tier (default retention 5 years); partitioned by ``bucket`` on PostgreSQL."""

    class Meta:
        db_table = "trends_hourly"
        indexes = [
            models.Index(fields=["origin", "origin_seq"], name="trends_hourly_stamp"),
            models.Index(fields=["bucket"], name="trends_hourly_bucket"),
        ]


class DailyRollup(Rollup):
    """The daily tier (kept forever by default), computed from the hourly rows of the day."""

    class Meta:
        db_table = "trends_daily"
        constraints = [models.UniqueConstraint(fields=["origin", "origin_seq"], name="trends_daily_stamp")]
        indexes = [models.Index(fields=["bucket"], name="trends_daily_bucket")]


class RollupDue(models.Model):
    """A bucket whose roll-ups must be computed (again): samples (or hourly rows) arrived for it. Node-local.

    Every write that touches the bucket bumps ``version``; a computation
    removes the mark only if the version is still the one it read, so rows
    committed while it ran are rolled up by the next pass.
    """

    HOUR, DAY = "hour", "day"

    tier = models.CharField(max_length=8, choices=[(HOUR, HOUR), (DAY, DAY)])
    bucket = models.DateTimeField()
    version = models.BigIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tier", "bucket"], name="trends_rollupdue_bucket")]

    def __str__(self) -> str:
        return f"{self.tier} {self.bucket.isoformat()} (v{self.version})"
