"""BACnet test helpers: a real bacpypes3 device on its own loopback UDP port, drivers to it, waiting on conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from drivers.bacnet import BacnetDriver
from drivers.base import DeviceSpec, PointSpec
from drivers.simulator.bacnet_device import OBJECTS, SimObject, SimulatedBacnetDevice
from drivers.simulator.launch import SimulatorProcess

DATA_TYPE_BY_KIND = {"analog": "float32", "binary": "bool", "multi": "uint32"}


def data_type_of(sim: SimObject) -> str:
    return DATA_TYPE_BY_KIND[sim.object_type.split("-")[0]]


def point_of(sim: SimObject) -> PointSpec:
    return PointSpec(sim.name, sim.address, data_type_of(sim))


ALL_POINTS = [point_of(sim) for sim in OBJECTS]


def driver_for(device: SimulatedBacnetDevice, **options: Any) -> BacnetDriver:
    """A driver to ``device`` with a short timeout and no retries, so a silent device fails fast."""
    options = {"device_instance": device.instance, "retries": 0} | options
    return BacnetDriver(DeviceSpec("bac", "127.0.0.1", device.port, timeout=0.5, options=options))


async def wait_until(predicate: Callable[[], Any], within: float = 5.0, what: str = "condition") -> Any:
    """Await ``predicate()`` becoming truthy; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def bacnet_device():
    """A frozen simulated BACnet device (values change only when the test sets them) on an ephemeral port."""
    device = SimulatedBacnetDevice("127.0.0.1:0", step_seconds=None)
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


@pytest.fixture
async def bacnet_connected(bacnet_device):
    """Factory of connected drivers to ``bacnet_device``; all closed after the test."""
    drivers: list[BacnetDriver] = []

    async def connect(device: SimulatedBacnetDevice | None = None, **options: Any) -> BacnetDriver:
        driver = driver_for(device or bacnet_device, **options)
        drivers.append(driver)
        await driver.connect()
        return driver

    yield connect
    for driver in drivers:
        await driver.close()


class SimulatorWithBacnet(SimulatorProcess):
    """``python -m drivers.simulator --port 0 --bacnet-port 0``: the whole simulated building in a subprocess."""

    def __init__(self, *extra: str) -> None:
        super().__init__(*extra, bacnet=True)
