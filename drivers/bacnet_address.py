"""BACnet point addresses and the conversion of BACnet values to and from raw values.

A point address names one property of one object of the device:
``<object-type>:<instance>[/<property>]``, e.g. ``analog-value:1`` (the
present value) or ``analog-value:1/high-limit``. Object types are written
as in the standard (``analog-input``), in bacpypes3's camel case
(``analogInput``) or abbreviated (``ai``); a comma may stand for the colon
(``analog-input,1``, bacpypes3's own notation).

Data types reuse the engine's names: analog objects carry ``float32``
(BACnet REAL) or ``float64``, binary objects ``bool``, multi-state objects
``uint16`` or ``uint32`` (the state number, 1..n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bacpypes3.basetypes import BinaryPV, PropertyIdentifier
from bacpypes3.primitivedata import Atomic, Null, ObjectIdentifier

from drivers.base import AddressError, RawValue

PRESENT_VALUE = "present-value"
MAX_INSTANCE = 4194302

#: object type -> (kind, data types a present-value point may use)
OBJECT_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "analog-input": ("analog", ("float32", "float64")),
    "analog-output": ("analog", ("float32", "float64")),
    "analog-value": ("analog", ("float32", "float64")),
    "binary-input": ("binary", ("bool",)),
    "binary-output": ("binary", ("bool",)),
    "binary-value": ("binary", ("bool",)),
    "multi-state-input": ("multistate", ("uint16", "uint32")),
    "multi-state-output": ("multistate", ("uint16", "uint32")),
    "multi-state-value": ("multistate", ("uint16", "uint32")),
}
#: every data type some BACnet point may use (all of them known to the engine already)
DATA_TYPES: tuple[str, ...] = ("bool", "uint16", "uint32", "float32", "float64")
ABBREVIATIONS = {
    "ai": "analog-input",
    "ao": "analog-output",
    "av": "analog-value",
    "bi": "binary-input",
    "bo": "binary-output",
    "bv": "binary-value",
    "msi": "multi-state-input",
    "mso": "multi-state-output",
    "msv": "multi-state-value",
}
RAW_RANGES: dict[str, tuple[float, float]] = {
    "uint16": (0, 65535),
    "uint32": (0, 2**32 - 1),
    "float32": (-3.4028234e38, 3.4028234e38),
    "float64": (-1.7976931348623157e308, 1.7976931348623157e308),
}


def _canonical_type(text: str) -> str | None:
    lowered = text.strip().lower()
    if lowered in ABBREVIATIONS:
        return ABBREVIATIONS[lowered]
    for name in OBJECT_TYPES:
        if lowered in (name, name.replace("-", "")):
            return name
    return None


@dataclass(frozen=True, slots=True)
class BacnetAddress:
    """A parsed point address: object type, instance and property, in canonical spelling."""

    object_type: str
    instance: int
    property_name: str = PRESENT_VALUE

    @property
    def kind(self) -> str:
        """``analog``, ``binary`` or ``multistate``."""
        return OBJECT_TYPES[self.object_type][0]

    @property
    def object_id(self) -> ObjectIdentifier:
        return ObjectIdentifier((self.object_type, self.instance))

    @property
    def property_id(self) -> PropertyIdentifier:
        return PropertyIdentifier(self.property_name)

    def __str__(self) -> str:
        suffix = "" if self.property_name == PRESENT_VALUE else f"/{self.property_name}"
        return f"{self.object_type}:{self.instance}{suffix}"


def parse_address(address: str, data_type: str | None = None) -> BacnetAddress:
    """Parse ``address`` (and check ``data_type`` against it); raise AddressError naming the problem."""
    text = address.strip()
    object_part, slash, property_part = text.partition("/")
    type_text, sep, instance_text = object_part.replace(",", ":").partition(":")
    if not sep:
        raise AddressError(
            f"BACnet address {address!r} must look like 'analog-value:1' or 'analog-value:1/present-value'"
        )
    object_type = _canonical_type(type_text)
    if object_type is None:
        raise AddressError(
            f"BACnet address {address!r}: unknown or unsupported object type {type_text.strip()!r}; "
            f"supported: {', '.join(OBJECT_TYPES)} (or {', '.join(ABBREVIATIONS)})"
        )
    try:
        instance = int(instance_text.strip())
    except ValueError:
        raise AddressError(f"BACnet address {address!r}: instance {instance_text!r} is not a whole number") from None
    if not 0 <= instance <= MAX_INSTANCE:
        raise AddressError(f"BACnet address {address!r}: instance must be between 0 and {MAX_INSTANCE}")
    prop = PRESENT_VALUE
    if slash:
        try:
            prop = str(PropertyIdentifier(property_part.strip()))
        except ValueError:
            raise AddressError(f"BACnet address {address!r}: unknown property {property_part.strip()!r}") from None
    parsed = BacnetAddress(object_type, instance, prop)
    if data_type is not None:
        allowed = OBJECT_TYPES[object_type][1] if prop == PRESENT_VALUE else DATA_TYPES
        if data_type not in allowed:
            raise AddressError(
                f"BACnet address {address!r}: data type {data_type!r} does not fit {prop} of {object_type}; "
                f"use {' or '.join(allowed)}"
            )
    return parsed


def to_raw(value: Any, kind: str | None = None) -> RawValue | None:
    """A decoded BACnet value as a raw engine value (``None`` for Null); ValueError if it is not a scalar.

    ``kind`` (``binary``...) makes an enumerated 0/1, as priority arrays carry it, a bool.
    """
    raw = _scalar(value)
    if kind == "binary" and raw is not None:
        return bool(raw)
    return raw


def _scalar(value: Any) -> RawValue | None:
    if value is None or isinstance(value, Null):
        return None
    if isinstance(value, BinaryPV):
        return int(value) == 1
    if isinstance(value, bool):
        return value
    if isinstance(value, Atomic) and type(value).__name__ == "Boolean":
        return bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise ValueError(f"{type(value).__name__} value {value!r} is not a number or a boolean")


def to_bacnet(address: BacnetAddress, value: RawValue | None) -> Any:
    """A raw value as something bacpypes3 casts to the property's type; ``None`` becomes Null (relinquish)."""
    if value is None:
        return Null(())
    if address.property_name == PRESENT_VALUE:
        if address.kind == "binary":
            return "active" if bool(value) else "inactive"
        if address.kind == "multistate":
            return int(value)
        return float(value)
    return value


def priority_value_to_raw(entry: Any, kind: str | None = None) -> RawValue | None:
    """One slot of a priority array (a PriorityValue choice) as a raw value, or None when empty."""
    choice = getattr(entry, "_choice", None)
    if choice is None or choice == "null":
        return None
    return to_raw(getattr(entry, choice), kind)
