"""The schedule and calendar API: permissions, the models' refusals as 400s, round trips, transitions, iCalendar."""

from __future__ import annotations

from datetime import date

import pytest

from bms.control.models import AuditEntry
from bms.points.models import ConfigRevision, Device, Point
from bms.schedules.models import Calendar, CalendarEntry, ExceptionEvent, Schedule, ScheduleTarget

SCHEDULES = "/api/v1/schedules/"
CALENDARS = "/api/v1/calendars/"
OFFICE = {
    "name": "office",
    "value_type": "real",
    "time_zone": "Europe/Berlin",
    "default_value": 17.0,
    "weekly": {
        "monday": [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": 17.0}],
        "tuesday": [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": 17.0}],
    },
}


@pytest.fixture
def writable(db) -> dict[str, Point]:
    plant = Device.objects.create(name="plant2", host="127.0.0.1", port=1503)
    specs = [
        ("zone9_setpoint", "hr:0", "float32", 12.0, 28.0),
        ("zone8_setpoint", "hr:2", "float32", 12.0, 22.0),
        ("ahu9_enable", "co:0", "bool", None, None),
    ]
    return {
        name: Point.objects.create(
            device=plant, name=name, address=address, data_type=kind, writable=True, min_value=low, max_value=high
        )
        for name, address, kind, low, high in specs
    }


def revision() -> int:
    row = ConfigRevision.objects.filter(pk=1).first()
    return row.revision if row else 0


def create(client, body, status=201):
    response = client.post(SCHEDULES, body)
    assert response.status_code == status, response.json()
    return response.json()


# ---- permissions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_read_but_may_not_change_schedules(as_role, role, writable):
    Schedule.objects.create(name="night", value_type="bool", weekly={})
    client = as_role(role)
    listed = client.get(SCHEDULES)
    assert listed.status_code == 200
    assert [row["name"] for row in listed.json()["results"]] == ["night"]
    refused = client.post(SCHEDULES, OFFICE)
    assert refused.status_code == 403
    body = refused.json()
    assert body["error"] == "forbidden"
    assert body["required"] == ["schedules.add_schedule"]
    assert "engineer role" in body["detail"]
    assert not Schedule.objects.filter(name="office").exists()
    pk = Schedule.objects.get().pk
    assert client.delete(f"{SCHEDULES}{pk}/").status_code == 403
    assert client.post(CALENDARS, {"name": "holidays"}).status_code == 403


def test_anonymous_gets_401(as_role, db):
    assert as_role(None).get(SCHEDULES).status_code == 401


def test_engineer_creates_reads_updates_and_deletes_a_schedule(as_role, writable, django_capture_on_commit_callbacks):
    client = as_role("engineer")
    before = revision()
    with django_capture_on_commit_callbacks(execute=True):
        made = create(client, {**OFFICE, "targets": [{"point": "zone9_setpoint", "priority": 14}]})
    assert revision() > before, "a change bumps the configuration revision (the engine reloads)"
    assert made["weekly"]["monday"] == [{"time": "07:00", "value": 21.0}, {"time": "18:00", "value": 17.0}]
    assert made["targets"] == [{"point": "zone9_setpoint", "priority": 14}]
    assert made["exceptions"] == []
    # recorded like every configuration change (bms/audit/changes.py)
    assert AuditEntry.objects.filter(action="schedule.created", target="office").exists()

    url = f"{SCHEDULES}{made['id']}/"
    assert client.get(url).json() == made
    before = revision()
    with django_capture_on_commit_callbacks(execute=True):
        changed = client.patch(url, {"weekly": {"friday": [{"time": "06:30", "value": 20.5}]}})
    assert changed.status_code == 200, changed.json()
    assert changed.json()["weekly"] == {"friday": [{"time": "06:30", "value": 20.5}]}
    assert changed.json()["targets"] == made["targets"], "a PATCH without targets keeps them"
    assert revision() > before
    row = ScheduleTarget.objects.get()
    moved = client.patch(url, {"targets": [{"point": "zone9_setpoint", "priority": 13}]}).json()
    assert moved["targets"] == [{"point": "zone9_setpoint", "priority": 13}]
    assert ScheduleTarget.objects.get().pk == row.pk, "a kept point keeps its row"
    twice = client.patch(url, {"targets": [{"point": "zone9_setpoint"}, {"point": "zone9_setpoint"}]}).json()
    assert twice["fields"]["targets"]["1"]["point"] == ["zone9_setpoint is listed twice; one target per point."]

    assert client.delete(url).status_code == 204
    assert not Schedule.objects.exists()
    assert client.get(url).status_code == 404


# ---- validation -------------------------------------------------------------------------------------------------


def test_bad_weekly_table_is_a_400_naming_the_problem_and_nothing_is_saved(as_role, writable):
    client = as_role("engineer")
    body = {**OFFICE, "weekly": {"monday": [{"time": "18:00", "value": 17.0}, {"time": "07:00", "value": 21.0}]}}
    response = client.post(SCHEDULES, body)
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "invalid"
    assert "07:00 comes after 18:00" in error["fields"]["weekly"][0]
    assert "weekly" in error["detail"]
    bad_day = client.post(SCHEDULES, {**OFFICE, "weekly": {"mondays": []}}).json()
    assert "unknown day 'mondays'" in bad_day["fields"]["weekly"][0]
    wrong_type = client.post(SCHEDULES, {**OFFICE, "default_value": "warm"}).json()
    assert "is not a number" in wrong_type["fields"]["default_value"][0]
    assert not Schedule.objects.exists()


def test_a_target_that_cannot_take_a_value_is_refused_with_its_index(as_role, writable):
    client = as_role("engineer")
    body = {
        **OFFICE,
        "targets": [
            {"point": "zone9_setpoint", "priority": 16},
            {"point": "zone8_setpoint", "priority": 16},  # at most 22: takes 21, but not a 25 exception
        ],
        "exceptions": [
            {"kind": "date", "date": "2026-12-24", "event_priority": 5, "time_values": [{"time": "00:00", "value": 25}]}
        ],
    }
    error = client.post(SCHEDULES, body).json()
    assert error["error"] == "invalid"
    assert list(error["fields"]["targets"]) == ["1"], "only the refused item, by its index"
    assert "zone8_setpoint cannot take 25.0" in error["fields"]["targets"]["1"]["point"][0]
    assert error["detail"].startswith("targets.1.point: zone8_setpoint cannot take 25.0")
    assert not Schedule.objects.exists(), "all of it or nothing"
    assert not ExceptionEvent.objects.exists()

    unknown = client.post(SCHEDULES, {**OFFICE, "targets": [{"point": "nowhere", "priority": 16}]}).json()
    assert unknown["fields"]["targets"]["0"]["point"] == ["There is no point named 'nowhere'."]
    wrong_kind = client.post(SCHEDULES, {**OFFICE, "targets": [{"point": "ahu9_enable"}]}).json()
    assert "is a bool point" in wrong_kind["fields"]["targets"]["0"]["point"][0]


def test_two_schedules_on_one_slot_are_refused(as_role, writable):
    client = as_role("engineer")
    create(client, {**OFFICE, "targets": [{"point": "zone9_setpoint", "priority": 16}]})
    error = client.post(
        SCHEDULES, {**OFFICE, "name": "office2", "targets": [{"point": "zone9_setpoint", "priority": 16}]}
    ).json()
    assert (
        "schedule office already writes zone9_setpoint at priority 16" in error["fields"]["targets"]["0"]["priority"][0]
    )


def test_strict_json_types_and_unknown_fields(as_role, writable):
    client = as_role("engineer")
    assert "Unknown field" in client.post(SCHEDULES, {**OFFICE, "colour": "red"}).json()["fields"]["colour"][0]
    assert client.post(SCHEDULES, {**OFFICE, "enabled": "yes"}).json()["fields"]["enabled"] == [
        "Expected true or false, got a string."
    ]
    malformed = client.post(SCHEDULES, raw="{not json")
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed"


# ---- exceptions: identity kept ------------------------------------------------------------------------------------


def test_exceptions_round_trip_and_keep_their_id(as_role, writable):
    client = as_role("engineer")
    Calendar.objects.create(name="holidays", holiday_country="DE")
    made = create(
        client,
        {
            **OFFICE,
            "exceptions": [
                {
                    "kind": "calendar",
                    "calendar": "holidays",
                    "event_priority": 3,
                    "time_values": [{"time": "00:00", "value": 16}],
                },
                {
                    "kind": "date",
                    "date": "2026-12-24",
                    "description": "Christmas Eve",
                    "time_values": [{"time": "12:00", "value": 18}],
                },
            ],
        },
    )
    first, second = made["exceptions"]
    assert first["calendar"] == "holidays" and first["days"] == "calendar holidays"
    assert second["description"] == "Christmas Eve" and second["time_values"] == [{"time": "12:00", "value": 18.0}]
    # send the schedule back as read, changing one exception and the type of nothing: ids stay
    second_changed = {**second, "time_values": [{"time": "13:00", "value": 18}]}
    body = {key: value for key, value in made.items() if key != "id"}
    body["exceptions"] = [first, second_changed]
    AuditEntry.objects.all().delete()
    replaced = client.put(f"{SCHEDULES}{made['id']}/", body)
    assert replaced.status_code == 200, replaced.json()
    changed = list(AuditEntry.objects.values_list("action", "detail__id"))
    assert changed == [("exceptionevent.changed", second["id"])], "only what changed is saved as a change"
    ids = [event["id"] for event in replaced.json()["exceptions"]]
    assert ids == [first["id"], second["id"]]
    assert replaced.json()["exceptions"][1]["time_values"] == [{"time": "13:00", "value": 18.0}]
    # leaving one out deletes it; an id of another schedule is refused
    body["exceptions"] = [first]
    assert [e["id"] for e in client.put(f"{SCHEDULES}{made['id']}/", body).json()["exceptions"]] == [first["id"]]
    body["exceptions"] = [first, first]
    twice = client.put(f"{SCHEDULES}{made['id']}/", body).json()
    assert twice["fields"]["exceptions"]["1"]["id"] == [
        f"Exception {first['id']} is listed twice; send each exception once."
    ]
    body["exceptions"] = [{**first, "id": 999999}]
    refused = client.put(f"{SCHEDULES}{made['id']}/", body).json()
    assert "no exception with id 999999" in refused["fields"]["exceptions"]["0"]["id"][0]
    assert ExceptionEvent.objects.filter(pk=first["id"]).exists(), "a refused change keeps what was there"


def test_changing_the_value_type_with_targets_and_exceptions_at_once(as_role, writable):
    client = as_role("engineer")
    made = create(
        client,
        {
            **OFFICE,
            "targets": [{"point": "zone9_setpoint", "priority": 16}],
            "exceptions": [{"kind": "date", "date": "2026-12-24", "time_values": [{"time": "00:00", "value": 16}]}],
        },
    )
    body = {
        "value_type": "bool",
        "default_value": False,
        "weekly": {"monday": [{"time": "07:00", "value": True}]},
        "targets": [{"point": "ahu9_enable", "priority": 12}],
        "exceptions": [{"kind": "date", "date": "2026-12-24", "time_values": [{"time": "00:00", "value": False}]}],
    }
    changed = client.patch(f"{SCHEDULES}{made['id']}/", body)
    assert changed.status_code == 200, changed.json()
    assert changed.json()["targets"] == [{"point": "ahu9_enable", "priority": 12}]


# ---- transitions -----------------------------------------------------------------------------------------------


def test_next_transitions_are_computed_in_the_site_zone_across_dst(as_role, writable):
    client = as_role("viewer")
    schedule = Schedule.objects.create(**{**OFFICE, "weekly": {"sunday": [{"time": "02:30", "value": 19.0}]}})
    url = f"{SCHEDULES}{schedule.pk}/next-transitions"
    # Saturday 28 March 2026, noon UTC: the next Sunday is the spring-forward day in Berlin (02:30 does not exist)
    response = client.get(url, {"count": 3, "after": "2026-03-28T12:00:00Z", "live": "false"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["time_zone"] == "Europe/Berlin"
    assert body["in_force"]["value"] == 17.0 and body["in_force"]["active"] is True
    first, second, third = body["transitions"]
    assert first["local_time"] == "02:30" and first["value"] == 19.0
    assert first["at"] == "2026-03-29T01:00:00Z", "02:30 in the gap takes effect at 03:00 CEST, the end of the gap"
    assert first["identity"] == f"sch{schedule.pk}:20260329T023000:weekly"
    assert first["source_label"] == "weekly"
    assert (second["local_time"], second["value"], second["source"]) == ("00:00", 17.0, "default")
    assert third["local_date"] == "2026-04-05"
    assert body["live"] is None and body["live_problem"] is None


def test_next_transitions_name_the_exception_and_say_when_the_engine_is_away(as_role, writable):
    schedule = Schedule.objects.create(**OFFICE)
    ExceptionEvent.objects.create(
        schedule=schedule,
        kind="date",
        date=date(2026, 12, 24),
        description="Christmas Eve",
        event_priority=2,
        time_values=[{"time": "00:00", "value": 15.0}],
    )
    client = as_role("viewer")
    body = client.get(
        f"{SCHEDULES}{schedule.pk}/next-transitions", {"count": 1, "after": "2026-12-23T20:00:00Z"}
    ).json()
    assert body["transitions"][0]["source_label"] == "exception: Christmas Eve (priority 2)"
    assert body["transitions"][0]["at"] == "2026-12-23T23:00:00Z"
    assert body["live"] is None and "engine did not answer" in body["live_problem"]


@pytest.mark.parametrize(
    ("query", "field"),
    [({"count": 0}, "count"), ({"count": 101}, "count"), ({"after": "soon"}, "after"), ({"colour": 1}, "colour")],
)
def test_bad_transition_queries_are_400s(as_role, writable, query, field):
    schedule = Schedule.objects.create(**OFFICE)
    response = as_role("viewer").get(f"{SCHEDULES}{schedule.pk}/next-transitions", {**query, "live": "false"})
    assert response.status_code == 400
    assert field in response.json()["fields"]


# ---- calendars and iCalendar ---------------------------------------------------------------------------------------


def test_calendar_crud_with_entries_and_holidays(as_role, writable):
    client = as_role("engineer")
    made = client.post(
        CALENDARS,
        {
            "name": "site",
            "holiday_country": "de",
            "holiday_subdivision": "by",
            "entries": [
                {"kind": "date", "date": "2026-12-24", "description": "Christmas Eve"},
                {"kind": "week_and_day", "month": 11, "week_of_month": 4, "day_of_week": 4},
            ],
        },
    )
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["holiday_country"], body["holiday_subdivision"]) == ("DE", "BY")
    assert [entry["kind"] for entry in body["entries"]] == ["date", "week_and_day"]
    assert body["entries"][1]["days"] == "November, days 22-28, Thursday"
    bad = client.patch(f"{CALENDARS}{body['id']}/", {"entries": [{"kind": "date_pattern", "month": 2, "day": 30}]})
    assert bad.status_code == 400
    assert bad.json()["fields"]["entries"]["0"]["day"] == ["February has no day 30"]
    assert CalendarEntry.objects.filter(calendar_id=body["id"]).count() == 2, "nothing lost"
    assert "no country 'XX'" in client.patch(f"{CALENDARS}{body['id']}/", {"holiday_country": "XX"}).json()["detail"]


def test_a_calendar_in_use_cannot_be_deleted(as_role, writable):
    calendar = Calendar.objects.create(name="holidays")
    schedule = Schedule.objects.create(**OFFICE)
    ExceptionEvent.objects.create(schedule=schedule, kind="calendar", calendar=calendar, time_values=[])
    client = as_role("engineer")
    assert client.get(f"{CALENDARS}{calendar.pk}/").json()["used_by"] == ["office"]
    response = client.delete(f"{CALENDARS}{calendar.pk}/")
    assert response.status_code == 409
    assert response.json()["error"] == "in_use"
    assert Calendar.objects.filter(pk=calendar.pk).exists()


def test_ical_export_and_import_round_trip(as_role, writable):
    calendar = Calendar.objects.create(name="site", holiday_country="DE")
    CalendarEntry.objects.create(calendar=calendar, kind="date", date=date(2026, 12, 24), description="Christmas Eve")
    CalendarEntry.objects.create(calendar=calendar, kind="date_pattern", month=12, day=31)
    viewer = as_role("viewer")
    exported = viewer.get(f"{CALENDARS}{calendar.pk}/ical", {"holiday_years": "2026"}, HTTP_ACCEPT="text/calendar")
    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("text/calendar")
    assert 'filename="site.ics"' in exported["Content-Disposition"]
    text = exported.content.decode()
    assert "BEGIN:VCALENDAR" in text and "X-BMS-HOLIDAY-COUNTRY:DE" in text and "Christmas Eve" in text
    assert viewer.get(f"{CALENDARS}{calendar.pk}/ical", {"holiday_years": "2026-2099"}).status_code == 400

    assert viewer.post(f"{CALENDARS}import", {"ical": text, "name": "copy"}).status_code == 403
    engineer = as_role("engineer")
    dry = engineer.post(f"{CALENDARS}import", {"ical": text, "name": "copy", "dry_run": True})
    assert dry.status_code == 200, dry.json()
    generated = text.count("X-BMS-GENERATED:holidays")  # the listed holidays come back as the country setting
    assert generated > 5
    assert dry.json() == {"name": "copy", "created": True, "entries": 2, "skipped": generated, "dry_run": True}
    assert not Calendar.objects.filter(name="copy").exists()
    done = engineer.post(f"{CALENDARS}import", {"ical": text, "name": "copy"}).json()
    assert done["entries"] == 2 and done["created"] is True
    copy = Calendar.objects.get(name="copy")
    assert copy.holiday_country == "DE"
    assert sorted(entry.kind for entry in copy.entries.all()) == ["date", "date_pattern"]
    again = engineer.post(f"{CALENDARS}import", {"ical": text, "name": "copy"})
    assert again.status_code == 400
    assert 'replace its entries with "replace": true' in again.json()["fields"]["ical"][0]
    assert engineer.post(f"{CALENDARS}import", {"ical": text, "name": "copy", "replace": True}).status_code == 200


def test_a_bad_ical_file_lists_its_problems_and_imports_nothing(as_role, db):
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nX-WR-CALNAME:bad\r\n"
        "BEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:meeting\r\n"
        "DTSTART:20260105T090000Z\r\nDTEND:20260105T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    response = as_role("engineer").post(f"{CALENDARS}import", {"ical": text})
    assert response.status_code == 400
    assert response.json()["fields"]["ical"]
    assert not Calendar.objects.filter(name="bad").exists()


def test_standby_refuses_schedule_changes(as_role, writable, as_backup):
    response = as_role("engineer").post(SCHEDULES, OFFICE)
    assert response.status_code == 503
    assert response.json()["error"] == "standby"
    assert not Schedule.objects.exists()
    assert as_role("viewer").get(SCHEDULES).status_code == 200
