"""The web manager's pages for a user restricted to ``north``: points, events, the alarm console and its actions,
the journal and its CSV export, the trend page. Nothing of ``south`` may be on them (its device, points, alarms,
areas, events); an unrestricted engineer's pages show south, so the pages are not empty by accident."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from bms.alarms.actions import UNKNOWN_ALARM
from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.events.models import Event
from bms.points.models import Point
from tests.sites.conftest import Sites
from tests.sites.test_live_scope import PlayedEngine, layer  # noqa: F401  (the channel layer and its hub)

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(user: User, path: str, **params: str) -> str:
    response = browser(user).get(path, params)
    assert response.status_code == 200, (path, response.status_code)
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def no_south(text: str) -> bool:
    return "south" not in text.lower()


@pytest.fixture
def alarms(sites: Sites) -> None:
    """A high alarm on each site's temperature (area named after the site) and journal rows of both."""
    high = AlarmClass.objects.get(name="high")
    for minutes, site in enumerate(("north", "south")):
        point = Point.objects.get(name=f"{site}_temp")
        AlarmDefinition.objects.create(point=point, kind="high", limit=25.0, alarm_class=high, area=f"{site} hall")
        AlarmJournal.objects.create(
            time=T0 + timedelta(minutes=minutes),
            alarm=f"{site}_temp.high",
            point_name=point.name,
            transition="raised",
            state="active_unacked",
            value=31.0,
            priority=300,
            alarm_class="high",
            area=f"{site} hall",
            message=f"{site}_temp above 25",
        )


def test_the_points_page_lists_north_only(sites, north_users, everywhere):
    text = page(north_users["operator"], "/points/")
    assert "north_plc" in text and "north_temp" in text and "north_setpoint" in text
    assert no_south(text)
    assert "south_setpoint" in page(everywhere, "/points/")


def test_the_events_page_lists_north_events_only(sites, north_users, everywhere):
    for source in ("north_plc", "north_temp", "south_plc", "south_temp", "main"):
        Event.objects.create(
            time=T0, kind="comm_lost", source=source, severity="error", message=f"lost {source}", origin="main"
        )
    text = page(north_users["viewer"], "/events/")
    assert "lost north_plc" in text and "lost north_temp" in text
    assert no_south(text) and "lost main" not in text  # the pair's own events belong to no site
    assert "lost south_temp" in page(everywhere, "/events/")


def test_the_alarm_console_journal_and_export_hold_north_only(alarms, north_users, everywhere):
    console = page(north_users["operator"], "/alarms/")
    assert "north hall" in console and no_south(console)
    journal = page(north_users["operator"], "/alarms/journal/")
    assert "north_temp.high" in journal and no_south(journal)
    assert "1 entry match" in " ".join(journal.split())  # the count too
    searched = page(north_users["operator"], "/alarms/journal/", point="south")
    assert "0 entries match" in " ".join(searched.split()) and "south_temp.high" not in searched
    export = list(csv.reader(io.StringIO(page(north_users["operator"], "/alarms/journal.csv"))))
    assert [row[1] for row in export[1:]] == ["north_temp.high"]
    everything = page(everywhere, "/alarms/journal.csv")
    assert "south_temp.high" in everything and "south hall" in page(everywhere, "/alarms/")


def act(user: User, names: list[str]) -> tuple[int, dict]:
    body = json.dumps({"action": "acknowledge", "alarms": names})
    response = browser(user).post("/alarms/action", body, content_type="application/json")
    return response.status_code, response.json()


def test_a_console_action_on_a_south_alarm_is_one_on_an_unknown_alarm(alarms, north_users):
    operator = north_users["operator"]
    status, theirs = act(operator, ["south_temp.high"])
    assert (status, theirs) == (
        200,
        {"action": "acknowledge", "done": [], "unchanged": [], "refused": {"south_temp.high": UNKNOWN_ALARM}},
    )
    assert act(operator, ["nowhere.high"]) == (200, {**theirs, "refused": {"nowhere.high": UNKNOWN_ALARM}})


@pytest.mark.django_db(transaction=True)  # the view runs in a thread while the test plays the engine
@pytest.mark.usefixtures("layer")
async def test_a_console_action_reaches_the_engine_with_north_alarms_only(north_users):
    await sync_to_async(_definitions)()
    engine = PlayedEngine()
    await engine.start(north_temp=30.0, south_temp=31.0, north_setpoint=20.0, south_setpoint=20.0)  # both raised
    names = ["south_temp.high", "north_temp.high", "nowhere.high"]
    acting = asyncio.ensure_future(sync_to_async(act)(north_users["operator"], names))
    request = await engine.answer_action()
    assert request["alarms"] == ["north_temp.high"]  # another site's name never reaches the engine
    assert await acting == (
        200,
        {
            "action": "acknowledge",
            "done": ["north_temp.high"],
            "unchanged": [],
            "refused": {"south_temp.high": UNKNOWN_ALARM, "nowhere.high": UNKNOWN_ALARM},
        },
    )
    assert (engine.state("north_temp.high"), engine.state("south_temp.high")) == ("active_acked", "active_unacked")
    # the words are the engine's own for a name it runs no alarm for
    assert engine.alarms.act("acknowledge", ["nowhere.high"], "otto", "", None, False)["refused"] == {
        "nowhere.high": UNKNOWN_ALARM
    }
    await sync_to_async(connections.close_all)()  # the views' thread's connection: the test database is dropped later


def _definitions() -> None:
    high = AlarmClass.objects.get(name="high")
    for name in ("north_temp", "south_temp"):
        AlarmDefinition.objects.create(point=Point.objects.get(name=name), kind="high", limit=25.0, alarm_class=high)


def test_the_trend_page_charts_north_and_lists_south_as_unknown(sites, north_users):
    client = browser(north_users["viewer"])
    theirs = client.get("/trends/", {"points": "north_temp,south_temp"})
    missing = client.get("/trends/", {"points": "north_temp,nowhere_temp"})
    assert [point.name for point in theirs.context["points"]] == ["north_temp"]
    assert (theirs.context["unknown"], missing.context["unknown"]) == (["south_temp"], ["nowhere_temp"])
    assert theirs.context["point_names"] == missing.context["point_names"] == "north_temp"
    assert theirs.context["too_many"] is missing.context["too_many"] is False
