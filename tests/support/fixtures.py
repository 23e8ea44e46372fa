"""Session fixtures for suites that need real processes: a simulator and one node.

Each conftest that imports these gets its own instances, so the system and
browser suites never disturb each other's setpoints.
"""

import pytest

from tests.support.processes import Node, Simulator


@pytest.fixture(scope="session")
def simulator():
    sim = Simulator()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def node(simulator):
    bms = Node(simulator.port)
    try:
        bms.start()
        yield bms
    finally:
        bms.drop()
        print(f"node log: {bms.log_path}")
