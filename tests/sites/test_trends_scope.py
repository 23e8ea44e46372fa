"""Trends for a user restricted to ``north``: south's points are charted and exported exactly like points that do not
exist (400 ``unknown_point``), and an export holds north's samples only. Samples are written to the real tables."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from bms.points.models import Point
from bms.trends import storage
from bms.trends.models import GOOD_CODE
from tests.sites.conftest import JsonClient, Sites

RANGE = {"start": "2026-11-30T07:00:00Z", "end": "2026-11-30T09:00:00Z"}
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def samples(sites: Sites) -> None:
    """Five samples of each site's temperature."""
    rows = []
    for offset, name in enumerate(("north_temp", "south_temp")):
        point = Point.objects.get(name=name)
        rows += [(point.pk, T0 + timedelta(minutes=i), 20.0 + offset * 10 + i, GOOD_CODE) for i in range(5)]
    storage.write_samples(rows)


@pytest.mark.parametrize("path", ["/api/v1/trends/", "/api/v1/trends/csv", "/api/trends/", "/api/trends/csv"])
def test_a_south_point_is_an_unknown_point(samples, north_users, path):
    viewer = JsonClient(north_users["viewer"])
    theirs = viewer.get(path, {"points": "north_temp,south_temp", **RANGE})
    missing = viewer.get(path, {"points": "north_temp,nowhere_temp", **RANGE})
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json() == {
        **missing.json(),
        "detail": missing.json()["detail"].replace("nowhere_temp", "south_temp"),
        "fields": {"points": ["There is no point named 'south_temp'."]},
    }
    assert missing.json()["fields"] == {"points": ["There is no point named 'nowhere_temp'."]}


def test_north_is_charted_and_exported_and_south_only_for_those_who_see_it(samples, north_users, everywhere):
    viewer = JsonClient(north_users["viewer"])
    chart = viewer.get("/api/v1/trends/", {"points": "north_temp", **RANGE}).json()
    assert [series["point"] for series in chart["series"]] == ["north_temp"]
    assert chart["series"][0]["avg"] == [20.0, 21.0, 22.0, 23.0, 24.0]
    export = viewer.get("/api/v1/trends/csv", {"points": "north_temp", **RANGE})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0] == ["time", "point", "value", "quality"]
    assert {row[1] for row in rows[1:]} == {"north_temp"} and len(rows) == 6
    both = JsonClient(everywhere).get("/api/v1/trends/", {"points": "north_temp,south_temp", **RANGE}).json()
    assert both["series"][1]["avg"] == [30.0, 31.0, 32.0, 33.0, 34.0]
