"""The alarms API for a user restricted to ``north``: south's alarms are answered exactly like alarms that do not exist.

Definitions (list, detail, create, change, delete, out of service), the journal, the operator actions and the
live list. Each south object is tried by id or name next to one that does not exist, and the two answers must be
the same but for the id or name; lists and counts must leave south out. An unrestricted engineer sees both sites,
which shows the south objects are there.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.points.models import Point
from tests.sites.conftest import JsonClient, Sites
from tests.sites.test_live_scope import PlayedEngine, layer  # noqa: F401  (the channel layer and its hub)

DEFINITIONS = "/api/v1/alarm-definitions/"
JOURNAL = "/api/v1/alarms/journal/"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
MISSING_ID = 999_999


@pytest.fixture
def alarms(sites: Sites) -> dict[str, AlarmDefinition]:
    """A high alarm on each site's temperature, each in an area named after its site."""
    high = AlarmClass.objects.get(name="high")
    return {
        site: AlarmDefinition.objects.create(
            point=Point.objects.get(name=f"{site}_temp"), kind="high", limit=25.0, alarm_class=high, area=f"{site} hall"
        )
        for site in ("north", "south")
    }


def same_but_for(answer: Any, other: Any, mine: str, theirs: str) -> bool:
    """Whether two answers are equal once ``theirs`` (an id or name) is written as ``mine`` in the second."""
    return answer.status_code == other.status_code and answer.content.decode() == other.content.decode().replace(
        theirs, mine
    )


def test_definitions_list_and_count_north_only(alarms, north_users, everywhere):
    body = JsonClient(north_users["viewer"]).get(DEFINITIONS).json()
    assert (body["count"], [row["name"] for row in body["results"]]) == (1, ["north_temp.high"])
    filtered = JsonClient(north_users["viewer"]).get(DEFINITIONS, {"point": "south_temp"}).json()
    assert (filtered["count"], filtered["results"]) == (0, [])
    assert JsonClient(everywhere).get(DEFINITIONS).json()["count"] == 2


def test_a_south_definition_by_id_is_one_that_does_not_exist(alarms, north_users):
    south = str(alarms["south"].pk)
    engineer = JsonClient(north_users["engineer"])
    tries = [
        ("get", lambda path: engineer.get(path)),
        ("patch", lambda path: engineer.patch(path, {"limit": 40.0})),
        ("put", lambda path: engineer.put(path, {"point": "north_temp", "kind": "high", "limit": 40, "class": "high"})),
        ("delete", lambda path: engineer.delete(path)),
    ]
    for method, call in tries:
        theirs, missing = call(f"{DEFINITIONS}{south}/"), call(f"{DEFINITIONS}{MISSING_ID}/")
        assert theirs.status_code == 404, method
        assert same_but_for(theirs, missing, south, str(MISSING_ID)), method
    body = {"out_of_service": True, "comment": "works"}
    theirs = JsonClient(north_users["administrator"]).post(f"{DEFINITIONS}{south}/out-of-service", body)
    missing = JsonClient(north_users["administrator"]).post(f"{DEFINITIONS}{MISSING_ID}/out-of-service", body)
    assert theirs.status_code == 404 and same_but_for(theirs, missing, south, str(MISSING_ID))
    alarms["south"].refresh_from_db()
    assert (alarms["south"].limit, alarms["south"].out_of_service) == (25.0, False)  # nothing changed


def test_a_definition_on_a_south_point_is_one_on_an_unknown_point(alarms, north_users):
    engineer = JsonClient(north_users["engineer"])
    for field, extra in (("point", {}), ("setpoint_point", {"kind": "deviation", "limit": 2.0})):
        body = {"point": "north_temp", "kind": "high", "limit": 30.0, "class": "high", **extra}
        theirs = engineer.post(DEFINITIONS, {**body, field: "south_temp"})
        missing = engineer.post(DEFINITIONS, {**body, field: "nowhere_temp"})
        assert theirs.status_code == 400, (field, theirs.content)
        assert same_but_for(theirs, missing, "south_temp", "nowhere_temp"), field
    # moving north's alarm onto a south point: the same refusal
    north = f"{DEFINITIONS}{alarms['north'].pk}/"
    theirs, missing = engineer.patch(north, {"point": "south_temp"}), engineer.patch(north, {"point": "nowhere_temp"})
    assert theirs.status_code == 400 and same_but_for(theirs, missing, "south_temp", "nowhere_temp")
    assert AlarmDefinition.objects.count() == 2
    # its own points are fine
    assert (
        engineer.post(
            DEFINITIONS, {"point": "north_setpoint", "kind": "high", "limit": 28, "class": "high"}
        ).status_code
        == 201
    )


def journal_row(site: str, transition: str, minutes: int) -> AlarmJournal:
    return AlarmJournal.objects.create(
        time=T0 + timedelta(minutes=minutes),
        alarm=f"{site}_temp.high",
        point_name=f"{site}_temp",
        transition=transition,
        state="active_unacked" if transition == "raised" else "normal",
        priority=300,
        alarm_class="high",
        area=f"{site} hall",
    )


def test_the_journal_holds_north_rows_only(alarms, north_users, everywhere):
    for minutes, site in enumerate(("north", "south", "south", "north", "south")):
        journal_row(site, "raised" if minutes < 3 else "returned", minutes)
    journal_row("gone", "raised", 9)  # a point deleted since: of no site
    viewer = JsonClient(north_users["viewer"])
    body = viewer.get(JOURNAL, {"limit": 1}).json()
    assert body["count"] == 2 and body["results"][0]["alarm"] == "north_temp.high"
    assert {row["point"] for row in viewer.get(JOURNAL).json()["results"]} == {"north_temp"}
    for query in ({"point": "south_temp"}, {"alarm": "south_temp.high"}, {"area": "south hall"}):
        assert viewer.get(JOURNAL, query).json()["count"] == 0, query
    assert JsonClient(everywhere).get(JOURNAL).json()["count"] == 6


def test_an_action_on_a_south_alarm_is_one_on_an_unknown_alarm(alarms, north_users):
    operator = JsonClient(north_users["operator"])
    for action in ("acknowledge", "shelve", "unshelve"):
        theirs = operator.post(f"/api/v1/alarms/{action}", {"alarms": ["south_temp.high"]})
        missing = operator.post(f"/api/v1/alarms/{action}", {"alarms": ["nowhere.high"]})
        assert theirs.status_code == 400, action
        assert same_but_for(theirs, missing, "south_temp.high", "nowhere.high"), action
        assert theirs.json()["fields"] == {"alarms": ["There is no alarm named 'south_temp.high'."]}
    # north's own alarm passes the check and goes to the engine (none runs here: 503, nothing was changed)
    own = operator.post("/api/v1/alarms/acknowledge", {"alarms": ["north_temp.high"]})
    assert (own.status_code, own.json()["error"]) == (503, "engine_unavailable")
    # one south name among north's spoils the whole request, as an unknown one does
    mixed = operator.post("/api/v1/alarms/acknowledge", {"alarms": ["north_temp.high", "south_temp.high"]})
    assert mixed.status_code == 400


@pytest.mark.django_db(transaction=True)  # the view runs in a thread while the test plays the engine
@pytest.mark.usefixtures("layer")
async def test_the_live_list_holds_north_alarms_only(north_users, everywhere):
    await sync_to_async(_definitions)()
    engine = PlayedEngine()
    await engine.start(north_temp=30.0, south_temp=31.0, north_setpoint=20.0, south_setpoint=20.0)  # both raised

    async def live(user: Any) -> dict[str, Any]:
        client = await sync_to_async(JsonClient)(user)
        asked = asyncio.ensure_future(sync_to_async(client.get)("/api/v1/alarms/"))
        await engine.answer_snapshot()
        response = await asked
        assert response.status_code == 200, response.content
        return response.json()

    north = await live(north_users["viewer"])
    assert (north["count"], [alarm["name"] for alarm in north["results"]]) == (1, ["north_temp.high"])
    unrestricted = await live(everywhere)
    assert {alarm["name"] for alarm in unrestricted["results"]} == {"north_temp.high", "south_temp.high"}
    await sync_to_async(connections.close_all)()  # the views' thread's connection: the test database is dropped later


def _definitions() -> None:
    high = AlarmClass.objects.get(name="high")
    for name in ("north_temp", "south_temp"):
        AlarmDefinition.objects.create(point=Point.objects.get(name=name), kind="high", limit=25.0, alarm_class=high)
