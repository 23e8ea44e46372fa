"""Quality in the engine: source time of unchanged values, stale values, and broken devices beside good ones."""

import itertools
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async

from bms.engine import poller as poller_module
from bms.engine.config import DeviceConfig, PointConfig
from bms.engine.image import BAD, COMM_FAILURE, GOOD, STALE, UNCERTAIN, ProcessImage
from bms.engine.poller import DevicePoller, stale_limit
from bms.engine.scaling import Scaling
from bms.events.models import Event
from bms.points.models import Device, Point
from drivers.base import Batch, DeviceSpec, PointSpec
from tests.engine.conftest import eventually
from tests.support.raw_modbus import ANSWER, SHORT, SILENT, RawModbusServer


@pytest.fixture
async def raw():
    servers: list[RawModbusServer] = []

    async def start(mode: str = ANSWER) -> RawModbusServer:
        server = RawModbusServer(mode)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def device_config(port: int, timeout: float = 1.0, **options) -> DeviceConfig:
    spec = DeviceSpec("dev", "127.0.0.1", port, timeout=timeout, options=options)
    point = PointConfig(PointSpec("t", "hr:0", "int16"), Scaling("int16", 0.1), 0.0, "dev")
    return DeviceConfig(spec, "modbus", 0.05, (point,))


@pytest.fixture
async def polled():
    """Start a poller on a fresh image; collects its events as (kind, source)."""
    pollers: list[DevicePoller] = []

    def start(config: DeviceConfig) -> tuple[DevicePoller, ProcessImage, list[tuple[str, str]]]:
        image = ProcessImage()
        image.define([point.name for point in config.points])
        events: list[tuple[str, str]] = []
        poller = DevicePoller(config, image, lambda: None, lambda kind, source, *_: events.append((kind, source)))
        poller.start()
        pollers.append(poller)
        return poller, image, events

    yield start
    for poller in pollers:
        await poller.stop()


def test_the_stale_limit_is_three_poll_intervals_at_least_a_second_unless_configured():
    assert stale_limit(0.05) == 1.0
    assert stale_limit(2.0) == 6.0
    assert stale_limit(0.05, {"stale_after": 0.2}) == 0.2


async def test_an_unchanged_value_moves_its_source_time_without_a_delta(raw, polled):
    device = await raw()
    device.registers[0] = 215
    _, image, _ = polled(device_config(device.port))
    state = await eventually(lambda: image.points["t"].quality == GOOD and image.points["t"], message="good")
    seq, changed, first_read = state.seq, state.change_time, state.source_time
    image.take_delta()
    await eventually(lambda: state.source_time > first_read, message="a later read")
    assert (state.value, state.seq, state.change_time) == (21.5, seq, changed)
    assert image.take_delta() is None  # reading the same value again is not a change
    assert state.source_time.tzinfo is UTC


async def test_a_poll_that_hangs_shows_stale_then_comm_failure_then_good(raw, polled):
    """A device that accepts the connection and stops answering: stale after stale_after, lost after the timeout."""
    device = await raw()
    device.registers[0] = 215
    _, image, events = polled(device_config(device.port, timeout=1.0, retries=0, stale_after=0.2))
    state = await eventually(lambda: image.points["t"].quality == GOOD and image.points["t"], message="good")
    device.mode = SILENT
    silenced_at = datetime.now(UTC)
    await eventually(lambda: state.quality == STALE, message="stale")
    assert state.value == 21.5  # the last value stays, its quality says it is old
    last_read = state.source_time
    assert last_read <= silenced_at < state.change_time  # source time: the last successful read
    await eventually(lambda: state.quality == COMM_FAILURE, message="comm_failure after the timeout")
    assert (state.value, state.source_time) == (21.5, last_read)
    device.mode = ANSWER
    device.registers[0] = 230
    await eventually(lambda: state.quality == GOOD and state.value == 23.0, message="good again")
    assert state.source_time > last_read
    assert events == [("values_stale", "dev"), ("comm_lost", "dev"), ("comm_restored", "dev")]


async def test_a_late_answer_brings_a_stale_point_back_to_good(raw, polled):
    """A device slower than stale_after: its points are stale while it thinks, good when it answers."""
    device = await raw()
    device.registers[0] = 215
    _, image, events = polled(device_config(device.port, timeout=5.0, retries=0, stale_after=0.2))
    state = await eventually(lambda: image.points["t"].quality == GOOD and image.points["t"], message="good")
    device.delay = 0.6
    await eventually(lambda: state.quality == STALE, message="stale")
    seq = state.seq
    await eventually(lambda: state.quality == GOOD, message="good again when the late answer arrives")
    device.delay = 0
    assert state.value == 21.5  # the same value: only its quality changed, and that is a change
    assert state.seq > seq
    await eventually(lambda: ("values_current", "dev") in events, message="values_current event")
    assert events[:2] == [("values_stale", "dev"), ("values_current", "dev")]
    assert ("comm_lost", "dev") not in events


async def test_broken_devices_beside_a_good_one(engine, plant, raw):
    """Garbage and silence on two devices: their points say so, the plant keeps being polled, both recover."""
    short = await raw(SHORT)
    mute = await raw()
    mute.registers[0] = 70
    junk_device = await Device.objects.acreate(
        name="junk", host="127.0.0.1", port=short.port, timeout=0.3, poll_interval=0.05, options={"retries": 0}
    )
    mute_device = await Device.objects.acreate(
        name="mute",
        host="127.0.0.1",
        port=mute.port,
        timeout=30,
        poll_interval=0.05,
        options={"retries": 0, "stale_after": 0.3},
    )
    await Point.objects.acreate(device=junk_device, name="junk_t", address="hr:0", data_type="int16")
    await Point.objects.acreate(device=mute_device, name="mute_t", address="hr:0", data_type="int16")
    points = engine.image.points
    await eventually(lambda: "mute_t" in points and points["mute_t"].quality == GOOD, message="mute read once")
    mute.mode = SILENT
    await eventually(lambda: points["junk_t"].quality == COMM_FAILURE, message="junk comm_failure")
    await eventually(lambda: points["mute_t"].quality == STALE, message="mute stale")
    for value in (24.5, 25.5):  # the plant is polled while the mute device's request hangs for 30 s
        await plant.set("zone1_setpoint", value)
        await eventually(lambda v=value: points["zone1_setpoint"].value == v, message=f"plant value {value}")
    assert engine.pollers["mute"]._polling_since is not None
    assert points["zone1_setpoint"].quality == GOOD
    short.mode = ANSWER
    short.registers[0] = 12
    await eventually(lambda: points["junk_t"].quality == GOOD and points["junk_t"].value == 12, message="junk fixed")
    assert points["mute_t"].quality == STALE
    broken = Event.objects.filter(source__in=["junk", "mute"])
    events = await eventually(
        lambda: len(rows := list(broken.order_by("id").values_list("source", "kind", "message"))) == 3 and rows,
        message="events",
        db=True,
    )
    assert [(source, kind) for source, kind, _ in events] == [
        ("mute", "values_stale"),
        ("junk", "comm_lost"),
        ("junk", "comm_restored"),
    ] or [(source, kind) for source, kind, _ in events] == [
        ("junk", "comm_lost"),
        ("mute", "values_stale"),
        ("junk", "comm_restored"),
    ]
    lost = next(message for source, kind, message in events if kind == "comm_lost")
    assert "answered garbage to a read of hr:0..0: 0 register(s) for 1 requested" in lost
    stale = next(message for source, kind, message in events if kind == "values_stale")
    assert "1 point(s) not read for more than 0.3 s; a poll has been waiting" in stale
    assert await sync_to_async(Event.objects.filter(kind="comm_lost", source="plant").exists)() is False


async def test_a_device_never_read_is_not_called_stale(raw, polled):
    device = await raw(SILENT)
    poller, image, _ = polled(device_config(device.port, timeout=5.0, retries=0, stale_after=0.1))
    await eventually(lambda: poller._polling_since is not None, message="a hanging poll")
    assert poller.check_stale() == []
    assert image.points["t"].quality == UNCERTAIN


async def test_a_device_reporting_nan_or_infinity_makes_the_point_bad_once_and_keeps_the_last_value(raw, polled):
    server = await raw()
    server.registers[0:2] = [0x41A8, 0x0000]  # float32 21.0
    spec = DeviceSpec("dev", "127.0.0.1", server.port, timeout=1.0)
    point = PointConfig(PointSpec("t", "hr:0", "float32"), Scaling("float32"), 0.0, "dev")
    poller, image, events = polled(DeviceConfig(spec, "modbus", 0.05, (point,)))
    await eventually(lambda: image.points["t"].value == 21.0 and image.points["t"].quality == GOOD)

    server.registers[0:2] = [0x7FC0, 0x0000]  # float32 NaN: the sensor is broken
    await eventually(lambda: image.points["t"].quality == BAD)
    seq = image.seq
    cycles = poller.cycles
    await eventually(lambda: poller.cycles >= cycles + 5)
    assert image.seq == seq  # a point stuck at NaN is not a change on every poll
    assert image.points["t"].value == 21.0  # the last valid value, shown bad
    assert events.count(("point_bad", "t")) == 1

    server.registers[0:2] = [0x7F80, 0x0000]  # +infinity: still not a measurement
    await eventually(lambda: poller.cycles >= cycles + 10)
    assert image.points["t"].quality == BAD and events.count(("point_bad", "t")) == 1

    server.registers[0:2] = [0x41B0, 0x0000]  # 22.0: the sensor is back
    await eventually(lambda: image.points["t"].value == 22.0 and image.points["t"].quality == GOOD)
    assert events.count(("point_ok", "t")) == 1
    delta = image.take_delta()
    assert delta is not None and "NaN" not in json.dumps(delta)


def test_the_image_does_not_count_nan_again_as_a_change():
    image = ProcessImage()
    image.define(["x"])
    when = datetime.now(UTC)
    assert image.update("x", float("nan"), GOOD, when)
    seq = image.seq
    assert not image.update("x", float("nan"), GOOD, when)
    assert not image.update("x", float("nan"), GOOD, when, deadband=0.5)
    assert image.seq == seq
    assert image.update("x", 1.0, GOOD, when, deadband=0.5)  # from NaN to a number is a change, deadband or not


async def test_after_a_takeover_points_are_not_stale_before_the_new_poller_had_stale_after_to_read_them(raw):
    device = await raw(SILENT)  # the first poll hangs, as a slow device's would
    config = device_config(device.port, timeout=5.0, retries=0, stale_after=0.3)
    image = ProcessImage()
    image.define(["t"])
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    image.update("t", 21.0, GOOD, an_hour_ago)  # replicated from the old active node, last changed long ago
    events: list[tuple[str, str]] = []
    poller = DevicePoller(config, image, lambda: None, lambda kind, source, *_: events.append((kind, source)))
    poller.start()
    try:
        assert poller.check_stale(poller.started_at + 0.2) == []
        assert image.points["t"].quality == GOOD and events == []
        assert poller.check_stale(poller.started_at + 0.4) == ["t"]
        assert image.points["t"].quality == STALE and events == [("values_stale", "dev")]
    finally:
        await poller.stop()


async def test_a_wall_clock_step_back_does_not_hide_a_hung_poll(raw, polled):
    # NTP steps the clock back an hour after the last good read: the point's source time now lies an hour
    # "in the future". Staleness is measured on the monotonic clock, so the hung poll still shows in time.
    device = await raw()
    _, image, events = polled(device_config(device.port, timeout=5.0, retries=0, stale_after=0.3))
    await eventually(lambda: image.points["t"].quality == GOOD)
    device.mode = SILENT
    image.points["t"].source_time = datetime.now(UTC) + timedelta(hours=1)
    await eventually(lambda: image.points["t"].quality == STALE, 3.0, "stale despite the clock step")
    assert events.count(("values_stale", "dev")) == 1


def test_requests_the_poller_stops_remembering_keep_their_read_times(monkeypatch):
    monkeypatch.setattr(poller_module, "MAX_REMEMBERED_REQUESTS", 2)
    spec = DeviceSpec("dev", "127.0.0.1", 1, timeout=1.0)
    points = tuple(
        PointConfig(PointSpec(name, f"hr:{index}", "int16"), Scaling("int16"), 0.0, "dev")
        for index, name in enumerate("abc")
    )
    image = ProcessImage()
    image.define(list("abc"))
    poller = DevicePoller(DeviceConfig(spec, "modbus", 0.05, points), image, lambda: None, lambda *_: None)
    poller.started_at = time.monotonic() - 60  # running for a minute
    for index, name in enumerate("abc"):  # the third request overflows the memory of two
        poller._apply_batch(Batch((name,), (index,)))
    assert all(image.points[name].quality == GOOD for name in "abc")
    now = time.monotonic()
    assert poller.check_stale(now + poller.stale_after / 2) == []  # all three were just read
    assert sorted(poller.check_stale(now + poller.stale_after + 1)) == ["a", "b", "c"]


def _idle_poller(names: str) -> tuple[DevicePoller, ProcessImage]:
    """A poller of int16 points ``names`` (one request each), running for a minute, never started: no I/O."""
    spec = DeviceSpec("dev", "127.0.0.1", 1, timeout=1.0)
    points = tuple(
        PointConfig(PointSpec(name, f"hr:{index}", "int16"), Scaling("int16"), 0.0, "dev")
        for index, name in enumerate(names)
    )
    image = ProcessImage()
    image.define(list(names))
    poller = DevicePoller(DeviceConfig(spec, "modbus", 0.05, points), image, lambda: None, lambda *_: None)
    poller.started_at = time.monotonic() - 60
    return poller, image


def test_a_point_no_request_reads_is_stale_however_recent_the_other_answers():
    # The watchdog answers "nothing is stale" per request when it can; a good point that no request answered
    # since the poller started must still be found.
    poller, image = _idle_poller("abc")
    image.update("c", 3, GOOD, datetime.now(UTC))  # good from before this poller (a takeover), never read since
    for index, name in enumerate("ab"):
        poller._apply_batch(Batch((name,), (index,)))
    now = time.monotonic()
    assert poller.check_stale(now) == ["c"]
    assert poller.check_stale(now) == []  # already stale: marked once
    poller._apply({"c": poller_module.Reading(3)})  # now read (pushed, as BACnet COV does)
    assert image.points["c"].quality == GOOD
    assert poller.check_stale(now + poller.stale_after / 2) == []
    assert sorted(poller.check_stale(now + poller.stale_after + 1)) == ["a", "b", "c"]


def test_a_request_the_plan_no_longer_sends_makes_its_points_stale_unless_another_reads_them():
    poller, image = _idle_poller("abc")
    poller._apply_batch(Batch(("a", "b"), (1, 2)))  # the old plan: a and b in one request
    poller._answers[("a", "b")].read_at -= poller.stale_after + 2  # answered long ago, then the plan changed:
    poller._apply_batch(Batch(("a",), (1,)))  # a alone, just now
    poller._apply_batch(Batch(("c",), (3,)))
    assert poller.check_stale(time.monotonic() + poller.stale_after / 2) == ["b"]
    assert image.points["b"].quality == STALE and image.points["a"].quality == GOOD


def test_unchanged_points_keep_their_source_time_current_after_the_image_is_redefined():
    poller, image = _idle_poller("ab")
    poller.refresh_every = 0.0  # refresh on every answer
    poller._apply_batch(Batch(("a", "b"), (1, 2)))
    image.define(["a"])
    image.define(["a", "b"])  # b comes back as a new state object (a reconfiguration, a snapshot)
    image.update("b", 2, GOOD, datetime(2026, 1, 1, tzinfo=UTC))
    poller._apply_batch(Batch(("a", "b"), (1, 2)))  # unchanged values: only their source time moves
    assert image.points["b"].source_time > datetime(2026, 1, 2, tzinfo=UTC)
    assert image.points["a"].source_time == image.points["b"].source_time


async def test_devices_started_together_poll_at_their_phases_after_a_first_poll_at_once(raw):
    # Two devices on one 1 s interval, phases 0 and 0.5 (what the engine gives two devices): both read at once
    # when started, then each on its own grid, half an interval apart, so their answers do not come together.
    servers = [await raw(), await raw()]
    interval = 1.0
    pollers = []
    for server, phase in zip(servers, (0.0, 0.5), strict=True):
        config = device_config(server.port)
        config = DeviceConfig(config.spec, config.driver, interval, config.points)
        image = ProcessImage()
        image.define([point.name for point in config.points])
        pollers.append(DevicePoller(config, image, lambda: None, lambda *_: None, phase=phase))
    started = time.monotonic()
    for poller in pollers:
        poller.start()
    try:
        await eventually(lambda: len(servers[0].arrivals) >= 4 and len(servers[1].arrivals) >= 4, wait=15)
    finally:
        for poller in pollers:
            await poller.stop()
    first, second = (server.arrivals for server in servers)
    # the first poll of each at once (not after its phase)
    assert first[0] - started < 0.4 and second[0] - started < 0.4, (first[0] - started, second[0] - started)
    # afterwards: the second device's polls half an interval after the first's (a loaded host delays some)
    offsets = sorted((b - first[0]) % interval for b in second[1:4])
    assert 0.3 <= offsets[1] <= 0.75, offsets
    assert all(0.8 <= later - earlier <= 1.3 for earlier, later in itertools.pairwise(first[1:4])), first
