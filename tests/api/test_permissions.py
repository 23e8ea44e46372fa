"""Who may do what, per role: reading for every logged-in user, acknowledging and shelving for operators,
definitions, classes and out of service for engineers (and administrators); nothing without a login.

No engine runs here: an action that passes the permission check is answered 503 ``engine_unavailable``,
which tells it apart from the 401/403 of a refusal.
"""

from __future__ import annotations

from typing import Any

import pytest

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.control.models import AuditEntry

ROLES = (None, "nobody", "viewer", "operator", "engineer", "administrator")
ALL_READ = {None: 401, "nobody": 200, "viewer": 200, "operator": 200, "engineer": 200, "administrator": 200}


def expect(anonymous: int, refused: tuple[str, ...], allowed: int) -> dict[str | None, int]:
    """Statuses per role: 401 anonymous, 403 for ``refused`` roles, ``allowed`` for the others."""
    return {role: anonymous if role is None else (403 if role in refused else allowed) for role in ROLES}


OPERATOR_ACTION = expect(401, ("nobody", "viewer"), 503)
ENGINEER_CHANGE = {"nobody", "viewer", "operator"}


def case(role: str | None, status: int) -> Any:
    return pytest.param(role, status, id=f"{role or 'anonymous'}-{status}")


def cases(table: dict[str | None, int]) -> list[Any]:
    return [case(role, status) for role, status in table.items()]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/alarms/journal/", "/api/v1/alarm-definitions/", "/api/v1/alarm-classes/", "/api/v1/redundancy/status"],
)
@pytest.mark.parametrize(("role", "status"), cases(ALL_READ))
def test_reading_needs_a_login_only(as_role, definitions, path, role, status):
    response = as_role(role).get(path)
    assert response.status_code == status, response.content
    if status == 401:
        assert response.json()["error"] == "unauthenticated"
        assert response["WWW-Authenticate"].startswith("Session")


@pytest.mark.parametrize(("role", "status"), cases(expect(401, (), 503)))
def test_live_states_need_a_login_only(as_role, definitions, role, status):
    response = as_role(role).get("/api/v1/alarms/")
    assert response.status_code == status, response.content
    if status == 503:
        assert response.json()["error"] == "engine_unavailable"


@pytest.mark.parametrize(("role", "status"), cases(ALL_READ))
def test_reading_one_definition_needs_a_login_only(as_role, definitions, role, status):
    response = as_role(role).get(f"/api/v1/alarm-definitions/{definitions['fan_failed'].pk}/")
    assert response.status_code == status


@pytest.mark.parametrize(
    ("action", "permission", "extra"),
    [
        ("acknowledge", "alarms.acknowledge_alarm", {}),
        ("shelve", "alarms.shelve_alarm", {"seconds": 60}),
        ("unshelve", "alarms.shelve_alarm", {}),
    ],
)
@pytest.mark.parametrize(("role", "status"), cases(OPERATOR_ACTION))
def test_acknowledging_and_shelving_need_the_operator_permissions(
    as_role, definitions, action, permission, extra, role, status
):
    response = as_role(role).post(f"/api/v1/alarms/{action}", {"alarms": ["fan_failed"], **extra})
    assert response.status_code == status, response.content
    body = response.json()
    if status == 403:
        assert body["error"] == "forbidden"
        assert body["required"] == [permission]
        assert "operator role" in body["detail"]


DEFINITION = {"point": "zone1_setpoint", "kind": "high", "limit": 30.0, "class": "medium", "area": "Zone 1"}


@pytest.mark.parametrize(("role", "status"), cases(expect(401, tuple(ENGINEER_CHANGE), 201)))
def test_creating_a_definition_needs_the_engineer_permissions(as_role, definitions, role, status):
    response = as_role(role).post("/api/v1/alarm-definitions/", DEFINITION)
    assert response.status_code == status, response.content
    assert AlarmDefinition.objects.filter(name="zone1_setpoint.high").exists() == (status == 201)
    if status == 403:
        assert response.json()["required"] == ["alarms.add_alarmdefinition"]


@pytest.mark.parametrize(("role", "status"), cases(expect(401, tuple(ENGINEER_CHANGE), 200)))
def test_changing_a_definition_needs_the_engineer_permissions(as_role, definitions, role, status):
    definition = definitions["zone1_temp.high"]
    response = as_role(role).patch(f"/api/v1/alarm-definitions/{definition.pk}/", {"limit": 27.5})
    assert response.status_code == status, response.content
    definition.refresh_from_db()
    assert definition.limit == (27.5 if status == 200 else 26.0)


@pytest.mark.parametrize(("role", "status"), cases(expect(401, tuple(ENGINEER_CHANGE), 204)))
def test_deleting_a_definition_needs_the_engineer_permissions(as_role, definitions, role, status):
    definition = definitions["zone1_temp.low"]
    response = as_role(role).delete(f"/api/v1/alarm-definitions/{definition.pk}/")
    assert response.status_code == status, response.content
    assert AlarmDefinition.objects.filter(pk=definition.pk).exists() == (status != 204)


@pytest.mark.parametrize(("role", "status"), cases(expect(401, tuple(ENGINEER_CHANGE), 200)))
def test_out_of_service_needs_its_own_permission(as_role, definitions, role, status):
    definition = definitions["fan_failed"]
    response = as_role(role).post(
        f"/api/v1/alarm-definitions/{definition.pk}/out-of-service", {"out_of_service": True, "comment": "fan swap"}
    )
    assert response.status_code == status, response.content
    definition.refresh_from_db()
    assert definition.out_of_service == (status == 200)
    if status == 403:
        assert response.json()["required"] == ["alarms.set_out_of_service"]
        assert "engineer role" in response.json()["detail"]


@pytest.mark.parametrize(("role", "status"), cases(expect(401, tuple(ENGINEER_CHANGE), 201)))
def test_creating_a_class_needs_the_engineer_permissions(as_role, db, role, status):
    body = {"name": "maintenance", "default_priority": 800, "colour": "#00838f", "ack_required": False}
    response = as_role(role).post("/api/v1/alarm-classes/", body)
    assert response.status_code == status, response.content
    assert AlarmClass.objects.filter(name="maintenance").exists() == (status == 201)


@pytest.mark.parametrize(("role", "status"), cases(expect(401, tuple(ENGINEER_CHANGE), 200)))
def test_changing_a_class_needs_the_engineer_permissions(as_role, db, role, status):
    low = AlarmClass.objects.get(name="low")
    response = as_role(role).patch(f"/api/v1/alarm-classes/{low.pk}/", {"colour": "#0d47a1"})
    assert response.status_code == status, response.content


def test_a_superuser_may_do_everything(definitions):
    from tests.api.conftest import JsonClient, make_user

    root = JsonClient(make_user("root", is_superuser=True))
    definition = definitions["fan_failed"]
    assert (
        root.post(f"/api/v1/alarm-definitions/{definition.pk}/out-of-service", {"out_of_service": True}).status_code
        == 200
    )
    assert root.post("/api/v1/alarms/acknowledge", {"alarms": ["fan_failed"]}).status_code == 503  # no engine here
    entry = AuditEntry.objects.get(action="alarm.out_of_service")
    assert (entry.username, entry.target, entry.detail["via"]) == ("root", "fan_failed", "api")
