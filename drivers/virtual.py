"""Virtual points: points with no field connection (setpoints, modes, results of logic), driver ``virtual``.

A virtual device is a named container; its points are written through the
command path like any other (priority arrays kept by the server, as for
Modbus: ``relinquish`` is False), polled, trended and alarmed like any
other. A read answers the last value written. The driver keeps the values
in memory, so what survives a restart, a takeover or a reconfiguration
(which builds a new driver instance) comes from outside:

* the engine **seeds** a new instance with the values its process image
  holds for the device's points (:meth:`Driver.seed`): after a takeover the
  values replicated from the node that was active, after a reconfiguration
  those of the previous instance;
* the server's **priority array** is re-asserted when a node takes control
  (ADR 0016): a point whose read differs from the effective value, or that
  has no value to read, is written with it (its relinquish default, if
  every slot is empty).

A point that was never written and has nothing to be seeded with reads as an
error ("no value yet"), so it shows ``bad`` rather than a made-up value.
The address is a free label (``sp1``, ``mode.ahu1``); values are kept per
point name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from drivers.base import AddressError, DeviceSpec, Driver, DriverError, PointSpec, RawValue, Reading
from drivers.modbus import RAW_RANGES, REGISTER_TYPES

LABEL = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
NO_VALUE = "no value yet: a virtual point reads what was last written to it"


class VirtualDriver(Driver):
    """Points kept in memory (see the module docstring). No connection: always connected."""

    name = "virtual"
    # the same types as register-based points, so a point can move between a real device and a virtual one
    data_types = ("bool", *REGISTER_TYPES)
    relinquish = False
    holds_values = True

    def __init__(self, device: DeviceSpec) -> None:
        super().__init__(device)
        self.values: dict[str, RawValue] = {}
        self.writes = 0
        self._open = False

    @classmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        if not isinstance(address, str) or not LABEL.match(address):
            raise AddressError(
                f"a virtual point's address is a label of 1 to 64 letters, digits or _ . : - (got {address!r})"
            )
        if data_type not in cls.data_types:
            raise AddressError(f"a virtual point holds one of {', '.join(cls.data_types)}, not {data_type!r}")

    @classmethod
    def value_range(cls, data_type: str) -> tuple[float, float] | None:
        return RAW_RANGES.get(data_type)

    @property
    def connected(self) -> bool:
        return self._open

    async def connect(self) -> None:
        self._open = True

    def seed(self, values: Mapping[str, RawValue]) -> None:
        """Start from ``values`` (raw, by point name) for the points not written since this instance started."""
        for name, value in values.items():
            self.values.setdefault(name, value)

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Reading]:
        values = self.values
        return {
            point.name: Reading(values[point.name]) if point.name in values else Reading(None, NO_VALUE)
            for point in points
        }

    async def write(self, point: PointSpec, value: RawValue | None, priority: int | None = None) -> None:
        if value is None:
            raise DriverError(f"{point.name}: a virtual point keeps its priority array on the server; write a value")
        if point.data_type == "bool":
            value = bool(value)
        elif point.data_type.startswith(("int", "uint")):
            value = int(value)
        else:
            value = float(value)
        self.values[point.name] = value
        self.writes += 1

    async def close(self) -> None:
        self._open = False
