"""What the engine's trend sampler needs of each trended point, read with the rest of the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from bms.points.models import TREND_BOTH, TREND_CHANGE, TREND_OFF, Point


@dataclass(frozen=True, slots=True)
class TrendSpec:
    """One trended point: its image name, its id (samples refer to it), the mode, the trend deadband
    (the point's own deadband where the trend's is not set) and the interval in seconds."""

    name: str
    point_id: int
    mode: str
    deadband: float
    interval: float

    @property
    def on_change(self) -> bool:
        return self.mode in (TREND_CHANGE, TREND_BOTH)


def read_trend_specs() -> tuple[TrendSpec, ...]:
    """Every enabled point on an enabled device whose trend mode is not off (call inside the config transaction)."""
    points = (
        Point.objects.filter(enabled=True, device__enabled=True)
        .exclude(trend_mode=TREND_OFF)
        .order_by("pk")
        .values_list("name", "pk", "trend_mode", "deadband", "trend_deadband", "trend_interval")
    )
    return tuple(
        TrendSpec(name, pk, mode, deadband if trend_deadband is None else trend_deadband, interval)
        for name, pk, mode, deadband, trend_deadband, interval in points
    )
