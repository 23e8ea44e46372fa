"""Hourly and daily roll-ups: computed on the active node for the buckets marked due, idempotently.

Writing samples marks their UTC hours due (``RollupDue``, in the same
transaction). A pass takes the due hours that ended at least the grace
period ago, newest first, and for each computes min, max, average, count and
the last value of every point's good samples with one aggregate query over
the raw rows; rows are upserted with new stamps only where the values
changed (a recomputation that finds the same figures sends nothing to the
partner). The hour's day is then marked due; a day is computed from its
hourly rows once none of its hours is still due. The mark is removed only if
no write touched the bucket meanwhile (its version), so a sample committed
during the computation is rolled up by the next pass.

The same pass on the same rows gives the same result: running it twice, or
on both nodes, changes nothing. Buckets older than their source's retention
are dropped from the due list without computing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from bms.trends import conf, storage
from bms.trends.models import GOOD_CODE, RollupDue
from bms.trends.storage import DAILY, DAY, HOUR, HOURLY, RAW, day_of, from_db_datetime

_HOUR_SQL = (
    "SELECT a.point_id, a.mn, a.mx, a.av, a.n, s.value, a.lt FROM ("
    " SELECT point_id, MIN(value) AS mn, MAX(value) AS mx, AVG(value) AS av, COUNT(*) AS n, MAX(time) AS lt"
    " FROM trends_sample WHERE time >= %s AND time < %s AND quality = %s AND value IS NOT NULL"
    " GROUP BY point_id) a"
    " JOIN trends_sample s ON s.point_id = a.point_id AND s.time = a.lt AND s.time >= %s AND s.time < %s"
    " ORDER BY a.point_id"
)
_DAY_SQL = (
    "SELECT a.point_id, a.mn, a.mx, a.av, a.n, h.last, a.lt FROM ("
    " SELECT point_id, MIN(minimum) AS mn, MAX(maximum) AS mx, SUM(average * samples) / SUM(samples) AS av,"
    " SUM(samples) AS n, MAX(last_time) AS lt"
    " FROM trends_hourly WHERE bucket >= %s AND bucket < %s AND samples > 0 GROUP BY point_id) a"
    " JOIN trends_hourly h ON h.point_id = a.point_id AND h.last_time = a.lt AND h.bucket >= %s AND h.bucket < %s"
    " ORDER BY a.point_id"
)


def compute_hour(bucket: datetime) -> list[tuple]:
    """The roll-ups of the hour starting at ``bucket``, per point, from the raw samples (not stamped)."""
    return _aggregate(_HOUR_SQL, bucket, HOUR, with_quality=True)


def compute_day(bucket: datetime) -> list[tuple]:
    """The roll-ups of the day starting at ``bucket``, per point, from the hourly roll-ups (not stamped)."""
    return _aggregate(_DAY_SQL, bucket, DAY, with_quality=False)


def _aggregate(sql: str, bucket: datetime, width: timedelta, with_quality: bool) -> list[tuple]:
    adapt = connection.ops.adapt_datetimefield_value
    start, end = adapt(bucket), adapt(bucket + width)
    params = [start, end, GOOD_CODE, start, end] if with_quality else [start, end, start, end]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            (point, bucket, mn, mx, float(av), int(n), last, from_db_datetime(last_time))
            for point, mn, mx, av, n, last, last_time in cursor.fetchall()
        ]


def run(now: datetime | None = None, limit: int = 48) -> dict[str, Any]:
    """One pass: up to ``limit`` due hours, then up to ``limit`` due days; what it did. Idempotent."""
    now = now or datetime.now(UTC)
    ready = now - timedelta(seconds=conf.rollup_grace_seconds())
    done = {"hours": 0, "days": 0, "rows": 0, "skipped": 0}
    raw_cutoff, hourly_cutoff = RAW.cutoff(now), HOURLY.cutoff(now)
    due_hours = RollupDue.objects.filter(tier=RollupDue.HOUR, bucket__lte=ready - HOUR).order_by("-bucket")
    for bucket, version in due_hours.values_list("bucket", "version")[:limit]:
        with transaction.atomic():
            if raw_cutoff is None or bucket >= raw_cutoff:
                rows = storage.stamp_rollups(compute_hour(bucket))
                done["rows"] += storage.upsert_rollups(HOURLY, rows, changed_only=True)
                storage.mark_due(RollupDue.DAY, [day_of(bucket)])
                done["hours"] += 1
            else:
                done["skipped"] += 1
            RollupDue.objects.filter(tier=RollupDue.HOUR, bucket=bucket, version=version).delete()
    due_days = RollupDue.objects.filter(tier=RollupDue.DAY, bucket__lte=ready - DAY).order_by("-bucket")
    for bucket, version in due_days.values_list("bucket", "version")[:limit]:
        if RollupDue.objects.filter(tier=RollupDue.HOUR, bucket__gte=bucket, bucket__lt=bucket + DAY).exists():
            continue  # an hour of it is still to be computed: the day waits for it
        with transaction.atomic():
            if hourly_cutoff is None or bucket >= hourly_cutoff:
                rows = storage.stamp_rollups(compute_day(bucket))
                done["rows"] += storage.upsert_rollups(DAILY, rows, changed_only=True)
                done["days"] += 1
            else:
                done["skipped"] += 1
            RollupDue.objects.filter(tier=RollupDue.DAY, bucket=bucket, version=version).delete()
    return done
