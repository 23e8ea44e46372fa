"""The REST API's core endpoints (issue 13 item 1): sites, devices, points (live), writes and relinquishes,
commands, events, audit and the switchover, each with its happy path, bad input (a JSON 400, never a 500),
permissions per role and token scopes.

No engine runs here: a write is recorded and answered 202 (pending) at once (``BMS_COMMAND_WAIT_SECONDS`` 0), and
live states are null with the engine's reason. Cross-site answers are in tests/sites/test_api_scope.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from bms.control.models import AuditEntry, Command
from bms.events.models import Event
from bms.points.models import Device, Point
from bms.sites.models import Site
from bms.tokens.services import issue
from redundancy.models import NodeState
from tests.api.conftest import JsonClient, make_user
from tests.redundancy.pairweb import as_main  # noqa: F401  (this process plays node main of a pair)
from tests.sites.conftest import restrict

V1 = "/api/v1"


@pytest.fixture(autouse=True)
def _no_command_wait(settings: Any) -> None:
    """No engine runs here: answer a write as soon as it is recorded (202 pending), and live states at once."""
    settings.BMS_COMMAND_WAIT_SECONDS = 0.0
    settings.BMS_API_ENGINE_WAIT_SECONDS = 0.02


@pytest.fixture
def plant(db) -> dict[str, Any]:
    """Two sites: ``hall`` with a Modbus device (a read-only and a writable point), ``annex`` with a disabled one."""
    hall = Site.objects.create(name="hall", title="Town hall")
    annex = Site.objects.create(name="annex")
    plc = Device.objects.create(name="hall_plc", host="127.0.0.1", port=15910, site=hall)
    spare = Device.objects.create(name="annex_plc", host="127.0.0.1", port=15911, site=annex, enabled=False)
    temp = Point.objects.create(device=plc, name="hall_temp", address="hr:0", data_type="int16", scale=0.1)
    setpoint = Point.objects.create(
        device=plc,
        name="hall_setpoint",
        address="hr:1",
        data_type="int16",
        scale=0.1,
        writable=True,
        min_value=10,
        max_value=30,
    )
    flow = Point.objects.create(device=spare, name="annex_flow", address="hr:0", data_type="int16")
    return {"hall": hall, "annex": annex, "plc": plc, "spare": spare, "temp": temp, "setpoint": setpoint, "flow": flow}


def token_client(user: User, scope: str) -> JsonClient:
    """An anonymous client that sends ``user``'s new token of ``scope`` with every request."""
    key = issue(user, f"test {scope}", scope, 30, by=user).key
    client = JsonClient()
    client.client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The JSON error body of ``response``, which must have ``status``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) >= {"error", "detail"}
    return body


# ---- sites --------------------------------------------------------------------------------------------------------


def test_sites_are_listed_read_and_changed_by_engineers(plant, as_role):
    listed = as_role("viewer").get(f"{V1}/sites/", {"name": "ha"}).json()
    assert listed["count"] == 1 and listed["results"] == [
        {"id": plant["hall"].pk, "name": "hall", "title": "Town hall"}
    ]
    assert as_role("viewer").get(f"{V1}/sites/{plant['annex'].pk}/").json()["name"] == "annex"

    engineer = as_role("engineer")
    made = engineer.post(f"{V1}/sites/", {"name": "depot", "title": "Bus depot"})
    assert made.status_code == 201, made.content
    site_id = made.json()["id"]
    assert engineer.patch(f"{V1}/sites/{site_id}/", {"title": "Depot"}).json()["title"] == "Depot"
    assert engineer.delete(f"{V1}/sites/{site_id}/").status_code == 204
    assert not Site.objects.filter(name="depot").exists()


def test_site_input_and_permissions_are_checked(plant, as_role):
    refused = error_of(as_role("operator").post(f"{V1}/sites/", {"name": "depot"}), 403)
    assert refused["error"] == "forbidden" and refused["required"] == ["sites.add_site"]
    engineer = as_role("engineer")
    assert error_of(engineer.post(f"{V1}/sites/", {"name": "two words"}), 400)["fields"].keys() == {"name"}
    assert "name" in error_of(engineer.post(f"{V1}/sites/", {"name": "hall"}), 400)["fields"]  # taken
    assert "title" in error_of(engineer.post(f"{V1}/sites/", {"name": "x", "title": 5}), 400)["fields"]
    assert error_of(engineer.get(f"{V1}/sites/", {"colour": "red"}), 400)["error"] == "invalid"
    in_use = error_of(engineer.delete(f"{V1}/sites/{plant['hall'].pk}/"), 409)
    assert in_use["error"] == "in_use" and Site.objects.filter(name="hall").exists()
    assert error_of(engineer.get(f"{V1}/sites/999999/"), 404)["detail"] == "There is no site with id 999999."


def test_a_restricted_engineer_may_not_add_a_site_it_would_not_see(plant):
    engineer = restrict(make_user("hall_eng", "engineer"), plant["hall"])
    refused = error_of(JsonClient(engineer).post(f"{V1}/sites/", {"name": "depot"}), 403)
    assert refused["error"] == "forbidden" and "only some sites" in refused["detail"]
    assert not Site.objects.filter(name="depot").exists()


# ---- devices ------------------------------------------------------------------------------------------------------


def test_devices_are_listed_with_filters(plant, as_role):
    viewer = as_role("viewer")
    everything = viewer.get(f"{V1}/devices/").json()
    assert [row["name"] for row in everything["results"]] == ["annex_plc", "hall_plc"]
    assert everything["results"][1]["site"] == "hall" and everything["results"][1]["driver"] == "modbus"
    assert [row["name"] for row in viewer.get(f"{V1}/devices/", {"site": "hall"}).json()["results"]] == ["hall_plc"]
    assert viewer.get(f"{V1}/devices/", {"enabled": "false"}).json()["count"] == 1
    assert viewer.get(f"{V1}/devices/", {"driver": "modbus", "enabled": "true"}).json()["count"] == 1
    assert "driver" in error_of(viewer.get(f"{V1}/devices/", {"driver": "telepathy"}), 400)["fields"]
    assert "enabled" in error_of(viewer.get(f"{V1}/devices/", {"enabled": "perhaps"}), 400)["fields"]


def test_a_device_is_made_changed_and_deleted_by_an_engineer(plant, as_role):
    engineer = as_role("engineer")
    made = engineer.post(f"{V1}/devices/", {"name": "boiler", "host": "10.1.2.3", "site": "annex", "port": 1502})
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["site"], body["driver"], body["port"], body["enabled"]) == ("annex", "modbus", 1502, True)
    device_id = body["id"]
    # The configuration audit (bms/audit/changes.py) names the API's user.
    assert AuditEntry.objects.filter(action="device.created", target="boiler", username="erin").exists()
    changed = engineer.patch(f"{V1}/devices/{device_id}/", {"site": "hall", "poll_interval": 5.0})
    assert changed.status_code == 200 and Device.objects.get(pk=device_id).site == plant["hall"]
    assert engineer.delete(f"{V1}/devices/{device_id}/").status_code == 204
    assert not Device.objects.filter(name="boiler").exists()


def test_a_device_without_a_site_goes_to_the_default_site(plant, as_role):
    made = as_role("engineer").post(f"{V1}/devices/", {"name": "boiler", "host": "10.1.2.3"})
    assert made.status_code == 201 and made.json()["site"] == "main"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "boiler", "site": "hall"}, "host"),  # the model's clean(): a Modbus device needs a host
        ({"name": "boiler", "host": "h", "port": 70000}, "port"),  # clean(): at most 65535
        ({"name": "boiler", "host": "h", "options": {"word_order": "middle"}}, "options"),  # clean()
        ({"name": "boiler", "host": "h", "site": "atlantis"}, "site"),
        ({"name": "boiler", "host": "h", "site": 3}, "site"),
        ({"name": "boiler", "host": "h", "driver": "telepathy"}, "driver"),
        ({"name": "two words", "host": "h"}, "name"),
        ({"name": "hall_plc", "host": "h"}, "name"),  # taken
        ({"name": "boiler", "host": "h", "poll_interval": "1"}, "poll_interval"),
        ({"name": "boiler", "host": "h", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_device_is_a_400_with_the_field(plant, as_role, body, field):
    refused = error_of(as_role("engineer").post(f"{V1}/devices/", body), 400)
    assert refused["error"] == "invalid" and field in refused["fields"], refused
    assert not Device.objects.filter(name=body["name"], host="h").exists()


def test_device_changes_need_the_device_permissions(plant, as_role):
    url = f"{V1}/devices/{plant['plc'].pk}/"
    refused = error_of(as_role("operator").patch(url, {"enabled": False}), 403)
    assert refused["required"] == ["points.change_device"]
    assert error_of(as_role("viewer").post(f"{V1}/devices/", {"name": "x", "host": "h"}), 403)["error"] == "forbidden"
    assert error_of(JsonClient().get(f"{V1}/devices/"), 401)["error"] == "unauthenticated"
    assert Device.objects.get(pk=plant["plc"].pk).enabled is True
    assert (
        error_of(as_role("engineer").get(f"{V1}/devices/999999/"), 404)["detail"]
        == "There is no device with id 999999."
    )


# ---- points -------------------------------------------------------------------------------------------------------


def test_points_are_listed_with_their_site_and_live_state(plant, as_role):
    body = as_role("viewer").get(f"{V1}/points/").json()
    assert body["count"] == 3
    assert [row["name"] for row in body["results"]] == ["annex_flow", "hall_setpoint", "hall_temp"]
    row = body["results"][1]
    assert (row["device"], row["site"], row["writable"], row["min_value"]) == ("hall_plc", "hall", True, 10.0)
    # No engine runs: the point is still listed, its live state null with the reason.
    assert row["live"] is None and "engine" in row["live_problem"]


def test_points_are_filtered(plant, as_role):
    viewer = as_role("viewer")

    def names(**query: str) -> list[str]:
        return [row["name"] for row in viewer.get(f"{V1}/points/", query).json()["results"]]

    assert names(site="annex") == ["annex_flow"]
    assert names(device="hall_plc", writable="true") == ["hall_setpoint"]
    assert names(writable="false") == ["annex_flow", "hall_temp"]
    assert names(name="hall_t") == ["hall_temp"]
    assert names(site="hall,annex", limit="1", offset="2") == ["hall_temp"]
    assert "writable" in error_of(viewer.get(f"{V1}/points/", {"writable": "maybe"}), 400)["fields"]
    assert "limit" in error_of(viewer.get(f"{V1}/points/", {"limit": "0"}), 400)["fields"]


def test_a_point_is_read_by_name(plant, as_role):
    viewer = as_role("viewer")
    body = viewer.get(f"{V1}/points/hall_temp/").json()
    assert (body["name"], body["data_type"], body["live"]) == ("hall_temp", "int16", None)
    missing = error_of(viewer.get(f"{V1}/points/nowhere/"), 404)
    assert missing == {"error": "not_found", "detail": "There is no point named 'nowhere'."}


# ---- writes and relinquishes --------------------------------------------------------------------------------------


def test_an_operator_writes_a_point_and_a_repeat_is_the_same_command(plant, as_role):
    operator = as_role("operator")
    url = f"{V1}/points/hall_setpoint/write"
    answer = operator.post(url, {"value": 21.5, "command_id": "morning-1"})
    assert answer.status_code == 202, answer.content  # recorded; no engine to execute it here
    body = answer.json()
    assert (body["command_id"], body["point"], body["value"], body["status"]) == (
        "morning-1",
        "hall_setpoint",
        21.5,
        "pending",
    )
    assert (body["source"], body["user"], body["repeated"]) == ("api", "otto", False)
    again = operator.post(url, {"value": 21.5, "command_id": "morning-1"})
    assert again.status_code == 202 and again.json()["repeated"] is True
    clash = error_of(operator.post(url, {"value": 22.0, "command_id": "morning-1"}), 409)
    assert clash["error"] == "conflict"
    assert Command.objects.filter(point_name="hall_setpoint").count() == 1
    assert AuditEntry.objects.filter(action="write.requested", target="hall_setpoint").count() == 1


def test_the_old_write_endpoint_answers_as_before(plant, as_role):
    """``POST /api/points/<name>/write`` shares the write with the REST API (bms/api/v1/writing.py): same answer."""
    answer = as_role("operator").post("/api/points/hall_setpoint/write", {"value": 20, "command_id": "old-1"})
    assert answer.status_code == 202 and answer.json()["status"] == "pending" and answer.json()["repeated"] is False
    refused = as_role("operator").post("/api/points/hall_setpoint/write", {"value": 99})
    assert refused.status_code == 400 and set(refused.json()) == {"error", "message"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"value": 99}, 400, "out_of_range"),  # above max_value 30
        ({"value": "warm"}, 400, None),
        ({"value": None}, 400, "invalid"),  # a write needs a value: relinquish empties a slot
        ({}, 400, "invalid"),
        ({"value": 20, "priority": 17}, 400, "invalid"),
        ({"value": 20, "priority": "8"}, 400, "invalid"),
        ({"value": 20, "command_id": "has space"}, 400, "invalid"),
        ({"value": 20, "lifetime": -1}, 400, "invalid"),
        ({"value": 20, "extra": 1}, 400, "invalid"),
        ({"value": 20, "priority": 3}, 403, "forbidden"),  # operators: priority 8 or none
    ],
)
def test_a_bad_write_is_refused_with_a_json_error_and_records_no_command(plant, as_role, body, status, code):
    refused = error_of(as_role("operator").post(f"{V1}/points/hall_setpoint/write", body), status)
    if code is not None:
        assert refused["error"] == code, refused
    assert not Command.objects.exists()


def test_a_body_that_is_not_a_json_object_is_a_400(plant, as_role):
    operator = as_role("operator")
    url = f"{V1}/points/hall_setpoint/write"
    assert error_of(operator.send("post", url, raw=b"{nope"), 400)["error"] == "malformed"
    assert error_of(operator.post(url, [1, 2]), 400)["error"] == "invalid"
    assert not Command.objects.exists()


def test_writes_of_read_only_missing_or_disabled_points(plant, as_role):
    operator = as_role("operator")
    assert error_of(operator.post(f"{V1}/points/hall_temp/write", {"value": 1}), 409)["error"] == "read_only"
    missing = error_of(operator.post(f"{V1}/points/nowhere/write", {"value": 1}), 404)
    assert missing == {"error": "not_found", "detail": "There is no point named 'nowhere'."}
    assert not Command.objects.exists()


def test_a_viewer_may_not_write(plant, as_role):
    refused = error_of(as_role("viewer").post(f"{V1}/points/hall_setpoint/write", {"value": 20}), 403)
    assert refused["required"] == ["points.write_point"]
    assert not Command.objects.exists()


def test_relinquish_empties_a_slot_operators_at_priority_8_only(plant, as_role):
    url = f"{V1}/points/hall_setpoint/relinquish"
    released = as_role("operator").post(url, {"priority": 8, "command_id": "release-1"})
    assert released.status_code == 202, released.content
    assert (released.json()["value"], released.json()["priority"]) == (None, 8)
    assert error_of(as_role("operator").post(url, {"priority": 16}), 403)["error"] == "forbidden"
    assert "priority" in error_of(as_role("operator").post(url, {}), 400)["fields"]
    assert "value" in error_of(as_role("operator").post(url, {"priority": 8, "value": 1}), 400)["fields"]
    assert as_role("engineer").post(url, {"priority": 16}).status_code == 202
    assert list(Command.objects.order_by("created_at").values_list("priority", flat=True)) == [8, 16]


def test_writes_need_a_write_token_and_configuration_an_admin_token(plant, users):
    operator, engineer = users["operator"], users["engineer"]
    reader = token_client(operator, "read")
    assert reader.get(f"{V1}/points/").status_code == 200
    refused = error_of(reader.post(f"{V1}/points/hall_setpoint/write", {"value": 20}), 403)
    assert refused["error"] == "token_scope"
    writer = token_client(operator, "write")
    answer = writer.post(f"{V1}/points/hall_setpoint/relinquish", {"priority": 8})
    assert answer.status_code == 202 and answer.json()["user"] == "otto"
    assert writer.post(f"{V1}/points/hall_setpoint/write", {"value": 20}).status_code == 202
    configurer = token_client(engineer, "write")
    patch = configurer.patch(f"{V1}/devices/{plant['plc'].pk}/", {"enabled": False})
    assert error_of(patch, 403)["error"] == "token_scope"
    assert (
        token_client(engineer, "admin").patch(f"{V1}/devices/{plant['plc'].pk}/", {"enabled": False}).status_code == 200
    )


# ---- commands -----------------------------------------------------------------------------------------------------


def test_commands_are_listed_newest_first_and_read_by_id(plant, as_role):
    operator = as_role("operator")
    for number, value in enumerate((20, 21, 22)):
        operator.post(f"{V1}/points/hall_setpoint/write", {"value": value, "command_id": f"c{number}"})
    Command.objects.filter(command_id="c0").update(status=Command.SUCCEEDED)
    viewer = as_role("viewer")
    listed = viewer.get(f"{V1}/commands/").json()
    assert listed["count"] == 3 and [row["command_id"] for row in listed["results"]] == ["c2", "c1", "c0"]
    assert viewer.get(f"{V1}/commands/", {"status": "succeeded"}).json()["results"][0]["command_id"] == "c0"
    assert viewer.get(f"{V1}/commands/", {"point": "hall_temp"}).json()["count"] == 0
    assert "status" in error_of(viewer.get(f"{V1}/commands/", {"status": "done"}), 400)["fields"]
    one = viewer.get(f"{V1}/commands/c1/").json()
    assert (one["value"], one["status"], one["user"]) == (21, "pending", "otto")
    missing = error_of(viewer.get(f"{V1}/commands/nope/"), 404)
    assert missing == {"error": "not_found", "detail": "There is no command 'nope'."}


# ---- events -------------------------------------------------------------------------------------------------------


def add_event(kind: str, source: str, severity: str = "warning", minutes_ago: int = 0) -> Event:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return Event.objects.create(time=when, kind=kind, source=source, severity=severity, message=f"{kind} {source}")


def test_events_are_listed_and_filtered(plant, as_role):
    add_event("comm_lost", "hall_plc", "error", minutes_ago=30)
    add_event("comm_restored", "hall_plc", "info", minutes_ago=20)
    add_event("point_error", "annex_flow", "warning", minutes_ago=10)
    viewer = as_role("viewer")

    def kinds(**query: str) -> list[str]:
        return [row["kind"] for row in viewer.get(f"{V1}/events/", query).json()["results"]]

    assert kinds() == ["point_error", "comm_restored", "comm_lost"]
    assert kinds(severity="error,info") == ["comm_restored", "comm_lost"]
    assert kinds(source="hall_plc", kind="comm_lost") == ["comm_lost"]
    since = (datetime.now(UTC) - timedelta(minutes=25)).isoformat()
    until = (datetime.now(UTC) - timedelta(minutes=15)).isoformat()
    assert kinds(time_from=since, time_to=until) == ["comm_restored"]
    assert "time_to" in error_of(viewer.get(f"{V1}/events/", {"time_from": until, "time_to": since}), 400)["fields"]
    assert "time_from" in error_of(viewer.get(f"{V1}/events/", {"time_from": "yesterday"}), 400)["fields"]
    assert "severity" in error_of(viewer.get(f"{V1}/events/", {"severity": "panic"}), 400)["fields"]


# ---- audit --------------------------------------------------------------------------------------------------------


def test_the_audit_trail_is_for_users_with_the_permission_who_see_every_site(plant, as_role, users):
    as_role("operator").post(f"{V1}/points/hall_setpoint/write", {"value": 20})
    as_role("operator").post(f"{V1}/points/hall_setpoint/write", {"value": 99})
    admin = as_role("administrator")
    body = admin.get(f"{V1}/audit/", {"action": "write.*"}).json()
    assert [row["action"] for row in body["results"]] == ["write.rejected", "write.requested"]
    assert body["results"][1]["user"] == "otto" and body["results"][1]["target"] == "hall_setpoint"
    assert admin.get(f"{V1}/audit/", {"action": "write.requested", "user": "otto"}).json()["count"] == 1
    assert admin.get(f"{V1}/audit/", {"user": "nobody"}).json()["count"] == 0
    assert (
        "time_to"
        in error_of(admin.get(f"{V1}/audit/", {"time_from": "2026-02-01", "time_to": "2026-01-01"}), 400)["fields"]
    )

    refused = error_of(as_role("nobody").get(f"{V1}/audit/"), 403)
    assert refused["error"] == "forbidden" and refused["required"] == ["control.view_auditentry"]
    restricted = JsonClient(restrict(users["administrator"], plant["hall"]))
    refused = error_of(restricted.get(f"{V1}/audit/"), 403)
    assert refused["error"] == "forbidden" and "only some sites" in refused["detail"]


# ---- switchover ---------------------------------------------------------------------------------------------------


def test_switchover_answers_as_the_old_endpoint(as_main, users):  # noqa: F811
    as_main.set_role("active", epoch=6)
    refused = error_of(JsonClient(users["operator"]).post(f"{V1}/redundancy/switchover"), 403)
    assert refused["required"] == ["redundancy.switchover"]
    admin = JsonClient(users["administrator"])
    asked = admin.post(f"{V1}/redundancy/switchover")
    assert asked.status_code == 202, asked.content
    assert asked.json()["message"] == "Switchover requested: main hands control to backup within a few seconds."
    assert NodeState.objects.get(node="main").switchover_requested_by == "ada"


def test_switchover_not_ready_is_a_409_in_the_api_shape(as_main, users):  # noqa: F811
    as_main.set_role("active", partner_caught_up=False)
    refused = error_of(JsonClient(users["administrator"]).post(f"{V1}/redundancy/switchover"), 409)
    assert refused["error"] == "not_ready" and refused["role"] == "active"
    assert refused["detail"].startswith("Switchover refused: the partner backup has not caught up")
    assert NodeState.objects.get(node="main").switchover_requested_at is None
