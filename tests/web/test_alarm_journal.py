"""The alarm journal page and its CSV export: filters, paging, the streamed and bounded export."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bms.alarms.models import AlarmJournal
from bms.web import alarm_views

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def row(minutes: float, alarm: str, transition: str, **extra) -> AlarmJournal:
    fields = {
        "time": T0 + timedelta(minutes=minutes),
        "alarm": alarm,
        "point_name": alarm.split(".")[0],
        "transition": transition,
        "state": {"raised": "active_unacked", "acknowledged": "active_acked", "returned": "normal"}.get(
            transition, "normal"
        ),
        "value": 26.5,
        "priority": 300,
        "alarm_class": "high",
        "area": "Zone 1",
        "message": f"{alarm} {transition}",
        **extra,
    }
    entry = AlarmJournal(**fields)
    entry.save()
    return entry


@pytest.fixture
def journal(db) -> list[AlarmJournal]:
    return [
        row(0, "zone1_temp.high", "raised"),
        row(1, "zone1_temp.high", "acknowledged", username="op", comment='=HYPERLINK("http://x")'),
        row(2, "zone1_temp.high", "returned", value=24.0),
        row(3, "meter_power.high", "raised", priority=100, alarm_class="critical", area="Main meter", value=None),
        row(4, "ahu1_fan_status.state_equal", "shelved", alarm_class="medium", area="AHU 1", value=False),
    ]


def export(client, query: str = "") -> tuple[object, list[list[str]]]:
    response = client.get("/alarms/journal.csv" + query)
    text = b"".join(response.streaming_content).decode() if response.status_code == 200 else ""
    return response, list(csv.reader(io.StringIO(text)))


def test_the_journal_shows_the_newest_first(client, alarm_operator, journal):
    client.force_login(alarm_operator)
    page = client.get("/alarms/journal/").content.decode()
    assert "5 entries match" in page
    order = [
        page.index(f'data-alarm="{alarm}" data-transition="{t}"')
        for alarm, t in (
            ("ahu1_fan_status.state_equal", "shelved"),
            ("meter_power.high", "raised"),
            ("zone1_temp.high", "returned"),
            ("zone1_temp.high", "acknowledged"),
            ("zone1_temp.high", "raised"),
        )
    ]
    assert order == sorted(order)
    assert "2026-11-30 08:01:00" in page and "=HYPERLINK" in page  # shown as text on the page (escaped by Django)
    assert '<td class="num">off</td>' in page and '<td class="num">26.5</td>' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "?alarm=ZONE1",
            {("zone1_temp.high", "raised"), ("zone1_temp.high", "acknowledged"), ("zone1_temp.high", "returned")},
        ),
        ("?point=meter", {("meter_power.high", "raised")}),
        ("?transition=raised", {("zone1_temp.high", "raised"), ("meter_power.high", "raised")}),
        ("?alarm_class=Critical", {("meter_power.high", "raised")}),
        ("?area=AHU+1", {("ahu1_fan_status.state_equal", "shelved")}),
        (
            "?since=2026-11-30T08:02&until=2026-11-30T08:03:00",
            {("zone1_temp.high", "returned"), ("meter_power.high", "raised")},
        ),
        ("?alarm=zone1&transition=acknowledged", {("zone1_temp.high", "acknowledged")}),
    ],
)
def test_filters_select_the_same_rows_on_the_page_and_in_the_export(client, alarm_operator, journal, query, expected):
    client.force_login(alarm_operator)
    page = client.get("/alarms/journal/" + query).content.decode()
    assert f"{len(expected)} entr" in page
    for alarm, transition in expected:
        assert f'data-alarm="{alarm}" data-transition="{transition}"' in page
    response, rows = export(client, query)
    assert response.status_code == 200
    assert {(r[1], r[3]) for r in rows[1:]} == expected
    # the export link on the page carries the filters
    link = html.unescape(re.search(r'id="journal-export" href="([^"]*)"', page)[1])
    assert link.startswith("/alarms/journal.csv?")
    assert parse_qs(urlsplit(link).query) == parse_qs(query[1:])


def test_the_area_filter_offers_the_configured_areas(client, alarm_operator, db):
    from bms.alarms.models import AlarmClass, AlarmDefinition
    from bms.points.models import Device, Point

    point = Point.objects.create(
        device=Device.objects.create(name="plant", host="127.0.0.1", port=1502),
        name="zone1_temp",
        address="ir:10",
        data_type="float32",
    )
    AlarmDefinition.objects.create(
        point=point, kind="high", limit=26, alarm_class=AlarmClass.objects.get(name="high"), area="Zone 1"
    )
    client.force_login(alarm_operator)
    assert (
        '<datalist id="journal-areas"><option value="Zone 1"></datalist>'
        in client.get("/alarms/journal/").content.decode()
    )
    assert '<option value="Zone 1">Zone 1</option>' in client.get("/alarms/").content.decode()


def test_bad_filters_are_named_on_the_page_and_refuse_the_export(client, alarm_operator, journal):
    client.force_login(alarm_operator)
    page = client.get("/alarms/journal/?since=yesterday&transition=exploded").content.decode()
    assert "Enter a valid date/time." in page and "Select a valid choice" in page
    assert "0 entries match" in page
    response, _ = export(client, "?since=yesterday")
    assert response.status_code == 400 and b"since" in response.content
    response, _ = export(client, "?since=2026-11-30T09:00&until=2026-11-30T08:00")
    assert response.status_code == 400 and b"before" in response.content


def test_the_export_is_streamed_csv_with_every_column(client, alarm_operator, journal):
    client.force_login(alarm_operator)
    response, rows = export(client)
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="alarm-journal-')
    assert response["X-BMS-Export-Truncated"] == "no"
    assert rows[0] == list(alarm_views.EXPORT_COLUMNS)
    assert len(rows) == 6
    by_key = {(r[1], r[3]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    acked = by_key[("zone1_temp.high", "acknowledged")]
    assert acked["time"] == "2026-11-30T08:01:00.000Z"
    assert acked["state"] == "active_acked" and acked["user"] == "op" and acked["value"] == "26.5"
    assert acked["priority"] == "300" and acked["class"] == "high" and acked["area"] == "Zone 1"
    assert acked["node"] == "main" and acked["recovered"] == "no"
    # a comment that a spreadsheet would run as a formula is escaped
    assert acked["comment"] == '\'=HYPERLINK("http://x")'
    assert by_key[("meter_power.high", "raised")]["value"] == ""
    assert by_key[("ahu1_fan_status.state_equal", "shelved")]["value"] == "false"


def test_the_export_is_bounded(client, alarm_operator, journal, monkeypatch):
    monkeypatch.setattr(alarm_views, "EXPORT_MAX_ROWS", 3)
    client.force_login(alarm_operator)
    response, rows = export(client)
    assert response["X-BMS-Export-Truncated"] == "yes"
    assert [(r[1], r[3]) for r in rows[1:]] == [
        ("ahu1_fan_status.state_equal", "shelved"),
        ("meter_power.high", "raised"),
        ("zone1_temp.high", "returned"),
    ]
    response, rows = export(client, "?alarm=zone1")
    assert response["X-BMS-Export-Truncated"] == "no" and len(rows) == 4


def test_the_journal_pages(client, alarm_operator, db, monkeypatch):
    monkeypatch.setattr(alarm_views, "JOURNAL_PAGE_ROWS", 2)
    for minute in range(5):
        row(minute, f"a{minute}.high", "raised")
    client.force_login(alarm_operator)
    first = client.get("/alarms/journal/?transition=raised").content.decode()
    assert "page 1 of 3" in first and 'data-alarm="a4.high"' in first and 'data-alarm="a2.high"' not in first
    assert 'href="?transition=raised&amp;page=2">Older</a>' in first
    last = client.get("/alarms/journal/?transition=raised&page=3").content.decode()
    assert 'data-alarm="a0.high"' in last and "Newer" in last
