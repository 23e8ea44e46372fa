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
options         no        the point's driver options as a JSON object, e.g.
                          ``{"word_order": "little", "read_back": true}``
word_order      no        Modbus: ``big`` or ``little``, overrides the device's
byte_order      no        Modbus: ``big`` or ``little``, overrides the device's
trend_mode      no        ``off``, ``change``, ``interval`` or ``both`` (default
                          ``both``: on change, and at least every trend_interval)
trend_deadband  no        trend a change only beyond this distance from the last
                          sample (default empty: the point's deadband)
trend_interval  no        seconds between interval samples, or the longest gap
                          between samples with ``both`` (default 900)
==============  ========  =====================================================

``word_order`` and ``byte_order`` are shorthands for the same keys of
``options`` (a spreadsheet makes JSON in a cell awkward); a row may not give
one key both ways with different values.

A row whose ``name`` exists already updates that point (all of it: columns
left out take their defaults). Every row is checked alone and then against
the other points of its device, those in the file and those already
configured, so two points sharing Modbus registers in conflicting ways are
refused. Errors are reported with their line number (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from bms.points.models import TREND_BOTH, TREND_INTERVAL_DEFAULT, Device, Point
from drivers.registry import driver_class

REQUIRED = ("device", "name", "address", "data_type")
OPTIONAL = (
    "description",
    "scale",
    "offset",
    "unit",
    "writable",
    "min_value",
    "max_value",
    "deadband",
    "enabled",
    "options",
    "word_order",
    "byte_order",
    "trend_mode",
    "trend_deadband",
    "trend_interval",
)
OPTION_COLUMNS = ("word_order", "byte_order")
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
    existing = {point.name: point for point in Point.objects.select_related("device")}
    errors: list[str] = []
    seen: dict[str, int] = {}
    points: list[Point] = []
    valid: dict[str, int] = {}  # rows that passed alone: name -> line
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
            valid[name] = line
        except ValidationError as exc:
            for message in _messages(exc):
                errors.append(f"line {line}: {name or '(no name)'}: {message}")
    errors.extend(_conflicts(points, existing, valid, set(seen)))
    errors.sort(key=_line_number)
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
    point.options = _options(values)
    point.trend_mode = values.get("trend_mode", "").lower() or TREND_BOTH
    point.trend_deadband = _number(values, "trend_deadband", None)
    point.trend_interval = _number(values, "trend_interval", TREND_INTERVAL_DEFAULT)
    point.check_siblings = False  # the whole list is checked at once, see _conflicts
    point.full_clean(validate_unique=False)
    return point


def _options(values: dict[str, str]) -> dict:
    text = values.get("options", "")
    options: dict = {}
    if text:
        try:
            options = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"options: {text!r} is not JSON ({exc.msg})") from None
        if not isinstance(options, dict):
            raise ValidationError(f'options: {text!r} is not a JSON object like {{"word_order": "little"}}')
    for column in OPTION_COLUMNS:
        value = values.get(column, "")
        if not value:
            continue
        if column in options and options[column] != value:
            raise ValidationError(f"{column}: {value!r} here but {options[column]!r} in options")
        options[column] = value
    return options


def _conflicts(points: list[Point], existing: dict[str, Point], lines: dict[str, int], named: set[str]) -> list[str]:
    """Clashes of the file's valid rows (``lines``: name -> line) with each other and with configured points.

    A configured point counts with its configuration unless the file names it
    (``named``), so a file that moves two points past each other is judged by
    where they end up.
    """
    by_device: dict[int, list[Point]] = {}
    for point in points:
        by_device.setdefault(point.device.pk, []).append(point)
    for point in existing.values():
        if point.name not in named and point.device_id in by_device:
            by_device[point.device_id].append(point)
    errors = []
    for device_points in by_device.values():
        driver = driver_class(device_points[0].device.driver)
        for conflict in driver.check_point_list([point.spec for point in device_points]):
            name, other = conflict.point, conflict.other
            if name not in lines:
                name, other = other, name
            if name not in lines:
                continue  # two configured points the file does not touch: not this file's problem
            where = f"line {lines[other]}" if other in lines else "already configured"
            errors.append(f"line {lines[name]}: {name}: address: {conflict.message} ({other}: {where})")
    return errors


def _line_number(error: str) -> int:
    head = error.split(":", 1)[0]
    return int(head.removeprefix("line ")) if head.startswith("line ") else 0


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
