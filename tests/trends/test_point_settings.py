"""Trend settings of points: point-list CSV columns, defaults for new points, refused values."""

import pytest

from bms.points.importer import ImportFailed, import_points
from bms.points.models import TREND_BOTH, TREND_CHANGE, TREND_INTERVAL, Device, Point

pytestmark = pytest.mark.django_db
HEADER = "device,name,address,data_type,deadband,trend_mode,trend_deadband,trend_interval\n"


@pytest.fixture
def device() -> Device:
    return Device.objects.create(name="plant", host="127.0.0.1")


def test_the_csv_columns_set_the_trend_settings_and_empty_cells_take_the_defaults(device):
    result = import_points(
        HEADER
        + "plant,t1,hr:0,int16,0.5,change,0.2,\n"
        + "plant,t2,hr:1,int16,,Interval,,60\n"
        + "plant,t3,hr:2,int16,,,,\n"
    )
    assert result.created == ["t1", "t2", "t3"]
    settings = {p.name: (p.trend_mode, p.trend_deadband, p.trend_interval) for p in Point.objects.all()}
    assert settings == {
        "t1": (TREND_CHANGE, 0.2, 900.0),
        "t2": (TREND_INTERVAL, None, 60.0),
        "t3": (TREND_BOTH, None, 900.0),  # new points: on change (the point's deadband), at least every 15 min
    }


def test_a_point_list_without_the_columns_trends_every_point_by_default(device):
    import_points("device,name,address,data_type\nplant,t1,hr:0,int16\n")
    point = Point.objects.get()
    assert (point.trend_mode, point.trend_deadband, point.trend_interval) == (TREND_BOTH, None, 900.0)


def test_wrong_trend_settings_are_refused_with_their_line(device):
    with pytest.raises(ImportFailed) as failed:
        import_points(HEADER + "plant,t1,hr:0,int16,,sometimes,,\nplant,t2,hr:1,int16,,both,-1,0.5\n")
    text = "\n".join(failed.value.errors)
    assert "line 2: t1: trend_mode" in text
    assert "line 3: t2: trend_deadband" in text and "line 3: t2: trend_interval" in text
    assert not Point.objects.exists()
