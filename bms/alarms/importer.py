"""Alarm-definition import from CSV: validate every row first, then write all of them or none.

Columns (header row required, order free; docs/operator-guide.md has the table):
``point`` and ``kind`` are required; ``name``, ``class`` (default ``medium``),
``priority``, ``limit``, ``deadband``, ``on_delay``, ``off_delay``,
``alarm_value``, ``setpoint_point``, ``rate_per_minute``, ``quality_delay``,
``area``, ``message``, ``ack_required``, ``realarm_seconds``,
``suppression_point`` and ``enabled`` are optional.

A row whose name (given, or ``<point>.<kind>``) exists updates that
definition (all of it: columns left out take their defaults; whether it is
out of service is not the file's business and stays). Each row is checked
alone (the model's own validation) and then the limits of each point
against each other: those in the file and those already configured that the
file does not name. Errors are reported with their line number (the header
is line 1).
"""

from __future__ import annotations

import csv
import io

from django.core.exceptions import ValidationError
from django.db import transaction

from bms.alarms.conditions import LIMIT_KINDS
from bms.alarms.models import AlarmClass, AlarmDefinition, limit_order_problems
from bms.points.importer import ImportFailed, ImportResult
from bms.points.models import Point

__all__ = ["COLUMNS", "ImportFailed", "ImportResult", "import_alarms"]

REQUIRED = ("point", "kind")
OPTIONAL = (
    "name",
    "class",
    "priority",
    "limit",
    "deadband",
    "on_delay",
    "off_delay",
    "alarm_value",
    "setpoint_point",
    "rate_per_minute",
    "quality_delay",
    "area",
    "message",
    "ack_required",
    "realarm_seconds",
    "suppression_point",
    "enabled",
)
COLUMNS = REQUIRED + OPTIONAL
DEFAULT_CLASS = "medium"
TRUE = {"1", "true", "yes", "y", "on"}
FALSE = {"0", "false", "no", "n", "off"}
NUMBERS = {"limit": None, "deadband": 0.0, "on_delay": 0.0, "off_delay": 0.0, "rate_per_minute": None}
NUMBERS |= {"quality_delay": 0.0, "realarm_seconds": 0.0}


def import_alarms(text: str, dry_run: bool = False) -> ImportResult:
    """Import CSV alarm definitions; raise :class:`ImportFailed` and change nothing if any row is bad."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [column.strip() for column in (reader.fieldnames or [])]
    missing = [column for column in REQUIRED if column not in header]
    unknown = [column for column in header if column not in COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"line 1: missing column(s): {', '.join(missing)}")
        if unknown:
            problems.append(f"line 1: unknown column(s): {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
        raise ImportFailed(problems)
    reader.fieldnames = header

    points = {point.name: point for point in Point.objects.all()}
    classes = {alarm_class.name: alarm_class for alarm_class in AlarmClass.objects.all()}
    existing = {definition.name: definition for definition in AlarmDefinition.objects.select_related("point")}
    errors: list[str] = []
    seen: dict[str, int] = {}
    valid: list[tuple[int, AlarmDefinition]] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(f"line {line}: more fields than columns")
            continue
        values = {key: (value or "").strip() for key, value in row.items()}
        if not any(values.values()):
            continue
        name = values.get("name") or f"{values['point']}.{values['kind']}"
        if name in seen:
            errors.append(f"line {line}: alarm {name!r} already appears on line {seen[name]}")
            continue
        seen[name] = line
        definition, problems = _build(name, values, points, classes, existing)
        errors.extend(f"line {line}: {name}: {problem}" for problem in problems)
        if not problems:
            valid.append((line, definition))
    errors.extend(_limit_conflicts(valid, existing, set(seen)))
    errors.sort(key=_line_number)
    if not seen and not errors:
        errors.append("the file has no alarm rows")
    if errors:
        raise ImportFailed(errors)

    result = ImportResult()
    for _line, definition in valid:
        (result.updated if definition.pk else result.created).append(definition.name)
    if not dry_run:
        with transaction.atomic():
            for _line, definition in valid:
                definition.save()
    return result


def _build(
    name: str,
    values: dict[str, str],
    points: dict[str, Point],
    classes: dict[str, AlarmClass],
    existing: dict[str, AlarmDefinition],
) -> tuple[AlarmDefinition, list[str]]:
    """The definition a row describes, and what is wrong with it (empty: nothing)."""
    problems: list[str] = []
    skip: list[str] = []  # fields whose lookup failed: reported here, not again by the model
    # references found in the tables read for the whole file: the model's check would ask the database whether
    # each exists, two queries per reference and row (20,000 alarms took minutes, bench/alarms.py)
    found: list[str] = []

    def lookup(field: str, column: str, table: dict, what: str, default: str = ""):
        key = values.get(column, "") or default
        if not key:
            return None
        if key not in table:
            problems.append(f"{column}: unknown {what} {key!r}")
            skip.append(field)
            return None
        found.append(field)
        return table[key]

    definition = existing.get(name) or AlarmDefinition(name=name)
    definition.check_siblings = False  # the whole file is checked at once, see _limit_conflicts
    definition.point = lookup("point", "point", points, "point")
    definition.kind = values["kind"]
    definition.alarm_class = lookup("alarm_class", "class", classes, "alarm class", DEFAULT_CLASS)
    definition.setpoint_point = lookup("setpoint_point", "setpoint_point", points, "point")
    definition.suppression_point = lookup("suppression_point", "suppression_point", points, "point")
    definition.area = values.get("area", "")
    definition.message = values.get("message", "")
    for column, default in NUMBERS.items():
        setattr(definition, column, _parse(column, values, default, problems, skip, float))
    definition.priority = _parse("priority", values, None, problems, skip, int)
    definition.ack_required = _parse("ack_required", values, None, problems, skip, _flag)
    definition.enabled = _parse("enabled", values, True, problems, skip, _flag)
    definition.alarm_value = _parse("alarm_value", values, None, problems, skip, _alarm_value)
    try:
        definition.full_clean(exclude=skip + found, validate_unique=False)
    except ValidationError as exc:
        problems.extend(_messages(exc))
    else:
        definition.checked = True  # saved in this import's transaction: not checked again there
    return definition, problems


def _parse(column: str, values: dict[str, str], default, problems: list[str], skip: list[str], parse):
    text = values.get(column, "")
    if text == "":
        return default
    try:
        return parse(text)
    except ValueError:
        kind = {float: "a number", int: "a whole number", _flag: "yes or no"}.get(parse, "a number or yes/no")
        problems.append(f"{column}: {text!r} is not {kind}")
        skip.append(column)
        return default


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(text)


def _alarm_value(text: str) -> float:
    """A number, or yes/no, true/false, on/off for a bool point (1 and 0)."""
    try:
        return float(text)
    except ValueError:
        return 1.0 if _flag(text) else 0.0


def _limit_conflicts(
    valid: list[tuple[int, AlarmDefinition]], existing: dict[str, AlarmDefinition], named: set[str]
) -> list[str]:
    """Limits out of order on one point: between rows of the file, and against configured ones it does not name.

    A pair of rows is reported once, on the later line.
    """
    errors = []
    where = {definition.name: f"line {line}" for line, definition in valid}
    # by point: each row is compared with its own point's limits only (a whole-file comparison was quadratic:
    # 14,500 limit alarms took over a minute, bench/alarms.py)
    configured: dict[int, list[AlarmDefinition]] = {}
    for other in existing.values():
        if other.name not in named and other.enabled and other.kind in LIMIT_KINDS:
            configured.setdefault(other.point_id, []).append(other)
    earlier: dict[int, list[AlarmDefinition]] = {}
    for line, definition in sorted(valid, key=lambda item: item[0]):
        if not (definition.enabled and definition.kind in LIMIT_KINDS and definition.limit is not None):
            continue
        point = definition.point.pk
        others = configured.get(point, []) + earlier.get(point, [])
        for problem in limit_order_problems(definition, others, where):
            errors.append(f"line {line}: {definition.name}: limit: {problem}")
        earlier.setdefault(point, []).append(definition)
    return errors


def _line_number(error: str) -> int:
    head = error.split(":", 1)[0]
    return int(head.removeprefix("line ")) if head.startswith("line ") else 0


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{field}: {message}" for field, messages in exc.message_dict.items() for message in messages]
    return list(exc.messages)
