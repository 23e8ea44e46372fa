"""Session fixtures of the pair fault tests: one simulated building with a write log, one template database."""

import uuid

import pytest

from tests.support.pair import Pair, PairOptions, Template
from tests.support.processes import ROOT, Simulator


@pytest.fixture(scope="session")
def pair_device():
    """The simulated building both nodes of every test pair talk to; ``write_log`` lists every write it received."""
    log = ROOT / "var" / "test-logs" / f"pair-writes-{uuid.uuid4().hex[:8]}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    sim = Simulator(write_log=log)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def pair_template(pair_device):
    template = Template(pair_device.port)
    try:
        yield template
    finally:
        template.drop()


@pytest.fixture
def make_pair(pair_device, pair_template):
    """``make_pair(**options)``: a Pair (not started) that is torn down, processes and databases, after the test."""
    pairs = []

    def make(**options) -> Pair:
        pair = Pair(pair_template, pair_device.write_log, PairOptions(**options))
        pairs.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in pairs:
            pair.close()
            for node in pair.nodes.values():
                print(f"{node.name} log: {node.log_path}")
