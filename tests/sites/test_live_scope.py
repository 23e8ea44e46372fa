"""The live websocket for a user restricted to some sites: only its sites' points and alarms, and its own counts.

Through the real consumer and this process's hub on the in-memory channel layer, with users in the database.
The engine's side is played by the test as in tests/realtime/, but with the real thing behind it: a process
image and the alarm engine running the definitions of the database (:class:`PlayedEngine`), so the snapshots and
deltas are what a node publishes. A ``north`` viewer must get nothing of ``south``; an unrestricted engineer,
connected at the same time, shows that south's changes and alarms were published all the same.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from bms.alarms.engine import AlarmEngine
from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.alarms.store import read_alarm_specs
from bms.engine import bus
from bms.engine.image import GOOD, ProcessImage
from bms.engine.role import StandaloneRole
from bms.points.models import Point
from bms.realtime import hub as live_hub
from bms.realtime.consumers import LiveConsumer
from bms.schedules.models import Schedule

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer reads the user's sites on its own connection

POINTS = ("north_temp", "north_setpoint", "south_temp", "south_setpoint")
NORTH = {"north_temp", "north_setpoint", "alarm:north_temp.high", "alarms:summary"}


class Journal:
    """The journal outbox as the alarm engine sees it: rows are collected (the journal is not under test here)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.waiting = self.dropped = 0

    def put(self, row: Any) -> None:
        self.rows.append(row)


async def _no_rows(*_args: Any) -> dict:
    return {}


class PlayedEngine:
    """The engine's side of the live stream: a real process image and alarm engine; the test decides when it polls,
    answers the hub's snapshot requests and publishes its deltas on the channel layer."""

    def __init__(self, layer: Any = None) -> None:
        self.layer = layer or get_channel_layer()
        self.image = ProcessImage()
        self.alarms = AlarmEngine(self.image, StandaloneRole(), Journal(), lambda: None, _no_rows)

    async def start(self, **values: float) -> None:
        specs = await sync_to_async(read_alarm_specs)()
        self.image.define([*POINTS, *AlarmEngine.entry_names(specs)])
        await self.alarms.configure(specs)
        await self.alarms.take_control()
        self.read(**values)

    def read(self, **values: float) -> None:
        """A poll that read ``values``, then the alarms evaluated on it."""
        now = datetime.now(UTC)
        self.image.update_many(list(values), list(values.values()), [0.0] * len(values), GOOD, now)
        while self.alarms.run_once(now):
            pass

    async def answer_snapshot(self) -> None:
        request = await asyncio.wait_for(self.layer.receive(bus.engine_channel()), 2)
        assert request["type"] == bus.SNAPSHOT_REQUEST
        self.image.take_delta()  # what the snapshot holds is published with it
        await self.layer.send(request["reply_to"], {"type": bus.LIVE_SNAPSHOT, **self.image.snapshot()})

    async def answer_action(self) -> dict[str, Any]:
        """Answer one operator action as the node's engine does (bms/engine/runner.py); the request."""
        request = await asyncio.wait_for(self.layer.receive(bus.engine_channel()), 2)
        assert request["type"] == bus.ALARM_ACTION
        answer = self.alarms.act(
            request["action"],
            request["alarms"],
            request["user"],
            request["comment"],
            request["seconds"],
            request["until_normal"],
        )
        await self.layer.send(request["reply_to"], {"type": bus.ALARM_RESULT, **answer})
        return request

    def state(self, alarm: str) -> str:
        return self.image.points[f"alarm:{alarm}"].value["state"]

    async def publish(self) -> dict[str, Any]:
        delta = self.image.take_delta()
        assert delta is not None
        await self.layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, **delta})
        return delta


@pytest.fixture
async def layer():
    channel_layer = get_channel_layer()
    await channel_layer.flush()
    yield channel_layer
    await live_hub.stop_hub()


@pytest.fixture
def high_alarms(sites) -> None:
    """A high alarm (above 25) on each site's temperature."""
    high = AlarmClass.objects.get(name="high")
    for name in ("north_temp", "south_temp"):
        AlarmDefinition.objects.create(point=Point.objects.get(name=name), kind="high", limit=25.0, alarm_class=high)


@pytest.fixture
async def engine(layer, high_alarms) -> PlayedEngine:
    played = PlayedEngine(layer)
    await played.start(north_temp=20.0, north_setpoint=21.0, south_temp=20.0, south_setpoint=21.0)
    return played


async def socket(user: User, path: str = "/ws/live/") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), path)
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    assert connected, code
    return communicator


async def test_a_north_user_gets_only_norths_points_and_alarms_and_its_own_counts(engine, north_users, everywhere):
    north = await socket(north_users["viewer"])
    await engine.answer_snapshot()
    snapshot = await north.receive_json_from()
    assert set(snapshot["points"]) == NORTH
    assert snapshot["points"]["alarms:summary"]["value"]["unacked_total"] == 0
    unrestricted = await socket(everywhere)
    assert set((await unrestricted.receive_json_from())["points"]) == {
        *POINTS,
        "alarm:north_temp.high",
        "alarm:south_temp.high",
        "alarms:summary",
    }

    # south's alarm is raised: the unrestricted client sees it and the node's count; the north one nothing at all
    engine.read(south_temp=30.0)
    await engine.publish()
    delta = await unrestricted.receive_json_from()
    assert delta["points"]["alarm:south_temp.high"]["value"]["state"] == "active_unacked"
    assert delta["points"]["alarms:summary"]["value"]["unacked_total"] == 1
    assert await north.receive_nothing(0.1)

    # a north change does reach it, continuing from its snapshot; then its own alarm, counted alone
    engine.read(north_temp=21.0)
    await engine.publish()
    assert await north.receive_json_from() == {
        "type": "delta",
        "from": snapshot["seq"],
        "seq": engine.image.seq,
        "points": {"north_temp": (await unrestricted.receive_json_from())["points"]["north_temp"]},
    }
    engine.read(north_temp=31.0)
    await engine.publish()
    delta = await north.receive_json_from()
    assert set(delta["points"]) == {"north_temp", "alarm:north_temp.high", "alarms:summary"}
    assert delta["points"]["alarms:summary"]["value"]["unacked"] == {"high": 1}
    assert delta["points"]["alarms:summary"]["value"]["unacked_total"] == 1
    assert (await unrestricted.receive_json_from())["points"]["alarms:summary"]["value"]["unacked_total"] == 2

    # and a fresh snapshot (resync) holds the same: north only, its own count
    await north.send_json_to({"type": "resync"})
    again = await north.receive_json_from()
    assert set(again["points"]) == NORTH and again["points"]["alarms:summary"]["value"]["unacked_total"] == 1
    await north.disconnect()
    await unrestricted.disconnect()


async def test_subscribing_to_a_south_point_is_answered_as_for_an_unknown_one(engine, north_users):
    north = await socket(north_users["operator"])
    await engine.answer_snapshot()
    await north.receive_json_from()
    answers = {}
    for name in ("south_temp", "nowhere_temp", "alarm:south_temp.high"):
        await north.send_json_to({"type": "subscribe", "points": [name]})
        answers[name] = await north.receive_json_from()
    assert answers["nowhere_temp"] == {
        "type": "error",
        "code": "unknown_point",
        "message": "unknown point(s): nowhere_temp",
        "points": ["nowhere_temp"],
    }
    for name in ("south_temp", "alarm:south_temp.high"):
        assert answers[name] == {**answers["nowhere_temp"], "message": f"unknown point(s): {name}", "points": [name]}
    # its own point: subscribed, starting with that point's snapshot
    await north.send_json_to({"type": "subscribe", "points": ["north_temp"]})
    assert set((await north.receive_json_from())["points"]) == {"north_temp"}
    # and on to the alarms: still its own, still counted alone
    await north.send_json_to({"type": "subscribe", "family": "alarms"})
    assert set((await north.receive_json_from())["points"]) == {"alarm:north_temp.high", "alarms:summary"}
    engine.read(north_temp=30.0, south_temp=30.0)
    await engine.publish()
    delta = await north.receive_json_from()
    assert set(delta["points"]) == {"alarm:north_temp.high", "alarms:summary"}
    assert delta["points"]["alarms:summary"]["value"]["unacked_total"] == 1
    await north.disconnect()


async def test_the_alarm_families_of_a_north_user_hold_norths_alarms_only(engine, north_users):
    engine.read(north_temp=30.0, south_temp=30.0)  # both alarms raised before anyone connects
    console = await socket(north_users["operator"], "/ws/live/?family=alarms")
    await engine.answer_snapshot()
    snapshot = await console.receive_json_from()
    assert set(snapshot["points"]) == {"alarm:north_temp.high", "alarms:summary"}
    summary = snapshot["points"]["alarms:summary"]["value"]
    assert (summary["unacked_total"], summary["active"]) == (1, {"high": 1})
    header = await socket(north_users["operator"], "/ws/live/?family=alarm-summary")
    assert set((await header.receive_json_from())["points"]) == {"alarms:summary"}

    # south returns to normal: south's alarm changes, north's count does not: nothing is sent
    engine.read(south_temp=20.0)
    await engine.publish()
    assert await console.receive_nothing(0.1) and await header.receive_nothing(0.01)
    await console.disconnect()
    await header.disconnect()


async def test_a_user_of_both_sites_counts_alarms_as_the_engine_does(engine, sites, everywhere):
    from tests.sites.conftest import make_user, restrict

    both = await sync_to_async(lambda: restrict(make_user("n_both", "viewer"), sites.north, sites.south))()
    engine.read(north_temp=30.0, south_temp=30.0)
    headers = [await socket(user, "/ws/live/?family=alarm-summary") for user in (both, everywhere)]
    await engine.answer_snapshot()
    counted, engines = [(await header.receive_json_from())["points"]["alarms:summary"] for header in headers]
    assert counted["value"] == engines["value"] and counted["value"]["unacked_total"] == 2
    assert counted["value"]["classes"] == [
        {"name": "high", "colour": engines["value"]["classes"][0]["colour"], "priority": 300}
    ]
    for header in headers:
        await header.disconnect()


async def test_a_point_added_to_north_reaches_a_connected_north_user_and_one_added_to_south_does_not(
    engine, north_users, sites
):
    north = await socket(north_users["viewer"])
    await engine.answer_snapshot()
    assert set((await north.receive_json_from())["points"]) == NORTH
    await sync_to_async(_add_points)(sites)
    engine.image.define([*engine.image.points, "north_flow", "south_flow"])  # the engine's reload
    engine.read(north_flow=1.5, south_flow=2.5)
    await engine.publish()
    # a snapshot of the new entries follows at once; the new north point as soon as the hub has looked it up
    seen = []
    while "north_flow" not in (seen[-1]["points"] if seen else {}):
        seen.append(await north.receive_json_from(timeout=2))
        assert seen[-1]["type"] == "snapshot"
    assert set(seen[-1]["points"]) == {*NORTH, "north_flow"}
    assert not any("south_flow" in snapshot["points"] for snapshot in seen)
    await north.disconnect()


def _add_points(sites) -> None:
    for site in (sites.north, sites.south):
        device = site.devices.get()
        Point.objects.create(device=device, name=f"{site.name}_flow", address="hr:5", data_type="int16")


async def test_a_north_user_gets_norths_schedule_entries_only(engine, north_users, sites):
    await sync_to_async(_add_schedules)(sites)
    # the schedule engine's entries, as it keeps them in the image (ADR 0017)
    engine.image.define([*engine.image.points, "schedule:north_lights", "schedule:south_lights"])
    engine.image.put("schedule:north_lights", {"value": True}, GOOD, datetime.now(UTC))
    engine.image.put("schedule:south_lights", {"value": False}, GOOD, datetime.now(UTC))
    north = await socket(north_users["viewer"])
    await engine.answer_snapshot()
    assert set((await north.receive_json_from())["points"]) == {*NORTH, "schedule:north_lights"}
    await north.disconnect()


def _add_schedules(sites) -> None:
    for site in (sites.north, sites.south):
        Schedule.objects.create(name=f"{site.name}_lights", site=site)


async def test_a_user_of_no_site_gets_an_empty_image(engine, sites):
    from tests.sites.conftest import make_user, restrict

    nobody = await sync_to_async(lambda: restrict(make_user("n_nowhere", "viewer")))()
    client = await socket(nobody)
    await engine.answer_snapshot()
    assert (await client.receive_json_from())["points"] == {}
    await client.disconnect()
