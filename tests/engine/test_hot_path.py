"""The read hot path's shortcuts give exactly what the general functions give."""

from __future__ import annotations

import math
import random
import struct
from datetime import UTC, datetime, timedelta

import pytest

from bms.engine import bus
from bms.engine.image import BAD, GOOD, ProcessImage
from bms.engine.scaling import Scaling

SCALINGS = [
    Scaling("float32"),
    Scaling("float64"),
    Scaling("int16", 0.1),
    Scaling("uint16"),
    Scaling("uint32", 1.0, 5.0),
    Scaling("int32", 2, 0),
    Scaling("uint64", 1e-3),
    Scaling("float32", -0.5, 273.15),
    Scaling("bool"),
]


def raws(data_type: str, rng: random.Random) -> list:
    if data_type == "bool":
        return [True, False, 0, 1]
    if data_type.startswith("float"):
        values = [0.0, -0.0, 1e-45, 3.4028234e38, -1.5, 12345.678, math.inf, -math.inf]
        for _ in range(500):
            value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-12, 12)
            values.append(struct.unpack("f", struct.pack("f", value))[0] if data_type == "float32" else value)
        return values
    return [0, 1, -1, 65535, 2**63, *(rng.randint(-(2**31), 2**32) for _ in range(500))]


@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: f"{s.data_type}*{s.scale}+{s.offset}")
def test_engineering_function_equals_to_engineering(scaling: Scaling) -> None:
    convert = scaling.engineering_function()
    for raw in raws(scaling.data_type, random.Random(7)):
        expected = scaling.to_engineering(raw)
        got = convert(raw)
        assert type(got) is type(expected) and (got == expected or (got != got and expected != expected)), raw


def test_update_many_equals_update_one_by_one() -> None:
    rng = random.Random(3)
    names = [f"p{i}" for i in range(40)]
    pool = [None, 0, 1, 1.0, 2.5, 2.50001, True, False, math.nan, -0.0, 7]
    one, many = ProcessImage(), ProcessImage()
    one.define(names)
    many.define(names)
    cursors = (one.cursor(), many.cursor())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for step in range(300):
        when = start + timedelta(seconds=step)
        if step % 7 == 0:  # other qualities in between, as the poller's bad/stale paths set them
            marked = rng.sample(names, 5)
            one.observe(marked, BAD, when)
            many.observe(marked, BAD, when)
        chosen = [rng.choice(names) for _ in range(12)]  # repeats included
        values = [v for v in (rng.choice(pool) for _ in chosen) if v is not None][: len(chosen)]
        chosen = chosen[: len(values)]
        bands = [rng.choice((0.0, 0.0, 0.1, 1.0)) for _ in chosen]
        expected = False
        for name, value, band in zip(chosen, values, bands, strict=True):
            expected |= one.update(name, value, GOOD, when, band)
        assert many.update_many(chosen, values, bands, GOOD, when) is expected
        assert one.seq == many.seq
        for name in names:
            a, b = one.points[name], many.points[name]
            assert (a.quality, a.source_time, a.change_time, a.seq) == (b.quality, b.source_time, b.change_time, b.seq)
            assert a.value == b.value or (a.value != a.value and b.value != b.value)
        assert list(cursors[0].dirty) == list(cursors[1].dirty)
        if step % 5 == 0:
            # math.nan is one object in both images, so equal deltas compare equal here
            assert cursors[0].take_delta() == cursors[1].take_delta()


def test_delta_points_are_the_live_rows() -> None:
    image = ProcessImage()
    image.define(["a", "b", "c", "d"])
    cursor = image.cursor()
    first, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, 500, tzinfo=UTC)
    image.update("a", 1.5, GOOD, first)
    image.update("b", True, GOOD, first)
    image.observe(["a"], GOOD, later)  # a: source time moves, change time stays
    image.observe(["b"], BAD, later)  # b: new quality, keeps the source time of its last good read
    image.define(["a", "b", "c"])  # d removed
    delta = cursor.take_delta()
    assert delta is not None
    assert delta["points"] == {
        "a": image.points["a"].as_live(),
        "b": image.points["b"].as_live(),
        "d": None,
    }
    a_row = delta["points"]["a"]
    assert a_row[bus.ROW_TIME_US] != a_row[bus.ROW_CHANGED_US]
    assert a_row[bus.ROW_TIME_US] == 1_767_225_601_000_500  # 2026-01-01T00:00:01.0005Z in epoch microseconds


def test_observe_with_state_objects_equals_observe_by_name() -> None:
    rng = random.Random(5)
    names = [f"p{i}" for i in range(30)]
    by_name, by_state = ProcessImage(), ProcessImage()
    for image in (by_name, by_state):
        image.define(names)
    trackers = (by_name.cursor(track_reads=True), by_state.cursor(track_reads=True))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    group = tuple([*names[:20], "gone"])  # a name the image does not hold is skipped by both
    states = by_state.states(group)
    for step in range(200):
        when = start + timedelta(seconds=step)
        for image in (by_name, by_state):
            rng.seed(step)
            for name in rng.sample(names, 4):
                image.update(name, step, rng.choice((GOOD, GOOD, BAD)), when)
        assert by_name.observe(group, GOOD, when) == by_state.observe(group, GOOD, when, states)
        for name in names:
            a, b = by_name.points[name], by_state.points[name]
            assert (a.value, a.quality, a.source_time, a.change_time, a.seq) == (
                b.value,
                b.quality,
                b.source_time,
                b.change_time,
                b.seq,
            )
        assert trackers[0].take_reads() == trackers[1].take_reads()


def test_the_layout_moves_when_entries_come_and_go_only() -> None:
    image = ProcessImage()
    image.define(["a", "b"])
    layout = image.layout
    when = datetime(2026, 1, 1, tzinfo=UTC)
    image.update("a", 1, GOOD, when)
    image.observe(["a", "b"], BAD, when)
    image.apply_rows(image.seq, image.seq + 1, {"a": (2, GOOD, when, when, image.seq + 1)})
    assert image.layout == layout  # values and qualities change the states in place
    for change in (
        lambda: image.define(["a"]),
        lambda: image.define(["a", "b"]),
        lambda: image.put("alarm:x", {"state": "normal"}, GOOD, when),
        lambda: image.apply_rows(image.seq, image.seq + 1, {"c": (1, GOOD, when, when, image.seq + 1)}),
        lambda: image.apply_rows(image.seq, image.seq + 1, {"c": None}),
        lambda: image.load_rows(image.seq, {"a": (1, GOOD, when, when, image.seq)}),
    ):
        layout = image.layout
        change()
        assert image.layout != layout


def test_update_many_with_state_objects_equals_update_many_by_name() -> None:
    rng = random.Random(11)
    names = [f"p{i}" for i in range(20)]
    by_name, by_state = ProcessImage(), ProcessImage()
    for image in (by_name, by_state):
        image.define(names)
    cursors = (by_name.cursor(), by_state.cursor())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pool = [0, 1, 1.0, 2.5, 2.50001, True, math.nan, -0.0]
    for step in range(200):
        when = start + timedelta(seconds=step)
        chosen = [*rng.sample(names, 6), "gone"]  # a name the image does not hold is skipped by both
        values = [rng.choice(pool) for _ in chosen]
        bands = [rng.choice((0.0, 0.1, 1.0)) for _ in chosen]
        if step % 9 == 0:
            for image in (by_name, by_state):
                image.observe(chosen[:2], BAD, when)
        expected = by_name.update_many(chosen, values, bands, GOOD, when)
        assert by_state.update_many(chosen, values, bands, GOOD, when, by_state.states(chosen)) is expected
        for name in names:
            a, b = by_name.points[name], by_state.points[name]
            assert (a.quality, a.source_time, a.change_time, a.seq) == (b.quality, b.source_time, b.change_time, b.seq)
            assert a.value == b.value or (a.value != a.value and b.value != b.value)
        assert list(cursors[0].dirty) == list(cursors[1].dirty)
        cursors[0].dirty.clear()
        cursors[1].dirty.clear()
