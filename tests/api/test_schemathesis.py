"""Schemathesis fuzzes every operation of the OpenAPI schema in-process: no 500, no answer that breaks the schema.

The schema is the one ``/api/v1/schema/`` serves (drf-spectacular's generator,
built at collection so that each operation is its own test item and a new
endpoint is fuzzed without touching this file). Each operation gets a bounded,
seeded number of generated requests (valid ones and ones that break the
schema), sent through Django's WSGI handler in this process, so every
middleware, the token authentication and the error handlers run as on a node,
against the real PostgreSQL test database holding a small plant: sites, devices,
points, commands, events, alarm definitions, schedules, calendars and rules. The client is an
engineer with an ``admin`` API token, so changes pass the permission checks and
reach the serializers and models, where bad input must be a 400.

No engine runs: endpoints that ask it (live alarms, alarm actions, rules/live,
live schedule states, live point values) must answer the documented 503 or their
``live_problem`` within the short waits of ``tests/api/conftest.py``, never hang;
a point write is answered as soon as it is recorded (202, no wait for an outcome).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.control.models import Command
from bms.events.models import Event
from bms.logic.models import Rule
from bms.points.models import Device, Point
from bms.schedules.models import Calendar, CalendarEntry, ExceptionEvent, Schedule, ScheduleTarget
from bms.sites.models import Site
from bms.tokens.services import issue
from tests.api.conftest import make_user

#: generated requests per operation (each one real request through the whole stack)
MAX_EXAMPLES = 25
#: fixed, so a failure in CI is the same failure on a developer's machine
SEED = 20261130
#: the 503s an endpoint may answer here, where no engine runs: documented, with a JSON error that says why
OUTAGES = {"engine_unavailable", "not_active"}


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' ``not_a_server_error``, except a documented 503 saying the engine did not answer.

    That is the right answer of an endpoint that asks the engine when none runs (the documented outage, with
    Retry-After); any other 5xx, an undocumented 503 included, is still a failure.
    """
    documented = case.operation.definition.raw.get("responses", {})
    if response.status_code == 503 and "503" in documented:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error") in OUTAGES:
            return True
    return not_a_server_error(ctx, response, case)


#: Not negative_data_rejection: it flags filters that are lenient on purpose (repeated names are counted once
#: before the 200-value bound, an empty ``?alarm=`` filters nothing), not bad input that gets through.
CHECKS = [no_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def openapi_document() -> dict[str, Any]:
    """What ``GET /api/v1/schema/?format=json`` answers, without a request (and without the database)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        # Only the fuzzing phase, bounded by max-examples: the coverage phase sends every boundary value of every
        # field (hundreds of requests for one schedule PUT), far beyond what a unit test run can afford.
        "phases": {"coverage": {"enabled": False}},
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            # The token is sent by the test; generated Authorization headers or session cookies would only test
            # that a wrong credential is a 401.
            "with-security-parameters": False,
        },
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
schema.app = WSGIHandler()


@pytest.fixture
def wsgi_in_test_transaction(db) -> Iterator[None]:
    """Keep the test's transaction across requests, as Django's test client does.

    The WSGI handler closes a connection whose autocommit differs from the settings at the end of each request,
    which inside the test's transaction would close it (and lose the plant).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def plant(db) -> dict[str, list[Any]]:
    # The stored ids and names, by the path their operations start with (for aim_at_stored_objects).
    """A small building with one object of every kind the API reads, so generated ids and names find some."""
    hall = Site.objects.create(name="hall", title="Town hall")
    ahu = Device.objects.create(name="ahu", host="127.0.0.1", port=1502)
    vav = Device.objects.create(name="vav", host="127.0.0.1", port=1503)
    boiler = Device.objects.create(name="boiler", host="127.0.0.1", port=1504, site=hall)
    specs = [
        (ahu, "zone1_temp", "ir:0", "float32", False, None, None),
        (ahu, "zone1_setpoint", "hr:0", "float32", True, 12.0, 28.0),
        (ahu, "ahu1_fan", "co:0", "bool", True, None, None),
        (vav, "vav1_damper", "hr:2", "float32", True, 0.0, 100.0),
        (vav, "vav1_flow", "ir:2", "float32", False, None, None),
    ]
    points = {
        name: Point.objects.create(
            device=device,
            name=name,
            address=address,
            data_type=kind,
            writable=writable,
            min_value=low,
            max_value=high,
            unit="degC" if kind == "float32" else "",
        )
        for device, name, address, kind, writable, low, high in specs
    }
    high = AlarmClass.objects.get(name="high")
    definitions = [
        AlarmDefinition.objects.create(point=points["zone1_temp"], kind="high", limit=26.0, alarm_class=high),
        AlarmDefinition.objects.create(
            name="fan_failed", point=points["ahu1_fan"], kind="state_equal", alarm_value=0, alarm_class=high
        ),
    ]
    calendar = Calendar.objects.create(name="holidays", holiday_country="DE")
    CalendarEntry.objects.create(calendar=calendar, kind="date", date=date(2026, 12, 24))
    office = Schedule.objects.create(
        name="office",
        value_type="real",
        default_value=17.0,
        time_zone="Europe/Berlin",
        weekly={"monday": [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": 17.0}]},
    )
    ExceptionEvent.objects.create(
        schedule=office, kind="calendar", calendar=calendar, time_values=[{"time": "00:00", "value": 16.0}]
    )
    ScheduleTarget.objects.create(schedule=office, point=points["zone1_setpoint"], priority=14)
    rule = Rule.objects.create(
        name="damper",
        kind="expression",
        expression="limit(({zone1_setpoint} - {zone1_temp}) * 20, 0, 100)",
        output="vav1_damper",
        priority=12,
    )
    command = Command.objects.create(
        command_id="fuzz-cmd",
        point=points["zone1_setpoint"],
        point_name="zone1_setpoint",
        value=21.0,
        priority=8,
        payload_hash="x",
        accepted_by="main",
    )
    Event.objects.create(
        time=datetime.now(UTC), kind="comm_lost", source="ahu", severity="error", message="ahu: no answer"
    )
    return {
        "/api/v1/sites/": [hall.pk],
        "/api/v1/devices/": [ahu.pk, vav.pk, boiler.pk],
        "/api/v1/commands/": [command.command_id],
        "/api/v1/alarm-definitions/": [row.pk for row in definitions],
        "/api/v1/alarm-classes/": list(AlarmClass.objects.values_list("pk", flat=True)),
        "/api/v1/schedules/": [office.pk],
        "/api/v1/calendars/": [calendar.pk],
        "/api/v1/rules/": [rule.pk],
        "/api/v1/points/": list(points),
    }


@pytest.fixture(autouse=True)
def _answer_writes_at_once(settings: Any) -> None:
    """No engine executes the generated writes: answer each as soon as it is recorded (202), without waiting."""
    settings.BMS_COMMAND_WAIT_SECONDS = 0.0


@pytest.fixture
def token(db) -> str:
    engineer = make_user("fuzz", "engineer")
    return issue(engineer, "fuzz", "admin", 30, by=engineer).key


def aim_at_stored_objects(case: Any, plant: dict[str, list[Any]]) -> None:
    """Point about half of the generated ids and names at objects that exist (a random one is almost always a 404).

    Chosen from the generated value itself, so the run stays deterministic. Only values of the documented type
    are replaced: the others (negative cases) test the URL converters and must stay a 404.
    """
    stored = next((keys for prefix, keys in plant.items() if case.operation.path.startswith(prefix)), None)
    parameters = case.path_parameters or {}
    if not stored:
        return
    for key, value in parameters.items():
        if key == "id" and isinstance(value, int) and not isinstance(value, bool) and value % 2 == 0:
            parameters[key] = stored[(value // 2) % len(stored)]
        elif key in ("name", "command_id") and isinstance(value, str) and len(value) % 2 == 0:
            parameters[key] = stored[(len(value) // 2) % len(stored)]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_api_operation(case, wsgi_in_test_transaction, plant, token):
    aim_at_stored_objects(case, plant)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


# ---- what the fuzzing found, pinned down ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/v1/schedules/null,null/", "/api/v1/no-such-endpoint"])
def test_a_change_to_a_path_that_does_not_exist_is_a_json_404_not_a_csrf_page(token, method, path):
    """Found by the fuzzing: the catch-all 404 view was not CSRF-exempt, so a token client's DELETE to a bad id got
    Django's HTML 403 "CSRF cookie not set" page. (Django's test client skips CSRF unless told, which hid it.)"""
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(
        path, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"


PAGED = [
    (path, method)
    for path, operations in schema.raw_schema["paths"].items()
    for method, operation in operations.items()
    if {"limit", "offset"} <= {parameter["name"] for parameter in operation.get("parameters", [])}
]


@pytest.mark.parametrize(("path", "method"), PAGED)
def test_every_paginated_list_documents_its_400(path, method, token):
    """Found by the fuzzing: alarm-classes, schedules, calendars and rules answered a bad ``offset`` with a 400 their
    schema did not list; live alarms asked the engine first and, with none running, answered 503 instead of 400."""
    assert "400" in schema.raw_schema["paths"][path][method]["responses"]
    response = Client().get(path, {"offset": "10000001"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
