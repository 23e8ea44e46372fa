"""The process image's replication rows: snapshot_rows -> (sync-link frame) -> load_rows / apply_rows."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import pytest

from bms.engine import image as image_module
from bms.engine.image import BAD, GOOD, ProcessImage
from redundancy.framing import HEADER, MAC_SIZE, Opener, Sealer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def filled(count: int) -> ProcessImage:
    image = ProcessImage()
    names = [f"p{index}" for index in range(count)]
    image.define(names)
    for index, name in enumerate(names):
        image.update(name, float(index) if index % 3 else bool(index % 2), GOOD, T0 + timedelta(seconds=index))
    return image


def over_the_link(body: dict) -> dict:
    key = b"k" * 32
    frame = Sealer(key, b"s>c").seal({"t": "snap", **body})
    return Opener(key, b"s>c").open(frame[: HEADER.size], frame[HEADER.size : -MAC_SIZE], frame[-MAC_SIZE:])


def states(image: ProcessImage) -> dict:
    return {name: (s.value, s.quality, s.source_time, s.change_time, s.seq) for name, s in sorted(image.points.items())}


@pytest.mark.parametrize("count", [10, image_module.GC_PAUSE_POINTS + 10])
def test_snapshot_through_a_frame_loads_an_identical_image(count):
    source = filled(count)
    snapshot = over_the_link(source.snapshot_rows())
    target = ProcessImage()
    cursor = target.cursor()
    target.load_rows(snapshot["seq"], snapshot["points"])
    assert target.seq == source.seq
    assert states(target) == states(source)
    assert set(cursor.dirty) == set(source.points)  # every loaded point is news for the target's consumers
    assert gc.isenabled()


def test_load_rows_replaces_updates_and_removes():
    target = filled(5)
    cursor = target.cursor()
    later = T0 + timedelta(days=1)
    rows = {
        "p1": (42.0, GOOD, later, later, 100),  # updated in place
        "new": (1.5, "bad", None, later, 101),  # created
        "gone": None,  # removed on the sender, never known here: nothing to announce
    }
    target.load_rows(101, rows)
    assert target.seq == 101
    assert set(target.points) == {"p1", "new"}
    assert (target.points["p1"].value, target.points["p1"].seq) == (42.0, 100)
    assert target.points["new"].quality == "bad"
    assert set(cursor.dirty) == {"p0", "p2", "p3", "p4", "p1", "new"}  # the four removed ones are announced too


def test_bulk_copies_leave_a_disabled_collector_disabled():
    source = filled(image_module.GC_PAUSE_POINTS)
    gc.disable()
    try:
        ProcessImage().load_rows(source.seq, source.snapshot_rows()["points"])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_apply_rows_follows_the_sequence():
    source = filled(3)
    target = ProcessImage()
    target.load_rows(source.seq, source.snapshot_rows()["points"])
    tracker = source.cursor()
    source.update("p1", 7.0, GOOD, T0)
    delta = over_the_link(tracker.take_rows())
    assert not target.apply_rows(delta["from"] + 1, delta["seq"], delta["points"])
    assert target.apply_rows(delta["from"], delta["seq"], delta["points"])
    assert states(target) == states(source)


def test_read_times_reach_the_standby_image_without_a_seq_or_a_delta():
    active, standby = filled(6), ProcessImage()
    stream = active.cursor(track_reads=True)
    snapshot = over_the_link(active.snapshot_rows())
    standby.load_rows(snapshot["seq"], snapshot["points"])
    active.observe(["p1", "p2"], BAD, T0 + timedelta(hours=1))  # p1, p2 fail: a change, by delta
    names = ("p0", "p1", "p2", "p4")
    read_at = T0 + timedelta(hours=2)
    active.observe(names, GOOD, T0 + timedelta(hours=1, minutes=30))
    active.observe(names, GOOD, read_at)  # the same request read again: only the latest time travels
    seq = active.seq
    delta = over_the_link(stream.take_rows())
    assert standby.apply_rows(delta["from"], delta["seq"], delta["points"])
    reads = stream.take_reads()
    assert reads == [(read_at, list(names))]
    assert stream.take_reads() == []
    moved = standby.apply_reads(over_the_link({"reads": reads})["reads"])
    assert active.seq == standby.seq == seq  # read times are not changes
    assert moved == 2  # p0 and p4; p1 and p2 are bad on both sides and keep the time of their last good read
    for name, state in active.points.items():
        assert standby.points[name].source_time == state.source_time, name
    # Never backwards: an old read time arriving late changes nothing.
    assert standby.apply_reads([(T0, ["p0"])]) == 0 and standby.points["p0"].source_time == read_at


def test_only_cursors_that_ask_for_it_collect_read_times():
    image = filled(3)
    publisher = image.cursor()
    link = image.cursor(track_reads=True)
    image.observe(("p0",), GOOD, T0 + timedelta(hours=1))
    assert publisher.reads is None and publisher.take_reads() == []
    assert link.take_reads() == [(T0 + timedelta(hours=1), ["p0"])]
    link.close()
    image.observe(("p0",), GOOD, T0 + timedelta(hours=2))
    assert image.read_trackers == []
