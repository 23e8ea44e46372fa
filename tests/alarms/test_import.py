"""CSV import of alarm definitions: all rows or none, every problem reported with its line number."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bms.alarms.importer import ImportFailed, import_alarms
from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.points.models import ConfigRevision

HEADER = "point,kind,limit,deadband,on_delay,alarm_value,setpoint_point,class,priority,message\n"


def test_a_good_file_imports_every_row(points):
    result = import_alarms(
        HEADER
        + "zone1_temp,high,26,0.5,60,,,high,,{point} too warm: {value} {unit}\n"
        + "zone1_temp,low,16,0.5,,,,,,\n"
        + "ahu1_fan,state_equal,,,10,no,,critical,50,\n"
        + "zone1_temp,deviation,3,,,,zone1_setpoint,low,,\n"
    )
    assert result.created == ["zone1_temp.high", "zone1_temp.low", "ahu1_fan.state_equal", "zone1_temp.deviation"]
    high = AlarmDefinition.objects.get(name="zone1_temp.high")
    assert (high.limit, high.deadband, high.on_delay, high.alarm_class.name, high.priority) == (
        26,
        0.5,
        60,
        "high",
        300,
    )
    assert high.message == "{point} too warm: {value} {unit}"
    low = AlarmDefinition.objects.get(name="zone1_temp.low")
    assert (low.alarm_class.name, low.priority, low.ack_required) == ("medium", 500, True)  # the default class
    fan = AlarmDefinition.objects.get(name="ahu1_fan.state_equal")
    assert (fan.alarm_value, fan.priority) == (0.0, 50)
    assert AlarmDefinition.objects.get(name="zone1_temp.deviation").setpoint_point.name == "zone1_setpoint"


def test_an_existing_definition_is_updated_and_keeps_its_out_of_service_flag(points):
    import_alarms(HEADER + "zone1_temp,high,26,,,,,,,\n")
    AlarmDefinition.objects.get(name="zone1_temp.high").set_out_of_service(True, "eng")
    result = import_alarms(HEADER + "zone1_temp,high,27,1,,,,critical,,\n")
    assert result.updated == ["zone1_temp.high"] and result.created == []
    high = AlarmDefinition.objects.get(name="zone1_temp.high")
    assert (high.limit, high.deadband, high.alarm_class.name, high.out_of_service) == (27, 1, "critical", True)


def test_every_bad_row_is_reported_and_nothing_is_imported(points):
    AlarmDefinition(
        point=points["zone1_setpoint"], kind="high", limit=28, alarm_class=AlarmClass.objects.get(name="low")
    ).save()
    text = HEADER + (
        "zone1_temp,high,25,,,,,,,\n"  # line 2: fine
        "nowhere,high,25,,,,,,,\n"  # line 3: unknown point
        "ahu1_fan,high,1,,,,,,,\n"  # line 4: a limit on a bool point
        "zone1_temp,low,30,,,,,,,\n"  # line 5: low above the high of line 2
        "zone1_setpoint,low,29,,,,,,,\n"  # line 6: low above a configured high
        "zone1_temp,state_equal,,,,1,,,,\n"  # line 7: state alarm on a real point
        "zone1_temp,deviation,2,,,,,,,\n"  # line 8: deviation without setpoint
        "zone1_temp,high_high,30,,,,,,,{point} is {temp}\n"  # line 9: bad placeholder
        "zone1_temp,low_low,10,,,,,,0,\n"  # line 10: priority out of range
        "ahu1_mode,state_equal,,,-5,2,,,,\n"  # line 11: negative delay
        "ahu1_mode,state_not_equal,,,,3,,urgent,,\n"  # line 12: unknown class
        "zone1_temp,rate_of_change,abc,,,,,,,\n"  # line 13: not a number (and a limit a rate alarm does not use)
        "zone1_temp,high,26,,,,,,,\n"  # line 14: the same alarm twice
        "zone1_temp,sideways,1,,,,,,,\n"  # line 15: unknown kind
        "zone1_temp,quality,,,,,,,,,extra\n"  # line 16: too many fields
    )
    with pytest.raises(ImportFailed) as failed:
        import_alarms(text)
    errors = failed.value.errors
    lines = list(dict.fromkeys(error.split(":")[0] for error in errors))
    assert lines == [f"line {n}" for n in range(3, 17)], errors
    joined = "\n".join(errors)
    for fragment in (
        "line 3: nowhere.high: point: unknown point 'nowhere'",
        "line 4: ahu1_fan.high: kind: ahu1_fan is a bool point",
        "line 5: zone1_temp.low: limit: the low limit 30 is above the high limit 25 (zone1_temp.high, line 2)",
        "line 6: zone1_setpoint.low: limit: the low limit 29 is above the high limit 28 (zone1_setpoint.high)",
        "line 7: zone1_temp.state_equal: kind: state_equal alarms need a bool or multistate",
        "line 8: zone1_temp.deviation: setpoint_point: deviation alarms need a setpoint point",
        "line 9: zone1_temp.high_high: message: the message template has an unknown placeholder {temp}",
        "line 10: zone1_temp.low_low: priority: A priority is from 1 (most urgent) to 1000.",
        "line 11: ahu1_mode.state_equal: on_delay: Must not be negative.",
        "line 12: ahu1_mode.state_not_equal: class: unknown alarm class 'urgent'",
        "line 13: zone1_temp.rate_of_change: limit: 'abc' is not a number",
        "line 14: alarm 'zone1_temp.high' already appears on line 2",
        "line 15: zone1_temp.sideways: kind: Unknown kind 'sideways'; use high, low, high_high, low_low, state_equal",
        "line 16: more fields than columns",
    ):
        assert fragment in joined, fragment
    assert AlarmDefinition.objects.count() == 1  # only the one configured before


def test_limits_are_judged_where_the_file_leaves_them(points):
    import_alarms(HEADER + "zone1_temp,low,10,,,,,,,\nzone1_temp,high,20,,,,,,,\n")
    # both move up past each other's old place: fine, since the file names both
    result = import_alarms(HEADER + "zone1_temp,low,25,,,,,,,\nzone1_temp,high,30,,,,,,,\n")
    assert result.updated == ["zone1_temp.low", "zone1_temp.high"]
    # moving only the low above the configured high is refused
    with pytest.raises(
        ImportFailed, match=r"line 2: zone1_temp.low: limit: the low limit 31 is above the high limit 30"
    ):
        import_alarms(HEADER + "zone1_temp,low,31,,,,,,,\n")
    assert AlarmDefinition.objects.get(name="zone1_temp.low").limit == 25


def test_a_bad_header_is_refused(points):
    with pytest.raises(ImportFailed, match=r"missing column.*kind"):
        import_alarms("point,limit\nzone1_temp,25\n")
    with pytest.raises(ImportFailed, match=r"unknown column.*colour"):
        import_alarms("point,kind,colour\nzone1_temp,high,red\n")
    with pytest.raises(ImportFailed, match="no alarm rows"):
        import_alarms(HEADER)
    assert not AlarmDefinition.objects.exists()


def test_an_import_bumps_the_configuration_revision(points, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        import_alarms(HEADER + "zone1_temp,high,26,,,,,,,\n")
    assert ConfigRevision.current() > before


def test_the_command_reports_errors_and_exits_non_zero(points, tmp_path, capsys):
    bad = tmp_path / "alarms.csv"
    bad.write_text(HEADER + "zone1_temp,high,26,,,,,,,\nahu1_fan,low,0,,,,,,,\n")
    with pytest.raises(
        CommandError, match=r"nothing imported, 1 problem\(s\):\nline 3: ahu1_fan.low: kind: ahu1_fan is a bool"
    ):
        call_command("importalarms", str(bad))
    assert not AlarmDefinition.objects.exists()
    with pytest.raises(CommandError, match="cannot read"):
        call_command("importalarms", str(tmp_path / "missing.csv"))
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "zone1_temp,high,26,,,,,,,\n")
    call_command("importalarms", str(good), "--dry-run")
    assert "would create 1" in capsys.readouterr().out
    assert not AlarmDefinition.objects.exists()
    call_command("importalarms", str(good))
    assert "created 1, updated 0 alarm definition(s)" in capsys.readouterr().out
    assert AlarmDefinition.objects.filter(name="zone1_temp.high").exists()


def test_the_example_in_the_operator_guide_imports_into_the_demo_building(db):
    from pathlib import Path

    call_command("loaddemo", modbus_port=1, verbosity=0)
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operator-guide.md").read_text()
    section = guide.split("## Alarm definitions", 1)[1]
    example = section.split("```csv\n", 1)[1].split("```", 1)[0]
    result = import_alarms(example)
    assert len(result.created) == example.count("\n") - 1


def test_references_are_looked_up_once_per_file_not_once_per_row(points):
    """A point or class named in many rows costs no query per row: 20,000 alarms took minutes when it did."""
    rows = "point,name,kind,limit,setpoint_point,class\n" + "".join(
        f"zone1_temp,t{i},deviation,{1 + i},zone1_setpoint,high\n" for i in range(40)
    )
    with CaptureQueriesContext(connection) as captured:
        result = import_alarms(rows)
    assert len(result.created) == 40
    sql = [query["sql"] for query in captured.captured_queries]
    point_queries = [text for text in sql if 'FROM "points_point"' in text]
    class_queries = [text for text in sql if 'FROM "alarms_alarmclass"' in text]
    assert len(point_queries) <= 2, point_queries[:5]  # the table read for the file, not one per row
    assert len(class_queries) <= 2, class_queries[:5]
    assert AlarmDefinition.objects.get(name="t39").setpoint_point.name == "zone1_setpoint"
