"""Calendars, schedules, targets and exceptions in PostgreSQL: refusals at save, revision, specs, admin, replication."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from bms.points.models import ConfigRevision
from bms.schedules import evaluate as ev
from bms.schedules.models import Calendar, CalendarEntry, ExceptionEvent, Schedule, ScheduleTarget
from bms.schedules.replication import SCHEDULE_MODELS, SCHEDULE_TABLES, dump_schedules
from bms.schedules.store import read_schedule_specs
from bms.sites.models import default_site_id

OFFICE = {
    day: [{"time": "07:00", "value": True}, {"time": "18:00", "value": False}]
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
}


def refused(obj, match: str) -> None:
    """Refused by full_clean with ``match`` in the message, and by save() too (nothing stored)."""
    with pytest.raises(ValidationError, match=match):
        obj.full_clean()
    count = type(obj).objects.count()
    with pytest.raises(ValidationError, match=match):
        obj.save()
    assert type(obj).objects.count() == count


def schedule(name: str = "office", **fields) -> Schedule:
    fields = {"value_type": "bool", "weekly": OFFICE, "default_value": False, "time_zone": "Europe/Berlin", **fields}
    item = Schedule(name=name, **fields)
    item.save()
    return item


# ---- schedules ----------------------------------------------------------------------------------------------------


def test_a_schedule_is_stored_with_its_weekly_table_normalised(points):
    item = schedule(
        "setpoints",
        value_type="real",
        default_value=None,
        weekly={"monday": [{"time": "06:00", "value": 20}, {"time": "22:00:00", "value": 17.5}]},
    )
    item.refresh_from_db()
    assert item.weekly == {"monday": [{"time": "06:00", "value": 20.0}, {"time": "22:00", "value": 17.5}]}
    assert item.default_value is None and item.time_zone == "Europe/Berlin"


def test_the_time_zone_defaults_to_the_site_zone(points, settings):
    settings.BMS_SITE_TIME_ZONE = "America/New_York"
    assert Schedule(name="x").time_zone == "America/New_York"
    del settings.BMS_SITE_TIME_ZONE
    assert Schedule(name="y").time_zone == "UTC"


def test_an_invalid_weekly_table_default_period_or_zone_is_refused(points):
    refused(
        Schedule(name="a", weekly={"monday": [{"time": "18:00", "value": True}, {"time": "07:00", "value": False}]}),
        "monday: 07:00 comes after 18:00: list the times in order",
    )
    refused(
        Schedule(name="b", weekly={"monday": [{"time": "07:00", "value": True}, {"time": "07:00", "value": False}]}),
        "monday: 07:00 appears twice",
    )
    refused(Schedule(name="c", weekly={"monday": [{"time": "07:00", "value": 21.5}]}), r"21.5 is not true or false")
    refused(Schedule(name="d", weekly={"mon": []}), "unknown day 'mon'")
    refused(Schedule(name="e", value_type="integer", default_value=1.5), "1.5 is not a whole number")
    refused(
        Schedule(name="f", effective_from=date(2026, 7, 1), effective_to=date(2026, 6, 1)),
        r"the effective period ends \(2026-06-01\) before it starts",
    )
    refused(Schedule(name="g", time_zone="Europe/Atlantis"), "unknown time zone 'Europe/Atlantis'")
    refused(Schedule(name="bad name"), "no spaces")


def test_saving_and_deleting_bump_the_configuration_revision(points, django_capture_on_commit_callbacks):
    for action in (
        lambda: schedule(),
        lambda: ScheduleTarget.objects.create(schedule=Schedule.objects.get(), point=points["ahu1_enable"]),
        lambda: Calendar.objects.create(name="holidays"),
        lambda: CalendarEntry.objects.create(calendar=Calendar.objects.get(), kind="date", date=date(2026, 12, 24)),
        lambda: ExceptionEvent.objects.create(
            schedule=Schedule.objects.get(), kind="calendar", calendar=Calendar.objects.get(), time_values=[]
        ),
        lambda: Schedule.objects.get().delete(),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            before = ConfigRevision.current()
            action()
        assert ConfigRevision.current() > before


# ---- targets ------------------------------------------------------------------------------------------------------


def test_targets_must_be_writable_points_of_the_right_type_with_values_in_range(points):
    office = schedule()
    refused(ScheduleTarget(schedule=office, point=points["zone1_temp"]), "zone1_temp is read-only")
    refused(
        ScheduleTarget(schedule=office, point=points["zone1_setpoint"]),
        r"zone1_setpoint holds numbers \(float32\); a bool schedule can only write bool points",
    )
    refused(ScheduleTarget(schedule=office, point_id=999999), "There is no point with id 999999")
    refused(ScheduleTarget(schedule=office, point=points["ahu1_enable"], priority=0), "from 1 .* to 16")
    refused(ScheduleTarget(schedule=office, point=points["ahu1_enable"], priority=17), "from 1 .* to 16")
    ScheduleTarget.objects.create(schedule=office, point=points["ahu1_enable"], priority=8)
    refused(ScheduleTarget(schedule=office, point=points["ahu1_enable"], priority=9), "already writes ahu1_enable")

    setpoints = schedule(
        "setpoints", value_type="real", weekly={"monday": [{"time": "06:00", "value": 21.0}]}, default_value=30.0
    )
    refused(ScheduleTarget(schedule=setpoints, point=points["ahu1_enable"]), "ahu1_enable is a bool point")
    refused(ScheduleTarget(schedule=setpoints, point=points["ahu1_mode"]), "holds whole numbers.*use an integer")
    refused(
        ScheduleTarget(schedule=setpoints, point=points["zone1_setpoint"]),
        "zone1_setpoint cannot take 30.0: 30.0 is above the highest allowed value 28.0",
    )
    setpoints.default_value = 16.0
    setpoints.save()
    ScheduleTarget.objects.create(schedule=setpoints, point=points["zone1_setpoint"])
    ScheduleTarget.objects.create(schedule=setpoints, point=points["zone2_setpoint"])  # scaled int16: a real point

    modes = schedule(
        "modes", value_type="integer", weekly={"monday": [{"time": "06:00", "value": 7}]}, default_value=None
    )
    refused(ScheduleTarget(schedule=modes, point=points["ahu1_mode"]), "7 is above the highest allowed value 4")


def test_changing_a_schedule_is_checked_against_its_targets(points):
    setpoints = schedule("setpoints", value_type="real", weekly={}, default_value=20.0)
    ScheduleTarget.objects.create(schedule=setpoints, point=points["zone1_setpoint"])
    setpoints.weekly = {"friday": [{"time": "17:00", "value": 5.0}]}
    refused(setpoints, "zone1_setpoint cannot take 5.0: 5.0 is below the lowest allowed value 12.0")
    setpoints.refresh_from_db()
    setpoints.value_type = "bool"
    setpoints.default_value = True
    refused(setpoints, "zone1_setpoint holds numbers")


def test_two_enabled_schedules_cannot_share_a_slot_in_overlapping_periods(points):
    summer = schedule("summer", effective_from=date(2026, 4, 1), effective_to=date(2026, 9, 30))
    winter = schedule("winter", effective_from=date(2026, 10, 1), effective_to=date(2027, 3, 31))
    always = schedule("always")
    ScheduleTarget.objects.create(schedule=summer, point=points["lights"], priority=12)
    ScheduleTarget.objects.create(schedule=winter, point=points["lights"], priority=12)  # no common day: fine
    refused(
        ScheduleTarget(schedule=always, point=points["lights"], priority=12),
        "schedule summer already writes lights at priority 12 in an overlapping effective period",
    )
    ScheduleTarget.objects.create(schedule=always, point=points["lights"], priority=13)
    winter.effective_from = date(2026, 9, 30)
    refused(winter, "schedule summer already writes lights at priority 12")
    winter.refresh_from_db()
    summer.enabled = False
    summer.save()
    winter.effective_from = date(2026, 9, 30)
    winter.save()  # a disabled schedule writes nothing


# ---- exceptions and calendars -------------------------------------------------------------------------------------


def test_exceptions_are_checked_for_their_days_values_and_targets(points):
    office = schedule()
    ScheduleTarget.objects.create(schedule=office, point=points["ahu1_enable"])
    refused(ExceptionEvent(schedule=office, kind="date", time_values=[]), "a date entry needs the date")
    refused(
        ExceptionEvent(schedule=office, kind="date", date=date(2026, 12, 24), event_priority=17, time_values=[]),
        "from 1 .* to 16",
    )
    refused(
        ExceptionEvent(
            schedule=office, kind="date", date=date(2026, 12, 24), time_values=[{"time": "00:00", "value": 1.5}]
        ),
        "1.5 is not true or false",
    )
    refused(
        ExceptionEvent(
            schedule=office, kind="date", date=date(2026, 12, 24), start_date=date(2026, 12, 1), time_values=[]
        ),
        "a date entry does not use start date; leave it empty",
    )
    refused(
        ExceptionEvent(schedule=office, kind="range", start_date=date(2026, 12, 31), end_date=date(2026, 12, 24)),
        r"the range ends \(2026-12-24\) before it starts",
    )
    refused(ExceptionEvent(schedule=office, kind="calendar"), "a calendar exception needs the calendar")
    refused(ExceptionEvent(schedule=office, kind="calendar", calendar_id=424242), "There is no calendar with id 424242")
    refused(ExceptionEvent(schedule=office, kind="week_and_day"), "matches every day; give at least one")
    refused(ExceptionEvent(schedule=office, kind="date_pattern", month=2, day=30), "February has no day 30")
    refused(ExceptionEvent(schedule=office, kind="date_pattern", year=2026, month=2, day=29), "2026 is not a leap year")
    event = ExceptionEvent(
        schedule=office,
        kind="week_and_day",
        month=11,
        week_of_month=4,
        day_of_week=4,
        time_values=[{"time": "00:00", "value": 0}],
    )
    refused(event, "0 is not true or false")
    event.time_values = [{"time": "00:00", "value": False}]
    event.save()
    assert event.describe_days() == "November, days 22-28, Thursday"


def test_calendars_take_holidays_of_known_countries_and_cannot_be_deleted_while_used(points):
    refused(Calendar(name="a", holiday_country="XX"), "the holidays package knows no country 'XX'")
    refused(Calendar(name="b", holiday_country="DE", holiday_subdivision="ZZ"), "DE has no subdivision 'ZZ'")
    refused(Calendar(name="c", holiday_subdivision="BY"), "a holiday subdivision needs the holiday country")
    bavaria = Calendar(name="bavaria", holiday_country="de", holiday_subdivision="by")
    bavaria.save()
    assert (bavaria.holiday_country, bavaria.holiday_subdivision) == ("DE", "BY")
    refused(CalendarEntry(calendar=bavaria, kind="range", start_date=date(2026, 12, 24)), "needs its last day")
    CalendarEntry.objects.create(
        calendar=bavaria,
        kind="range",
        start_date=date(2026, 12, 24),
        end_date=date(2027, 1, 6),
        description="works holiday",
    )
    ExceptionEvent.objects.create(
        schedule=schedule(), kind="calendar", calendar=bavaria, time_values=[{"time": "00:00", "value": False}]
    )
    with pytest.raises(ProtectedError):
        bavaria.delete()
    definition = bavaria.definition()
    assert definition.matches(date(2026, 6, 4)) and definition.matches(date(2027, 1, 5))
    assert not definition.matches(date(2026, 6, 3))


# ---- what the engine loads ----------------------------------------------------------------------------------------


def test_the_engine_loads_enabled_schedules_with_their_calendars_and_enabled_targets(points):
    holidays = Calendar.objects.create(name="holidays")
    CalendarEntry.objects.create(calendar=holidays, kind="week_and_day", month=11, week_of_month=4, day_of_week=4)
    office = schedule(time_zone="America/New_York")
    ScheduleTarget.objects.create(schedule=office, point=points["ahu1_enable"], priority=12)
    ScheduleTarget.objects.create(schedule=office, point=points["lights"], priority=9)
    closed = ExceptionEvent.objects.create(
        schedule=office,
        kind="calendar",
        calendar=holidays,
        event_priority=3,
        time_values=[{"time": "00:00", "value": False}],
    )
    schedule("spare", enabled=False)
    points["lights"].enabled = False
    points["lights"].save()

    (spec,) = read_schedule_specs()
    assert (spec.name, spec.id, spec.value_type, spec.entry) == ("office", office.pk, "bool", "schedule:office")
    assert [(target.point, target.priority) for target in spec.targets] == [("ahu1_enable", 12)]
    definition = spec.definition
    assert definition.key == f"sch{office.pk}" and definition.time_zone == "America/New_York"
    assert definition.exceptions[0].key == str(closed.pk) and definition.exceptions[0].priority == 3
    thanksgiving_noon = datetime(2026, 11, 26, 17, tzinfo=UTC)
    assert spec.value_at(thanksgiving_noon).value is False
    (following,) = spec.next_transitions(thanksgiving_noon)
    assert (following.local_date, following.local_time, following.value) == (date(2026, 11, 27), time(7), True)
    assert following.identity == f"sch{office.pk}:20261127T070000:weekly"


# ---- admin --------------------------------------------------------------------------------------------------------


def test_the_admin_lists_and_shows_schedules_with_a_preview_and_calendars(points, admin_client):
    office = schedule()
    ScheduleTarget.objects.create(schedule=office, point=points["ahu1_enable"])
    calendar = Calendar.objects.create(name="holidays", holiday_country="DE")
    CalendarEntry.objects.create(calendar=calendar, kind="date", date=date(2026, 12, 24))
    ExceptionEvent.objects.create(
        schedule=office, kind="calendar", calendar=calendar, time_values=[{"time": "00:00", "value": False}]
    )
    assert admin_client.get("/admin/schedules/schedule/").status_code == 200
    page = admin_client.get(f"/admin/schedules/schedule/{office.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Value now and next transitions" in body and f"sch{office.pk}:" in body
    assert admin_client.get("/admin/schedules/calendar/").status_code == 200
    assert admin_client.get(f"/admin/schedules/calendar/{calendar.pk}/change/").status_code == 200
    assert admin_client.get("/admin/schedules/schedule/add/").status_code == 200


def test_the_admin_adds_a_schedule_with_a_target_and_refuses_a_read_only_one(points, admin_client):
    form = {
        "name": "night",
        "site": str(default_site_id()),  # the admin form asks for the site (the default one here)
        "value_type": "bool",
        "default_value": "false",
        "weekly": '{"monday": [{"time": "22:00", "value": true}]}',
        "time_zone": "Europe/Berlin",
        "enabled": "on",
        "targets-TOTAL_FORMS": "1",
        "targets-INITIAL_FORMS": "0",
        "targets-0-point": str(points["zone1_temp"].pk),
        "targets-0-priority": "16",
        "exceptions-TOTAL_FORMS": "0",
        "exceptions-INITIAL_FORMS": "0",
    }
    page = admin_client.post("/admin/schedules/schedule/add/", form)
    assert page.status_code == 200 and "zone1_temp is read-only" in page.content.decode()
    assert not Schedule.objects.exists()
    form["targets-0-point"] = str(points["lights"].pk)
    page = admin_client.post("/admin/schedules/schedule/add/", form)
    assert page.status_code == 302, page.content.decode()[:2000]
    assert [target.point.name for target in Schedule.objects.get(name="night").targets.all()] == ["lights"]


def test_a_refusal_between_two_new_inlines_is_shown_not_a_server_error(points, admin_client):
    setpoints = schedule("setpoints", value_type="real", weekly={}, default_value=20.0)
    form = {
        "name": "setpoints",
        "site": str(default_site_id()),  # the admin form asks for the site (the default one here)
        "value_type": "real",
        "default_value": "20.0",
        "weekly": "{}",
        "time_zone": "Europe/Berlin",
        "enabled": "on",
        "targets-TOTAL_FORMS": "1",
        "targets-INITIAL_FORMS": "0",
        "targets-0-point": str(points["zone1_setpoint"].pk),
        "targets-0-priority": "16",
        "exceptions-TOTAL_FORMS": "1",
        "exceptions-INITIAL_FORMS": "0",
        "exceptions-0-kind": "date",
        "exceptions-0-date": "2026-12-24",
        "exceptions-0-event_priority": "16",
        "exceptions-0-time_values": '[{"time": "00:00", "value": 40.0}]',
    }
    page = admin_client.post(f"/admin/schedules/schedule/{setpoints.pk}/change/", form, follow=True)
    assert page.status_code == 200
    assert "Nothing was saved: zone1_setpoint cannot take 40.0" in page.content.decode()
    assert not setpoints.targets.exists() and not setpoints.exceptions.exists()


def test_a_schedule_stored_behind_the_models_back_is_left_out_of_the_engine_configuration(points, caplog):
    schedule("good")
    broken = schedule("broken")
    Schedule.objects.filter(pk=broken.pk).update(weekly={"monday": [{"time": "25:00", "value": True}]})
    assert [spec.name for spec in read_schedule_specs()] == ["good"]
    assert "schedule broken cannot be loaded and does not run" in caplog.text


# ---- replication: the dump that redundancy.configsync is to carry ------------------------------------------------


def apply_like_configsync(dump: dict) -> None:
    """What docs/schedules.md asks ``redundancy.configsync.apply_config`` to do with the schedule tables."""
    from django.db import transaction

    from redundancy.configsync import _replace, _reset_sequences

    with transaction.atomic():
        for key, model, unique in SCHEDULE_TABLES:
            _replace(model, dump.get(key, []), unique)
        _reset_sequences(SCHEDULE_MODELS)


def test_the_schedule_configuration_travels_through_the_dump_and_is_applied_whole(points):
    from redundancy.configsync import hash_dump, pack_dump, unpack_dump

    used = Calendar.objects.create(name="used", holiday_country="DE", holiday_subdivision="BY")
    CalendarEntry.objects.create(calendar=used, kind="range", start_date=date(2026, 12, 24), end_date=date(2027, 1, 6))
    office = schedule(effective_from=date(2026, 1, 1))
    ScheduleTarget.objects.create(schedule=office, point=points["ahu1_enable"], priority=10)
    ExceptionEvent.objects.create(
        schedule=office,
        kind="calendar",
        calendar=used,
        event_priority=2,
        time_values=[{"time": "00:00", "value": False}],
    )
    ExceptionEvent.objects.create(
        schedule=office, kind="date_pattern", month=12, day=31, time_values=[{"time": "14:00", "value": False}]
    )
    wanted = dump_schedules()
    packed = unpack_dump(pack_dump(wanted))  # msgpack: dates must travel as text
    assert packed == wanted

    # the standby's own state differs: a stale calendar still used by a stale exception, renamed rows
    stale = Calendar.objects.create(name="stale")
    other = schedule("other")
    ExceptionEvent.objects.create(schedule=other, kind="calendar", calendar=stale, time_values=[])
    office.name = "renamed"
    office.save()
    Calendar.objects.filter(pk=used.pk).update(name="was-used")
    assert dump_schedules() != wanted

    apply_like_configsync(packed)
    assert dump_schedules() == wanted
    assert hash_dump(dump_schedules()) == hash_dump(wanted)
    assert not Calendar.objects.filter(name="stale").exists()
    (spec,) = read_schedule_specs()
    assert spec.value_at(datetime(2026, 12, 28, 12, tzinfo=UTC)).value is False
    # a new row after the apply takes a fresh key
    assert Calendar.objects.create(name="new").pk > max(row["id"] for row in wanted["calendars"])


def test_an_empty_dump_from_a_partner_without_schedules_empties_the_tables(points):
    office = schedule()
    ExceptionEvent.objects.create(
        schedule=office, kind="calendar", calendar=Calendar.objects.create(name="c"), time_values=[]
    )
    apply_like_configsync({})
    assert all(not model.objects.exists() for model in SCHEDULE_MODELS)


def test_the_evaluator_and_the_model_agree_on_an_exception_definition(points):
    office = schedule()
    event = ExceptionEvent.objects.create(
        schedule=office,
        kind="range",
        start_date=date(2026, 8, 3),
        end_date=date(2026, 8, 14),
        event_priority=4,
        time_values=[{"time": "07:00", "value": False}],
    )
    definition = event.definition("bool")
    assert definition == ev.ExceptionDef(
        str(event.pk), ev.DateRange(date(2026, 8, 3), date(2026, 8, 14)), 4, (ev.TimeValue(time(7), False),)
    )
