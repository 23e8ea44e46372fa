"""Roll-ups on real PostgreSQL: equal to aggregates computed by SQL over the raw rows, idempotent, redone late."""

import random
from datetime import timedelta

import pytest
from django.db import connection

from bms.trends import maintenance, rollups, storage
from bms.trends.models import GOOD_CODE, QUALITY_CODES, DailyRollup, HourlyRollup, RollupDue

pytestmark = pytest.mark.django_db
BAD = QUALITY_CODES["bad"]


def raw_aggregates(width: str) -> dict[tuple[int, object], tuple]:
    """What the roll-ups must hold, by plain SQL over the raw rows: the good samples with a value, per bucket."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT point_id, date_trunc('{width}', time) AS bucket, MIN(value), MAX(value), AVG(value), COUNT(*),"
            " (array_agg(value ORDER BY time DESC))[1], MAX(time)"
            " FROM trends_sample WHERE quality = %s AND value IS NOT NULL GROUP BY point_id, bucket",
            [GOOD_CODE],
        )
        return {(row[0], row[1]): row[2:] for row in cursor.fetchall()}


def stored(model) -> dict[tuple[int, object], tuple]:
    fields = ("minimum", "maximum", "average", "samples", "last", "last_time")
    return {(row[0], row[1]): row[2:] for row in model.objects.values_list("point_id", "bucket", *fields)}


def assert_equal(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for key, (mn, mx, avg, count, last, last_time) in expected.items():
        got = actual[key]
        assert (got[0], got[1], got[3], got[4], got[5]) == (mn, mx, count, last, last_time), key
        assert got[2] == pytest.approx(avg, rel=1e-12), key


@pytest.fixture
def samples(now):
    """Three points over three days, every few minutes, with bad samples and quality samples without a value."""
    rng = random.Random(7)
    start = storage.day_of(now) - timedelta(days=3)
    rows = []
    for point in (11, 12, 13):
        at = start
        while at < start + timedelta(days=3):
            quality = BAD if rng.random() < 0.1 else GOOD_CODE
            value = None if rng.random() < 0.05 else round(rng.uniform(-50, 50), 3)
            rows.append((point, at, value, quality))
            at += timedelta(seconds=rng.randint(60, 900))
    storage.write_samples(rows, now=now)
    return start


def test_hourly_and_daily_rollups_equal_sql_aggregates_over_the_raw_rows(samples, now):
    assert RollupDue.objects.filter(tier="hour").count() == 72
    done = maintenance.roll_up(now)
    assert done["hours"] == 72 and done["days"] == 3
    assert_equal(raw_aggregates("hour"), stored(HourlyRollup))
    assert_equal(raw_aggregates("day"), stored(DailyRollup))
    assert not RollupDue.objects.exists()
    stamps = set(HourlyRollup.objects.values_list("origin_seq", flat=True))
    assert len(stamps) == HourlyRollup.objects.count()  # one stamp per row: they replicate like any history row


def test_rolling_up_again_changes_nothing_and_sends_nothing(samples, now):
    maintenance.roll_up(now)
    before = set(HourlyRollup.objects.values_list("point_id", "bucket", "origin_seq", "average"))
    days = set(DailyRollup.objects.values_list("point_id", "bucket", "origin_seq"))
    storage.mark_due(RollupDue.HOUR, {bucket for _, bucket, _, _ in before})  # as if every hour were touched again
    done = maintenance.roll_up(now)
    assert done["hours"] == 72 and done["rows"] == 0  # recomputed, the same figures: no row rewritten, no new stamp
    assert set(HourlyRollup.objects.values_list("point_id", "bucket", "origin_seq", "average")) == before
    assert set(DailyRollup.objects.values_list("point_id", "bucket", "origin_seq")) == days


def test_a_late_sample_redoes_its_hour_and_day(samples, now):
    maintenance.roll_up(now)
    hour = samples + timedelta(hours=5)
    old = HourlyRollup.objects.get(point_id=11, bucket=hour)
    storage.write_samples([(11, hour + timedelta(minutes=59, seconds=59), 1000.0, GOOD_CODE)], now=now)
    assert list(RollupDue.objects.values_list("tier", "bucket")) == [("hour", hour)]
    maintenance.roll_up(now)
    new = HourlyRollup.objects.get(point_id=11, bucket=hour)
    assert (new.maximum, new.last, new.samples) == (1000.0, 1000.0, old.samples + 1)
    assert new.origin_seq > old.origin_seq  # a new version: it replaces the old one on the partner too
    assert HourlyRollup.objects.get(point_id=12, bucket=hour).origin_seq < new.origin_seq  # untouched rows kept
    assert DailyRollup.objects.get(point_id=11, bucket=samples).maximum == 1000.0
    assert_equal(raw_aggregates("hour"), stored(HourlyRollup))
    assert_equal(raw_aggregates("day"), stored(DailyRollup))


def test_an_hour_is_rolled_up_only_after_it_ended_and_the_grace(now, settings):
    settings.BMS_TREND_ROLLUP_GRACE_SECONDS = 120
    hour = storage.hour_of(now)
    storage.write_samples([(1, hour + timedelta(minutes=1), 1.0, GOOD_CODE)], now=now)
    assert rollups.run(hour + timedelta(minutes=61))["hours"] == 0
    assert rollups.run(hour + timedelta(minutes=62, seconds=1))["hours"] == 1


def test_a_replicated_rollup_replaces_an_older_version_only(now):
    bucket = storage.hour_of(now)
    row = (1, bucket, 1.0, 2.0, 1.5, 2, 2.0, bucket + timedelta(minutes=5))
    storage.upsert_rollups(storage.HOURLY, [(*row, "main", 4, 100)])
    storage.upsert_rollups(storage.HOURLY, [(1, bucket, 9.0, 9.0, 9.0, 1, 9.0, bucket, "backup", 3, 500)])  # older
    assert HourlyRollup.objects.get().minimum == 1.0
    storage.upsert_rollups(storage.HOURLY, [(1, bucket, 7.0, 7.0, 7.0, 1, 7.0, bucket, "backup", 5, 20)])  # newer
    assert (HourlyRollup.objects.get().minimum, HourlyRollup.objects.get().origin) == (7.0, "backup")
