"""The embedded shape (SQLite): the same storage API and roll-ups as PostgreSQL, without partitions.

These tests run only under the embedded settings; the PostgreSQL run starts them in a subprocess
(:func:`test_the_embedded_shape_trends_to_sqlite`), so one ``pytest`` covers both shapes::

    python -m pytest -q tests/trends/test_embedded.py --ds=bms.settings.embedded
"""

import os
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from bms.trends import maintenance, storage
from bms.trends.models import GOOD_CODE, QUALITY_CODES, DailyRollup, HourlyRollup, RollupDue, Sample
from redundancy import history

ROOT = Path(__file__).resolve().parents[2]
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="runs under bms.settings.embedded")


@pytest.mark.skipif(connection.vendor == "sqlite", reason="this is the launcher")
def test_the_embedded_shape_trends_to_sqlite(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bms.settings.embedded", "DATABASE_URL": f"sqlite:///{tmp_path}/db"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "--ds=bms.settings.embedded"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" in result.stdout  # the launcher skips itself there


@sqlite_only
@pytest.mark.django_db
def test_samples_are_stored_once_and_found_by_cursor(now):
    rows = [(1, now + timedelta(seconds=s), float(s), GOOD_CODE) for s in range(20)]
    rows.append((1, now + timedelta(seconds=30), None, QUALITY_CODES["comm_failure"]))
    assert storage.write_samples(rows, now=now) == 21
    assert storage.write_samples(rows, now=now) == 0
    origin = Sample.stored_origins()[0]
    assert Sample.stored_tops() == {origin: Sample.objects.order_by("-origin_seq").first().origin_seq}
    assert Sample.objects.get(time=now + timedelta(seconds=30)).value is None
    batches, _ = history.rows_after({}, limit=500)
    batch = next(batch for batch in batches if batch["table"] == "trends.sample")
    partner = dict(batch, origin="backup", rows=[list(row) for row in batch["rows"]])
    at = {name: index for index, name in enumerate(batch["fields"])}
    for row in partner["rows"]:
        row[at["origin"]], row[at["point_id"]] = "backup", 2
    history.store_rows(partner)
    history.store_rows(partner)
    assert Sample.objects.filter(origin="backup", point_id=2).count() == 21


@sqlite_only
@pytest.mark.django_db
def test_rollups_and_retention_work_the_same(now, settings):
    start = storage.day_of(now) - timedelta(days=2)
    rows = [(7, start + timedelta(minutes=7 * i), float(i % 17), GOOD_CODE) for i in range(400)]
    rows += [(7, start + timedelta(minutes=7 * i + 1), 999.0, QUALITY_CODES["bad"]) for i in range(0, 400, 9)]
    storage.write_samples(rows, now=now)
    done = maintenance.roll_up(now)
    assert done["hours"] > 40 and done["days"] == 2 and not RollupDue.objects.exists()
    hour = start + timedelta(hours=3)
    good = [
        (when, value)
        for point, when, value, quality in rows
        if quality == GOOD_CODE and hour <= when < hour + storage.HOUR
    ]
    row = HourlyRollup.objects.get(point_id=7, bucket=hour)
    values = [value for _, value in good]
    assert (row.minimum, row.maximum, row.samples, row.last) == (min(values), max(values), len(values), good[-1][1])
    assert row.average == pytest.approx(statistics.fmean(values))
    day = DailyRollup.objects.get(point_id=7, bucket=start)
    day_values = [
        value for point, when, value, quality in rows if quality == GOOD_CODE and start <= when < start + storage.DAY
    ]
    assert (day.samples, day.minimum, day.maximum) == (len(day_values), min(day_values), max(day_values))
    assert day.average == pytest.approx(statistics.fmean(day_values))

    settings.BMS_TREND_RAW_RETENTION_DAYS = 1
    result = storage.upkeep(now)
    assert result["deleted"]["raw"] > 0
    assert not Sample.objects.filter(time__lt=now - timedelta(days=1)).exists()
    assert DailyRollup.objects.filter(bucket=start).exists()  # the daily tier is kept forever
