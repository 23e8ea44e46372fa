"""Fixtures shared by all tests: an in-process simulated building on an ephemeral port."""

import logging
import os
import signal

import pytest

from drivers.simulator.building import SimulatedBuilding

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
# Nodes the tests start in subprocesses (embedded or production settings) create only the devices each test
# creates, not the node's health points (tests/trends/test_node_health.py covers those).
os.environ.setdefault("BMS_NODE_HEALTH_POINTS", "off")
# A run started in the background of a non-interactive shell (``nohup make test &``) ignores SIGINT, and every node
# it starts would inherit that: the fixtures' Ctrl-C stop would then wait out its 10 s before SIGKILL, per node.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
async def building():
    """A real pymodbus server with the demo plant; physics frozen so tests set every value."""
    plant = SimulatedBuilding(step_seconds=None)
    await plant.start()
    try:
        yield plant
    finally:
        await plant.stop()
