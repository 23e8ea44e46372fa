"""Server-side stream healing in the live consumer and its hub, with gaps produced on demand.

A real engine never skips a sequence number, so here the test answers the
hub's snapshot requests itself and injects deltas with gaps into the real
(in-memory) channel layer.
"""

import asyncio

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from bms.engine import bus
from bms.realtime import hub as live_hub
from bms.realtime.consumers import LiveConsumer


def row(value, seq):
    """The engine's live row (bms.engine.bus)."""
    return [value, "good", None, None, seq]


def state(value, seq):
    """The same point in the keyed wire form."""
    return {"value": value, "quality": "good", "time": None, "changed": None, "seq": seq}


@pytest.fixture
async def layer():
    channel_layer = get_channel_layer()
    await channel_layer.flush()
    yield channel_layer
    await live_hub.stop_hub()


async def answer_snapshot(layer, seq, points):
    request = await asyncio.wait_for(layer.receive(bus.engine_channel()), 2)
    assert request["type"] == bus.SNAPSHOT_REQUEST
    await layer.send(request["reply_to"], {"type": bus.LIVE_SNAPSHOT, "seq": seq, "points": points})


async def delta(layer, first, seq, points):
    await layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_DELTA, "from": first, "seq": seq, "points": points})


async def connected(layer, user, path="/ws/live/"):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), path)
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


async def test_an_unknown_wire_form_is_refused(layer, operator):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/?wire=xml")
    communicator.scope["user"] = operator
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4400)


async def test_an_unknown_family_is_refused_at_connect_and_in_a_message(layer, operator):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/?family=everything")
    communicator.scope["user"] = operator
    assert await communicator.connect() == (False, 4400)
    client = await connected(layer, operator, "/ws/live/?family=alarm-summary")
    await answer_snapshot(layer, 5, {"a": row(1, 5), "alarms:summary": row({"unacked_total": 0}, 4)})
    assert set((await client.receive_json_from())["points"]) == {"alarms:summary"}
    await client.send_json_to({"type": "subscribe", "family": "pumps"})
    error = await client.receive_json_from()
    assert (error["type"], error["code"]) == ("error", "malformed") and "alarms" in error["message"]
    await client.send_json_to({"type": "subscribe", "family": "points"})
    assert set((await client.receive_json_from())["points"]) == {"a"}
    await client.disconnect()


async def test_a_gap_in_the_engine_stream_fetches_a_new_snapshot(layer, operator):
    client = await connected(layer, operator)
    await answer_snapshot(layer, 10, {"a": row(1, 10), "b": row(2, 9)})
    assert (await client.receive_json_from())["seq"] == 10
    await delta(layer, 10, 12, {"a": row(3, 12)})
    assert await client.receive_json_from() == {"type": "delta", "from": 10, "seq": 12, "points": {"a": state(3, 12)}}
    # deltas 13..15 were lost by the channel layer
    await delta(layer, 15, 16, {"b": row(5, 16)})
    await answer_snapshot(layer, 16, {"a": row(4, 14), "b": row(5, 16)})
    snapshot = await client.receive_json_from()
    assert snapshot == {"type": "snapshot", "seq": 16, "points": {"a": state(4, 14), "b": state(5, 16)}}
    await delta(layer, 16, 17, {"a": row(6, 17)})
    assert (await client.receive_json_from())["from"] == 16
    await client.disconnect()


async def test_deltas_racing_the_snapshot_are_replayed_without_a_gap(layer, operator):
    client = await connected(layer, operator)
    request = await asyncio.wait_for(layer.receive(bus.engine_channel()), 2)
    # two deltas arrive before the snapshot answer: one it covers, one that overlaps it
    await delta(layer, 4, 5, {"a": row(1, 5)})
    await delta(layer, 5, 8, {"a": row(2, 8)})
    await layer.send(request["reply_to"], {"type": bus.LIVE_SNAPSHOT, "seq": 6, "points": {"a": row(1, 5)}})
    assert (await client.receive_json_from())["seq"] == 6
    assert await client.receive_json_from() == {"type": "delta", "from": 6, "seq": 8, "points": {"a": state(2, 8)}}
    assert await client.receive_nothing(0.1)
    await client.disconnect()


async def test_a_silent_engine_is_asked_again_and_waiting_clients_are_told_once(layer, operator, monkeypatch):
    monkeypatch.setattr(live_hub, "SNAPSHOT_RETRY", 0.15)
    clients = [await connected(layer, operator) for _ in range(3)]
    await asyncio.wait_for(layer.receive(bus.engine_channel()), 1)  # the hub's first request, unanswered
    for client in clients:
        error = await client.receive_json_from(timeout=2)
        assert (error["type"], error["code"]) == ("error", "engine_unavailable")
    await answer_snapshot(layer, 3, {"a": row(1, 3)})  # one retry for the process, not one per client
    for client in clients:
        assert (await client.receive_json_from(timeout=2))["type"] == "snapshot"
        assert await client.receive_nothing(0.3)  # told once, not every retry
        await client.disconnect()


async def test_clients_connecting_together_share_one_engine_request(layer, operator):
    clients = [await connected(layer, operator) for _ in range(20)]
    await answer_snapshot(layer, 7, {"a": row(1, 7)})
    for client in clients:
        assert (await client.receive_json_from())["seq"] == 7
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(bus.engine_channel()), 0.2)  # no second request
    for client in clients:
        await client.disconnect()


async def test_subscribing_needs_a_snapshot_and_known_points(layer, operator):
    client = await connected(layer, operator)
    await client.send_json_to({"type": "subscribe", "points": ["a"]})
    assert (await client.receive_json_from())["code"] == "not_ready"
    await answer_snapshot(layer, 2, {"a": row(1, 2), "b": row(1, 1)})
    assert (await client.receive_json_from())["type"] == "snapshot"
    await client.send_json_to({"type": "subscribe", "points": ["a", "zzz"]})
    error = await client.receive_json_from()
    assert (error["code"], error["points"]) == ("unknown_point", ["zzz"])
    await client.send_json_to({"type": "subscribe", "points": ["b"]})
    assert (await client.receive_json_from())["points"] == {"b": state(1, 1)}
    await delta(layer, 2, 3, {"a": row(2, 3)})  # not b: nothing for this client
    await delta(layer, 3, 4, {"b": row(9, 4)})
    assert await client.receive_json_from() == {"type": "delta", "from": 2, "seq": 4, "points": {"b": state(9, 4)}}
    await client.disconnect()


async def test_the_compact_form_names_points_once_and_indexes_them_in_deltas(layer, operator):
    client = await connected(layer, operator, "/ws/live/?wire=compact")
    await answer_snapshot(
        layer, 5, {"b": [2.5, "good", 1_700_000_000_123_456, 1_700_000_000_000_999, 4], "a": row(1, 5)}
    )
    assert await client.receive_json_from() == {
        "type": "snapshot",
        "seq": 5,
        "names": ["a", "b"],
        "points": [[1, "good", None, None, 5], [2.5, "good", 1_700_000_000_123, 1_700_000_000_000, 4]],
    }
    await delta(layer, 5, 6, {"b": [3.0, "bad", 1_700_000_001_000_000, 1_700_000_001_000_000, 6]})
    assert await client.receive_json_from() == {
        "type": "delta",
        "from": 5,
        "seq": 6,
        "points": [[1, 3.0, "bad", 1_700_000_001_000, 1_700_000_001_000, 6]],
    }
    await client.disconnect()


async def test_added_or_removed_points_bring_a_new_snapshot(layer, operator):
    client = await connected(layer, operator, "/ws/live/?wire=compact")
    await answer_snapshot(layer, 5, {"a": row(1, 5), "c": row(1, 4)})
    assert (await client.receive_json_from())["names"] == ["a", "c"]
    await delta(layer, 5, 7, {"b": row(0, 6), "c": None})
    snapshot = await client.receive_json_from()
    assert (snapshot["type"], snapshot["seq"], snapshot["names"]) == ("snapshot", 7, ["a", "b"])
    await delta(layer, 7, 8, {"b": row(2, 8)})
    assert (await client.receive_json_from())["points"] == [[1, 2, "good", None, None, 8]]
    await client.disconnect()


async def test_role_changes_reach_every_client_then_a_snapshot(layer, operator):
    clients = [await connected(layer, operator) for _ in range(2)]
    await answer_snapshot(layer, 1, {"a": row(1, 1)})
    for client in clients:
        assert (await client.receive_json_from())["type"] == "snapshot"
    await layer.group_send(bus.LIVE_GROUP, {"type": bus.LIVE_ROLE, "node": "main", "role": "standby", "epoch": 4})
    for client in clients:
        assert await client.receive_json_from() == {"type": "role", "node": "main", "role": "standby", "epoch": 4}
    await answer_snapshot(layer, 2, {"a": row(3, 2)})
    for client in clients:
        assert (await client.receive_json_from())["points"] == {"a": state(3, 2)}
        await client.disconnect()


async def test_bad_client_messages_get_clear_errors(layer, operator):
    client = await connected(layer, operator)
    await answer_snapshot(layer, 1, {"a": row(1, 1)})
    await client.receive_json_from()
    for text, code in [("{", "malformed"), ("[1]", "malformed"), ('{"type": "dance"}', "unknown_type")]:
        await client.send_to(text_data=text)
        assert (await client.receive_json_from())["code"] == code
    await client.send_to(bytes_data=b"\x00")
    assert (await client.receive_json_from())["code"] == "malformed"
    await client.send_json_to({"type": "ping"})
    assert await client.receive_json_from() == {"type": "pong"}
    await client.disconnect()
