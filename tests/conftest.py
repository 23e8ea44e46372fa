"""Fixtures shared by all tests: an in-process simulated building on an ephemeral port."""

import logging

import pytest

from drivers.simulator.building import SimulatedBuilding

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


@pytest.fixture
async def building():
    """A real pymodbus server with the demo plant; physics frozen so tests set every value."""
    plant = SimulatedBuilding(step_seconds=None)
    await plant.start()
    try:
        yield plant
    finally:
        await plant.stop()
