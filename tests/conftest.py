"""Fixtures shared by all tests: an in-process simulated building on an ephemeral port."""

import logging
import os

import pytest

from drivers.simulator.building import SimulatedBuilding

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
# Nodes the tests start in subprocesses (embedded or production settings) create only the devices each test
# creates, not the node's health points (tests/trends/test_node_health.py covers those).
os.environ.setdefault("BMS_NODE_HEALTH_POINTS", "off")


@pytest.fixture
async def building():
    """A real pymodbus server with the demo plant; physics frozen so tests set every value."""
    plant = SimulatedBuilding(step_seconds=None)
    await plant.start()
    try:
        yield plant
    finally:
        await plant.stop()
