"""Driver lookup by configured name; the only place that lists the protocols."""

from __future__ import annotations

from drivers.bacnet import BacnetDriver
from drivers.base import Driver
from drivers.modbus import ModbusDriver
from drivers.node import NodeDriver
from drivers.virtual import VirtualDriver

DRIVERS: dict[str, type[Driver]] = {
    ModbusDriver.name: ModbusDriver,
    BacnetDriver.name: BacnetDriver,
    NodeDriver.name: NodeDriver,
    VirtualDriver.name: VirtualDriver,
}


def driver_class(name: str) -> type[Driver]:
    """Return the driver class for ``name`` or raise KeyError naming the known ones."""
    try:
        return DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown driver {name!r}; known drivers: {', '.join(sorted(DRIVERS))}") from None
