"""Loading the logic rules for the engine: every enabled rule as a :class:`~bms.logic.spec.RuleSpec`.

Blocking: call it on the engine's database thread, inside the transaction
that reads the rest of the configuration, once per configuration revision.
"""

from __future__ import annotations

import logging

from bms.control.models import Command
from bms.engine.dbconn import drop_broken_connections
from bms.logic.models import Rule
from bms.logic.runner import command_id
from bms.logic.spec import RuleInvalid, RuleSpec, evaluation_order
from bms.points.models import Point

log = logging.getLogger(__name__)


def read_rule_specs(problems: list[str] | None = None) -> tuple[RuleSpec, ...]:
    """Every enabled rule that can run, in evaluation order (a rule after the rules whose outputs it reads).

    A rule that no longer compiles (a point it names was renamed, deleted or
    changed type since it was saved) or whose output point or device is
    disabled is left out; why is logged and appended to ``problems``.
    """
    rules = list(Rule.objects.filter(enabled=True).order_by("name"))
    names: set[str] = set()
    for rule in rules:
        names.update(rule.output_names())
        names.update(rule.input_points())
    points = {point.name: point for point in Point.objects.filter(name__in=names).select_related("device")}
    specs = []
    for rule in rules:
        try:
            spec = rule.build_spec(points)
        except RuleInvalid as exc:
            _problem(problems, f"logic rule {rule.name} cannot run: {exc}")
            continue
        disabled = [name for name in spec.output_points if not (points[name].enabled and points[name].device.enabled)]
        if disabled:
            _problem(problems, f"logic rule {rule.name} cannot run: its output {disabled[0]} is disabled")
            continue
        specs.append(spec)
    return tuple(evaluation_order(specs))


def _problem(problems: list[str] | None, message: str) -> None:
    log.warning("%s", message)
    if problems is not None:
        problems.append(message)


#: how many of a rule's newest commands :func:`command_positions` looks at (numbers only grow, row by row)
RECENT_COMMANDS = 20


def command_positions(rules: list[str]) -> dict[str, int]:
    """The highest command number in the command log of each of ``rules`` that has one (``logic:<rule>:<n>``).

    For a rule that starts without a state (a cold start of a lone node, a rule created again under an old
    name): its numbering must continue after what the log holds, or its first commands would reuse ids that
    the command path refuses (same id, other payload). Blocking: the engine's database thread.

    One pass over the rules' commands, newest first, ending when every rule has its :data:`RECENT_COMMANDS`
    newest (a rule's prefix is its id up to the last colon: names have none). It was a query per rule, each
    walking the log from its newest row until it had found that rule's commands: for a rule whose commands
    are old, the whole log (17.5 ms a rule at 200,000 commands; a lone node's cold start asks for every rule,
    so 5,000 rules held the engine's database thread for 87 s). One rule costs the same walk either way.
    """
    prefixes = {command_prefix(rule): rule for rule in rules}
    if not prefixes:
        return {}
    drop_broken_connections()
    recent: dict[str, list[str]] = {prefix: [] for prefix in prefixes}
    left = len(prefixes)
    ids = Command.objects.filter(command_id__startswith="logic:").order_by("-id").values_list("command_id", flat=True)
    for cid in ids.iterator(chunk_size=10_000):
        found = recent.get(cid[: cid.rfind(":") + 1])
        if found is None or len(found) >= RECENT_COMMANDS:
            continue
        found.append(cid)
        if len(found) == RECENT_COMMANDS:
            left -= 1
            if not left:
                break
    positions: dict[str, int] = {}
    for prefix, cids in recent.items():
        numbers = [int(tail) for tail in (cid[len(prefix) :] for cid in cids) if tail.isdigit()]
        if numbers:
            positions[prefixes[prefix]] = max(numbers)
    return positions


def command_prefix(rule: str) -> str:
    """What every command id of ``rule`` starts with (see :func:`bms.logic.runner.command_id`)."""
    return command_id(rule, 0)[:-1]
