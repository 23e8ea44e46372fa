"""The logic rule API: permissions, the model's refusals as 400s, enable/disable, live states from the image."""

from __future__ import annotations

import pytest

from bms.api.v1 import configuration
from bms.control.models import AuditEntry
from bms.logic.models import Rule
from bms.points.models import ConfigRevision, Device, Point

RULES = "/api/v1/rules/"
DEMAND = {
    "name": "heat_demand",
    "kind": "expression",
    "expression": "limit(({zone5_sp} - {zone5_temp}) * 20, 0, 100)",
    "output": "demand5",
    "priority": 12,
}


@pytest.fixture
def plant(db) -> dict[str, Point]:
    device = Device.objects.create(name="plant5", host="127.0.0.1", port=1505)
    specs = [
        ("zone5_temp", "ir:0", "float32", False),
        ("zone5_sp", "hr:0", "float32", True),
        ("demand5", "hr:2", "float32", True),
        ("fan5", "co:0", "bool", True),
    ]
    return {
        name: Point.objects.create(
            device=device, name=name, address=address, data_type=kind, writable=writable, min_value=0, max_value=100
        )
        for name, address, kind, writable in specs
    }


def revision() -> int:
    row = ConfigRevision.objects.filter(pk=1).first()
    return row.revision if row else 0


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_read_rules_but_may_not_change_them(as_role, plant, role):
    rule = Rule.objects.create(**DEMAND)
    client = as_role(role)
    listed = client.get(RULES).json()
    assert [row["name"] for row in listed["results"]] == ["heat_demand"]
    assert listed["results"][0]["reads"] == ["zone5_sp", "zone5_temp"]
    assert listed["results"][0]["writes"] == ["demand5"]
    refused = client.post(RULES, {**DEMAND, "name": "other"})
    assert refused.status_code == 403 and refused.json()["required"] == ["logic.add_rule"]
    disable = client.post(f"{RULES}{rule.pk}/disable")
    assert disable.status_code == 403 and disable.json()["required"] == ["logic.change_rule"]
    assert Rule.objects.get().enabled


def test_engineer_creates_changes_and_deletes_a_rule(as_role, plant, django_capture_on_commit_callbacks):
    client = as_role("engineer")
    before = revision()
    with django_capture_on_commit_callbacks(execute=True):
        made = client.post(RULES, DEMAND)
    assert made.status_code == 201, made.json()
    assert revision() > before
    url = f"{RULES}{made.json()['id']}/"
    changed = client.patch(url, {"expression": "limit(({zone5_sp} - {zone5_temp}) * 10, 0, 100)"})
    assert changed.status_code == 200, changed.json()
    assert "* 10" in changed.json()["expression"]
    assert client.delete(url).status_code == 204
    actions = list(AuditEntry.objects.filter(target="heat_demand").values_list("action", flat=True))
    assert sorted(actions) == ["rule.changed", "rule.created", "rule.deleted"]


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"expression": "({zone5_sp} - 1"}, "expression", "column"),
        ({"expression": "{zone9_temp} * 2"}, "expression", "unknown point"),
        ({"expression": "{fan5} + 1"}, "expression", "needs numbers"),
        ({"output": "zone5_temp"}, "output", "read-only"),
        ({"priority": 17}, "priority", "less than or equal to 16"),
        ({"kind": "pid", "expression": "", "inputs": {"pv": "{zone5_temp}"}, "params": {}}, "inputs", "sp"),
    ],
)
def test_bad_rules_are_400s_with_the_models_message(as_role, plant, change, field, text):
    response = as_role("engineer").post(RULES, {**DEMAND, **change})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "invalid"
    assert field in body["fields"], body
    assert text in " ".join(body["fields"][field]), body
    assert not Rule.objects.exists()


def test_a_cycle_between_rules_is_refused_naming_it(as_role, plant):
    client = as_role("engineer")
    assert client.post(RULES, DEMAND).status_code == 201
    loop = {"name": "loop", "kind": "expression", "expression": "{demand5} / 5", "output": "zone5_sp"}
    response = client.post(RULES, loop)
    assert response.status_code == 400
    assert "the rules would form a cycle" in response.json()["detail"]


def test_enable_and_disable_check_the_rule_again(as_role, plant, django_capture_on_commit_callbacks):
    client = as_role("engineer")
    rule = Rule.objects.create(**DEMAND)
    with django_capture_on_commit_callbacks(execute=True):
        before = revision()
        off = client.post(f"{RULES}{rule.pk}/disable")
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert revision() > before
    # meanwhile another rule takes the slot: enabling the first again is refused with the reason
    Rule.objects.create(**{**DEMAND, "name": "other", "expression": "50"})
    refused = client.post(f"{RULES}{rule.pk}/enable")
    assert refused.status_code == 400
    assert "rule other already writes demand5 at priority 12" in refused.json()["fields"]["priority"][0]
    assert Rule.objects.get(pk=rule.pk).enabled is False
    Rule.objects.filter(name="other").delete()
    assert client.post(f"{RULES}{rule.pk}/enable").json()["enabled"] is True
    switched = AuditEntry.objects.filter(action="rule.changed", target="heat_demand").order_by("pk")
    switched = switched.values_list("detail", flat=True)
    assert [entry["changes"]["enabled"] for entry in switched if "enabled" in entry["changes"]] == [
        [True, False],
        [False, True],
    ]
    assert client.post(f"{RULES}999999/enable").status_code == 404


def test_live_shows_the_state_inputs_and_outputs_from_the_image(as_role, plant, monkeypatch):
    Rule.objects.create(**DEMAND)
    Rule.objects.create(
        name="fan_on", kind="hysteresis", inputs={"x": "{zone5_temp}"}, params={"on": 26, "off": 24}, output="fan5"
    )

    async def snapshot(wait_seconds):
        good = {"quality": "good", "time": "2026-11-30T12:00:00Z", "changed": None, "seq": 7}
        return {
            "seq": 9,
            "points": {
                "zone5_temp": {**good, "value": 19.5},
                "zone5_sp": {**good, "value": 21.0},
                "demand5": {**good, "value": 30.0},
                "logic:heat_demand": {**good, "value": {"q": "good", "out": [30.0], "n": 4}, "seq": 8},
            },
        }

    monkeypatch.setattr(configuration, "fetch_snapshot", snapshot)
    body = as_role("viewer").get(f"{RULES}live").json()
    assert body["live_problem"] is None
    demand = next(rule for rule in body["rules"] if rule["name"] == "heat_demand")
    assert demand["state"]["quality"] == "good"
    assert demand["state"]["outputs"] == [{"point": "demand5", "value": 30.0}]
    assert demand["state"]["commands"] == 4
    assert demand["points"]["zone5_temp"]["value"] == 19.5
    fan = next(rule for rule in body["rules"] if rule["name"] == "fan_on")
    assert fan["state"] is None, "the engine holds no state for it: shown as such, not an error"
    assert set(fan["points"]) == {"zone5_temp"}
    only = as_role("viewer").get(f"{RULES}live", {"rule": "fan_on"}).json()
    assert [rule["name"] for rule in only["rules"]] == ["fan_on"]


def test_live_without_the_engine_answers_with_the_reason(as_role, plant):
    Rule.objects.create(**DEMAND)
    body = as_role("viewer").get(f"{RULES}live").json()
    assert body["rules"][0]["state"] is None
    assert "engine did not answer" in body["live_problem"]
