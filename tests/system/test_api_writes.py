"""Writes through the HTTP API of a real node reach the real device exactly once; bad ones change nothing."""

import asyncio

import pytest

from tests.system.test_live_websocket import read_device_register, write_device_register

pytestmark = pytest.mark.system


def test_write_reaches_the_device(node, simulator):
    session = node.session()
    status, body = session.post_json("/api/points/zone1_setpoint/write", {"value": 22.5, "command_id": "sys-write-1"})
    assert status == 200, body
    assert body["status"] == "succeeded"
    assert body["repeated"] is False
    assert asyncio.run(read_device_register(simulator.port, 0)) == 22.5


def test_same_command_id_executes_once(node, simulator):
    session = node.session()
    status, body = session.post_json("/api/points/zone1_setpoint/write", {"value": 23.0, "command_id": "sys-once"})
    assert (status, body["status"]) == (200, "succeeded")
    # Someone changes the setpoint at the panel; a repeated request must not overwrite it.
    asyncio.run(write_device_register(simulator.port, 0, 19.0))
    status, body = session.post_json("/api/points/zone1_setpoint/write", {"value": 23.0, "command_id": "sys-once"})
    assert status == 200
    assert body["repeated"] is True
    assert asyncio.run(read_device_register(simulator.port, 0)) == 19.0
    status, body = session.post_json("/api/points/zone1_setpoint/write", {"value": 24.0, "command_id": "sys-once"})
    assert (status, body["error"]) == (409, "conflict")
    assert asyncio.run(read_device_register(simulator.port, 0)) == 19.0
    status, body = session.get_json("/api/commands/sys-once/")
    assert (status, body["status"], body["value"]) == (200, "succeeded", 23.0)


@pytest.mark.parametrize(
    ("point", "payload", "status", "code"),
    [
        ("zone1_setpoint", {"value": 99}, 400, "out_of_range"),
        ("zone1_setpoint", {"value": "warm"}, 400, "wrong_type"),
        ("zone1_setpoint", {"value": True}, 400, "wrong_type"),
        ("zone1_setpoint", {}, 400, "malformed"),
        ("zone1_temp", {"value": 21}, 409, "read_only"),
        ("no_such_point", {"value": 21}, 404, "unknown_point"),
        ("ahu1_damper", {"value": 50.5}, 400, "wrong_type"),
        ("ahu1_fan_cmd", {"value": "on"}, 400, "wrong_type"),
    ],
)
def test_bad_writes_are_refused_and_change_nothing(node, simulator, point, payload, status, code):
    session = node.session()
    before = asyncio.run(read_device_register(simulator.port, 0))
    got_status, body = session.post_json(f"/api/points/{point}/write", payload)
    assert (got_status, body["error"]) == (status, code), body
    assert body["message"]
    assert asyncio.run(read_device_register(simulator.port, 0)) == before


def test_user_without_permission_cannot_write(node, simulator):
    session = node.session("viewer", "viewer-pass-1")
    before = asyncio.run(read_device_register(simulator.port, 0))
    status, body = session.post_json("/api/points/zone1_setpoint/write", {"value": 21.0})
    assert (status, body["error"]) == (403, "forbidden")
    assert asyncio.run(read_device_register(simulator.port, 0)) == before


def test_points_api_has_live_values(node):
    session = node.session("viewer", "viewer-pass-1")
    status, body = session.get_json("/api/points/")
    assert status == 200
    assert body["engine"] is True
    by_name = {row["name"]: row for row in body["points"]}
    assert by_name["meter_energy"]["live"]["quality"] == "good"
    assert by_name["meter_energy"]["unit"] == "kWh"
    status, body = session.get_json("/api/points/nope/")
    assert (status, body["error"]) == (404, "unknown_point")


def test_anonymous_requests_are_refused(node, simulator):
    import json
    import urllib.error
    import urllib.request

    before = asyncio.run(read_device_register(simulator.port, 0))
    for request in (
        urllib.request.Request(f"{node.base_url}/api/points/"),
        urllib.request.Request(
            f"{node.base_url}/api/points/zone1_setpoint/write", data=b'{"value": 25}', method="POST"
        ),
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (401, 403)  # 403: Django's CSRF check answers before the view
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{node.base_url}/api/points/", timeout=10)
    assert (refused.value.code, json.loads(refused.value.read())["error"]) == (401, "unauthenticated")
    assert asyncio.run(read_device_register(simulator.port, 0)) == before
