"""The engine's immutable view of the configuration, loaded from the database in one go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bms.alarms.spec import AlarmSpec
from bms.engine.scaling import Scaling
from drivers.base import DeviceSpec, PointSpec

if TYPE_CHECKING:  # these read the models: this module stays importable without Django (benches)
    from bms.logic.spec import RuleSpec
    from bms.schedules.spec import ScheduleSpec
    from bms.trends.spec import TrendSpec


@dataclass(frozen=True, slots=True)
class PointConfig:
    """One enabled point as the engine needs it: driver spec, scaling and publishing deadband."""

    spec: PointSpec
    scaling: Scaling
    deadband: float
    device: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One enabled device: its driver, connection, poll interval and points."""

    spec: DeviceSpec
    driver: str
    poll_interval: float
    points: tuple[PointConfig, ...]

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the engine runs, tagged with the revision it was loaded at."""

    revision: int
    devices: tuple[DeviceConfig, ...]
    alarms: tuple[AlarmSpec, ...] = ()
    trends: tuple[TrendSpec, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()
    #: in evaluation order (a rule after the rules whose outputs it reads)
    rules: tuple[RuleSpec, ...] = ()

    @property
    def points(self) -> dict[str, PointConfig]:
        return {point.name: point for device in self.devices for point in device.points}
