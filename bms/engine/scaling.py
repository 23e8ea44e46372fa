"""Engineering units <-> raw protocol values, and the validation of an operator's value.

Pure functions shared by the command path (validation before a command is
recorded) and the engine (conversion when it is executed), so that what was
validated is exactly what is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from drivers.base import RawValue

INTEGER_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")


@dataclass(frozen=True, slots=True)
class Scaling:
    """How one point maps raw values to engineering values: ``eng = raw * scale + offset``."""

    data_type: str
    scale: float = 1.0
    offset: float = 0.0

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    @property
    def significant_digits(self) -> int:
        # float32 carries ~7 significant digits, more would show register
        # noise; integers and float64 keep 15 (what a double holds exactly),
        # so a large scaled counter keeps its last digit.
        return 7 if self.data_type == "float32" else 15

    def to_engineering(self, raw: RawValue) -> RawValue:
        if self.data_type == "bool":
            return bool(raw)
        if self.identity:
            return float(f"{raw:.{self.significant_digits}g}") if isinstance(raw, float) else raw
        return float(f"{raw * self.scale + self.offset:.{self.significant_digits}g}")

    def to_raw(self, value: RawValue) -> RawValue:
        if self.data_type == "bool":
            return bool(value)
        raw = (float(value) - self.offset) / self.scale
        if self.data_type in INTEGER_TYPES:
            return round(raw)
        return raw


class ValueRejected(ValueError):
    """An operator's value is of the wrong type or out of range; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validate_value(
    value: object,
    scaling: Scaling,
    min_value: float | None,
    max_value: float | None,
    raw_range: tuple[float, float] | None,
) -> RawValue:
    """Check an engineering value against type, range and resolution; return it normalised.

    Raises :class:`ValueRejected` with ``wrong_type`` or ``out_of_range``.
    """
    if scaling.data_type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueRejected("wrong_type", f"expected true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueRejected("wrong_type", f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueRejected("wrong_type", f"expected a finite number, got {value!r}")
    if min_value is not None and value < min_value:
        raise ValueRejected("out_of_range", f"{value} is below the lowest allowed value {min_value}")
    if max_value is not None and value > max_value:
        raise ValueRejected("out_of_range", f"{value} is above the highest allowed value {max_value}")
    raw = (float(value) - scaling.offset) / scaling.scale
    if scaling.data_type in INTEGER_TYPES and abs(raw - round(raw)) > 1e-6:
        step = abs(scaling.scale)
        raise ValueRejected("wrong_type", f"{value} is finer than this point's resolution of {step:g}")
    if raw_range is not None and not raw_range[0] <= raw <= raw_range[1]:
        low, high = sorted(scaling.to_engineering(bound) for bound in raw_range)
        raise ValueRejected("out_of_range", f"{value} does not fit the device register ({low:g} to {high:g})")
    return float(value) if scaling.data_type.startswith("float") or not scaling.identity else round(value)
