"""Device and point validation in the model (what the admin shows), and the options' way to the engine."""

import pytest
from django.core.exceptions import ValidationError

from bms.engine.store import read_config
from bms.points.models import Device, Point


@pytest.fixture
def plant(db):
    return Device.objects.create(name="plant", host="127.0.0.1", port=1502)


def test_a_point_sharing_registers_with_another_is_refused(plant):
    Point.objects.create(device=plant, name="f", address="hr:10", data_type="float32")
    clash = Point(device=plant, name="i", address="hr:11", data_type="int16")
    with pytest.raises(ValidationError, match=r"i at hr:11 \(int16, register 11\) overlaps f at hr:10"):
        clash.full_clean()
    Point(device=plant, name="i", address="hr:12", data_type="int16").full_clean()
    Point(device=plant, name="g", address="hr:10", data_type="uint32").full_clean()  # the same registers
    other = Device.objects.create(name="other", host="127.0.0.1", port=1503)
    Point(device=other, name="i", address="hr:11", data_type="int16").full_clean()  # another device


def test_editing_a_point_does_not_conflict_with_itself(plant):
    point = Point.objects.create(device=plant, name="f", address="hr:10", data_type="float32")
    point.address = "hr:11"
    point.full_clean()


def test_point_options_are_checked_by_the_driver(plant):
    point = Point(device=plant, name="p", address="hr:0", data_type="float32", options={"word_order": "sideways"})
    with pytest.raises(ValidationError, match="word_order must be 'big' or 'little'"):
        point.full_clean()
    point.options = ["not", "a", "dict"]
    with pytest.raises(ValidationError, match="must be a JSON object"):
        point.full_clean()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be a number from 0 to 10"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"stale_after": 0}, "stale_after must be a number from 0.05"),
        ({"stale_after": "soon"}, "stale_after must be a number"),
        ({"read_back": "yes"}, "read_back must be true or false"),
    ],
)
def test_device_options_are_checked(plant, options, message):
    plant.options = options
    with pytest.raises(ValidationError, match=message):
        plant.full_clean()


def test_point_options_reach_the_driver_spec(plant):
    Point.objects.create(device=plant, name="p", address="hr:0", data_type="float32", options={"word_order": "little"})
    plant.options = {"retries": 2, "stale_after": 5}
    plant.save()
    (device,) = read_config().devices
    assert device.points[0].spec.options == {"word_order": "little"}
    assert device.spec.options == {"retries": 2, "stale_after": 5}
