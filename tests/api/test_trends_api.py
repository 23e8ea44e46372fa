"""``GET /api/v1/trends/`` and ``/api/v1/trends/csv`` on real PostgreSQL: the tier chosen, peaks and quality kept,
buckets bounded, the not-yet-rolled-up tail read from the raw samples, errors, the streamed CSV, the alias."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.http import StreamingHttpResponse

from bms.api.v1.trends import MAX_SERIES, bucket_width
from bms.points.models import Device, Point
from bms.trends import rollups, storage
from bms.trends.models import GOOD_CODE, QUALITY_CODES

pytestmark = pytest.mark.django_db
BAD = QUALITY_CODES["bad"]


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def ask(client, **params):
    response = client.get("/api/v1/trends/", params)
    return response.status_code, json.loads(response.content)


@pytest.fixture
def viewer(as_role):
    return as_role("viewer")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def test_few_samples_are_answered_as_they_are(points, viewer, now):
    temp = points["zone1_temp"]
    rows = [(temp.pk, now - timedelta(minutes=10 - i), 20.0 + i, GOOD_CODE) for i in range(5)]
    rows.append((temp.pk, now - timedelta(minutes=2), None, BAD))
    storage.write_samples(rows)
    status, body = ask(viewer, points="zone1_temp,zone1_setpoint", start=iso(now - timedelta(hours=1)), end=iso(now))
    assert status == 200, body
    assert (body["resolution"], body["bucket_seconds"]) == ("raw", 0)
    first, second = body["series"]
    assert (first["point"], first["unit"], second["point"], second["t"]) == ("zone1_temp", "degC", "zone1_setpoint", [])
    assert first["avg"] == [20.0, 21.0, 22.0, 23.0, 24.0, None]
    assert first["quality"] == ["good"] * 5 + ["bad"]
    assert first["n"] == [1] * 5 + [0]
    assert first["t"][0] == int((now - timedelta(minutes=10)).timestamp() * 1000)


def test_a_day_of_minutes_is_downsampled_from_raw_and_keeps_its_peak_and_bad_quality(points, viewer, now):
    temp = points["zone1_temp"]
    start = now - timedelta(days=1)
    rows = [(temp.pk, start + timedelta(minutes=i), 20.0, GOOD_CODE) for i in range(1440)]
    rows[700] = (temp.pk, rows[700][1], 95.5, GOOD_CODE)  # a one-minute peak
    rows[701] = (temp.pk, rows[701][1], -5.0, GOOD_CODE)  # and a dip
    rows[900] = (temp.pk, rows[900][1], 20.0, BAD)
    storage.write_samples(rows)
    status, body = ask(viewer, points="zone1_temp", start=iso(start), end=iso(now), max_points=100)
    assert status == 200, body
    series = body["series"][0]
    assert body["resolution"] == "raw" and body["bucket_seconds"] == 900  # 1440 min / 99 -> 15 min
    assert len(series["t"]) <= 100
    assert max(series["max"]) == 95.5 and min(series["min"]) == -5.0
    assert sum(series["n"]) == 1439
    bad = [t for t, q in zip(series["t"], series["quality"], strict=True) if q != "good"]
    assert bad == [(int(rows[900][1].timestamp()) // 900) * 900 * 1000]


def test_long_ranges_use_the_roll_ups_and_read_the_tail_from_raw(points, viewer, now):
    temp = points["zone1_temp"]
    start = storage.day_of(now) - timedelta(days=40)
    rows = []
    at = start
    while at < now:
        rows.append((temp.pk, at, 20.0 + (at.hour % 4), GOOD_CODE))
        at += timedelta(minutes=20)
    peak_time = start + timedelta(days=10, hours=5)
    rows.append((temp.pk, peak_time + timedelta(minutes=7), 99.0, GOOD_CODE))
    rows.append((temp.pk, start + timedelta(days=20, hours=3, minutes=1), None, BAD))
    storage.write_samples(rows)
    while rollups.run(limit=2000)["hours"]:
        pass
    tail = (temp.pk, now - timedelta(seconds=30), 77.0, GOOD_CODE)  # in an hour not rolled up yet
    storage.write_samples([tail])

    status, body = ask(viewer, points="zone1_temp", start=iso(start), end=iso(now), max_points=200)
    assert status == 200, body
    hourly = body["series"][0]
    assert body["resolution"] == "hour" and body["bucket_seconds"] == 6 * 3600
    assert len(hourly["t"]) <= 200
    assert max(hourly["max"]) == 99.0
    assert hourly["max"][-1] == 77.0, "the newest, not yet rolled-up samples come from the raw tier"
    assert sum(hourly["n"]) == len(rows) - 1 + 1  # every good sample counted once (the bad one is not)
    bad_bucket = int((start + timedelta(days=20)).timestamp()) * 1000
    assert hourly["quality"][hourly["t"].index(bad_bucket)] == "bad"
    assert hourly["quality"].count("bad") == 1

    status, body = ask(viewer, points="zone1_temp", start=iso(start), end=iso(now), max_points=10)
    assert status == 200, body
    daily = body["series"][0]
    assert body["resolution"] == "day" and body["bucket_seconds"] == 7 * 86400
    assert len(daily["t"]) <= 10 and max(daily["max"]) == 99.0 and daily["max"][-1] == 77.0
    assert sum(daily["n"]) == sum(hourly["n"])
    assert sum(a * n for a, n in zip(daily["avg"], daily["n"], strict=True)) == pytest.approx(
        sum(a * n for a, n in zip(hourly["avg"], hourly["n"], strict=True) if n)
    )


def test_bucket_width_is_round_and_bounded():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for days, max_points in ((365, 1000), (365, 10_000), (1, 1000), (1, 10), (36_000, 10)):
        width = bucket_width(start, start + timedelta(days=days), max_points)
        assert days * 86400 / width + 1 <= max_points, (days, max_points, width)
    assert bucket_width(start, start + timedelta(days=365), 1000) == 12 * 3600
    assert bucket_width(start, start + timedelta(days=365), 10_000) == 3600


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"points": "zone1_temp,nope"}, "points", "no point named 'nope'"),
        ({}, "points", "required"),
        ({"points": "zone1_temp", "start": "yesterday"}, "start", "Datetime has wrong format"),
        ({"points": "zone1_temp", "start": "2026-01-02T00:00Z", "end": "2026-01-01T00:00Z"}, "end", "after start"),
        ({"points": "zone1_temp", "start": "2026-01-01T00:00Z", "end": "2026-01-01T00:00Z"}, "end", "after start"),
        ({"points": "zone1_temp", "max_points": "10001"}, "max_points", "10000"),
        ({"points": "zone1_temp", "max_points": "many"}, "max_points", "valid integer"),
        ({"points": "zone1_temp", "colour": "red"}, "colour", "Unknown query parameter"),
    ],
)
def test_bad_queries_are_400_saying_why(points, viewer, params, field, text):
    status, body = ask(viewer, **params)
    assert status == 400, body
    assert body["error"] == "invalid"
    assert text in json.dumps(body["fields"][field]), body


def test_too_many_points_is_400(points, viewer):
    plant = Device.objects.get(name="plant")
    names = [f"p{i}" for i in range(MAX_SERIES + 1)]
    for i, name in enumerate(names):
        Point.objects.create(device=plant, name=name, address=f"hr:{100 + 2 * i}", data_type="float32")
    status, body = ask(viewer, points=",".join(names))
    assert status == 400 and f"at most {MAX_SERIES} points" in body["fields"]["points"][0]


def test_login_is_needed_and_any_user_may_view(points, as_role):
    status, body = ask(as_role(None), points="zone1_temp")
    assert (status, body["error"]) == (401, "unauthenticated")
    status, _ = ask(as_role("nobody"), points="zone1_temp")
    assert status == 200


def test_csv_export_streams_every_raw_sample(points, viewer, now, monkeypatch):
    from bms.api.v1 import trends

    monkeypatch.setattr(trends, "EXPORT_CHUNK_ROWS", 7)  # several chunks
    temp, setpoint = points["zone1_temp"], points["zone1_setpoint"]
    rows = [(temp.pk, now - timedelta(minutes=30 - i), 20.5 + i, GOOD_CODE) for i in range(20)]
    rows += [(setpoint.pk, now - timedelta(minutes=30 - i), 21.0, GOOD_CODE) for i in range(10)]
    rows.append((setpoint.pk, now - timedelta(minutes=1), None, BAD))
    storage.write_samples(rows)
    response = viewer.get(
        "/api/v1/trends/csv", {"points": "zone1_temp,zone1_setpoint", "start": iso(now - timedelta(hours=1))}
    )
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines[0] == ["time", "point", "value", "quality"]
    assert len(lines) == 1 + 31
    assert lines[1] == [iso(now - timedelta(minutes=30)), "zone1_temp", "20.5", "good"]
    assert lines[-1] == [iso(now - timedelta(minutes=1)), "zone1_setpoint", "", "bad"]
    bad = viewer.get("/api/v1/trends/csv", {"points": "nope"})
    assert bad.status_code == 400 and json.loads(bad.content)["error"] == "invalid"


def test_api_trends_is_an_alias(points, viewer):
    response = viewer.get("/api/trends/", {"points": "zone1_temp"})
    assert response.status_code == 200 and json.loads(response.content)["series"][0]["point"] == "zone1_temp"
