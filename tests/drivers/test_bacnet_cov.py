"""BACnet through the engine's poller: values reach the process image, COV subscriptions live and recover.

A real bacpypes3 device on its own loopback port, the real :class:`DevicePoller`
and :class:`ProcessImage`; no database is needed.
"""

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bms.engine.config import DeviceConfig, PointConfig
from bms.engine.image import COMM_FAILURE, GOOD, OUT_OF_SERVICE, ProcessImage
from bms.engine.poller import DevicePoller
from bms.engine.scaling import Scaling
from drivers.base import DeviceSpec
from drivers.simulator.bacnet_device import SimulatedBacnetDevice
from tests.support.bacnet import ALL_POINTS, driver_for, wait_until


@asynccontextmanager
async def polling(
    device: SimulatedBacnetDevice, poll_interval: float, device_timeout: float = 0.5, **options
) -> AsyncIterator[tuple[DevicePoller, ProcessImage, list]]:
    """A started poller of every simulated object, its image and its event list."""
    spec = DeviceSpec(
        "bac", "127.0.0.1", device.port, timeout=device_timeout, options={"device_instance": device.instance} | options
    )
    points = tuple(PointConfig(point, Scaling(point.data_type), 0.0, "bac") for point in ALL_POINTS)
    image = ProcessImage()
    image.define([point.name for point in points])
    events: list = []
    poller = DevicePoller(
        DeviceConfig(spec, "bacnet", poll_interval, points),
        image,
        on_change=lambda: None,
        on_event=lambda *event: events.append(event),
    )
    poller.start()
    try:
        yield poller, image, events
    finally:
        await poller.stop()


def state(image: ProcessImage, name: str) -> tuple:
    point = image.points[name]
    return point.value, point.quality


async def test_points_go_good_in_the_image_with_the_devices_quality(bacnet_device):
    bacnet_device.set_flags("chiller_load", out_of_service=True)
    async with polling(bacnet_device, poll_interval=0.05) as (_poller, image, _):
        await wait_until(lambda: all(image.points[p.name].quality != "uncertain" for p in ALL_POINTS), what="a poll")
        assert state(image, "chw_setpoint") == (7.0, GOOD)
        assert state(image, "pump1_cmd") == (False, GOOD)
        assert state(image, "plant_mode") == (2, GOOD)
        assert state(image, "chiller_load") == (35.0, OUT_OF_SERVICE)
        bacnet_device.set("chw_return_temp", 13.5)
        await wait_until(lambda: state(image, "chw_return_temp") == (13.5, GOOD), what="the next poll")


async def test_cov_pushes_changes_between_polls_and_spares_the_wire(bacnet_device):
    async with polling(bacnet_device, poll_interval=30.0, cov=True, cov_lifetime=60) as (poller, image, _):
        await wait_until(lambda: poller.cycles >= 1, what="the first poll")
        assert state(image, "chw_supply_temp") == (7.5, GOOD)
        subscribed = poller.driver.subscription_state()
        assert len(subscribed) == len(ALL_POINTS)
        assert all(entry["active"] for entry in subscribed.values())
        reads = bacnet_device.requests["ReadPropertyMultipleRequest"]
        bacnet_device.set("chw_supply_temp", 9.25)
        bacnet_device.set("pump1_status", True)
        # the next poll is 30 s away: only a notification can bring these
        await wait_until(lambda: state(image, "chw_supply_temp") == (9.25, GOOD), what="a COV notification")
        await wait_until(lambda: state(image, "pump1_status") == (True, GOOD), what="a COV notification")
        probes = bacnet_device.requests["ReadPropertyRequest"]
        poller.poll_soon()
        await wait_until(lambda: poller.cycles >= 2, what="the second poll")
        # subscribed objects are not read again: one liveness probe is the whole poll
        assert bacnet_device.requests["ReadPropertyMultipleRequest"] == reads
        assert bacnet_device.requests["ReadPropertyRequest"] == probes + 1
        assert state(image, "chw_supply_temp") == (9.25, GOOD)


async def test_subscriptions_are_renewed_before_their_lifetime_ends(bacnet_device):
    async with polling(bacnet_device, poll_interval=0.1, cov=True, cov_lifetime=2) as (poller, image, _):

        def subscribes() -> int:
            return poller.driver.subscription_state().get("analog-input:1", {}).get("subscribed", 0)

        # renewed every second (half of the 2 s lifetime): four subscriptions span 3 s, past the first lifetime
        await wait_until(lambda: subscribes() >= 4, within=8.0, what="three renewals")
        counts = [entry["subscribed"] for entry in poller.driver.subscription_state().values()]
        assert len(counts) == len(ALL_POINTS) and min(counts) >= 3
        assert bacnet_device.requests["SubscribeCOVRequest"] >= sum(counts)  # the device saw every one
        bacnet_device.set("chw_supply_temp", 11.0)
        await wait_until(lambda: state(image, "chw_supply_temp") == (11.0, GOOD), what="a notification after 3 s")


async def test_a_device_that_refuses_cov_is_polled():
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None, cov=False)
    await device.start()
    try:
        async with polling(device, poll_interval=0.05, cov=True) as (poller, image, _):
            await wait_until(lambda: poller.cycles >= 1, what="the first poll")
            refusals = {entry["refused"] for entry in poller.driver.subscription_state().values()}
            assert refusals == {"rejected: unrecognized-service"}
            device.set("chw_supply_temp", 8.5)
            reads = device.requests["ReadPropertyMultipleRequest"]
            await wait_until(lambda: state(image, "chw_supply_temp") == (8.5, GOOD), what="a poll")
            await wait_until(lambda: device.requests["ReadPropertyMultipleRequest"] > reads + 2, what="more polls")
            # refused once per object, not on every poll
            assert device.requests["SubscribeCOVRequest"] == len(ALL_POINTS)
    finally:
        await device.stop()


async def test_subscriptions_are_made_anew_after_a_device_restart(bacnet_device):
    options = {"cov": True, "cov_lifetime": 600, "retries": 0}
    async with polling(bacnet_device, poll_interval=0.05, device_timeout=0.2, **options) as (poller, image, events):
        await wait_until(lambda: poller.cycles >= 1, what="the first poll")
        await bacnet_device.stop()
        await wait_until(lambda: state(image, "chw_supply_temp")[1] == COMM_FAILURE, what="communication loss")
        await bacnet_device.start()  # a fresh device on the same port: it knows no subscription
        await wait_until(
            lambda: poller.driver.subscription_state()["analog-input:1"]["subscribed"] == 2,
            what="the subscription made again",
        )
        await wait_until(lambda: state(image, "chw_supply_temp") == (7.5, GOOD), what="the value back")
        bacnet_device.set("chw_supply_temp", 10.5)
        # the renewal is 300 s away and subscribed objects are not polled: only the new subscription reports this
        await wait_until(lambda: state(image, "chw_supply_temp") == (10.5, GOOD), what="a notification")
        assert [event[0] for event in events] == ["comm_lost", "comm_restored"]


@pytest.mark.parametrize("confirmed", [True, False])
async def test_confirmed_and_unconfirmed_notifications(bacnet_device, confirmed):
    async with polling(bacnet_device, poll_interval=30.0, cov=True, cov_confirmed=confirmed) as (poller, image, _):
        await wait_until(lambda: poller.cycles >= 1, what="the first poll")
        bacnet_device.set("chiller_state", 3)
        await wait_until(lambda: state(image, "chiller_state") == (3, GOOD), what="a notification")


async def test_closing_with_a_dead_device_costs_one_timeout_and_logs_no_traceback(bacnet_device, caplog):
    driver = driver_for(bacnet_device, cov=True)  # timeout 0.5 s, no retries
    await driver.connect()
    await driver.read(ALL_POINTS)
    assert len(driver.subscription_state()) > 5
    assert all(entry["active"] for entry in driver.subscription_state().values())
    app = driver._app
    await bacnet_device.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await driver.close()
    # one unanswered cancel ends the polite part; the rest lapse at the device (it was 0.5 s per object)
    assert loop.time() - started < 3.0
    # bacpypes3 ends its own requests; one whose future we had cancelled logged "Task exception was never
    # retrieved ... InvalidStateError" with a traceback when collected
    await wait_until(lambda: not app.asap.clientTransactions, what="bacpypes3's requests to end")
    gc.collect()
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")], caplog.text
