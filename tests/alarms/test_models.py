"""Alarm classes, definitions and the journal in the database: defaults, refusals at save, revision, admin."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.alarms.states import Alarm, AlarmConfig
from bms.points.models import ConfigRevision

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def define(point, kind: str, alarm_class: str = "medium", **fields) -> AlarmDefinition:
    return AlarmDefinition(point=point, kind=kind, alarm_class=AlarmClass.objects.get(name=alarm_class), **fields)


def refused(definition: AlarmDefinition, match: str) -> None:
    """Refused by full_clean with ``match`` in the message, and by save() too (nothing stored)."""
    with pytest.raises(ValidationError, match=match):
        definition.full_clean()
    count = AlarmDefinition.objects.count()
    with pytest.raises(ValidationError, match=match):
        definition.save()
    assert AlarmDefinition.objects.count() == count


def test_the_default_classes_exist_with_priorities_and_colours(db):
    classes = {c.name: c for c in AlarmClass.objects.all()}
    assert [c.name for c in AlarmClass.objects.all()] == ["critical", "high", "medium", "low", "journal-only"]
    assert [c.default_priority for c in classes.values()] == sorted(c.default_priority for c in classes.values())
    assert classes["critical"].ack_required and classes["critical"].annunciated
    assert not classes["journal-only"].ack_required and not classes["journal-only"].annunciated
    assert all(c.colour.startswith("#") and len(c.colour) == 7 for c in classes.values())


def test_a_definition_takes_its_name_priority_and_acknowledgement_from_point_kind_and_class(points):
    high = define(points["zone1_temp"], "high", "critical", limit=26.0, deadband=0.5)
    high.save()
    high.refresh_from_db()
    assert (high.name, high.priority, high.ack_required) == ("zone1_temp.high", 100, True)
    journal = define(points["zone1_temp"], "low", "journal-only", limit=15.0, priority=900)
    journal.save()
    assert (journal.priority, journal.ack_required) == (900, False)


def test_a_limit_on_a_bool_point_is_refused(points):
    refused(define(points["ahu1_fan"], "high", limit=1.0), "ahu1_fan is a bool point.*use state_equal")
    refused(define(points["ahu1_fan"], "rate_of_change", rate_per_minute=1.0), "is a bool point")


def test_limits_out_of_order_on_one_point_are_refused(points):
    temp = points["zone1_temp"]
    define(temp, "high", limit=25.0).save()
    refused(define(temp, "low", limit=30.0), r"the low limit 30 is above the high limit 25 \(zone1_temp.high\)")
    refused(define(temp, "low", limit=25.0), "the low limit 25 is at the high limit 25")
    define(temp, "low", limit=15.0).save()
    refused(define(temp, "low_low", limit=16.0), "the low-low limit 16 is above the low limit 15")
    refused(define(temp, "high_high", limit=24.0), "the high-high limit 24 is below the high limit 25")
    define(temp, "high_high", limit=25.0).save()  # equal to high: allowed
    define(temp, "low_low", limit=10.0, enabled=False, name="old_low_low").save()
    define(temp, "low_low", limit=14.0).save()  # the disabled one does not count
    moved = AlarmDefinition.objects.get(name="zone1_temp.high")
    moved.limit = 14.0
    refused(moved, "the high limit 14 is below the low limit 15")
    other_point = define(points["zone1_setpoint"], "low", limit=40.0)
    other_point.save()  # another point's limits do not matter


def test_state_alarms_need_a_bool_or_multistate_point_and_a_fitting_value(points):
    refused(define(points["zone1_temp"], "state_equal", alarm_value=1.0), "need a bool or multistate")
    refused(define(points["ahu1_fan"], "state_equal", alarm_value=2.0), r"1 \(true\) or 0 \(false\)")
    refused(define(points["ahu1_mode"], "state_not_equal", alarm_value=1.5), "whole numbers")
    refused(define(points["ahu1_mode"], "state_equal"), "state_equal alarms need an alarm value")
    define(points["ahu1_fan"], "state_equal", alarm_value=0.0).save()
    define(points["ahu1_mode"], "state_not_equal", alarm_value=3.0).save()


def test_deviation_needs_another_numeric_setpoint_point_and_a_band(points):
    temp = points["zone1_temp"]
    refused(define(temp, "deviation", limit=2.0), "deviation alarms need a setpoint point")
    refused(define(temp, "deviation", limit=2.0, setpoint_point=temp), "must be another point")
    refused(define(temp, "deviation", limit=2.0, setpoint_point=points["ahu1_fan"]), "is a bool point")
    refused(define(temp, "deviation", limit=0.0, setpoint_point=points["zone1_setpoint"]), "band must be above 0")
    define(temp, "deviation", limit=2.0, setpoint_point=points["zone1_setpoint"]).save()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"message": "{point} is {temperature}"}, r"unknown placeholder \{temperature\}"),
        ({"message": "{point is high"}, "unbalanced braces"),
        ({"priority": 0}, r"priority.*from 1 \(most urgent\) to 1000"),
        ({"priority": 1001}, r"from 1 \(most urgent\) to 1000"),
        ({"on_delay": -1.0}, "on_delay.*Must not be negative"),
        ({"off_delay": -1.0}, "off_delay.*Must not be negative"),
        ({"deadband": -0.5}, "deadband.*Must not be negative"),
        ({"realarm_seconds": -5.0}, "Must not be negative"),
        ({"alarm_value": 1.0}, "high alarms do not use an alarm value"),
        ({"quality_delay": 5.0}, "high alarms do not use a quality delay"),
        ({"limit": None}, "high alarms need a limit"),
        ({"limit": float("inf")}, "finite number"),
        ({"name": "has spaces"}, "no spaces"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(points, fields, match):
    refused(define(points["zone1_temp"], "high", **{"limit": 25.0, **fields}), match)


def test_quality_alarms_use_the_quality_delay_and_no_limit(points):
    temp = points["zone1_temp"]
    refused(define(temp, "quality", on_delay=5.0), "quality alarms wait for quality_delay")
    refused(define(temp, "quality", limit=3.0), "quality alarms do not use a limit")
    definition = define(temp, "quality", quality_delay=30.0)
    definition.save()
    assert definition.alarm_config() == AlarmConfig(ack_required=True, on_delay=30.0)


def test_unknown_points_and_bad_suppression_points_are_refused(points):
    refused(define(points["zone1_temp"], "high", limit=25.0, point_id=999_999), "There is no point with id 999999")
    refused(
        define(points["zone1_temp"], "high", limit=25.0, suppression_point=points["zone1_setpoint"]),
        "suppression point must be a bool point",
    )
    refused(
        define(points["ahu1_fan"], "state_equal", alarm_value=0.0, suppression_point=points["ahu1_fan"]),
        "cannot suppress its own alarm",
    )
    define(points["zone1_temp"], "high", limit=25.0, suppression_point=points["ahu1_off"]).save()


def test_a_second_alarm_of_the_same_kind_needs_its_own_name(points):
    define(points["zone1_temp"], "high", limit=25.0).save()
    refused(define(points["zone1_temp"], "high", limit=27.0), "already has a high alarm named zone1_temp.high")
    define(points["zone1_temp"], "high", limit=27.0, name="zone1_temp.high.night").save()


def test_saving_and_deleting_bump_the_configuration_revision(points, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        definition = define(points["zone1_temp"], "high", limit=25.0)
        definition.save()
    assert ConfigRevision.current() > before
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        definition.set_out_of_service(True, "eng")
    assert ConfigRevision.current() > before
    assert definition.out_of_service_by == "eng" and definition.out_of_service_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        definition.delete()
    assert ConfigRevision.current() > before
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        AlarmClass.objects.filter(name="low").update(colour="#000000")  # (no signal for a queryset update)
        low = AlarmClass.objects.get(name="low")
        low.save()
    assert ConfigRevision.current() > before


def test_deleting_a_point_deletes_its_alarms_and_a_class_in_use_cannot_be_deleted(points):
    from django.db.models import ProtectedError

    define(points["zone1_temp"], "high", limit=25.0, suppression_point=points["ahu1_off"]).save()
    define(points["ahu1_fan"], "state_equal", alarm_value=0.0).save()
    points["ahu1_off"].delete()
    assert AlarmDefinition.objects.get(name="zone1_temp.high").suppression_point is None
    points["ahu1_fan"].delete()
    assert not AlarmDefinition.objects.filter(name="ahu1_fan.state_equal").exists()
    with pytest.raises(ProtectedError):
        AlarmClass.objects.get(name="medium").delete()


def test_the_engine_gets_condition_config_and_message_from_a_definition(points):
    definition = define(points["zone1_temp"], "high", limit=25.0, deadband=0.5, on_delay=10, realarm_seconds=600)
    definition.save()
    condition = definition.condition()
    assert (condition.kind, condition.limit, condition.deadband) == ("high", 25.0, 0.5)
    config = definition.alarm_config(shelve_max=7200)
    assert (config.on_delay, config.realarm_seconds, config.shelve_max, config.ack_required) == (10, 600, 7200, True)
    assert definition.render_message(26.25) == "zone1_temp high: 26.25 degC (limit 25 degC)"
    definition.message = "{point} too warm: {value:.1f} {unit} > {limit}"
    assert definition.render_message(26.25) == "zone1_temp too warm: 26.2 degC > 25.0"


def test_journal_rows_are_stamped_history_replicated_like_the_event_log(points):
    from redundancy.history import replicated_models

    definition = define(points["zone1_temp"], "high", "high", limit=25.0)
    definition.save()
    alarm = Alarm(definition.name, definition.alarm_config())
    (transition,) = alarm.update(True, T0, 26.5)
    row = AlarmJournal.for_transition(transition, definition)
    row.save()
    row.refresh_from_db()
    assert row.origin_seq > 0 and row.origin
    assert (row.alarm, row.point_name, row.transition, row.state, row.value) == (
        "zone1_temp.high",
        "zone1_temp",
        "raised",
        "active_unacked",
        26.5,
    )
    assert (row.priority, row.alarm_class, row.time) == (300, "high", T0)
    assert row.message == "zone1_temp high: 26.5 degC (limit 25 degC)"
    assert replicated_models()["alarms.alarmjournal"] is AlarmJournal


def test_the_admin_lists_and_edits_alarms(points, admin_client):
    definition = define(points["zone1_temp"], "high", limit=25.0)
    definition.save()
    AlarmJournal.objects.create(time=T0, alarm="zone1_temp.high", point_name="zone1_temp", transition="raised")
    for url in ("/admin/alarms/alarmclass/", "/admin/alarms/alarmdefinition/", "/admin/alarms/alarmjournal/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert "zone1_temp.high" in admin_client.get("/admin/alarms/alarmdefinition/?kind=high").content.decode()
    assert admin_client.get("/admin/alarms/alarmdefinition/add/").status_code == 200
    data = {
        "name": "zone1_temp.high",
        "point": points["zone1_temp"].pk,
        "kind": "high",
        "alarm_class": definition.alarm_class_id,
        "priority": 500,
        "area": "zone 1",
        "message": "",
        "enabled": "on",
        "limit": "25",
        "deadband": "0",
        "alarm_value": "",
        "rate_per_minute": "",
        "on_delay": "0",
        "off_delay": "0",
        "quality_delay": "0",
        "realarm_seconds": "0",
        "ack_required": "true",
        "out_of_service": "on",
    }
    response = admin_client.post(f"/admin/alarms/alarmdefinition/{definition.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    definition.refresh_from_db()
    assert definition.out_of_service and definition.area == "zone 1"
    assert definition.out_of_service_by == User.objects.get().username
    response = admin_client.post(
        f"/admin/alarms/alarmdefinition/{definition.pk}/change/", {**data, "low_limit": "", "kind": "state_equal"}
    )
    assert response.status_code == 200  # the form again, with the error
    assert "need a bool or multistate" in response.content.decode()
