"""Point-list import from CSV: validate every row first, then write all of them or none.

Columns (header row required, order free):

==============  ========  =====================================================
column          required  meaning
==============  ========  =====================================================
device          yes       name of an existing device
name            yes       unique point name (letters, digits, ``_ - .``)
address         yes       driver address, e.g. ``hr:100`` (Modbus)
data_type       yes       bool, int16, uint16, int32, uint32, int64, uint64, float32, float64
description     no        free text
scale           no        engineering = raw * scale + offset (default 1)
offset          no        default 0
unit            no        e.g. ``degC``
writable        no        yes/no, true/false, 1/0 (default no)
min_value       no        lowest value an operator may write
max_value       no        highest value an operator may write
deadband        no        publish only changes larger than this (default 0)
enabled         no        yes/no (default yes)
==============  ========  =====================================================

A row whose ``name`` exists already updates that point. Errors are reported
with their line number (the header is line 1).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from bms.points.models import Device, Point

REQUIRED = ("device", "name", "address", "data_type")
OPTIONAL = ("description", "scale", "offset", "unit", "writable", "min_value", "max_value", "deadband", "enabled")
TRUE = {"1", "true", "yes", "y", "on"}
FALSE = {"0", "false", "no", "n", "off", ""}


class ImportFailed(Exception):
    """The file was not imported; ``errors`` lists every problem as ``line N: ...``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class ImportResult:
    """What an import did (or, with ``dry_run``, would do)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def import_points(text: str, dry_run: bool = False) -> ImportResult:
    """Import a CSV point list; raise :class:`ImportFailed` and change nothing if any row is bad."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [column.strip() for column in (reader.fieldnames or [])]
    missing = [column for column in REQUIRED if column not in header]
    unknown = [column for column in header if column not in REQUIRED + OPTIONAL]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"line 1: missing column(s): {', '.join(missing)}")
        if unknown:
            problems.append(
                f"line 1: unknown column(s): {', '.join(unknown)} (known: {', '.join(REQUIRED + OPTIONAL)})"
            )
        raise ImportFailed(problems)
    reader.fieldnames = header

    devices = {device.name: device for device in Device.objects.all()}
    existing = {point.name: point for point in Point.objects.all()}
    errors: list[str] = []
    seen: dict[str, int] = {}
    points: list[Point] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(f"line {line}: more fields than columns")
            continue
        values = {key: (value or "").strip() for key, value in row.items()}
        if not any(values.values()):
            continue
        name = values["name"]
        if name in seen:
            errors.append(f"line {line}: point {name!r} already appears on line {seen[name]}")
            continue
        seen[name] = line
        try:
            points.append(_build_point(values, devices, existing))
        except ValidationError as exc:
            for message in _messages(exc):
                errors.append(f"line {line}: {name or '(no name)'}: {message}")
    if not seen and not errors:
        errors.append("the file has no point rows")
    if errors:
        raise ImportFailed(errors)

    result = ImportResult()
    for point in points:
        (result.updated if point.pk else result.created).append(point.name)
    if not dry_run:
        with transaction.atomic():
            for point in points:
                point.save()
    return result


def _build_point(values: dict[str, str], devices: dict[str, Device], existing: dict[str, Point]) -> Point:
    device = devices.get(values["device"])
    if device is None:
        raise ValidationError(f"unknown device {values['device']!r}; create it first (admin) or fix the name")
    point = existing.get(values["name"]) or Point(name=values["name"])
    point.device = device
    point.address = values["address"]
    point.data_type = values["data_type"]
    point.description = values.get("description", "")
    point.unit = values.get("unit", "")
    point.scale = _number(values, "scale", 1.0)
    point.offset = _number(values, "offset", 0.0)
    point.deadband = _number(values, "deadband", 0.0)
    point.min_value = _number(values, "min_value", None)
    point.max_value = _number(values, "max_value", None)
    point.writable = _flag(values, "writable", False)
    point.enabled = _flag(values, "enabled", True)
    point.full_clean(validate_unique=False)
    return point


def _number(values: dict[str, str], column: str, default: float | None) -> float | None:
    text = values.get(column, "")
    if text == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise ValidationError(f"{column}: {text!r} is not a number") from None


def _flag(values: dict[str, str], column: str, default: bool) -> bool:
    text = values.get(column, "").lower()
    if text == "":
        return default
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValidationError(f"{column}: {text!r} is not yes or no")


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{field}: {message}" for field, messages in exc.message_dict.items() for message in messages]
    return list(exc.messages)
