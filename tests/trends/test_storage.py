"""Trend storage on real PostgreSQL: partitions ahead and on demand, retention by dropping, idempotent writes.

Samples here name point ids that need not exist: samples have no foreign-key constraint (history outlives
configuration, and COPY must not check a key per row).
"""

import itertools
from datetime import timedelta

import pytest
from django.db import connection

from bms.history.models import OriginCounter
from bms.trends import partitions, storage
from bms.trends.models import GOOD_CODE, QUALITY_CODES, RollupDue, Sample
from redundancy import history

pytestmark = pytest.mark.django_db


def table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def index_method(index: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relname = %s", [index]
        )
        return cursor.fetchone()[0]


def test_the_sample_table_is_partitioned_by_time_with_a_brin_index_on_time():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_partkeydef('trends_sample'::regclass), pg_get_partkeydef('trends_hourly'::regclass)"
        )
        assert cursor.fetchone() == ('RANGE ("time")', "RANGE (bucket)")
    assert index_method("trends_sample_time") == "brin"
    assert index_method("trends_sample_stamp") == "btree"


def test_upkeep_creates_partitions_ahead_once_and_drops_expired_ones_whole(now, settings):
    settings.BMS_TREND_RAW_RETENTION_DAYS = 30
    settings.BMS_TREND_RAW_PARTITION_DAYS = 7
    settings.BMS_TREND_PARTITIONS_AHEAD_DAYS = 14
    done = storage.upkeep(now)
    raw = partitions.partitions("trends_sample")
    assert [p.name for p in raw] == [name for name in done["created"] if name.startswith("trends_sample_p")]
    assert raw[0].start <= now and raw[-1].end >= now + timedelta(days=14)
    assert all(b.start == a.end for a, b in itertools.pairwise(raw))  # contiguous, no overlaps
    assert all(p.start.weekday() == 0 and (p.end - p.start) == timedelta(days=7) for p in raw)  # Monday to Monday
    assert any(p.name.startswith("trends_hourly_p") for p in partitions.partitions("trends_hourly")) and done["created"]
    assert storage.upkeep(now)["created"] == []  # idempotent

    # Samples over the next five weeks, then forty days later the first of those weeks have expired.
    rows = [(1, now + timedelta(days=day), float(day), GOOD_CODE) for day in range(35)]
    assert storage.write_samples(rows, now=now) == 35
    later = now + timedelta(days=40)
    expired = [p.name for p in partitions.partitions("trends_sample") if p.end <= later - timedelta(days=30)]
    assert expired
    result = storage.upkeep(later)
    assert set(expired) <= set(result["dropped"])
    assert not any(table_exists(name) for name in expired)  # dropped tables, not deleted rows
    kept = list(Sample.objects.order_by("time").values_list("time", flat=True))
    assert kept and kept[0] >= later - timedelta(days=30) - timedelta(days=7)
    assert all(p.end > later - timedelta(days=30) for p in partitions.partitions("trends_sample"))
    assert storage.upkeep(later)["dropped"] == []


def test_a_sample_without_a_partition_makes_only_its_own(now, settings):
    settings.BMS_TREND_RAW_PARTITION_DAYS = 7
    storage.upkeep(now)
    before = {p.name for p in partitions.partitions("trends_sample")}
    far = now + timedelta(days=200)
    assert storage.write_samples([(7, far, 1.0, GOOD_CODE)], now=now) == 1
    made = [p for p in partitions.partitions("trends_sample") if p.name not in before]
    assert len(made) == 1 and made[0].start <= far < made[0].end


def test_samples_are_stamped_consecutively_and_a_replayed_batch_inserts_nothing_twice(now):
    rows = [
        (point, now + timedelta(minutes=minute), float(minute), GOOD_CODE) for point in (1, 2) for minute in range(50)
    ]
    assert storage.write_samples(rows, now=now) == 100
    stamps = list(Sample.objects.order_by("origin_seq").values_list("origin", "origin_seq"))
    first = stamps[0][1]
    assert [seq for _, seq in stamps] == list(range(first, first + 100))
    assert {origin for origin, _ in stamps} == {OriginCounter.objects.get().origin}
    assert storage.write_samples(rows, now=now) == 0  # the same batch again: nothing new
    more = [*rows[50:], (3, now, 9.0, GOOD_CODE)]
    assert storage.write_samples(more, now=now) == 1  # half stored already, one new
    assert Sample.objects.count() == 101
    assert RollupDue.objects.filter(tier="hour").count() == 2  # the two hours the samples touch, marked


def test_quality_samples_keep_their_quality_and_no_value(now):
    storage.write_samples(
        [(5, now, None, QUALITY_CODES["comm_failure"]), (5, now + timedelta(seconds=1), 3.5, 0)], now=now
    )
    assert list(Sample.objects.order_by("time").values_list("value", "quality")) == [
        (None, QUALITY_CODES["comm_failure"]),
        (3.5, QUALITY_CODES["good"]),
    ]


def test_samples_older_than_the_retention_are_not_written(now, settings):
    settings.BMS_TREND_RAW_RETENTION_DAYS = 10
    assert storage.write_samples([(1, now - timedelta(days=11), 1.0, 0), (1, now, 2.0, 0)], now=now) == 1
    assert list(Sample.objects.values_list("value", flat=True)) == [2.0]


def test_replication_finds_samples_by_cursor_and_stores_them_idempotently(now):
    storage.write_samples([(1, now + timedelta(seconds=s), float(s), 0) for s in range(30)], now=now)
    origin = OriginCounter.objects.get().origin
    cursors = history.local_cursors()
    top = cursors["trends.sample"][origin]
    assert Sample.stored_origins() == [origin]
    batches, waiting = history.rows_after({"trends.sample": {origin: top - 10}}, limit=500)
    sent = [batch for batch in batches if batch["table"] == "trends.sample"]
    assert len(sent) == 1 and len(sent[0]["rows"]) == 10 and waiting == 0
    assert set(sent[0]["fields"]) == set(storage.SAMPLE_COLUMNS)
    assert history.store_rows(sent[0]) == top  # the node's own rows back: all there already
    assert Sample.objects.count() == 30

    # The partner's rows (another origin): stored with their stamps, once however often they arrive.
    fields = sent[0]["fields"]
    partner = {
        "table": "trends.sample",
        "origin": "backup",
        "after": 0,
        "fields": fields,
        "rows": [
            [{"origin": "backup", "epoch": 3, "origin_seq": 100 + i, "time": now + timedelta(minutes=5, seconds=i),
              "value": 2.0 * i, "quality": 0, "point_id": 2}[name] for name in fields]
            for i in range(20)
        ],
    }  # fmt: skip
    assert history.store_rows(partner) == 119
    assert history.store_rows(partner) == 119
    assert Sample.objects.filter(origin="backup").count() == 20
    assert Sample.stored_tops() == {origin: top, "backup": 119}
    assert Sample.objects.filter(origin="backup", origin_seq=105).get().value == 10.0
    # A partner row that clashes on (point, time) with ours is skipped, and the stream still moves on.
    changed = {"origin_seq": 200, "point_id": 1, "time": now}
    clash = dict(
        partner, rows=[[changed.get(name, value) for name, value in zip(fields, partner["rows"][0], strict=True)]]
    )
    assert history.store_rows(clash) == 119  # the clashing row is not stored: its seq is not held
    assert Sample.objects.filter(point_id=1, time=now).get().origin == origin


def test_a_sample_backlog_never_holds_back_the_other_history_tables(now):
    from datetime import UTC, datetime

    from bms.events.models import Event

    storage.write_samples([(1, now + timedelta(seconds=s), float(s), 0) for s in range(2000)], now=now)
    Event.objects.create(time=datetime.now(UTC), kind="test", source="test", message="after the samples")
    batches, waiting = history.rows_after({}, limit=500)
    assert [batch["table"] for batch in batches] == ["events.event", "trends.sample"]
    assert len(batches[1]["rows"]) == 499 and waiting == 1501
