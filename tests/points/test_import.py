"""CSV point-list import: all rows or none, every problem reported with its line number."""

import pytest
from django.core.management import CommandError, call_command

from bms.points.importer import ImportFailed, import_points
from bms.points.models import ConfigRevision, Device, Point

HEADER = "device,name,address,data_type,scale,unit,writable,min_value,max_value\n"


@pytest.fixture
def plant(db):
    return Device.objects.create(name="plant", host="127.0.0.1", port=1502)


def test_a_good_file_imports_every_row(plant):
    result = import_points(HEADER + "plant,t1,ir:0,float32,1,degC,no,,\nplant,sp1,hr:0,float32,1,degC,yes,15,28\n")
    assert result.created == ["t1", "sp1"]
    sp1 = Point.objects.get(name="sp1")
    assert (sp1.writable, sp1.min_value, sp1.max_value, sp1.device) == (True, 15, 28, plant)


def test_an_existing_point_is_updated(plant):
    import_points(HEADER + "plant,t1,ir:0,float32,1,degC,no,,\n")
    result = import_points(HEADER + "plant,t1,ir:2,float32,1,K,no,,\n")
    assert result.updated == ["t1"]
    assert Point.objects.get(name="t1").address == "ir:2"


def test_every_bad_row_is_reported_and_nothing_is_imported(plant):
    text = HEADER + (
        "plant,ok1,ir:0,float32,1,degC,no,,\n"  # line 2: fine
        "plant,bad addr,ir:1,float32,1,,no,,\n"  # line 3: name with a space
        "nowhere,t3,ir:2,float32,1,,no,,\n"  # line 4: unknown device
        "plant,t4,40001,uint16,1,,no,,\n"  # line 5: not a Modbus address
        "plant,t5,ir:3,float16,1,,no,,\n"  # line 6: unknown data type
        "plant,t6,ir:4,float32,abc,,no,,\n"  # line 7: scale not a number
        "plant,t7,hr:5,float32,1,,maybe,,\n"  # line 8: writable not yes/no
        "plant,t8,hr:6,float32,1,,yes,30,20\n"  # line 9: min above max
        "plant,ok1,ir:9,float32,1,,no,,\n"  # line 10: duplicate name
        "plant,t9,co:1,bool,2,,no,,\n"  # line 11: scaled bool
        "plant,t10,hr:1,uint16,0,,no,,\n"  # line 12: zero scale
        "plant,t11,hr:1,uint16,1,,no,,,extra\n"  # line 13: too many fields
    )
    with pytest.raises(ImportFailed) as failed:
        import_points(text)
    lines = list(dict.fromkeys(error.split(":")[0] for error in failed.value.errors))
    assert lines == [f"line {n}" for n in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)], failed.value.errors
    joined = "\n".join(failed.value.errors)
    for fragment in (
        "unknown device 'nowhere'",
        "must look like",
        "float16",
        "not a number",
        "not yes or no",
        "already appears on line 2",
        "cannot be scaled",
        "must not be zero",
        "more fields",
    ):
        assert fragment in joined
    assert not Point.objects.exists()


def test_a_bad_header_is_refused(plant):
    with pytest.raises(ImportFailed, match="missing column"):
        import_points("device,name,address\nplant,t1,ir:0\n")
    with pytest.raises(ImportFailed, match=r"unknown column.*colour"):
        import_points("device,name,address,data_type,colour\nplant,t1,ir:0,float32,red\n")
    with pytest.raises(ImportFailed, match="no point rows"):
        import_points(HEADER)
    assert not Point.objects.exists()


def test_an_import_bumps_the_configuration_revision(plant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        before = ConfigRevision.current()
        import_points(HEADER + "plant,t1,ir:0,float32,1,degC,no,,\n")
    assert ConfigRevision.current() > before


def test_the_command_reports_errors_and_exits_non_zero(plant, tmp_path, capsys):
    bad = tmp_path / "points.csv"
    bad.write_text(HEADER + "plant,t1,ir:0,float32,1,,no,,\nplant,t2,zz:0,float32,1,,no,,\n")
    with pytest.raises(CommandError, match=r"nothing imported, 1 problem\(s\):\nline 3: t2: address"):
        call_command("importpoints", str(bad))
    assert not Point.objects.exists()
    with pytest.raises(CommandError, match="cannot read"):
        call_command("importpoints", str(tmp_path / "missing.csv"))
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "plant,t1,ir:0,float32,1,,no,,\n")
    call_command("importpoints", str(good), "--dry-run")
    assert "would create 1" in capsys.readouterr().out
    assert not Point.objects.exists()
    call_command("importpoints", str(good))
    assert Point.objects.filter(name="t1").exists()


def test_the_demo_point_list_matches_the_simulator_register_map(db):
    from drivers.simulator.building import SIGNALS_BY_NAME

    call_command("loaddemo", modbus_port=1, verbosity=0)
    for point in Point.objects.all():
        signal = SIGNALS_BY_NAME[point.name]
        assert point.address == f"{signal.table}:{signal.offset}", point.name
        assert point.data_type == signal.data_type, point.name
    assert Point.objects.count() == len(SIGNALS_BY_NAME)
