"""Fixtures of the alarm tests that need a database: a device with a few points of each kind."""

import importlib

import pytest
from django.apps import apps

from bms.points.models import Device, Point

_default_classes = importlib.import_module("bms.alarms.migrations.0002_default_alarm_classes")


@pytest.fixture(autouse=True)
def default_alarm_classes(request) -> None:
    """The classes the data migration creates: a transactional test elsewhere may have flushed them."""
    if "db" in request.fixturenames or "points" in request.fixturenames:
        request.getfixturevalue("db")
        _default_classes.create_classes(apps, None)


@pytest.fixture
def points(db) -> dict[str, Point]:
    plant = Device.objects.create(name="plant", host="127.0.0.1", port=1502)
    specs = [
        ("zone1_temp", "ir:0", "float32", "degC"),
        ("zone1_setpoint", "hr:0", "float32", "degC"),
        ("ahu1_fan", "co:0", "bool", ""),
        ("ahu1_off", "co:1", "bool", ""),
        ("ahu1_mode", "hr:10", "uint16", ""),
    ]
    return {
        name: Point.objects.create(device=plant, name=name, address=address, data_type=data_type, unit=unit)
        for name, address, data_type, unit in specs
    }
