"""Browser tests share the same kind of real node as the system tests."""

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
