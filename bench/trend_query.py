"""Trend queries: one year of one-minute samples of one point, asked for the whole year and for one day.

Run by hand from the repository root, with PostgreSQL on loopback (found like the tests:
``BMS_TEST_DATABASE_URL``; the bench makes its own database ``<name>_bench_query``)::

    flock /tmp/bench.lock .venv/bin/python bench/trend_query.py
    .venv/bin/python bench/trend_query.py --repeat 50 --keep      # --keep: reuse the loaded database next time

Method
------
1. **Load**: 525,600 samples (one a minute for 365 days, ending at the last full hour, a sine with noise;
   one in a thousand ``bad``) stored by :func:`bms.trends.storage.write_samples` (binary ``COPY``) in
   batches of 50,000; the hourly and daily roll-ups computed by one aggregate query each and stored by
   :func:`bms.trends.storage.upsert_rollups` (what the roll-up pass writes), then ``VACUUM ANALYZE``.
2. **Query**: ``GET /api/v1/trends/?points=p&start=&end=&max_points=`` through Django's test client (the
   whole stack: middleware, session, DRF, JSON), ``--repeat`` times each, for the year (default
   ``max_points`` 1000 and the largest, 10,000) and for one day (the raw samples).
3. **Baseline**, measured in the same run: a plain SQL ``SELECT`` of the rows the answer is made from (the
   year's 8,760 hourly rows; the day's 1,440 raw rows), on the same connection.

Goal: the year's query under 200 ms (p99). Results also go to ``bench/results/trend_query-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS_DIR, summarize, without_nan  # noqa: E402

GOAL_MS = 200.0
POINT = "bench_temp"
MINUTES = 365 * 24 * 60


def with_name(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def setup_django(url: str, keep: bool) -> bool:
    """Point Django at the bench database (made and migrated afresh unless ``keep`` finds it); True: loaded."""
    import psycopg

    name = urlparse(url).path.strip("/")
    with psycopg.connect(with_name(url, "postgres"), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if exists and not keep:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or not keep:
            admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DJANGO_SETTINGS_MODULE"] = "bms.settings.test"
    os.environ["BMS_TEST_DATABASE_URL"] = url
    os.environ.setdefault("BMS_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bms.points.models import Point

    return keep and exists and Point.objects.filter(name=POINT).exists()


def load(end: datetime) -> dict[str, Any]:
    """A year of one-minute samples of one point up to ``end``, and its roll-ups; timings."""
    from django.db import connection, transaction

    from bms.points.models import Device, Point
    from bms.trends import storage
    from bms.trends.models import GOOD_CODE, QUALITY_CODES, RollupDue

    device = Device.objects.create(name="bench", host="127.0.0.1", port=1502)
    point = Point.objects.create(device=device, name=POINT, address="ir:0", data_type="float32", unit="degC")
    rng = random.Random(10)
    start = end - timedelta(minutes=MINUTES)
    began = time.perf_counter()
    batch: list[tuple] = []
    for minute in range(MINUTES):
        at = start + timedelta(minutes=minute)
        value = 21 + 4 * math.sin(minute / 1440 * 2 * math.pi) + rng.gauss(0, 0.3)
        quality = QUALITY_CODES["bad"] if rng.random() < 0.001 else GOOD_CODE
        batch.append((point.pk, at, round(value, 3), quality))
        if len(batch) == 50_000:
            storage.write_samples(batch, now=end)
            batch = []
    if batch:
        storage.write_samples(batch, now=end)
    copied = time.perf_counter() - began
    began = time.perf_counter()
    for tier, source, sql in (
        (
            storage.HOURLY,
            "trends_sample",
            "SELECT point_id, date_trunc('hour', time) AS b, MIN(value), MAX(value), AVG(value), COUNT(*),"
            " (array_agg(value ORDER BY time DESC))[1], MAX(time) FROM trends_sample"
            f" WHERE quality = {GOOD_CODE} AND value IS NOT NULL GROUP BY point_id, b",
        ),
        (
            storage.DAILY,
            "trends_hourly",
            "SELECT point_id, date_trunc('day', bucket) AS b, MIN(minimum), MAX(maximum),"
            " SUM(average * samples) / SUM(samples), SUM(samples), (array_agg(last ORDER BY last_time DESC))[1],"
            " MAX(last_time) FROM trends_hourly GROUP BY point_id, b",
        ),
    ):
        with connection.cursor() as cursor:
            cursor.execute(sql)
            rows = [(p, b, mn, mx, float(av), int(n), last, lt) for p, b, mn, mx, av, n, last, lt in cursor]
        with transaction.atomic():
            storage.upsert_rollups(tier, storage.stamp_rollups(rows))
        del source
    RollupDue.objects.all().delete()
    rolled = time.perf_counter() - began
    with connection.cursor() as cursor:
        for table in ("trends_sample", "trends_hourly", "trends_daily"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    return {"samples": MINUTES, "copy_seconds": copied, "rollup_seconds": rolled}


def timed(function, repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` calls (after two warm-up calls)."""
    for _ in range(2):
        function()
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        out.append((time.perf_counter() - began) * 1000)
    return out


def measure(repeat: int) -> dict[str, Any]:
    """The API queries and their SQL baselines."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]

    from bms.points.models import Point
    from bms.trends.models import Sample

    user = User.objects.filter(username="bench").first() or User.objects.create_user("bench", password="bench-pass-1")
    client = Client()
    client.force_login(user)
    point = Point.objects.get(name=POINT)
    last = Sample.objects.filter(point_id=point.pk).order_by("-time").values_list("time", flat=True).first()
    end = last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    year = (end - timedelta(days=365), end)
    day = (end - timedelta(days=1), end)
    cases = {
        "year, max_points 1000": (year, 1000),
        "year, max_points 10000": (year, 10_000),
        "day, max_points 1000": (day, 1000),
    }
    results: dict[str, Any] = {}
    for label, ((start, stop), max_points) in cases.items():
        params = {"points": POINT, "start": start.isoformat(), "end": stop.isoformat(), "max_points": max_points}

        def call(params: dict[str, Any] = params) -> dict[str, Any]:
            response = client.get("/api/v1/trends/", params)
            assert response.status_code == 200, response.content[:300]
            return response

        body = json.loads(call().content)
        results[label] = {
            "resolution": body["resolution"],
            "bucket_seconds": body["bucket_seconds"],
            "buckets": len(body["series"][0]["t"]),
            "bytes": len(call().content),
            "api_ms": summarize(timed(call, repeat)),
        }
    hourly_sql = (
        "SELECT bucket, minimum, maximum, average, samples FROM trends_hourly"
        " WHERE point_id = %s AND bucket >= %s AND bucket < %s"
    )
    raw_sql = "SELECT time, value, quality FROM trends_sample WHERE point_id = %s AND time >= %s AND time < %s"

    def select(sql: str, window: tuple[datetime, datetime]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, [point.pk, *window])
            return len(cursor.fetchall())

    baselines = {
        "year: SELECT hourly rows": (hourly_sql, year),
        "day: SELECT raw rows": (raw_sql, day),
    }
    for label, (sql, window) in baselines.items():
        results[label] = {
            "rows": select(sql, window),
            "sql_ms": summarize(timed(lambda s=sql, w=window: select(s, w), repeat)),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed repetitions per case (default 30)")
    parser.add_argument("--keep", action="store_true", help="reuse the bench database if it is already loaded")
    args = parser.parse_args()
    started = datetime.now(UTC)
    base = os.environ.get("BMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bms")
    url = with_name(base, urlparse(base).path.strip("/") + "_bench_query")
    loaded = setup_django(url, args.keep)
    document: dict[str, Any] = {"database": urlparse(url).path.strip("/"), "repeat": args.repeat}
    if not loaded:
        end = started.replace(minute=0, second=0, microsecond=0)
        document["load"] = load(end)
        print(
            f"loaded {MINUTES:,} samples by COPY in {document['load']['copy_seconds']:.1f} s, "
            f"roll-ups in {document['load']['rollup_seconds']:.1f} s"
        )
    document["results"] = measure(args.repeat)
    print(f"{'case':34} {'tier':>5} {'bucket':>7} {'rows':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for label, result in document["results"].items():
        figures = result.get("api_ms") or result["sql_ms"]
        tier = result.get("resolution", "sql")
        rows = result.get("buckets", result.get("rows"))
        print(
            f"{label:34} {tier:>5} {result.get('bucket_seconds', ''):>7} {rows:>6} "
            f"{figures['p50']:8.1f} {figures['p99']:8.1f}"
        )
    year = document["results"]["year, max_points 1000"]["api_ms"]["p99"]
    document["goal_ms"] = GOAL_MS
    document["met"] = year < GOAL_MS
    print(f"goal: the year's query p99 < {GOAL_MS:.0f} ms: {'met' if document['met'] else 'NOT met'} ({year:.1f} ms)")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"trend_query-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    environment = {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    body = {"benchmark": "trend_query", "started": started.isoformat(), "environment": environment, **document}
    path.write_text(json.dumps(without_nan(body), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
