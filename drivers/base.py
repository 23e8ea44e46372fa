"""The driver contract every field protocol implements.

The engine owns one driver instance per device. It calls ``connect`` once,
``read_batches`` once per poll cycle with the whole list of that device's
points, ``write`` for commands, and ``close`` on shutdown or
reconfiguration. One request is in flight per driver at a time: the engine
never reads and writes concurrently on the same instance.

Every poll cycle must account for every point it was given: a value, or an
error for that point. A point the engine does not hear about for the
device's ``stale_after`` (by default three poll intervals, at least one
second) is shown as ``stale``, so a driver that serves some points another
way (BACnet COV) still reports their current value in each cycle.

Values crossing this boundary are *raw* protocol values (a register decoded
to its data type); scaling to engineering units is the engine's job, so that
every protocol scales the same way.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RawValue = bool | int | float


class DriverError(Exception):
    """A request failed; ``message`` is meant for an operator."""


class CommunicationError(DriverError):
    """The device could not be reached at all (connect failure, timeout, closed link).

    The engine marks every point of the device as ``comm_failure``.
    """


class WriteUncertain(CommunicationError):
    """A write request was sent (or may have been) but no answer came: the device may or may not have applied it.

    The command's outcome is then ``unknown``, never ``failed``: an operator
    told "failed" might repeat a write the device already executed.
    """


class WrongDevice(CommunicationError):
    """Something answers at the device's address, but it is not the configured device (another instance, say).

    Its values must not be shown as this device's: the engine treats it as a
    communication failure, and names both identities in an event even when
    the address had already fallen silent before the other device took it.
    """


class PointError(DriverError):
    """The device answered, but refused this particular point or block."""


class AddressError(ValueError):
    """A point address or data type is not valid for this driver."""


@dataclass(frozen=True, slots=True)
class PointConflict:
    """Two points of one device that cannot both be right, e.g. registers they share with different meanings."""

    point: str
    other: str
    message: str


@dataclass(slots=True)
class Batch:
    """The readings of one protocol request in columns: the form the engine's hot path consumes.

    ``values[i]`` is the raw value of ``names[i]``. A reading that is not a
    plain good value (an error for that point, or a quality of the device's
    own) has ``None`` in ``values`` and its full :class:`Reading` in
    ``special``. A driver that yields the same ``names`` tuple object for the
    same request on every poll lets the engine skip unchanged values cheaply.

    ``changed``, when the driver knows it, lists the indices of the values
    that may differ from the previous answer to the same request (``names``);
    the engine then looks at those only. ``None``: compare every value.
    """

    names: tuple[str, ...]
    values: Sequence[RawValue | None]
    special: Mapping[str, Reading] = field(default_factory=dict)
    changed: Sequence[int] | None = None

    @classmethod
    def from_readings(cls, readings: Mapping[str, Reading]) -> Batch:
        special = {name: r for name, r in readings.items() if not r.ok or getattr(r, "quality", None)}
        names = tuple(readings)
        return cls(names, [None if name in special else readings[name].value for name in names], special)

    def readings(self) -> dict[str, Reading]:
        """The same readings as one :class:`Reading` per point (the ``read_iter`` form)."""
        special = self.special
        return {
            name: special[name] if name in special else Reading(value)
            for name, value in zip(self.names, self.values, strict=True)
        }


@dataclass(frozen=True, slots=True)
class PointSpec:
    """What a driver needs to know about one point: its name, address, data type and per-point options.

    ``options`` are the point's driver options (``Point.options``), e.g. a
    Modbus word order that overrides the device's. They take part in equality
    but not in the hash, so a spec stays usable as a dictionary key.
    """

    name: str
    address: str
    data_type: str
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)


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
    """The outcome of reading one point: a raw value, or an error for that point only.

    ``quality`` is the device's own verdict on a value it did return, when the
    protocol carries one (BACnet status flags): ``"uncertain"``, ``"bad"`` or
    ``"out_of_service"``, the process image's spellings. ``None`` means good.
    """

    value: RawValue | None
    error: str | None = None
    quality: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


#: receives readings a device pushes between polls (BACnet COV), one dict per notification
Listener = Callable[[dict[str, Reading]], None]


class Driver(abc.ABC):
    """Abstract base of all field drivers (see the module docstring for the contract)."""

    #: short identifier used in configuration, e.g. ``"modbus"``
    name: str = ""
    #: data types this driver can decode
    data_types: tuple[str, ...] = ()
    #: True if ``write(point, None, priority)`` releases that priority slot (BACnet relinquish)
    relinquish: bool = False
    #: True if the driver itself keeps its points' values (virtual points): the engine seeds it (:meth:`seed`)
    holds_values: bool = False

    def __init__(self, device: DeviceSpec) -> None:
        self.device = device
        self.listener: Listener | None = None

    def set_listener(self, listener: Listener | None) -> None:
        """Register where readings the device pushes on its own go; drivers that only poll never call it."""
        self.listener = listener

    def seed(self, values: Mapping[str, RawValue]) -> None:
        """Values (raw, by point name) the engine knew before this instance started; see :attr:`holds_values`."""
        return  # drivers that read a device have nothing to keep

    @classmethod
    @abc.abstractmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        """Raise :class:`AddressError` with an operator-readable message if the pair is invalid."""

    @classmethod
    def value_range(cls, data_type: str) -> tuple[float, float] | None:
        """The raw range a writable value of ``data_type`` must fit in, or ``None`` if unbounded."""
        return None

    @classmethod
    def validate_point_options(cls, data_type: str, options: Mapping[str, Any]) -> None:
        """Raise :class:`AddressError` if a point's ``options`` are not valid; by default a point takes none."""
        if options:
            raise AddressError(f"{cls.name} points take no options (got {', '.join(sorted(options))})")

    @classmethod
    def check_point_list(cls, points: Sequence[PointSpec]) -> list[PointConflict]:
        """Problems between the points of one device (each point alone already passed ``validate_point``).

        Drivers whose points can collide (Modbus points sharing registers)
        override this; the point editor and the importer report each conflict.
        """
        return []

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

    async def read_batches(self, points: Sequence[PointSpec]) -> AsyncIterator[Batch]:
        """:meth:`read_iter` in columns, one :class:`Batch` per request: what the engine's poll loop consumes.

        The default converts each ``read_iter`` dictionary; a driver with a hot
        path of its own (Modbus) yields batches natively and builds
        ``read_iter`` on top.
        """
        async for readings in self.read_iter(points):
            yield Batch.from_readings(readings)

    @abc.abstractmethod
    async def write(self, point: PointSpec, value: RawValue, priority: int | None = None) -> None:
        """Write one raw value; raise :class:`DriverError` if the device did not accept it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection; must be safe to call twice."""
