"""``manage.py poll --once``: the commissioning read of a point list, against a real simulator process."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from bms.points.models import Device, Point
from drivers.simulator.building import SIGNALS
from tests.support.processes import Simulator


@pytest.fixture(scope="module")
def simulator():
    sim = Simulator()
    yield sim
    sim.stop()


def poll(*args: str) -> tuple[list[dict], str | None]:
    out = io.StringIO()
    try:
        call_command("poll", "--once", *args, stdout=out)
        failure = None
    except CommandError as exc:
        failure = str(exc)
    return out.getvalue(), failure


def test_every_point_is_read_once_as_json(db, simulator):
    call_command("loaddemo", modbus_port=simulator.port, verbosity=0)
    output, failure = poll("--format", "json")
    rows = json.loads(output)
    assert failure is None
    assert len(rows) == len(SIGNALS)  # every point of the demo list, one per register of the plant
    by_point = {row["point"]: row for row in rows}
    assert by_point["zone1_setpoint"] == {
        "device": "plant",
        "point": "zone1_setpoint",
        "value": 21.0,
        "quality": "good",
        "error": None,
    }
    assert by_point["meter_energy"]["value"] > 1000  # Wh counter scaled to kWh


def test_bad_points_and_dead_devices_are_reported_and_fail_the_check(db, simulator):
    call_command("loaddemo", modbus_port=simulator.port, verbosity=0)
    plant = Device.objects.get(name="plant")
    Point.objects.create(device=plant, name="beyond_the_map", address="hr:98", data_type="float64")
    Device.objects.create(name="gone", host="127.0.0.1", port=1)
    Point.objects.create(device=Device.objects.get(name="gone"), name="lost", address="hr:0", data_type="uint16")
    output, failure = poll("--format", "json")
    by_point = {row["point"]: row for row in json.loads(output)}
    assert failure == f"2 of {len(SIGNALS) + 2} point(s) are not good"
    assert by_point["beyond_the_map"]["quality"] == "bad"
    assert by_point["zone1_temp"]["quality"] == "good"  # its neighbours are unaffected
    assert by_point["lost"]["quality"] == "comm_failure"
    assert "127.0.0.1:1" in by_point["lost"]["error"]
    table, _ = poll("--device", "plant")
    assert "beyond_the_map" in table and "lost" not in table
    _, failure = poll("--device", "nope")
    assert "no enabled device 'nope'" in failure and "plant" in failure
