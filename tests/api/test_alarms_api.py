"""The alarms API against the real database: definitions and classes, out of service, the journal's filters
and pages, and the live list's filters and order (the live states themselves: tests/api/test_live_node.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.api.v1.alarms import LiveQuerySerializer, select_live
from bms.control.models import AuditEntry

DEFINITIONS = "/api/v1/alarm-definitions/"
JOURNAL = "/api/v1/alarms/journal/"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


# ---- definitions -------------------------------------------------------------------------------------------------


def test_create_names_the_alarm_and_takes_the_class_defaults(as_role, definitions):
    response = as_role("engineer").post(
        DEFINITIONS, {"point": "zone1_setpoint", "kind": "high", "limit": 30, "class": "critical", "area": "Zone 1"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "zone1_setpoint.high"
    assert (body["priority"], body["ack_required"], body["class"]) == (100, True, "critical")
    assert body["out_of_service"] is False and body["out_of_service_by"] == ""
    stored = AlarmDefinition.objects.get(pk=body["id"])
    assert (stored.point.name, stored.alarm_class.name, stored.limit) == ("zone1_setpoint", "critical", 30.0)


def test_related_points_are_named(as_role, definitions):
    payload = {
        "name": "zone1_deviation",
        "point": "zone1_temp",
        "kind": "deviation",
        "limit": 2.5,
        "setpoint_point": "zone1_setpoint",
        "suppression_point": "ahu1_off",
        "class": "medium",
        "message": "{point} is {value} {unit}, off its setpoint by more than {limit}",
    }
    response = as_role("engineer").post(DEFINITIONS, payload)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["setpoint_point"], body["suppression_point"]) == ("zone1_setpoint", "ahu1_off")
    detail = as_role("viewer").get(f"{DEFINITIONS}{body['id']}/").json()
    assert detail == body


def test_replace_change_and_delete(as_role, definitions):
    engineer = as_role("engineer")
    high = definitions["zone1_temp.high"]
    replaced = {"name": "zone1_temp.high", "point": "zone1_temp", "kind": "high", "limit": 28, "class": "low"}
    response = engineer.put(f"{DEFINITIONS}{high.pk}/", replaced)
    assert response.status_code == 200, response.content
    assert response.json()["priority"] == 300, "a saved priority stays when the class changes"
    response = engineer.patch(f"{DEFINITIONS}{high.pk}/", {"on_delay": 5, "area": "Zone 1 east"})
    assert response.status_code == 200, response.content
    high.refresh_from_db()
    assert (high.limit, high.on_delay, high.area, high.alarm_class.name) == (28.0, 5.0, "Zone 1 east", "low")
    assert engineer.delete(f"{DEFINITIONS}{high.pk}/").status_code == 204
    assert not AlarmDefinition.objects.filter(pk=high.pk).exists()


def test_a_change_the_model_refuses_changes_nothing(as_role, definitions):
    low = definitions["zone1_temp.low"]
    response = as_role("engineer").patch(f"{DEFINITIONS}{low.pk}/", {"limit": 30})
    assert response.status_code == 400
    assert "above the high limit 26" in response.json()["fields"]["limit"][0]
    low.refresh_from_db()
    assert low.limit == 16.0


def test_out_of_service_can_not_be_set_through_a_plain_change(as_role, definitions):
    fan = definitions["fan_failed"]
    response = as_role("engineer").patch(f"{DEFINITIONS}{fan.pk}/", {"out_of_service": True})
    assert response.status_code == 200
    fan.refresh_from_db()
    assert fan.out_of_service is False, "out of service is its own action, with its own permission"


def test_out_of_service_and_back_records_who_when_and_why(as_role, definitions):
    fan = definitions["fan_failed"]
    url = f"{DEFINITIONS}{fan.pk}/out-of-service"
    response = as_role("engineer").post(url, {"out_of_service": True, "comment": "sensor replaced tomorrow"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["out_of_service"], body["out_of_service_by"]) == (True, "erin")
    assert datetime.fromisoformat(body["out_of_service_at"].replace("Z", "+00:00")).tzinfo is not None
    entry = AuditEntry.objects.get(action="alarm.out_of_service")
    assert entry.detail == {
        "alarm": "fan_failed",
        "out_of_service": True,
        "comment": "sensor replaced tomorrow",
        "via": "api",
    }
    response = as_role("administrator").post(url, {"out_of_service": False})
    assert response.status_code == 200
    fan.refresh_from_db()
    assert (fan.out_of_service, fan.out_of_service_by) == (False, "ada")
    assert AuditEntry.objects.filter(action="alarm.in_service", username="ada").count() == 1


def test_out_of_service_needs_a_boolean(as_role, definitions):
    url = f"{DEFINITIONS}{definitions['fan_failed'].pk}/out-of-service"
    for body in ({}, {"out_of_service": "yes"}, {"out_of_service": 1}):
        response = as_role("engineer").post(url, body)
        assert response.status_code == 400 and "out_of_service" in response.json()["fields"]


def test_definitions_filter_by_point_class_area_and_kind(as_role, definitions):
    viewer = as_role("viewer")

    def names(**params):
        response = viewer.get(DEFINITIONS, params)
        assert response.status_code == 200, response.content
        return [row["name"] for row in response.json()["results"]]

    assert names() == ["fan_failed", "zone1_temp.high", "zone1_temp.low"]
    assert names(point="zone1_temp") == ["zone1_temp.high", "zone1_temp.low"]
    assert names(**{"class": "high"}) == ["fan_failed", "zone1_temp.high"]
    assert names(area="AHU-1") == ["fan_failed"]
    assert names(kind="low,state_equal") == ["fan_failed", "zone1_temp.low"]


# ---- classes -----------------------------------------------------------------------------------------------------


def test_classes_can_be_created_changed_and_deleted_when_unused(as_role, db):
    engineer = as_role("engineer")
    response = engineer.post(
        "/api/v1/alarm-classes/", {"name": "maintenance", "default_priority": 800, "colour": "#00838f"}
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["ack_required"] is True and created["annunciated"] is True
    response = engineer.patch(f"/api/v1/alarm-classes/{created['id']}/", {"annunciated": False})
    assert response.status_code == 200 and response.json()["annunciated"] is False
    bad = engineer.patch(f"/api/v1/alarm-classes/{created['id']}/", {"colour": "teal", "default_priority": 0})
    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"colour", "default_priority"}
    duplicate = engineer.post("/api/v1/alarm-classes/", {"name": "maintenance", "default_priority": 800})
    assert duplicate.status_code == 400 and "name" in duplicate.json()["fields"]
    assert engineer.delete(f"/api/v1/alarm-classes/{created['id']}/").status_code == 204
    assert not AlarmClass.objects.filter(name="maintenance").exists()


def test_classes_are_listed_most_urgent_first(as_role, db):
    body = as_role("viewer").get("/api/v1/alarm-classes/").json()
    assert [row["name"] for row in body["results"]] == ["critical", "high", "medium", "low", "journal-only"]


# ---- the journal -------------------------------------------------------------------------------------------------


def journal_row(alarm: str, transition: str, minutes: int, **fields) -> AlarmJournal:
    defaults = {
        "point_name": alarm.split(".")[0],
        "state": {"raised": "active_unacked", "acknowledged": "active_acked", "returned": "normal"}.get(
            transition, "normal"
        ),
        "priority": 300,
        "alarm_class": "high",
        "area": "Zone 1",
        "message": f"{alarm} {transition}",
    }
    row = AlarmJournal(time=T0 + timedelta(minutes=minutes), alarm=alarm, transition=transition, **(defaults | fields))
    row.save()
    return row


@pytest.fixture
def journal(db) -> list[AlarmJournal]:
    return [
        journal_row("zone1_temp.high", "raised", 0, value=27.5),
        journal_row("zone1_temp.high", "acknowledged", 5, username="otto", comment="on it"),
        journal_row("zone1_temp.high", "returned", 20, value=25.0),
        journal_row("fan_failed", "raised", 30, point_name="ahu1_fan", area="AHU-1", value=False),
        journal_row("fan_failed", "shelved", 31, point_name="ahu1_fan", area="AHU-1", username="otto", state="shelved"),
        journal_row("zone2_temp.low", "raised", 40, point_name="zone2_temp", alarm_class="low", priority=700),
    ]


def journal_names(client, **params) -> list[tuple[str, str]]:
    response = client.get(JOURNAL, params)
    assert response.status_code == 200, response.content
    return [(row["alarm"], row["transition"]) for row in response.json()["results"]]


def test_the_journal_is_newest_first_with_every_field(as_role, journal):
    body = as_role("viewer").get(JOURNAL).json()
    assert body["count"] == 6 and body["next"] is None and body["previous"] is None
    first, *_, last = body["results"]
    assert (first["alarm"], first["transition"], first["class"], first["priority"]) == (
        "zone2_temp.low",
        "raised",
        "low",
        700,
    )
    assert last["time"] == "2026-11-30T08:00:00Z"
    assert last["value"] == 27.5 and last["point"] == "zone1_temp" and last["node"] == "main"
    acknowledged = body["results"][-2]
    assert (acknowledged["user"], acknowledged["comment"], acknowledged["state"]) == ("otto", "on it", "active_acked")


def test_the_journal_filters(as_role, journal):
    viewer = as_role("viewer")
    assert journal_names(viewer, alarm="fan_failed") == [("fan_failed", "shelved"), ("fan_failed", "raised")]
    assert journal_names(viewer, point="zone1_temp,zone2_temp", transition="raised") == [
        ("zone2_temp.low", "raised"),
        ("zone1_temp.high", "raised"),
    ]
    assert journal_names(viewer, **{"class": "low"}) == [("zone2_temp.low", "raised")]
    assert journal_names(viewer, area="AHU-1", user="otto") == [("fan_failed", "shelved")]
    assert journal_names(viewer, user="otto") == [("fan_failed", "shelved"), ("zone1_temp.high", "acknowledged")]
    window = {"time_from": "2026-11-30T08:05:00Z", "time_to": "2026-11-30T08:30:00Z"}
    assert journal_names(viewer, **window) == [("zone1_temp.high", "returned"), ("zone1_temp.high", "acknowledged")]
    # without an offset a time is UTC; with one it is converted
    assert journal_names(viewer, time_from="2026-11-30T08:31:00") == [
        ("zone2_temp.low", "raised"),
        ("fan_failed", "shelved"),
    ]
    assert journal_names(viewer, time_to="2026-11-30T10:05:00+02:00") == [("zone1_temp.high", "raised")]
    assert journal_names(viewer, transition=["acknowledged", "shelved"]) == [
        ("fan_failed", "shelved"),
        ("zone1_temp.high", "acknowledged"),
    ]


def test_the_journal_is_paged(as_role, journal):
    viewer = as_role("viewer")
    first = viewer.get(JOURNAL, {"limit": 4}).json()
    assert first["count"] == 6 and len(first["results"]) == 4 and first["previous"] is None
    assert "limit=4" in first["next"] and "offset=4" in first["next"]
    second = viewer.get(first["next"]).json()
    assert len(second["results"]) == 2 and second["next"] is None and second["previous"]
    seen = [row["id"] for row in first["results"] + second["results"]]
    assert seen == [row.id for row in sorted(journal, key=lambda r: r.time, reverse=True)]
    assert viewer.get(JOURNAL, {"offset": 100}).json()["results"] == []


def test_the_page_size_is_bounded(as_role, db):
    for minute in range(60):
        journal_row("bulk.high", "raised", minute)
    viewer = as_role("viewer")
    assert len(viewer.get(JOURNAL).json()["results"]) == 50, "the default page"
    assert len(viewer.get(JOURNAL, {"limit": 500}).json()["results"]) == 60
    assert viewer.get(JOURNAL, {"limit": 501}).status_code == 400


# ---- the live list's filters and order (a pure function of the engine's answer) ---------------------------------


def live(name: str, state: str, priority: int | None, since: str | None, **fields) -> dict:
    return {
        "name": name,
        "point": fields.pop("point", name.split(".")[0]),
        "state": state,
        "priority": priority,
        "class": fields.pop("class", "high"),
        "area": fields.pop("area", "Zone 1"),
        "since": since,
        **fields,
    }


ALARMS = [
    live("a.high", "active_unacked", 300, "2026-11-30T08:00:00+00:00"),
    live("b.high", "active_acked", 300, "2026-11-30T09:00:00+00:00"),
    live("c.low", "rtn_unacked", 700, "2026-11-30T10:00:00+00:00", **{"class": "low"}),
    live("d.crit", "active_unacked", 100, "2026-11-30T07:00:00+00:00", **{"class": "critical", "area": "AHU-1"}),
    live("e.high", "normal", 300, "2026-11-30T11:00:00+00:00"),
    live("f.high", "shelved", 300, "2026-11-30T06:00:00+00:00", point="ahu1_fan"),
    live("g.none", "out_of_service", None, None, **{"class": "journal-only"}),
]


def select(**params) -> list[str]:
    query = LiveQuerySerializer(data=params)
    query.is_valid(raise_exception=True)
    return [alarm["name"] for alarm in select_live(ALARMS, query.validated_data)]


def test_live_default_is_everything_not_normal_by_priority_then_newest():
    assert select() == ["d.crit", "b.high", "a.high", "f.high", "c.low", "g.none"]


def test_live_filters():
    assert select(state=["normal"]) == ["e.high"]
    assert select(state=["active_unacked,rtn_unacked"]) == ["d.crit", "a.high", "c.low"]
    assert select(**{"class": ["high"]}) == ["b.high", "a.high", "f.high"]
    assert select(area=["AHU-1"]) == ["d.crit"]
    assert select(point=["ahu1_fan"]) == ["f.high"]
    assert select(priority_min=200, priority_max=500) == ["b.high", "a.high", "f.high"]
    assert select(priority_max=100) == ["d.crit"]
