"""Fixtures of the driver tests: the real BACnet device and connected BACnet drivers."""

from tests.support.bacnet import bacnet_connected, bacnet_device

__all__ = ["bacnet_connected", "bacnet_device"]
