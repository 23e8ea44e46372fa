"""``/api/v1/points/<name>/priority-array``: the server-kept array of a Modbus point, read and written (ADR 0016).

A real engine executes the writes against the simulated building; the API
is called through Django's test client on a thread, as a browser would.
"""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.test import Client

from bms.control.models import Command
from tests.control.test_priority_arrays import POINT, engine, logged  # noqa: F401  (shared fixtures)

URL = f"/api/v1/points/{POINT}/priority-array"


def client_for(username: str, role: str | None) -> Client:
    user = User.objects.create_user(username, password="x")
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def post(client: Client, body: dict):
    return client.post(URL, json.dumps(body), content_type="application/json")


async def test_the_array_is_read_and_written_through_the_command_path(engine, logged):  # noqa: F811
    building, _ = logged
    otto = await sync_to_async(client_for)("otto", "operator")
    vera = await sync_to_async(client_for)("vera", "viewer")

    empty = (await sync_to_async(vera.get)(URL)).json()
    assert empty["kept_by"] == "server" and len(empty["slots"]) == 16
    assert (empty["effective_value"], empty["effective_priority"]) == (None, None)

    answer = await sync_to_async(post)(otto, {"value": 23.5, "expires_in": 3600, "command_id": "manual-1"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["command"]["status"], body["command"]["priority"]) == (Command.SUCCEEDED, 8)
    assert body["command"]["hold_until"] is not None
    assert (body["priority_array"]["effective_value"], body["priority_array"]["effective_priority"]) == (23.5, 8)
    slot = body["priority_array"]["slots"][7]
    assert (slot["value"], slot["source"], slot["user"], slot["command_id"]) == (23.5, "api", "otto", "manual-1")
    assert slot["expires_at"] == body["command"]["hold_until"]
    assert await building.get(POINT) == 23.5

    refused = await sync_to_async(post)(otto, {"value": 24.0, "priority": 3})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden", refused.content
    viewer = await sync_to_async(post)(vera, {"value": 24.0})
    assert viewer.status_code == 403
    bad = await sync_to_async(post)(otto, {"value": 24.0, "priority": 17})
    assert bad.status_code == 400 and "priority" in bad.json()["fields"]

    released = await sync_to_async(post)(otto, {"value": None, "priority": 8})
    assert released.status_code == 200, released.content
    assert released.json()["command"]["status"] == Command.SUCCEEDED
    assert released.json()["priority_array"]["effective_priority"] is None
    assert await building.get(POINT) == 23.5  # no lower slot, no relinquish default: left as it is

    missing = await sync_to_async(vera.get)("/api/v1/points/zone1_temp/priority-array")
    assert missing.status_code == 404  # read-only: no array
