"""Fixtures of the logic tests that need a database: a Modbus and a BACnet device with a few points."""

import pytest

from bms.points.models import Device, Point


@pytest.fixture
def points(db) -> dict[str, Point]:
    plant = Device.objects.create(name="plant", host="127.0.0.1", port=1502)
    ahu = Device.objects.create(name="ahu", driver="bacnet", host="127.0.0.1", port=47808, options={"device_id": 9})
    specs = [
        (plant, "zone1_temp", "ir:0", "float32", False, {}),
        (plant, "zone2_temp", "ir:2", "float32", False, {}),
        (plant, "oat", "ir:4", "float32", False, {}),
        (plant, "zone1_sp", "hr:0", "float32", True, {}),
        (plant, "zone2_sp", "hr:2", "float32", True, {}),
        (plant, "heat_demand", "hr:4", "float32", True, {"min_value": 0.0, "max_value": 100.0}),
        (plant, "ahu1_fan", "co:0", "bool", True, {}),
        (plant, "ahu1_running", "di:0", "bool", False, {}),
        (plant, "pump1", "co:1", "bool", True, {}),
        (plant, "pump2", "co:2", "bool", True, {}),
        (plant, "pump3", "co:3", "bool", True, {}),
        (plant, "stage", "hr:10", "uint16", True, {}),
        (ahu, "ahu1_valve", "analog-value:1", "float32", True, {"min_value": 0.0, "max_value": 100.0}),
        (ahu, "ahu1_enable", "binary-value:1", "bool", True, {}),
    ]
    return {
        name: Point.objects.create(
            device=device, name=name, address=address, data_type=data_type, writable=writable, **extra
        )
        for device, name, address, data_type, writable, extra in specs
    }
