"""Fixtures of the REST API tests: one user per role, JSON clients, a few points and alarm definitions.

The role groups come from bms.accounts' data migration; a transactional test
elsewhere may have flushed them (and the default alarm classes), so each test
that uses the database puts them back first, as a fresh migration would.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.test import Client

from bms.accounts import roles
from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.points.models import Device, Point
from tests.redundancy.pairweb import as_backup  # noqa: F401  (this process plays a standby node)
from tests.support.fixtures import node, simulator  # noqa: F401  (a real node for test_live_node.py)

_default_classes = importlib.import_module("bms.alarms.migrations.0002_default_alarm_classes")
PASSWORD = "api-test-pass-1"
ROLE_USERS = {"viewer": "vera", "operator": "otto", "engineer": "erin", "administrator": "ada"}


@pytest.fixture(autouse=True)
def _roles_and_classes(request: pytest.FixtureRequest) -> None:
    if "db" in request.fixturenames or "transactional_db" in request.fixturenames:
        request.getfixturevalue("db")
        roles.sync_roles()
        _default_classes.create_classes(apps, None)


@pytest.fixture(autouse=True)
def _short_engine_waits(settings: Any) -> None:
    """No engine runs in these tests (except where one is started): fail fast instead of waiting 3-5 s."""
    settings.BMS_API_ENGINE_WAIT_SECONDS = 0.2
    settings.BMS_API_ACTION_WAIT_SECONDS = 0.2


class JsonClient:
    """Django's test client speaking JSON, logged in as ``user`` (or anonymous)."""

    def __init__(self, user: User | None = None, enforce_csrf_checks: bool = False) -> None:
        self.client = Client(enforce_csrf_checks=enforce_csrf_checks)
        self.user = user
        if user is not None:
            self.client.force_login(user)

    def get(self, path: str, params: dict[str, Any] | None = None, **extra: Any) -> Any:
        return self.client.get(path, params or {}, **extra)

    def send(self, method: str, path: str, body: Any = None, raw: bytes | str | None = None, **extra: Any) -> Any:
        data = raw if raw is not None else json.dumps(body)
        extra.setdefault("content_type", "application/json")
        return getattr(self.client, method)(path, data, **extra)

    def post(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self.send("post", path, body, **extra)

    def patch(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self.send("patch", path, body, **extra)

    def put(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self.send("put", path, body, **extra)

    def delete(self, path: str, **extra: Any) -> Any:
        return self.client.delete(path, **extra)


def make_user(username: str, role: str | None = None, **fields: Any) -> User:
    user = User.objects.create_user(username, password=PASSWORD, **fields)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def users(db) -> dict[str, User]:
    """One user per role, plus ``nobody`` (logged in, in no group)."""
    made = {role: make_user(name, role) for role, name in ROLE_USERS.items()}
    made["nobody"] = make_user("nobody")
    return made


@pytest.fixture
def as_role(users: dict[str, User]):
    """``as_role("operator")``: a JSON client logged in as that role's user (``None``: anonymous)."""

    def client(role: str | None) -> JsonClient:
        return JsonClient(users[role] if role else None)

    return client


@pytest.fixture
def points(db) -> dict[str, Point]:
    plant = Device.objects.create(name="plant", host="127.0.0.1", port=1502)
    specs = [
        ("zone1_temp", "ir:0", "float32", "degC"),
        ("zone1_setpoint", "hr:0", "float32", "degC"),
        ("ahu1_fan", "co:0", "bool", ""),
        ("ahu1_off", "co:1", "bool", ""),
    ]
    return {
        name: Point.objects.create(device=plant, name=name, address=address, data_type=data_type, unit=unit)
        for name, address, data_type, unit in specs
    }


@pytest.fixture
def definitions(points: dict[str, Point]) -> dict[str, AlarmDefinition]:
    high = AlarmClass.objects.get(name="high")
    low = AlarmClass.objects.get(name="low")
    return {
        "zone1_temp.high": AlarmDefinition.objects.create(
            point=points["zone1_temp"], kind="high", limit=26.0, alarm_class=high, area="Zone 1"
        ),
        "zone1_temp.low": AlarmDefinition.objects.create(
            point=points["zone1_temp"], kind="low", limit=16.0, alarm_class=low, area="Zone 1"
        ),
        "fan_failed": AlarmDefinition.objects.create(
            name="fan_failed",
            point=points["ahu1_fan"],
            kind="state_equal",
            alarm_value=0,
            alarm_class=high,
            area="AHU-1",
        ),
    }
