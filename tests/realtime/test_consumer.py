"""Server-side stream healing in the live consumer, with gaps produced on demand.

A real engine never skips a sequence number, so here the test answers the
consumer's snapshot requests itself and injects deltas with gaps into the
real (in-memory) channel layer.
"""

import asyncio

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from bms.engine import bus
from bms.realtime import consumers
from bms.realtime.consumers import LiveConsumer


def state(value, seq):
    return {"value": value, "quality": "good", "time": None, "changed": None, "seq": seq}


@pytest.fixture
async def layer():
    channel_layer = get_channel_layer()
    await channel_layer.flush()
    return channel_layer


async def answer_snapshot(layer, seq, points):
    request = await asyncio.wait_for(layer.receive(bus.engine_channel()), 2)
    assert request["type"] == bus.SNAPSHOT_REQUEST
    await layer.send(request["reply_to"], {"type": bus.LIVE_SNAPSHOT, "seq": seq, "points": points})


async def connected(layer, user):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.fixture
def operator(db):
    return User(username="op", pk=1)


async def test_anonymous_users_are_refused(layer):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = AnonymousUser()
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4401


async def test_a_gap_in_the_engine_stream_fetches_a_new_snapshot(layer, operator):
    client = await connected(layer, operator)
    await answer_snapshot(layer, 10, {"a": state(1, 10), "b": state(2, 9)})
    assert (await client.receive_json_from())["seq"] == 10
    await layer.group_send(
        bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, "from": 10, "seq": 12, "points": {"a": state(3, 12)}}
    )
    assert await client.receive_json_from() == {"type": "delta", "from": 10, "seq": 12, "points": {"a": state(3, 12)}}
    # deltas 13..15 were lost by the channel layer
    await layer.group_send(
        bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, "from": 15, "seq": 16, "points": {"b": state(5, 16)}}
    )
    await answer_snapshot(layer, 16, {"a": state(4, 14), "b": state(5, 16)})
    snapshot = await client.receive_json_from()
    assert snapshot == {"type": "snapshot", "seq": 16, "points": {"a": state(4, 14), "b": state(5, 16)}}
    await layer.group_send(
        bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, "from": 16, "seq": 17, "points": {"a": state(6, 17)}}
    )
    assert (await client.receive_json_from())["from"] == 16
    await client.disconnect()


async def test_deltas_racing_the_snapshot_are_replayed_without_a_gap(layer, operator):
    client = await connected(layer, operator)
    # two deltas arrive before the snapshot answer: one it covers, one that overlaps it
    await layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, "from": 4, "seq": 5, "points": {"a": state(1, 5)}})
    await layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, "from": 5, "seq": 8, "points": {"a": state(2, 8)}})
    await answer_snapshot(layer, 6, {"a": state(1, 5)})
    assert (await client.receive_json_from())["seq"] == 6
    assert await client.receive_json_from() == {"type": "delta", "from": 6, "seq": 8, "points": {"a": state(2, 8)}}
    assert await client.receive_nothing(0.1)
    await client.disconnect()


async def test_a_silent_engine_is_reported_and_retried(layer, operator, monkeypatch):
    monkeypatch.setattr(consumers, "SNAPSHOT_TIMEOUT", 0.1)
    client = await connected(layer, operator)
    error = await client.receive_json_from(timeout=2)
    assert (error["type"], error["code"]) == ("error", "engine_unavailable")
    await asyncio.wait_for(layer.receive(bus.engine_channel()), 1)  # the first request, unanswered
    await answer_snapshot(layer, 3, {"a": state(1, 3)})  # the retry is answered
    while (message := await client.receive_json_from(timeout=2))["type"] == "error":
        pass
    assert message["type"] == "snapshot"
    await client.disconnect()


async def test_subscribing_needs_a_snapshot_and_known_points(layer, operator):
    client = await connected(layer, operator)
    await client.send_json_to({"type": "subscribe", "points": ["a"]})
    assert (await client.receive_json_from())["code"] == "not_ready"
    await answer_snapshot(layer, 2, {"a": state(1, 2), "b": state(1, 1)})
    assert (await client.receive_json_from())["type"] == "snapshot"
    await client.send_json_to({"type": "subscribe", "points": ["a", "zzz"]})
    error = await client.receive_json_from()
    assert (error["code"], error["points"]) == ("unknown_point", ["zzz"])
    await client.send_json_to({"type": "subscribe", "points": ["b"]})
    await answer_snapshot(layer, 2, {"a": state(1, 2), "b": state(1, 1)})
    assert (await client.receive_json_from())["points"] == {"b": state(1, 1)}
    await client.disconnect()
