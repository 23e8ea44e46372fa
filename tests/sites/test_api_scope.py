"""The REST API and the older ``/api/`` scoped by site (ADR 0021): another site's object is answered exactly like
one that does not exist, and lists and counts leave it out.

Two callers see only ``north``: users restricted to it (one per role), and an unrestricted engineer's ``admin``
token narrowed to it. Each object of ``south`` (site, device, point, command, event) is tried by id or name, read
and changed, and the answer compared with the answer for a name or id that does not exist: same status, same error
code, same message but for the name itself. A write to ``south_setpoint`` records no command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User

from bms.control.models import Command
from bms.events.models import Event
from bms.points.models import Device, Point
from bms.sites.models import Site, TokenSite
from bms.tokens.services import issue
from tests.sites.conftest import JsonClient, Sites

V1 = "/api/v1"
MISSING_ID = 987654321


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    """No engine runs: a write is answered once recorded, live states at once."""
    settings.BMS_COMMAND_WAIT_SECONDS = 0.0
    settings.BMS_API_ENGINE_WAIT_SECONDS = 0.02


def token_client(user: User, scope: str, *sites: Site) -> JsonClient:
    """A client sending a new token of ``user`` with ``scope``, narrowed to ``sites``."""
    issued = issue(user, f"{scope} token", scope, 30, by=user)
    for site in sites:
        TokenSite.objects.create(token=issued.token, site=site)
    client = JsonClient()
    client.client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {issued.key}"
    return client


@pytest.fixture(params=["restricted user", "narrowed token"])
def north(request: pytest.FixtureRequest, sites: Sites, north_users: dict[str, User], everywhere: User) -> dict:
    """Clients that see only ``north``, by role: users restricted to it, or one admin token narrowed to it."""
    if request.param == "restricted user":
        return {role: JsonClient(user) for role, user in north_users.items()}
    client = token_client(everywhere, "admin", sites.north)
    return dict.fromkeys(("viewer", "operator", "engineer", "administrator"), client)


@pytest.fixture
def south_command(sites: Sites) -> Command:
    """A command of ``south_setpoint`` (written by someone who sees ``south``)."""
    point = Point.objects.get(name="south_setpoint")
    return Command.objects.create(
        command_id="south-cmd", point=point, point_name=point.name, value=20.0, payload_hash="x", accepted_by="main"
    )


def answer(response: Any, *hidden: tuple[str, str]) -> tuple[int, Any]:
    """The status and JSON body of ``response``, with each ``(text, placeholder)`` replaced (the name asked for)."""
    text = response.content.decode()
    for name, placeholder in hidden:
        text = text.replace(name, placeholder)
    return response.status_code, json.loads(text) if text else None


def same_as_missing(hidden: Any, missing: Any, hidden_key: Any, missing_key: Any, status: int = 404) -> None:
    """``hidden`` (about another site's object) answers exactly like ``missing`` (about none), but for the key."""
    one = answer(hidden, (str(hidden_key), "KEY"))
    other = answer(missing, (str(missing_key), "KEY"))
    assert one == other, (one, other)
    assert one[0] == status, one


# ---- by id or name: read --------------------------------------------------------------------------------------------


def test_another_sites_objects_read_by_id_or_name_do_not_exist(sites, north, south_command):
    viewer = north["viewer"]
    south_device = Device.objects.get(name="south_plc")
    for hidden, missing, hidden_key, missing_key in [
        (f"sites/{sites.south.pk}/", f"sites/{MISSING_ID}/", sites.south.pk, MISSING_ID),
        (f"devices/{south_device.pk}/", f"devices/{MISSING_ID}/", south_device.pk, MISSING_ID),
        ("points/south_temp/", "points/nowhere_temp/", "south_temp", "nowhere_temp"),
        ("points/south_setpoint/priority-array", "points/nowhere/priority-array", "south_setpoint", "nowhere"),
        ("commands/south-cmd/", "commands/nowhere-cmd/", "south-cmd", "nowhere-cmd"),
    ]:
        same_as_missing(viewer.get(f"{V1}/{hidden}"), viewer.get(f"{V1}/{missing}"), hidden_key, missing_key)
    # ... and their own site's objects are there
    assert viewer.get(f"{V1}/points/north_temp/").status_code == 200
    assert viewer.get(f"{V1}/devices/{Device.objects.get(name='north_plc').pk}/").status_code == 200
    assert viewer.get(f"{V1}/sites/{sites.north.pk}/").status_code == 200


# ---- lists and counts ---------------------------------------------------------------------------------------------


def test_lists_and_counts_leave_another_site_out(sites, north, south_command):
    when = datetime.now(UTC)
    for source in ("north_plc", "south_plc", "south_temp", "main"):  # "main": an event of the pair itself
        Event.objects.create(time=when, kind="comm_lost", source=source, severity="error", message=source)
    Command.objects.create(
        command_id="north-cmd",
        point=Point.objects.get(name="north_setpoint"),
        point_name="north_setpoint",
        value=21.0,
        payload_hash="y",
        accepted_by="main",
    )
    viewer = north["viewer"]

    def listed(path: str, **query: str) -> tuple[int, list[Any]]:
        body = viewer.get(f"{V1}/{path}", query).json()
        return body["count"], body["results"]

    assert listed("sites/") == (1, [{"id": sites.north.pk, "name": "north", "title": "North wing"}])
    count, rows = listed("devices/")
    assert (count, [row["name"] for row in rows]) == (1, ["north_plc"])
    count, rows = listed("points/")
    assert (count, sorted(row["name"] for row in rows)) == (2, ["north_setpoint", "north_temp"])
    count, rows = listed("commands/")
    assert (count, [row["command_id"] for row in rows]) == (1, ["north-cmd"])
    count, rows = listed("events/")
    assert (count, [row["source"] for row in rows]) == (1, ["north_plc"])
    # Filtering by the other site's names finds nothing, as for names that do not exist.
    assert listed("devices/", site="south") == listed("devices/", site="atlantis") == (0, [])
    assert listed("points/", site="south") == listed("points/", device="south_plc") == (0, [])
    assert listed("points/", name="south") == (0, [])
    assert listed("commands/", point="south_setpoint") == (0, [])
    assert listed("events/", source="south_plc") == (0, [])
    # Paging counts only what is visible: the second page of one per page is the last.
    page = viewer.get(f"{V1}/points/", {"limit": "1", "offset": "1"}).json()
    assert page["count"] == 2 and page["next"] is None


def test_the_audit_trail_is_refused_to_a_caller_who_sees_some_sites(north):
    refused = north["administrator"].get(f"{V1}/audit/")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


# ---- writes and changes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["write", "relinquish", "priority-array"])
@pytest.mark.parametrize(
    "body", [{"value": 20.0, "priority": 8}, {"value": 999, "priority": 8}, {"value": "x"}, {}], ids=repr
)
def test_a_write_to_another_sites_point_is_a_404_and_records_nothing(sites, north, action, body):
    if action == "relinquish":
        body = {key: value for key, value in body.items() if key != "value"}
    operator = north["operator"]
    hidden = operator.post(f"{V1}/points/south_setpoint/{action}", body)
    missing = operator.post(f"{V1}/points/nowhere/{action}", body)
    same_as_missing(hidden, missing, "south_setpoint", "nowhere")
    assert not Command.objects.exists()
    # The same request to its own site's point gets past the lookup.
    assert operator.post(f"{V1}/points/north_setpoint/{action}", body).status_code != 404


def test_a_viewer_writing_another_sites_point_gets_the_404_of_a_missing_point(sites, north_users):
    viewer = JsonClient(north_users["viewer"])
    hidden = viewer.post(f"{V1}/points/south_setpoint/write", {"value": 20.0})
    missing = viewer.post(f"{V1}/points/nowhere/write", {"value": 20.0})
    same_as_missing(hidden, missing, "south_setpoint", "nowhere")
    assert viewer.post(f"{V1}/points/north_setpoint/write", {"value": 20.0}).status_code == 403
    assert not Command.objects.exists()


def test_another_sites_device_and_site_cannot_be_changed_or_deleted(sites, north):
    engineer = north["engineer"]
    south_device = Device.objects.get(name="south_plc")
    for method, body in (("patch", {"enabled": False}), ("put", {"name": "x", "host": "h"}), ("delete", None)):
        for hidden_path, hidden_key in (
            (f"devices/{south_device.pk}/", south_device.pk),
            (f"sites/{sites.south.pk}/", sites.south.pk),
        ):
            kind = hidden_path.split("/")[0]
            send = getattr(engineer, method)
            hidden = send(f"{V1}/{hidden_path}", body) if body is not None else send(f"{V1}/{hidden_path}")
            missing_path = f"{V1}/{kind}/{MISSING_ID}/"
            missing = send(missing_path, body) if body is not None else send(missing_path)
            same_as_missing(hidden, missing, hidden_key, MISSING_ID)
    south_device.refresh_from_db()
    assert south_device.enabled is True and Site.objects.filter(name="south").exists()


def test_a_device_cannot_be_put_in_another_site(sites, north):
    engineer = north["engineer"]
    north_device = Device.objects.get(name="north_plc")
    hidden = engineer.patch(f"{V1}/devices/{north_device.pk}/", {"site": "south"})
    missing = engineer.patch(f"{V1}/devices/{north_device.pk}/", {"site": "atlantis"})
    same_as_missing(hidden, missing, "south", "atlantis", status=400)
    made = engineer.post(f"{V1}/devices/", {"name": "boiler", "host": "10.0.0.9", "site": "south"})
    assert made.status_code == 400 and "site" in made.json()["fields"]
    assert Device.objects.get(pk=north_device.pk).site == sites.north
    assert not Device.objects.filter(name="boiler").exists()
    # Without a site, a caller who sees only some sites must name one (the default site may be another's).
    unnamed = engineer.post(f"{V1}/devices/", {"name": "boiler", "host": "10.0.0.9"})
    assert unnamed.status_code == 400 and "site" in unnamed.json()["fields"]
    assert engineer.post(f"{V1}/devices/", {"name": "boiler", "host": "10.0.0.9", "site": "north"}).status_code == 201


# ---- the older /api/ (sessions only) --------------------------------------------------------------------------------


def test_the_old_api_answers_another_sites_point_and_command_like_missing_ones(sites, north_users, south_command):
    viewer, operator = JsonClient(north_users["viewer"]), JsonClient(north_users["operator"])
    for hidden, missing, hidden_key, missing_key in [
        ("/api/points/south_temp/", "/api/points/nowhere_temp/", "south_temp", "nowhere_temp"),
        ("/api/commands/south-cmd/", "/api/commands/nowhere-cmd/", "south-cmd", "nowhere-cmd"),
        (
            "/api/points/south_setpoint/priority-array",
            "/api/points/nowhere/priority-array",
            "south_setpoint",
            "nowhere",
        ),
    ]:
        same_as_missing(viewer.get(hidden), viewer.get(missing), hidden_key, missing_key)
    names = [row["name"] for row in viewer.get("/api/points/").json()["points"]]
    assert sorted(names) == ["north_setpoint", "north_temp"]
    for body in ({"value": 20.0}, {"value": 999}, {"value": 20.0, "priority": 99}, {}):
        same_as_missing(
            operator.post("/api/points/south_setpoint/write", body),
            operator.post("/api/points/nowhere/write", body),
            "south_setpoint",
            "nowhere",
        )
    assert Command.objects.count() == 1  # only the south command made by the fixture
    assert operator.post("/api/points/north_setpoint/write", {"value": 20.0}).status_code == 202


def test_an_unrestricted_user_still_sees_and_writes_every_site(sites, everywhere, south_command):
    client = JsonClient(everywhere)
    assert client.get(f"{V1}/points/").json()["count"] == 4
    assert client.get(f"{V1}/commands/south-cmd/").status_code == 200
    assert client.get("/api/commands/south-cmd/").status_code == 200
    assert client.post(f"{V1}/points/south_setpoint/write", {"value": 20.0}).status_code == 202
    assert client.get(f"{V1}/sites/").json()["count"] == Site.objects.count()
