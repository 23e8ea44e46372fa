"""The publisher coalesces bursts into few messages and keeps the sequence chain intact."""

import asyncio
from datetime import UTC, datetime

import pytest
from channels.layers import InMemoryChannelLayer

from bms.engine import bus
from bms.engine.image import GOOD, ProcessImage
from bms.engine.publisher import Publisher


async def test_a_burst_of_changes_leaves_as_few_messages():
    layer = InMemoryChannelLayer(capacity=10000)
    listener = await layer.new_channel()
    await layer.group_add(bus.LIVE_GROUP, listener)
    image = ProcessImage()
    names = [f"p{i}" for i in range(2000)]
    image.define(names)
    publisher = Publisher(image, layer, min_interval=0.02)
    publisher.start()
    try:
        now = datetime.now(UTC)
        for round_ in range(5):
            for index, name in enumerate(names):
                image.update(name, round_ * 10000 + index, GOOD, now)
                publisher.notify()
                if index % 250 == 0:
                    await asyncio.sleep(0)  # let the publisher run mid-burst, as it would between polls
        received: dict[str, object] = {}
        messages, last = 0, 0
        while last < image.seq:
            delta = await asyncio.wait_for(layer.receive(listener), 2)
            assert delta["from"] == last
            last = delta["seq"]
            messages += 1
            received.update({name: row[bus.ROW_VALUE] for name, row in delta["points"].items()})
    finally:
        await publisher.stop()
    assert received == {name: 40000 + index for index, name in enumerate(names)}
    assert messages <= 15, f"10,000 changes went out in {messages} messages"


def test_image_changes_get_increasing_sequence_numbers():
    image = ProcessImage()
    image.define(["a", "b"])
    now = datetime.now(UTC)
    image.take_delta()
    assert image.update("a", 1.0, GOOD, now)
    assert not image.update("a", 1.0, GOOD, now)
    assert image.update("b", True, GOOD, now)
    assert image.points["a"].seq < image.points["b"].seq == image.seq
    delta = image.take_delta()
    assert delta["points"].keys() == {"a", "b"}
    assert image.take_delta() is None
    image.define(["b"])
    removal = image.take_delta()
    assert removal["points"] == {"a": None}
    assert removal["from"] == delta["seq"]


async def test_a_task_that_swallows_one_cancellation_is_still_stopped():
    from bms.engine.tasks import cancel_and_wait

    swallowed = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # what 3.11's wait_for does in a race

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, retry_every=0.05), 2)
    assert task.cancelled()
    assert swallowed == [True]


def test_the_poll_grid_never_drifts_and_skips_overrun_slots():
    from bms.engine.poller import next_slot

    assert next_slot(10.0, 10.3, 1.0) == (11.0, 0)  # a quick poll waits for its slot
    assert next_slot(10.0, 10.999, 1.0) == (11.0, 0)  # a slow poll does not push the grid
    assert next_slot(10.0, 11.0, 1.0) == (12.0, 1)  # finishing on the slot misses it
    assert next_slot(10.0, 13.5, 1.0) == (14.0, 3)  # a long stall skips, never bunches
    slot = 0.0
    for _ in range(1000):  # 1000 cycles of a 0.1 s poll that takes 0.07 s
        slot, missed = next_slot(slot, slot + 0.07, 0.1)
        assert missed == 0
    assert slot == pytest.approx(100.0)


def test_early_polls_after_writes_never_push_the_regular_schedule_into_the_future():
    from bms.engine.poller import next_due

    due = 11.0  # the regular poll of a 1 s interval
    for n in range(52):  # 52 writes in 20 s, each asking for an early poll that takes 0.05 s
        due, missed = next_due(due, 10.0 + n * 0.01 + 0.05, 1.0)
        assert (due, missed) == (11.0, 0)
    assert next_due(due, 11.02, 1.0) == (12.0, 0)  # the regular poll itself moves on along the grid


async def test_an_unreachable_channel_layer_is_logged_once_not_per_message(caplog):
    class DownLayer:
        """A channel layer whose server is gone (what channels_redis raises when Redis is down)."""

        async def group_send(self, group, message):
            raise ConnectionError("Redis is down")

    image = ProcessImage()
    image.define(["a"])
    publisher = Publisher(image, DownLayer())
    for value in range(50):
        image.update("a", value, GOOD, datetime.now(UTC))
        await publisher.flush()
    assert publisher.failures == 50
    assert len([r for r in caplog.records if "publishing live changes failed" in r.message]) == 1


def test_reconnect_backoff_doubles_from_the_poll_interval_up_to_a_cap():
    from bms.engine.poller import next_backoff

    delays, current = [], None
    for _ in range(8):
        current = next_backoff(current, poll_interval=0.05, cap=10.0)
        delays.append(current)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert next_backoff(None, poll_interval=2.0, cap=10.0) == 2.0  # never faster than the poll
    assert next_backoff(None, poll_interval=60.0, cap=10.0) == 10.0


def test_engineering_values_keep_the_precision_of_their_source():
    from bms.engine.scaling import Scaling

    assert Scaling("uint32", 0.001).to_engineering(4_000_000_001) == 4_000_000.001  # a big counter keeps its Wh
    assert Scaling("float32").to_engineering(21.000000953674316) == 21.0  # float32 register noise is cut
    assert Scaling("float64").to_engineering(21.123456789012) == 21.123456789012
    assert Scaling("int16", 0.1).to_engineering(-53) == -5.3
