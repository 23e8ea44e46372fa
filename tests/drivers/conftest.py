"""Fixtures of the driver tests: the real BACnet device and connected BACnet drivers, the faulty Modbus device."""

import pytest

from tests.support.bacnet import bacnet_connected, bacnet_device
from tests.support.raw_modbus import RawModbusServer

__all__ = ["bacnet_connected", "bacnet_device"]


@pytest.fixture
async def device():
    """A hand-written Modbus TCP server on loopback whose faults a test switches (tests/support/raw_modbus.py)."""
    server = RawModbusServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
