"""The ``node`` driver: the server's own health as points, so alarms, trends and screens can use them.

A device with driver ``node`` has no field connection: each of its points
reads one **gauge** of the node it runs on (the address is the gauge's
name, e.g. ``trend_spool_percent``). The parts of the node that measure
something register a callable for their gauge with :func:`register_gauge`
when they start; a gauge nobody registered (that part is not running on
this node) reads as an error for that point, so its quality is ``bad`` and
never a made-up zero.

Why points and not a side channel: an operator is warned of a filling trend
spool the same way as of a hot zone (an alarm definition with a limit, its
journal, notification and console), and can trend it, with nothing built
twice. In a pair each node reads its own gauges; only the active node
polls, so the values shown are the active node's, which is the one whose
spool fills.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from drivers.base import AddressError, Driver, PointError, PointSpec, RawValue, Reading

#: the gauges a node can have, with what each measures (the point list and the docs show these)
GAUGES: dict[str, str] = {
    "trend_spool_percent": "how full the trend writer's disk spool is (percent of its bound)",
    "trend_samples_waiting": "trend samples not yet in the database (memory and spool)",
    "trend_samples_lost": "trend samples lost since the engine started (spool full, refused, memory bound)",
}

Gauge = Callable[[], RawValue | None]
_registered: dict[str, Gauge] = {}


def register_gauge(name: str, read: Gauge) -> None:
    """Make ``read`` the source of gauge ``name`` on this node (a later registration replaces it)."""
    if name not in GAUGES:
        raise ValueError(f"unknown node gauge {name!r}; known: {', '.join(sorted(GAUGES))}")
    _registered[name] = read


def unregister_gauge(name: str, read: Gauge) -> None:
    """Forget ``read`` as gauge ``name``'s source, unless another registration replaced it since."""
    if _registered.get(name) is read:
        del _registered[name]


class NodeDriver(Driver):
    """Reads the node's registered gauges; read-only, always connected (see the module docstring)."""

    name = "node"
    data_types = ("float32", "int32", "bool")

    @classmethod
    def validate_point(cls, address: str, data_type: str) -> None:
        if address not in GAUGES:
            raise AddressError(f"unknown node gauge {address!r}; known: {', '.join(sorted(GAUGES))}")
        if data_type not in cls.data_types:
            raise AddressError(f"node points are {', '.join(cls.data_types)}; not {data_type}")

    @property
    def connected(self) -> bool:
        return True

    async def connect(self) -> None:
        return None

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Reading]:
        return {point.name: self._read_one(point.address) for point in points}

    @staticmethod
    def _read_one(gauge: str) -> Reading:
        read = _registered.get(gauge)
        if read is None:
            return Reading(None, f"gauge {gauge} is not measured on this node (its part is not running)")
        try:
            value = read()
        except Exception as exc:  # a gauge's failure is that point's bad quality, never the poll's end
            return Reading(None, f"gauge {gauge} failed: {exc}")
        if value is None:
            return Reading(None, f"gauge {gauge} has no value yet")
        return Reading(value)

    async def write(self, point: PointSpec, value: RawValue, priority: int | None = None) -> None:
        raise PointError(f"{point.name}: node points are measurements of the server and cannot be written")

    async def close(self) -> None:
        return None
