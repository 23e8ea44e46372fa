"""Fixtures of the point and BACnet tool tests: a simulated building that also serves BACnet, one per module."""

import pytest

from tests.support.bacnet import SimulatorWithBacnet


@pytest.fixture(scope="module")
def simulator():
    sim = SimulatorWithBacnet()
    yield sim
    sim.stop()
