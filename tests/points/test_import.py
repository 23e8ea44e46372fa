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


def test_overlapping_and_out_of_range_addresses_are_refused_with_their_lines(plant):
    Point.objects.create(device=plant, name="configured", address="hr:40", data_type="float64")  # 40..43
    text = HEADER + (
        "plant,f,hr:10,float32,1,,no,,\n"  # line 2: registers 10-11
        "plant,i,hr:11,int16,1,,no,,\n"  # line 3: inside f
        "plant,same,hr:10,int32,1,,no,,\n"  # line 4: exactly f's registers: allowed
        "plant,bit,hr:11.3,bool,1,,no,,\n"  # line 5: a bit of a register: allowed
        "plant,big,hr:70000,uint16,1,,no,,\n"  # line 6: beyond the address space
        "plant,wide,hr:65533,uint64,1,,no,,\n"  # line 7: runs past the last register
        "plant,late,hr:43,uint16,1,,no,,\n"  # line 8: inside a configured point
    )
    with pytest.raises(ImportFailed) as failed:
        import_points(text)
    assert failed.value.errors == [
        "line 3: i: address: i at hr:11 (int16, register 11) overlaps f at hr:10 (float32, registers 10..11) "
        "(f: line 2)",
        "line 3: i: address: i at hr:11 (int16, register 11) overlaps same at hr:10 (int32, registers 10..11) "
        "(same: line 4)",
        "line 6: big: address: Modbus address 'hr:70000': offset must be between 0 and 65535",
        "line 7: wide: address: Modbus address 'hr:65533': offset must be between 0 and 65532",
        "line 8: late: address: late at hr:43 (uint16, register 43) overlaps configured at hr:40 (float64, "
        "registers 40..43) (configured: already configured)",
    ]
    assert Point.objects.count() == 1


def test_moving_points_past_each_other_in_one_file_is_not_a_conflict(plant):
    import_points(HEADER + "plant,a,hr:0,float32,1,,no,,\nplant,b,hr:2,float32,1,,no,,\n")
    import_points(HEADER + "plant,a,hr:2,float32,1,,no,,\nplant,b,hr:0,float32,1,,no,,\n")
    assert dict(Point.objects.values_list("name", "address")) == {"a": "hr:2", "b": "hr:0"}


def test_point_options_from_json_and_from_order_columns(plant):
    text = (
        "device,name,address,data_type,options,word_order,byte_order\n"
        'plant,a,hr:0,float32,"{""read_back"": true}",little,\n'
        "plant,b,hr:2,uint32,,,little\n"
        "plant,c,hr:4,uint16,,,\n"
    )
    import_points(text)
    options = dict(Point.objects.values_list("name", "options"))
    assert options == {"a": {"read_back": True, "word_order": "little"}, "b": {"byte_order": "little"}, "c": {}}


def test_bad_point_options_are_reported_with_their_lines(plant):
    text = (
        "device,name,address,data_type,options,word_order\n"
        "plant,a,hr:0,float32,{not json},\n"  # line 2
        'plant,b,hr:2,float32,"[1, 2]",\n'  # line 3
        'plant,c,hr:4,float32,"{""colour"": 1}",\n'  # line 4
        "plant,d,hr:6,float32,,sideways\n"  # line 5
        'plant,e,hr:8,float32,"{""word_order"": ""big""}",little\n'  # line 6
        "plant,f,hr:10,uint16,,little\n"  # line 7
    )
    with pytest.raises(ImportFailed) as failed:
        import_points(text)
    errors = failed.value.errors
    assert [error.split(":")[0] for error in errors] == [f"line {n}" for n in range(2, 8)], errors
    for fragment in (
        "is not JSON",
        "is not a JSON object",
        "unknown Modbus point option(s) colour",
        "word_order must be 'big' or 'little', not 'sideways'",
        "word_order: 'little' here but 'big' in options",
        "no effect on a one-register uint16",
    ):
        assert fragment in "\n".join(errors)


def test_the_modbus_example_of_the_driver_guide_imports(plant):
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "driver-guide.md").read_text()
    example = guide.split("```csv\n", 1)[1].split("```", 1)[0]
    result = import_points(example)
    assert len(result.created) == 9
    assert Point.objects.get(name="meter_energy").options == {"word_order": "little"}
    assert Point.objects.get(name="zone1_setpoint").options == {"read_back": True}
