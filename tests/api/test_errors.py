"""Every error under /api/v1/ is one JSON object {"error": code, "detail": text, ...}, never an HTML page,
and bad input (NUL characters, huge numbers, deep JSON, wrong types, unknown names) is a 400 that says what.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.test import RequestFactory

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.api.v1 import errors, parsers
from bms.control.models import AuditEntry
from tests.api.conftest import JsonClient

ACK = "/api/v1/alarms/acknowledge"
SHELVE = "/api/v1/alarms/shelve"
DEFINITIONS = "/api/v1/alarm-definitions/"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


# ---- malformed bodies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ('{"alarms": ["fan_failed"', "JSON parse error"),
        ('{"alarms": ["fan_failed"], "seconds": NaN}', "NaN is not a number JSON allows"),
        ('{"alarms": ["fan_failed"], "seconds": Infinity}', "Infinity is not a number JSON allows"),
        ('{"alarms": ["fan_failed"], "seconds": ' + "9" * 400 + "}", "a number of 400 digits is too long"),
        ('{"alarms": ["fan_failed"], "seconds": -' + "1" * 5000 + "}", "a number of 5000 digits is too long"),
        ('{"alarms": ["fan_failed"], "seconds": 0.' + "1" * 400 + "}", "too long"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"alarms": ' + "[" * 30 + "]" * 30 + "}", "nested too deeply"),
        (b'{"comment": "caf\xe9"}', "not UTF-8"),
    ],
    ids=[
        "truncated",
        "nan",
        "infinity",
        "400-digits",
        "5000-digits",
        "long-fraction",
        "deep-100000",
        "deep-30",
        "latin1",
    ],
)
def test_malformed_bodies_are_400_malformed(as_role, definitions, raw, says):
    body = assert_error(as_role("operator").send("post", SHELVE, raw=raw), 400, "malformed")
    assert says in body["detail"]


def test_a_body_larger_than_the_api_reads_is_413(as_role, definitions):
    raw = json.dumps({"alarms": ["fan_failed"], "comment": "x" * (parsers.MAX_BODY_BYTES + 10)})
    body = assert_error(as_role("operator").send("post", ACK, raw=raw), 413, "too_large")
    assert str(parsers.MAX_BODY_BYTES) in body["detail"]


def test_a_form_body_is_415(as_role, definitions):
    response = as_role("operator").client.post(ACK, {"alarms": "fan_failed"})
    assert_error(response, 415, "unsupported_media_type")


def test_a_body_that_is_not_an_object_is_400(as_role, definitions):
    body = assert_error(as_role("operator").post(ACK, ["fan_failed"]), 400, "invalid")
    assert "Expected a dictionary" in body["detail"]


def test_an_empty_body_names_the_required_field(as_role, definitions):
    body = assert_error(as_role("operator").send("post", ACK, raw=""), 400, "invalid")
    assert body["fields"] == {"alarms": ["This field is required."]}


# ---- NUL characters, huge and infinite numbers, wrong types -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        (ACK, {"alarms": ["fan_failed"], "comment": "ok\u0000"}, "comment"),
        (ACK, {"alarms": ["fan\u0000failed"]}, "alarms"),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": "low", "message": "a\u0000"},
            "message",
        ),
        (DEFINITIONS, {"point": "zone1\u0000setpoint", "kind": "high", "limit": 30, "class": "low"}, "point"),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": "low", "name": "n\u0000"},
            "name",
        ),
    ],
    ids=["comment", "alarm-name", "message", "point", "name"],
)
def test_nul_characters_are_refused(as_role, definitions, path, payload, field):
    body = assert_error(as_role("engineer").post(path, payload), 400, "invalid")
    assert field in body["fields"], body
    assert not AlarmDefinition.objects.filter(point__name="zone1_setpoint").exists()


def test_nul_characters_in_query_parameters_are_refused(as_role, definitions):
    body = assert_error(as_role("viewer").get("/api/v1/alarms/journal/", {"area": "Zone\u00001"}), 400, "invalid")
    assert "Null characters are not allowed" in body["fields"]["area"]["0"][0]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("limit", 1e308 * 10, "A valid number is required"),  # json.dumps writes Infinity: refused before
        ("priority", 10**25, "priority"),
        ("priority", 5000, "priority"),
    ],
    ids=["infinite", "huge-priority", "priority-range"],
)
def test_out_of_range_numbers_are_refused(as_role, definitions, field, value, says):
    payload = {"point": "zone1_setpoint", "kind": "high", "limit": 30.0, "class": "low", field: value}
    response = as_role("engineer").send("post", DEFINITIONS, raw=json.dumps(payload))
    assert response.status_code == 400, response.content
    assert response.json()["error"] in ("invalid", "malformed")
    assert not AlarmDefinition.objects.filter(point__name="zone1_setpoint").exists()


def test_a_float_overflowing_to_infinity_is_refused(as_role, definitions):
    raw = '{"point": "zone1_setpoint", "kind": "high", "limit": 1e400, "class": "low"}'
    body = assert_error(as_role("engineer").send("post", DEFINITIONS, raw=raw), 400, "invalid")
    assert "limit" in body["fields"]


@pytest.mark.parametrize(
    ("path", "payload", "field", "says"),
    [
        (ACK, {"alarms": "fan_failed"}, "alarms", "Expected an array of alarm names, got a string"),
        (ACK, {"alarms": {"name": "fan_failed"}}, "alarms", "Expected an array of alarm names, got an object"),
        (ACK, {"alarms": [42]}, "alarms", "Expected a string, got a number"),
        (ACK, {"alarms": []}, "alarms", "may not be empty"),
        (ACK, {"alarms": ["fan_failed"], "comment": 5}, "comment", "Expected a string, got a number"),
        (SHELVE, {"alarms": ["fan_failed"], "seconds": "60"}, "seconds", "Expected a number, got a string"),
        (SHELVE, {"alarms": ["fan_failed"], "seconds": True}, "seconds", "Expected a number, got a boolean"),
        (SHELVE, {"alarms": ["fan_failed"], "seconds": 0}, "seconds", "more than 0"),
        (SHELVE, {"alarms": ["fan_failed"], "seconds": 10**6}, "seconds", "at most 28800"),
        (SHELVE, {"alarms": ["fan_failed"], "until_normal": "yes"}, "until_normal", "Expected true or false"),
        (DEFINITIONS, {"point": 7, "kind": "high", "limit": 30, "class": "low"}, "point", "Expected a name"),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "high", "limit": "30", "class": "low"},
            "limit",
            "Expected a number",
        ),
        (DEFINITIONS, {"point": "zone1_setpoint", "kind": "high", "limit": True, "class": "low"}, "limit", "boolean"),
        (DEFINITIONS, {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": ["low"]}, "class", "an array"),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": "low", "enabled": "true"},
            "enabled",
            "true or false",
        ),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": "low", "priority": 2.5},
            "priority",
            "whole number",
        ),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "hihg", "limit": 30, "class": "low"},
            "kind",
            "Unknown kind 'hihg'",
        ),
        (
            DEFINITIONS,
            {"point": "no_such_point", "kind": "high", "limit": 30, "class": "low"},
            "point",
            "does not exist",
        ),
        (
            DEFINITIONS,
            {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": "urgent"},
            "class",
            "does not exist",
        ),
    ],
)
def test_wrong_types_and_unknown_names_name_the_field(as_role, definitions, path, payload, field, says):
    body = assert_error(as_role("engineer").post(path, payload), 400, "invalid")
    assert says in json.dumps(body["fields"][field]), body
    assert field in body["detail"]


def test_unknown_alarms_make_the_whole_action_a_400(as_role, definitions):
    body = assert_error(as_role("operator").post(ACK, {"alarms": ["fan_failed", "no_such_alarm"]}), 400, "invalid")
    assert body["fields"] == {"alarms": ["There is no alarm named 'no_such_alarm'."]}


def test_too_many_alarms_in_one_action(as_role, definitions):
    names = [f"alarm{i}" for i in range(1001)]
    body = assert_error(as_role("operator").post(ACK, {"alarms": names}), 400, "invalid")
    assert "1000" in body["fields"]["alarms"][0]


def test_model_validation_becomes_field_messages(as_role, definitions):
    payload = {"point": "ahu1_fan", "kind": "high", "limit": 1, "class": "low"}
    body = assert_error(as_role("engineer").post(DEFINITIONS, payload), 400, "invalid")
    assert body["fields"] == {
        "kind": [
            "ahu1_fan is a bool point: a high alarm (a limit on a number) cannot apply; use state_equal or "
            "state_not_equal"
        ]
    }
    payload = {"point": "zone1_temp", "kind": "high", "limit": 10, "class": "low", "name": "zone1_temp.high2"}
    body = assert_error(as_role("engineer").post(DEFINITIONS, payload), 400, "invalid")
    assert "below the low limit 16" in body["fields"]["limit"][0]


# ---- query parameters and pagination ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/alarms/journal/", {"limit": "0"}, "limit"),
        ("/api/v1/alarms/journal/", {"limit": "abc"}, "limit"),
        ("/api/v1/alarms/journal/", {"limit": "501"}, "limit"),
        ("/api/v1/alarms/journal/", {"limit": "9" * 400}, "limit"),
        ("/api/v1/alarms/journal/", {"offset": "-1"}, "offset"),
        ("/api/v1/alarms/journal/", {"transition": "exploded"}, "transition"),
        ("/api/v1/alarms/journal/", {"time_from": "yesterday"}, "time_from"),
        ("/api/v1/alarms/journal/", {"time_from": "2026-12-02T00:00Z", "time_to": "2026-12-01T00:00Z"}, "time_to"),
        ("/api/v1/alarms/journal/", {"alarmz": "x"}, "alarmz"),
        ("/api/v1/alarms/", {"state": "on_fire"}, "state"),
        ("/api/v1/alarms/", {"priority_min": "9" * 400}, "priority_min"),
        ("/api/v1/alarms/", {"priority_min": "500", "priority_max": "100"}, "priority_max"),
        ("/api/v1/alarm-definitions/", {"kind": "hihg"}, "kind"),
    ],
)
def test_bad_query_parameters_are_400(as_role, definitions, path, params, field):
    body = assert_error(as_role("viewer").get(path, params), 400, "invalid")
    assert field in body["fields"], body


# ---- authentication, CSRF, methods, URLs ------------------------------------------------------------------------


def test_anonymous_is_401_with_a_json_body(db):
    body = assert_error(JsonClient().post(ACK, {"alarms": ["x"]}), 401, "unauthenticated")
    assert "credentials" in body["detail"]


def test_a_change_without_the_csrf_token_is_refused(users, definitions):
    client = JsonClient(users["operator"], enforce_csrf_checks=True)
    body = assert_error(client.post(ACK, {"alarms": ["fan_failed"]}), 403, "csrf_failed")
    assert "X-CSRFToken" in body["detail"]


def test_a_wrong_method_is_405_with_allow(as_role, definitions):
    response = as_role("operator").get(ACK)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"
    assert_error(as_role("engineer").delete("/api/v1/alarms/"), 405, "method_not_allowed")


def test_an_unacceptable_accept_header_is_406_in_json(as_role, definitions):
    response = as_role("viewer").get("/api/v1/alarm-classes/", HTTP_ACCEPT="text/html")
    assert_error(response, 406, "not_acceptable")


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/api/v1/nothing-here/", "/api/v1/docs/"),
        ("/api/v1/alarms", "Did you mean /api/v1/alarms/?"),
        ("/api/v1/alarms/acknowledge/", "Did you mean /api/v1/alarms/acknowledge?"),
        ("/api/v1/alarm-definitions/abc/", "/api/v1/docs/"),
        ("/api/v1/alarm-definitions/4242/", "There is no alarm definition with id 4242."),
        ("/api/v1/alarm-definitions/99999999999999999999999999/", "There is no alarm definition"),
        ("/api/v1/alarm-classes/4242/", "There is no alarm class with id 4242."),
    ],
)
def test_unknown_urls_and_objects_are_json_404s(as_role, definitions, path, hint):
    body = assert_error(as_role("viewer").get(path), 404, "not_found")
    assert hint in body["detail"]


def test_outside_the_api_django_pages_stay(as_role, db):
    response = as_role("viewer").get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# ---- conflicts, unavailable parts, the standby, the unexpected ---------------------------------------------------


def test_deleting_a_class_in_use_is_409(as_role, definitions):
    high = AlarmClass.objects.get(name="high")
    body = assert_error(as_role("engineer").delete(f"/api/v1/alarm-classes/{high.pk}/"), 409, "in_use")
    assert "fan_failed" in body["detail"] and "zone1_temp.high" in body["detail"]
    assert AlarmClass.objects.filter(pk=high.pk).exists()


def test_a_missing_engine_is_503_with_retry_after(as_role, definitions):
    response = as_role("operator").post(ACK, {"alarms": ["fan_failed"]})
    body = assert_error(response, 503, "engine_unavailable")
    assert "engine did not answer" in body["detail"]
    assert response["Retry-After"] == "2"
    assert_error(as_role("viewer").get("/api/v1/alarms/"), 503, "engine_unavailable")


def test_a_standby_refuses_changes_in_json_and_records_them(as_role, definitions, as_backup):
    as_backup.set_role("standby", epoch=3)
    client = as_role("engineer")
    response = client.post(ACK, {"alarms": ["fan_failed"]})
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "standby"
    assert body["active_node"] == "main"
    assert body.get("detail") or body.get("message")  # the guard (redundancy.middleware) says "message" so far
    response = client.patch(f"/api/v1/alarm-definitions/{definitions['fan_failed'].pk}/", {"area": "moved"})
    assert response.status_code == 503 and response.json()["error"] == "standby"
    assert AuditEntry.objects.filter(action="refused.standby", target=ACK).count() == 1
    assert client.get("/api/v1/alarm-definitions/").status_code == 200, "reads stay possible on a standby"


def test_an_unexpected_error_is_a_logged_json_500_without_internals(as_role, definitions, monkeypatch, caplog):
    """A fault no real part produces on demand: the journal query raises something nobody expected."""

    def broken(rows, query):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("bms.api.v1.alarms.select_journal", broken)
    with caplog.at_level(logging.ERROR, logger="bms.api.v1.errors"):
        response = as_role("viewer").get("/api/v1/alarms/journal/")
    assert_error(response, 500, "internal_error")
    assert "secret" not in response.content.decode()
    assert "secret internals" in caplog.text


def test_django_error_handlers_answer_json_only_under_the_api(db):
    factory = RequestFactory()
    response = errors.handler500(factory.get("/api/v1/alarms/"))
    assert response.status_code == 500 and json.loads(response.content)["error"] == "internal_error"
    older = json.loads(errors.handler500(factory.get("/api/points/")).content)
    assert older["error"] == "internal_error" and older["message"]
    assert not errors.handler500(factory.get("/points/"))["Content-Type"].startswith("application/json")
    response = errors.handler400(factory.get("/api/v1/alarms/"), ValueError("bad"))
    assert response.status_code == 400 and json.loads(response.content)["error"] == "bad_request"
    response = errors.handler404(factory.get("/api/v1/gone"), None)
    assert json.loads(response.content)["error"] == "not_found"


def test_the_older_api_keeps_its_shape(as_role, points):
    response = as_role("viewer").get("/api/points/no_such_point/")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_point", "message": "there is no point named 'no_such_point'"}


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        (SHELVE, {"alarms": ["fan_failed"], "secnds": 60}, "secnds"),
        (DEFINITIONS, {"point": "zone1_setpoint", "kind": "high", "limt": 30, "class": "low"}, "limt"),
    ],
)
def test_a_misspelt_field_is_refused_not_ignored(as_role, definitions, path, payload, field):
    body = assert_error(as_role("engineer").post(path, payload), 400, "invalid")
    assert body["fields"][field][0].startswith("Unknown field; use ")
    assert not AlarmDefinition.objects.filter(point__name="zone1_setpoint").exists()
