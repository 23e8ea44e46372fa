"""Fixtures of the schedule tests that need a database: a device with writable and read-only points."""

import pytest

from bms.points.models import Device, Point


@pytest.fixture
def points(db) -> dict[str, Point]:
    plant = Device.objects.create(name="plant", host="127.0.0.1", port=1502)
    specs = [
        # name, address, data type, writable, scale, min, max
        ("ahu1_enable", "co:0", "bool", True, 1.0, None, None),
        ("ahu1_mode", "hr:10", "uint16", True, 1.0, 0, 4),
        ("zone1_setpoint", "hr:0", "float32", True, 1.0, 12.0, 28.0),
        ("zone2_setpoint", "hr:20", "int16", True, 0.1, None, None),  # scaled: a real value in 0.1 steps
        ("zone1_temp", "ir:0", "float32", False, 1.0, None, None),
        ("lights", "co:1", "bool", True, 1.0, None, None),
    ]
    return {
        name: Point.objects.create(
            device=plant,
            name=name,
            address=address,
            data_type=data_type,
            writable=writable,
            scale=scale,
            min_value=low,
            max_value=high,
        )
        for name, address, data_type, writable, scale, low, high in specs
    }
