"""The sampler with a real ProcessImage, its real writer and spool, and the real database.

Most tests drive the sampler's pass (``run_once``) at chosen times, so the rules are checked to the
microsecond; the writer's threads store what it samples, and the tests read it back from PostgreSQL.
"""

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from bms.engine.image import BAD, COMM_FAILURE, GOOD, ProcessImage
from bms.engine.role import RoleGate, StandaloneRole
from bms.points.models import TREND_BOTH, TREND_CHANGE, TREND_INTERVAL, TREND_OFF, Device, Point
from bms.trends.models import QUALITY_CODES, Sample
from bms.trends.sampler import TrendSampler, next_on_grid, number
from bms.trends.spec import TrendSpec, read_trend_specs
from bms.trends.spool import Spool
from bms.trends.writer import TrendWriter
from tests.support.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)
T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


class Standby(RoleGate):
    """A node that is not active (the role the pair hands a standby's engine)."""

    @property
    def active(self) -> bool:
        return False

    @property
    def epoch(self) -> int:
        return 1


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def sampling(tmp_path):
    """A sampler on a fresh image with points a (change, deadband 0.5), b (interval 10 s) and c (both, 30 s)."""
    image = ProcessImage()
    image.define(["a", "b", "c", "d"])
    writer = TrendWriter(Spool(tmp_path / "spool", 1024 * 1024), flush_seconds=0.02, stall_seconds=5.0)
    sampler = TrendSampler(image, StandaloneRole(), writer)
    sampler.configure(
        [
            TrendSpec("a", 1, TREND_CHANGE, 0.5, 900.0),
            TrendSpec("b", 2, TREND_INTERVAL, 0.0, 10.0),
            TrendSpec("c", 3, TREND_BOTH, 0.0, 30.0),
        ]
    )
    writer.start()
    try:
        yield image, sampler
    finally:
        await writer.stop()
        await sync_to_async(connections.close_all)()  # the ORM thread's connection: the test database is dropped


async def stored(sampler: TrendSampler, point: int) -> list[tuple[datetime, float | None, int]]:
    sampler.writer.hand_over()
    await eventually(lambda: sampler.writer.waiting == 0, message="samples written")
    rows = Sample.objects.filter(point_id=point).order_by("time").values_list("time", "value", "quality")
    return await sync_to_async(list)(rows)


async def test_a_change_is_sampled_only_beyond_the_trend_deadband_from_the_last_sample(sampling):
    image, sampler = sampling
    sampler.take_control(at(0))
    for second, value in [(1, 20.0), (2, 20.3), (3, 20.49), (4, 20.6), (5, 20.2), (6, 19.9), (7, 20.11)]:
        image.update("a", value, GOOD, at(second))
        sampler.run_once(at(second))
    assert await stored(sampler, 1) == [(at(1), 20.0, 0), (at(4), 20.6, 0), (at(6), 19.9, 0)]


async def test_quality_changes_are_sampled_with_the_value_kept(sampling):
    image, sampler = sampling
    sampler.take_control(at(0))
    image.update("a", 5.0, GOOD, at(1))
    sampler.run_once(at(1))
    image.mark(["a"], COMM_FAILURE, at(2))  # the device went away: the value stays, the quality says so
    sampler.run_once(at(2))
    image.update("a", 5.0, GOOD, at(3))
    sampler.run_once(at(3))
    image.update("a", float("nan"), BAD, at(4))  # a value that is no number: no value, its quality
    sampler.run_once(at(4))
    codes = QUALITY_CODES
    assert await stored(sampler, 1) == [
        (at(1), 5.0, codes[GOOD]),
        (at(2), 5.0, codes[COMM_FAILURE]),
        (at(3), 5.0, codes[GOOD]),
        (at(4), None, codes[BAD]),
    ]


async def test_interval_samples_fall_on_the_grid_unless_the_value_changed_after_it(sampling):
    image, sampler = sampling
    image.update("b", 1.0, GOOD, at(-5))
    sampler.take_control(at(0.5))  # records b's current state at its change time, then every 10 s on the grid
    assert next_on_grid(at(0.5), 10) == at(10)
    sampler.run_once(at(9.9))
    image.update("b", 2.0, GOOD, at(12))  # interval only: a change is not sampled by itself...
    sampler.run_once(at(10.01))  # ...but this tick comes late, after the change: stamped when it was taken
    sampler.run_once(at(20.002))
    sampler.run_once(at(35))  # a little late: the sample due at 30, stamped 30 (unchanged since 12)
    sampler.run_once(at(55))  # held up for more than the interval: one sample, taken now; no burst of missed ones
    sampler.run_once(at(59))
    assert await stored(sampler, 2) == [
        (at(-5), 1.0, 0),
        (at(10.01), 2.0, 0),
        (at(20), 2.0, 0),
        (at(30), 2.0, 0),
        (at(55), 2.0, 0),
    ]


async def test_a_heartbeat_comes_when_nothing_was_sampled_for_the_interval(sampling):
    image, sampler = sampling
    sampler.take_control(at(0))
    image.update("c", 7.0, GOOD, at(1))
    sampler.run_once(at(1))
    sampler.run_once(at(30.9))  # 29.9 s since the last sample: nothing yet
    sampler.run_once(at(31.2))  # 30 s passed: a heartbeat, at its due time
    image.update("c", 8.0, GOOD, at(40))  # a change resets the heartbeat
    sampler.run_once(at(40))
    sampler.run_once(at(61.5))
    sampler.run_once(at(70.5))
    assert await stored(sampler, 3) == [(at(1), 7.0, 0), (at(31), 7.0, 0), (at(40), 8.0, 0), (at(70), 8.0, 0)]


async def test_taking_control_records_the_replicated_state_once_however_often(sampling):
    image, sampler = sampling
    image.update("a", 3.0, GOOD, at(1))
    image.update("c", 4.0, COMM_FAILURE, at(2))
    sampler.take_control(at(100))
    sampler.take_control(at(100))  # a second takeover (or the old active's own copy): the same samples, stored once
    sampler.run_once(at(100.5))  # c's heartbeat was due at 32, long before: taken now, the missed ones not made up
    assert await stored(sampler, 1) == [(at(1), 3.0, 0)]
    assert await stored(sampler, 3) == [(at(2), 4.0, QUALITY_CODES[COMM_FAILURE]), (at(100.5), 4.0, 3)]


async def test_only_the_active_node_samples(tmp_path):
    image = ProcessImage()
    image.define(["a"])
    writer = TrendWriter(Spool(tmp_path, 1024 * 1024), flush_seconds=0.02)
    sampler = TrendSampler(image, Standby(), writer)
    sampler.configure([TrendSpec("a", 1, TREND_CHANGE, 0.0, 900.0)])
    sampler.start()
    try:
        image.update("a", 1.0, GOOD, datetime.now(UTC))
        sampler.wake()
        await eventually(lambda: not sampler._cursor.dirty, message="the change seen")
        assert sampler.samples == 0
        sampler.role = StandaloneRole()
        sampler.take_control()
        image.update("a", 2.0, GOOD, datetime.now(UTC))
        sampler.wake()
        await eventually(lambda: sampler.samples == 2, message="sampled once active")
        assert [value for _, value, _ in await stored(sampler, 1)] == [1.0, 2.0]
        sampler.release_control()
        image.update("a", 3.0, GOOD, datetime.now(UTC))
        sampler.wake()
        await eventually(lambda: not sampler._cursor.dirty, message="the change seen")
        assert sampler.samples == 2
    finally:
        await sampler.stop()
        await sync_to_async(connections.close_all)()


async def test_trend_settings_come_from_the_points_with_sensible_defaults():
    @sync_to_async
    def make() -> None:
        device = Device.objects.create(name="plant", host="127.0.0.1")
        Point.objects.create(device=device, name="t1", address="hr:0", data_type="int16", deadband=0.2)
        Point.objects.create(device=device, name="t2", address="hr:1", data_type="int16", trend_mode=TREND_INTERVAL,
                             trend_interval=60, trend_deadband=1.5)  # fmt: skip
        Point.objects.create(device=device, name="t3", address="hr:2", data_type="int16", trend_mode=TREND_OFF)

    await make()
    specs = {spec.name: spec for spec in await sync_to_async(read_trend_specs)()}
    await sync_to_async(connections.close_all)()
    assert set(specs) == {"t1", "t2"}
    assert (specs["t1"].mode, specs["t1"].deadband, specs["t1"].interval) == (TREND_BOTH, 0.2, 900.0)
    assert (specs["t2"].mode, specs["t2"].deadband, specs["t2"].interval) == (TREND_INTERVAL, 1.5, 60.0)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (21.5, 21.5),
        (7, 7.0),
        (True, 1.0),
        (False, 0.0),
        (float("nan"), None),
        (float("inf"), None),
        (10**400, None),  # beyond any float: no sample value, and the sampler does not fail
        ("1.5", None),
        (b"2", None),
        ({"state": "normal"}, None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_a_value_is_stored_as_a_finite_float_or_none(value, stored):
    assert number(value) == stored


async def test_a_burst_of_changes_is_sampled_in_slices_each_point_once_in_its_latest_state(tmp_path, monkeypatch):
    # A hundred devices' answers or an alarm flood change thousands of points in one turn of the loop: the
    # sampler works them off in slices (the loop polls in between), and a point that changes again while it
    # waits is sampled once, in its latest state, as two changes between two passes always were.
    from bms.trends import sampler as sampler_module

    monkeypatch.setattr(sampler_module, "SLICE_SECONDS", 0.0)  # every slice ends at its first look at the clock
    names = [f"p{index}" for index in range(1000)]
    image = ProcessImage()
    image.define(names)
    writer = TrendWriter(Spool(tmp_path / "spool", 1024 * 1024), flush_seconds=0.02, stall_seconds=5.0)
    sampler = TrendSampler(image, StandaloneRole(), writer)
    sampler.configure([TrendSpec(name, index + 1, TREND_CHANGE, 0.0, 900.0) for index, name in enumerate(names)])
    writer.start()
    try:
        sampler.take_control(at(0))
        before = sampler.samples
        for name in names:
            image.update(name, 1.0, GOOD, at(1))
        slices = 1
        assert sampler.run_once(at(1)) is True  # work left
        image.update("p999", 2.0, GOOD, at(2))  # still waiting: changes again
        while sampler.run_once(at(2)):
            slices += 1
        assert slices >= 1000 // sampler_module.CLOCK_EVERY
        assert sampler.samples - before == 1000
        assert sampler.run_once(at(3)) is False and sampler.samples - before == 1000  # nothing left twice
        assert (await stored(sampler, 1000))[-1] == (at(2), 2.0, 0)
    finally:
        await writer.stop()
        await sync_to_async(connections.close_all)()
