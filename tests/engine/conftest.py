"""An engine running against the simulated building and the test database."""

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import call_command
from django.db import connections

from bms.engine.runner import Engine
from tests.support.waiting import eventually  # noqa: F401  (re-exported for the engine tests)


@pytest.fixture
async def plant(building, transactional_db):
    await sync_to_async(call_command)("loaddemo", modbus_port=building.port, poll_interval=0.05, verbosity=0)
    yield building
    # The shared sync_to_async thread keeps its connection; close it so the test database can be dropped.
    await sync_to_async(connections.close_all)()


@pytest.fixture
def layer():
    return InMemoryChannelLayer(capacity=10000)


@pytest.fixture
async def engine(plant, layer):
    node = Engine(layer, publish_min_interval=0.0, config_check_interval=0.05, command_scan_interval=0.05)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
