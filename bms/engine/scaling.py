"""Engineering units <-> raw protocol values, and the validation of an operator's value.

Pure functions shared by the command path (validation before a command is
recorded) and the engine (conversion when it is executed), so that what was
validated is exactly what is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from drivers.base import RawValue

INTEGER_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")
#: the widest integer any register holds; a larger one is refused before it meets float() or a message
WIDEST_INT_MIN, WIDEST_INT_MAX = -(2**63), 2**64 - 1
PREVIEW_CHARS = 60


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

    def engineering_function(self) -> Callable[[RawValue], RawValue]:
        """:meth:`to_engineering` as a function with this scaling's decisions taken once.

        For the engine's read path, which converts every changed value: the
        method asks two properties and builds its format spec on every call,
        which costs as much as the conversion itself. Same results, value for value.
        """
        if self.data_type == "bool":
            return bool
        spec = f".{self.significant_digits}g"
        if self.identity:

            def unscaled(raw: RawValue) -> RawValue:
                return float(format(raw, spec)) if isinstance(raw, float) else raw

            return unscaled
        scale, offset = self.scale, self.offset

        def scaled(raw: RawValue) -> RawValue:
            return float(format(raw * scale + offset, spec))

        return scaled

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
        raise ValueRejected("wrong_type", f"expected true or false, got {preview(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueRejected("wrong_type", f"expected a number, got {preview(value)}")
    if isinstance(value, int) and not WIDEST_INT_MIN <= value <= WIDEST_INT_MAX:
        raise ValueRejected("out_of_range", f"{preview(value)} is too large for any device register")
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


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """A short, printable description of any value, for messages: never the whole of a huge or deep value.

    Containers show a few items two levels deep; an integer too long to print
    says how many digits it has; NUL and other control characters are escaped.
    """
    text = _preview(value, 0)
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preview(value: object, depth: int) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if WIDEST_INT_MIN <= value <= WIDEST_INT_MAX:
            return str(value)
        digits = int(value.bit_length() * 0.30103) + 1  # str() of a huge int is slow, and refused past 4300 digits
        return f"{'-' if value < 0 else ''}<integer of about {digits} digits>"
    if isinstance(value, str):
        return repr(value[:PREVIEW_CHARS])
    if isinstance(value, list | tuple | dict):
        if depth >= 2:
            return "[...]" if not isinstance(value, dict) else "{...}"
        if isinstance(value, dict):
            items = [f"{_preview(k, depth + 1)}: {_preview(v, depth + 1)}" for k, v in list(value.items())[:4]]
            more = ", ..." if len(value) > 4 else ""
            return "{" + ", ".join(items) + more + "}"
        items = [_preview(item, depth + 1) for item in list(value[:4])]
        more = ", ..." if len(value) > 4 else ""
        return "[" + ", ".join(items) + more + "]"
    try:
        return repr(value)[:PREVIEW_CHARS]
    except Exception:  # a repr that fails must not turn a refusal into a server error
        return f"<{type(value).__name__}>"
