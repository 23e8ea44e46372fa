"""The live hub's fan-out: one encoding per frame, slow clients coalesced, nobody held up."""

import json

from bms.engine import bus
from bms.realtime.hub import LiveHub
from bms.realtime.outlet import Outlet


class RecordingOutlet(Outlet):
    """A connection whose send buffer the test fills and drains at will."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, frame) -> bool:
        self.messages.append(json.loads(frame.text))
        return True

    def pause(self) -> None:
        self.writable = False

    def drain(self) -> None:
        self.writable = True
        self.on_resume()


def row(value, seq):
    return [value, "good", 1_700_000_000_000_000 + seq, 1_700_000_000_000_000 + seq, seq]


def loaded_hub(points: dict) -> LiveHub:
    hub = LiveHub(layer=None, engine_channel="unused")
    hub.start = lambda: None  # no channel layer here: the test feeds the stream itself
    hub.handle({"type": bus.LIVE_SNAPSHOT, "seq": 10, "points": points})
    return hub


async def test_each_delta_is_encoded_once_however_many_clients_get_it():
    hub = loaded_hub({f"p{i}": row(i, 10) for i in range(20)})
    outlets = [RecordingOutlet() for _ in range(100)]
    for outlet in outlets:
        hub.join(outlet, "compact")
    encoded = hub.frames_encoded
    for seq in range(11, 61):
        hub.handle({"type": bus.LIVE_DELTA, "from": seq - 1, "seq": seq, "points": {f"p{seq % 20}": row(seq, seq)}})
    assert hub.frames_encoded - encoded == 50
    for outlet in outlets:
        assert [m["type"] for m in outlet.messages] == ["snapshot"] + ["delta"] * 50
        assert outlet.messages[-1] == {
            "type": "delta",
            "from": 59,
            "seq": 60,
            "points": [[0, 60, "good", 1_700_000_000_000, 1_700_000_000_000, 60]],
        }


async def test_a_slow_client_gets_one_fuller_frame_and_holds_up_nobody():
    hub = loaded_hub({"a": row(0, 9), "b": row(0, 10), "c": row(0, 8)})
    fast, slow = RecordingOutlet(), RecordingOutlet()
    hub.join(fast, "keyed")
    hub.join(slow, "keyed")
    slow.pause()
    for seq in range(11, 41):
        name = "a" if seq % 2 else "b"
        hub.handle({"type": bus.LIVE_DELTA, "from": seq - 1, "seq": seq, "points": {name: row(seq, seq)}})
    assert len(fast.messages) == 1 + 30
    assert [m["type"] for m in slow.messages] == ["snapshot"]
    slow.drain()
    catch_up = slow.messages[-1]
    assert (catch_up["type"], catch_up["from"], catch_up["seq"]) == ("delta", 10, 40)
    assert {name: state["value"] for name, state in catch_up["points"].items()} == {"a": 39, "b": 40}  # not c
    assert hub.catch_ups == 1
    hub.handle({"type": bus.LIVE_DELTA, "from": 40, "seq": 41, "points": {"c": row(41, 41)}})
    assert fast.messages[-1] == slow.messages[-1]  # in step again: the same frame for both
    assert fast.messages[-1]["from"] == 40


async def test_a_client_joining_mid_stream_gets_the_shared_snapshot_and_the_frames_since():
    hub = loaded_hub({"a": row(0, 10)})
    first = RecordingOutlet()
    hub.join(first, "keyed")
    encoded = hub.frames_encoded
    hub.handle({"type": bus.LIVE_DELTA, "from": 10, "seq": 11, "points": {"a": row(11, 11)}})
    late = RecordingOutlet()
    hub.join(late, "keyed")
    assert hub.frames_encoded - encoded == 1  # the snapshot was reused, followed by the delta sent since
    assert [(m["type"], m["seq"]) for m in late.messages] == [("snapshot", 10), ("delta", 11)]
    late.messages.clear()
    hub.handle({"type": bus.LIVE_DELTA, "from": 11, "seq": 12, "points": {"a": row(12, 12)}})
    assert late.messages == [first.messages[-1]]


async def test_a_family_subscription_follows_alarm_entries_as_they_come_and_go():
    from bms.realtime.hub import FAMILIES

    alarm = {"state": "normal"}
    hub = loaded_hub({"zone1_temp": row(21, 9), "alarm:a": row(alarm, 10), "alarms:summary": row({}, 8)})
    console, header, points = RecordingOutlet(), RecordingOutlet(), RecordingOutlet()
    hub.join(console, "keyed", FAMILIES["alarms"])
    hub.join(header, "keyed", FAMILIES["alarm-summary"])
    hub.join(points, "keyed", FAMILIES["points"])
    assert set(console.messages[0]["points"]) == {"alarm:a", "alarms:summary"}
    assert set(header.messages[0]["points"]) == {"alarms:summary"}
    assert set(points.messages[0]["points"]) == {"zone1_temp"}
    hub.handle({"type": bus.LIVE_DELTA, "from": 10, "seq": 11, "points": {"zone1_temp": row(22, 11)}})
    assert len(console.messages) == 1 and len(header.messages) == 1 and points.messages[-1]["type"] == "delta"
    # a definition added: its entry appears, and the console's view follows without subscribing again
    hub.handle({"type": bus.LIVE_DELTA, "from": 11, "seq": 12, "points": {"alarm:b": row(alarm, 12)}})
    assert set(console.messages[-1]["points"]) == {"alarm:a", "alarm:b", "alarms:summary"}
    assert set(points.messages[-1]["points"]) == {"zone1_temp"}
