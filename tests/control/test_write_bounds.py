"""Hostile write requests: a clear JSON 400 (never a 500), and an audit row that is short and replicable."""

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from bms.audit.values import RECORDED_CHARS, recordable
from bms.control.models import AuditEntry, Command
from redundancy import framing, history

DEEP_600 = "[" * 600 + "]" * 600
DEEP_1000 = "[" * 1000 + "]" * 1000
HUGE = "1" + "0" * 400


@pytest.fixture
def operator(db, client):
    call_command("loaddemo", modbus_port=1, demo_user=True, verbosity=0)
    client.force_login(User.objects.get(username="demo"))
    return client


def post_raw(client, body: str, point: str = "zone1_setpoint"):
    return client.post(f"/api/points/{point}/write", data=body, content_type="application/json")


def rejected_audit() -> AuditEntry:
    return AuditEntry.objects.get(action="write.rejected")


def assert_replicable(entry: AuditEntry) -> None:
    """The row goes through the sync link's encoder as it is, and replication would not quarantine it."""
    fields = [field.attname for field in AuditEntry._meta.concrete_fields if not field.primary_key]
    row = AuditEntry.objects.filter(pk=entry.pk).values_list(*fields).get()
    framing.pack({"t": "history", "batches": [{"rows": [row]}]})
    batches, _ = history.rows_after({})
    sent = [b for b in batches if b["table"] == "control.auditentry"]
    assert sum(len(b["rows"]) for b in sent) == AuditEntry.objects.count()


def test_a_400_digit_integer_is_refused_as_out_of_range_and_recorded_short(operator):
    response = post_raw(operator, '{"value": ' + HUGE + "}")
    assert response.status_code == 400
    assert response.json()["error"] == "out_of_range"
    assert "too large" in response.json()["message"] and len(response.json()["message"]) < 200
    entry = rejected_audit()
    assert entry.detail["value"] == "<integer of about 401 digits>"
    assert_replicable(entry)
    assert not Command.objects.exists()


@pytest.mark.parametrize("point", ["zone1_setpoint", "ahu1_fan_cmd"])
def test_a_value_nested_600_deep_is_refused_and_recorded_as_a_short_preview(operator, point):
    response = post_raw(operator, '{"value": ' + DEEP_600 + "}", point)
    assert response.status_code == 400
    assert response.json()["error"] == "wrong_type"
    assert len(response.json()["message"]) < 200
    value = rejected_audit().detail["value"]
    assert isinstance(value, str) and value.startswith("[[") and len(value) <= RECORDED_CHARS
    assert_replicable(rejected_audit())


def test_a_body_nested_1000_deep_is_a_json_400(operator):
    response = post_raw(operator, '{"value": ' + DEEP_1000 + "}")
    assert response.status_code == 400
    assert response.json() == {"error": "malformed", "message": "the body is nested too deeply"}


def test_an_integer_python_cannot_even_parse_is_a_json_400(operator):
    response = post_raw(operator, '{"value": 1' + "0" * 5000 + "}")
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"


def test_nul_characters_are_refused_and_escaped_in_the_audit_trail(operator):
    response = post_raw(operator, json.dumps({"value": "2\u00001", "command_id": "a\u0000b"}))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"  # the command id is checked first
    detail = rejected_audit().detail
    assert detail["value"] == "2\\x001" and detail["command_id"] == "a\\x00b"
    assert_replicable(rejected_audit())

    response = post_raw(operator, json.dumps({"value": {"\u0000": "\u0000" * 10_000}}))
    assert response.status_code == 400 and response.json()["error"] == "wrong_type"


def test_a_point_name_with_nul_is_a_404_with_an_escaped_audit_target(operator):
    response = post_raw(operator, '{"value": 1}', point="zone%00" + "x" * 300)
    assert response.status_code == 404 and response.json()["error"] == "unknown_point"
    entry = rejected_audit()
    assert "\x00" not in entry.target and len(entry.target) <= 128
    assert "\x00" not in entry.detail["message"] and len(entry.detail["message"]) <= 300


def test_jsonable_keeps_plain_values_and_bounds_everything_else():
    assert [recordable(v) for v in (None, True, 7, -(2**63), 2**64 - 1, 2.5, "ok")] == [
        None,
        True,
        7,
        -(2**63),
        2**64 - 1,
        2.5,
        "ok",
    ]
    assert recordable(2**64) == "<integer of about 20 digits>"
    assert recordable(float("nan")) == "nan" and recordable(float("-inf")) == "-inf"
    long = recordable("x" * 10_000)
    assert len(long) == RECORDED_CHARS and long.endswith("...")
    assert recordable("\ud800") == "\\ud800"  # a lone surrogate cannot be stored as UTF-8
    assert len(recordable({"k": list(range(10_000))})) <= RECORDED_CHARS
    for value in (2**64, "\ud800\x00", {"a": [[[[1]]]]}, object()):
        framing.pack({"v": recordable(value)})


def test_the_older_endpoint_takes_expires_in_as_the_v1_one_does_and_refuses_a_bad_one(operator):
    # It was dropped here before (4 December 2026): an override meant to end in an hour stayed for good.
    answer = post_raw(operator, json.dumps({"value": 21.5, "priority": 8, "expires_in": 0}))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid"), answer.json()
    assert "expires_in must be a number of seconds" in answer.json()["message"]
    assert rejected_audit().detail["code"] == "invalid"
    assert not Command.objects.exists()
    answer = post_raw(operator, json.dumps({"value": 21.5, "priority": 8, "expires_in": 3600, "command_id": "hour"}))
    assert answer.status_code in (200, 202), answer.json()
    command = Command.objects.get(command_id="hour")
    assert 3599 < (command.hold_until - command.created_at).total_seconds() <= 3600.1
