"""The driver contract every field protocol implements.

The engine owns one driver instance per device. It calls ``connect`` once,
``read`` once per poll cycle with the whole batch of that device's points,
``write`` for commands, and ``close`` on shutdown or reconfiguration. One
request is in flight per driver at a time: the engine never calls ``read``
and ``write`` concurrently on the same instance.

Values crossing this boundary are *raw* protocol values (a register decoded
to its data type); scaling to engineering units is the engine's job, so that
every protocol scales the same way.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RawValue = bool | int | float


class DriverError(Exception):
    """A request failed; ``message`` is meant for an operator."""


class CommunicationError(DriverError):
    """The device could not be reached at all (connect failure, timeout, closed link).

    The engine marks every point of the device as ``comm_failure``.
    """


class PointError(DriverError):
    """The device answered, but refused this particular point or block."""


class AddressError(ValueError):
    """A point address or data type is not valid for this driver."""


@dataclass(frozen=True, slots=True)
class PointSpec:
    """What a driver needs to know about one point: its name, address and data type."""

    name: str
    address: str
    data_type: str


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """Connection parameters of one device, as configured by the engineer."""

    name: str
    host: str
    port: int
    unit_id: int = 1
    timeout: float = 2.0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """The outcome of reading one point: a raw value, or an error for that point only."""

    value: RawValue | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Driver(abc.ABC):
    """Abstract base of all field drivers (see the module docstring for the contract)."""

    #: short identifier used in configuration, e.g. ``"modbus"``
    name: str = ""
    #: data types this driver can decode
    data_types: tuple[str, ...] = ()

    def __init__(self, device: DeviceSpec) -> None:
        self.device = device

    @classmethod
    @abc.abstractmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        """Raise :class:`AddressError` with an operator-readable message if the pair is invalid."""

    @classmethod
    def value_range(cls, data_type: str) -> tuple[float, float] | None:
        """The raw range a writable value of ``data_type`` must fit in, or ``None`` if unbounded."""
        return None

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while the driver believes its link to the device is usable."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raise :class:`CommunicationError` if the device is unreachable."""

    @abc.abstractmethod
    async def read(self, points: Sequence[PointSpec]) -> dict[str, Reading]:
        """Read a batch of points; return one :class:`Reading` per point name.

        Raise :class:`CommunicationError` only when the device as a whole is
        unreachable; a refused block is reported per point in the readings.
        """

    async def read_iter(self, points: Sequence[PointSpec]) -> AsyncIterator[dict[str, Reading]]:
        """Yield readings as they arrive, one batch per protocol request.

        The engine uses this so that a value leaves for the operators as soon
        as its own request is answered, not after the whole poll cycle. The
        default yields :meth:`read` as one batch; drivers that issue several
        requests per poll override it (and then implement :meth:`read` on top).
        """
        yield await self.read(points)

    @abc.abstractmethod
    async def write(self, point: PointSpec, value: RawValue, priority: int | None = None) -> None:
        """Write one raw value; raise :class:`DriverError` if the device did not accept it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection; must be safe to call twice."""
