"""A logic rule as the engine runs it, and the pure half of checking one. Plain Python (no Django).

:class:`RuleSpec` is built from a ``Rule`` row and the points it names
(:func:`bms.logic.store.read_rule_specs`) on the engine's database thread,
once per configuration revision, so the engine loop never touches the ORM.
It holds compiled expressions (:class:`bms.logic.expr.Expression`) and
checked block parameters, so running it cannot fail on a mistake of the
configuration.

:func:`compile_rule` is the one definition of what makes a rule valid apart
from the database (syntax, types, parameters, outputs, quality policy): the
model's ``clean`` and the loader both call it. :func:`find_cycle` finds a
cycle between rules (rule A writes a point rule B reads, and so on back to
A), which the model refuses.

A rule's state is the process-image entry ``logic:<name>``
(:func:`entry_name`); point names cannot contain ``:``, so it never clashes
with a point.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bms.logic.blocks import BLOCKS, GAP_SAMPLES, PID, Block, ParamError, Sequencer, Totalizer, make_block, make_params
from bms.logic.expr import Expression, ExpressionError, Type, compile_expression, parse

LOGIC_PREFIX = "logic:"
EXPRESSION = "expression"
#: every rule kind: an expression, or one of the blocks
KINDS = (EXPRESSION, *BLOCKS)
#: the one input of an expression rule
VALUE_SLOT = "value"

#: what a rule does while its result is bad: keep the last command, command a fallback, release its priority
HOLD, FALLBACK, RELINQUISH = "hold", "fallback", "relinquish"
QUALITY_POLICIES = (HOLD, FALLBACK, RELINQUISH)

#: cycle times, seconds
MIN_CYCLE, MAX_CYCLE = 0.1, 86400.0
INTEGER_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64")


def entry_name(rule: str) -> str:
    """The process-image entry that holds ``rule``'s state."""
    return LOGIC_PREFIX + rule


def is_logic_entry(name: str) -> bool:
    return name.startswith(LOGIC_PREFIX)


class RuleInvalid(ValueError):
    """A rule that cannot run; ``errors``: model field name -> messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__("; ".join(f"{field}: {m}" for field, messages in self.errors.items() for m in messages))


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """A point a rule writes: its type and what a command to it must respect.

    ``low``/``high``: the engineering range a value must stay in (the point's
    writable range and its register's); integer points are written in whole
    steps of ``scale``.
    """

    point: str
    type: Type
    data_type: str = "float64"
    scale: float = 1.0
    offset: float = 0.0
    low: float | None = None
    high: float | None = None
    #: the point may be written at all
    writable: bool = True
    #: its driver can release a priority slot (BACnet): the relinquish policy needs it
    relinquish: bool = False

    def convert(self, value: Any) -> bool | int | float:
        """``value`` as this point accepts it: a bool, or a number within range and on the point's resolution."""
        if self.type is Type.BOOL:
            return bool(value)
        number = float(value)
        if self.low is not None:
            number = max(number, self.low)
        if self.high is not None:
            number = min(number, self.high)
        if self.data_type not in INTEGER_TYPES:
            return number
        raw = round((number - self.offset) / self.scale)
        number = raw * self.scale + self.offset
        # rounding may have left the range by one step: step back in
        if self.low is not None and number < self.low - 1e-9:
            raw += 1 if self.scale > 0 else -1
        elif self.high is not None and number > self.high + 1e-9:
            raw -= 1 if self.scale > 0 else -1
        if self.scale == 1.0 and self.offset == 0.0:
            return int(raw)
        return float(f"{raw * self.scale + self.offset:.15g}")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One enabled rule with everything the runner needs: compiled inputs, parameters, outputs, policy."""

    name: str
    kind: str
    #: (slot, compiled expression); an expression rule has the one slot ``value``
    inputs: tuple[tuple[str, Expression], ...]
    outputs: tuple[OutputSpec, ...]
    priority: int
    params: Any = None
    cycle_time: float = 1.0
    quality_policy: str = HOLD
    fallback_value: float | None = None
    #: a numeric output is commanded again only when it moved by more than this (0: on every change)
    deadband: float = 0.0

    @property
    def entry(self) -> str:
        return entry_name(self.name)

    @property
    def is_block(self) -> bool:
        return self.kind != EXPRESSION

    @property
    def points(self) -> frozenset[str]:
        """Every point the rule reads."""
        return frozenset(name for _, expression in self.inputs for name in expression.points)

    @property
    def output_points(self) -> tuple[str, ...]:
        return tuple(output.point for output in self.outputs)

    def new_block(self, state: Mapping[str, Any] | None = None) -> Block | None:
        """The rule's block with ``state`` (from ``to_dict``), or None for an expression rule."""
        return make_block(self.kind, self.params, state) if self.is_block else None

    def slot_defaults(self) -> dict[str, Any]:
        """The optional inputs of the block that the rule leaves unbound, with their defaults."""
        if not self.is_block:
            return {}
        bound = {slot for slot, _ in self.inputs}
        return {
            slot.name: slot.default
            for slot in BLOCKS[self.kind].slots(self.params)
            if not slot.required and slot.name not in bound
        }


def input_sources(kind: str, expression: str, inputs: Any) -> dict[str, str]:
    """The expression text of each input slot: ``{"value": expression}`` for an expression rule, else ``inputs``
    with numbers and bools written as text (``21.5`` -> ``"21.5"``). Raises :class:`RuleInvalid`."""
    if kind == EXPRESSION:
        if inputs:
            raise RuleInvalid({"inputs": ["an expression rule has no block inputs; write it all in the expression"]})
        if not (expression or "").strip():
            raise RuleInvalid({"expression": ["an expression rule needs an expression"]})
        return {VALUE_SLOT: expression}
    if (expression or "").strip():
        raise RuleInvalid({"expression": [f"a {kind} rule takes its values from its inputs; leave this empty"]})
    if not isinstance(inputs, Mapping):
        raise RuleInvalid({"inputs": ['the inputs are a JSON object: {"slot": "expression", ...}']})
    sources = {}
    for slot, source in inputs.items():
        if isinstance(source, bool):
            source = "true" if source else "false"
        elif isinstance(source, int | float):
            source = repr(float(source)) if math.isfinite(source) else source
        if not isinstance(source, str):
            raise RuleInvalid({"inputs": [f"{slot}: give an expression as text, not {source!r}"]})
        sources[str(slot)] = source
    return sources


def referenced_points(kind: str, expression: str, inputs: Any) -> list[str]:
    """The points a rule reads, for the cycle check (best effort: inputs that do not parse name none)."""
    try:
        sources = input_sources(kind, expression, inputs)
    except RuleInvalid:
        return []
    names: dict[str, None] = {}
    for source in sources.values():
        try:
            names.update(dict.fromkeys(parse(source).points))
        except ExpressionError:
            continue
    return list(names)


def compile_rule(
    name: str,
    kind: str,
    *,
    expression: str = "",
    inputs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    outputs: Sequence[OutputSpec | str],
    types: Mapping[str, Type | str],
    priority: int = 16,
    cycle_time: float = 1.0,
    quality_policy: str = HOLD,
    fallback_value: float | None = None,
    deadband: float = 0.0,
) -> RuleSpec:
    """Check a rule and build its :class:`RuleSpec`; ``types``: the type of every point it may read;
    ``outputs``: the points it writes, a plain name for one that does not exist.

    Raises :class:`RuleInvalid` with every problem found, by model field.
    """
    errors: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if kind not in KINDS:
        raise RuleInvalid({"kind": [f"unknown kind {kind!r}; the kinds are {', '.join(KINDS)}"]})
    if not 1 <= priority <= 16:
        refuse("priority", f"a priority is from 1 (highest) to 16 (lowest), not {priority}")
    if not MIN_CYCLE <= cycle_time <= MAX_CYCLE:
        refuse("cycle_time", f"the cycle time is from {MIN_CYCLE:g} to {MAX_CYCLE:g} seconds, not {cycle_time:g}")
    if not math.isfinite(deadband) or deadband < 0:
        refuse("output_deadband", "the output deadband must not be negative")
    if quality_policy not in QUALITY_POLICIES:
        refuse("quality_policy", f"the quality policy is one of {', '.join(QUALITY_POLICIES)}, not {quality_policy!r}")

    count = len(outputs)
    if not count:
        refuse("output", "name the point the rule writes")
    for output in outputs:
        if isinstance(output, str):
            refuse("output", f"there is no point named {output!r}")
        elif not output.writable:
            refuse("output", f"{output.point} is read-only: a rule can write only writable points")
        elif quality_policy == RELINQUISH and not output.relinquish:
            refuse(
                "quality_policy",
                f"{output.point}'s device cannot release a priority (relinquish): use hold or fallback",
            )
    named = [_name(output) for output in outputs]
    repeated = sorted({name for name in named if named.count(name) > 1})
    if repeated:
        refuse("output", f"each output is written once; {', '.join(repeated)} is named twice")
    if kind == Sequencer.kind and not 2 <= count <= 16:
        refuse("output", f"a sequencer writes 2 to 16 points (its units, lead first, separated by commas), not {count}")
    elif kind != Sequencer.kind and count != 1:
        article = "an" if kind[0] in "aeiou" else "a"
        refuse("output", f"{article} {kind} rule writes one point, not {count}")

    block_params = None
    if kind == EXPRESSION:
        if params:
            refuse("params", "an expression rule takes no parameters")
    elif "output" not in errors:
        try:
            block_params = make_params(kind, params, count)
        except ParamError as exc:
            refuse("params", str(exc))

    compiled: list[tuple[str, Expression]] = []
    try:
        sources = input_sources(kind, expression, inputs)
    except RuleInvalid as exc:
        for field, messages in exc.errors.items():
            errors.setdefault(field, []).extend(messages)
        sources = {}
    field = "expression" if kind == EXPRESSION else "inputs"
    slots = {slot.name: slot for slot in BLOCKS[kind].slots(block_params)} if block_params is not None else {}
    if kind != EXPRESSION and block_params is not None:
        for slot in sources:
            if slot not in slots:
                refuse(field, f"{kind} has no input {slot!r}; its inputs are {', '.join(slots)}")
        for slot in slots.values():
            if slot.required and slot.name not in sources:
                refuse(field, f"{kind} needs the input {slot.name!r} ({slot.help})")
    for slot_name, source in sources.items():
        prefix = "" if kind == EXPRESSION else f"{slot_name}: "
        try:
            compiled_expression = compile_expression(source, types)
        except ExpressionError as exc:
            refuse(field, f"{prefix}{exc}")
            continue
        slot = slots.get(slot_name)
        if slot is not None and compiled_expression.type is not slot.type:
            refuse(
                field,
                f"{prefix}{kind} input {slot_name!r} takes {_a(slot.type)}; "
                f"the expression gives {_a(compiled_expression.type)}",
            )
        compiled.append((slot_name, compiled_expression))

    if kind == EXPRESSION:
        produced: tuple[Type, ...] = tuple(expression.type for _, expression in compiled)
    elif block_params is not None:
        produced = BLOCKS[kind].output_types(block_params)
    else:
        produced = ()
    if len(produced) == count:
        for output, made in zip(outputs, produced, strict=True):
            if isinstance(output, OutputSpec) and output.type is not made:
                what = "the expression" if kind == EXPRESSION else f"{kind}"
                refuse("output", f"{what} gives {_a(made)}; {output.point} is a {output.type.value} point")

    if quality_policy == FALLBACK:
        if fallback_value is None:
            refuse("fallback_value", "the fallback policy needs a fallback value")
        else:
            for output in outputs:
                problem = _fallback_problem(output, fallback_value) if isinstance(output, OutputSpec) else ""
                if problem:
                    refuse("fallback_value", problem)
    elif fallback_value is not None:
        refuse("fallback_value", f"the {quality_policy} policy does not use a fallback value; leave it empty")

    if kind == PID.kind and block_params is not None and cycle_time > GAP_SAMPLES * block_params.sample_time:
        refuse(
            "cycle_time",
            f"a cycle of {cycle_time:g} s is more than {GAP_SAMPLES:g} pid sample times "
            f"({block_params.sample_time:g} s): every step would count as a gap and the pid would never integrate; "
            "raise sample_time",
        )
    if kind == Totalizer.kind and block_params is not None and 0 < block_params.max_gap < cycle_time:
        refuse(
            "cycle_time",
            f"a cycle of {cycle_time:g} s is longer than the totalizer's max_gap ({block_params.max_gap:g} s): "
            "a steady input would never be counted",
        )
    if kind == PID.kind and block_params is not None and count == 1 and isinstance(outputs[0], OutputSpec):
        output = outputs[0]
        if output.low is not None and block_params.out_min < output.low:
            low = f"{output.point}'s lowest value {output.low:g}"
            refuse("params", f"pid out_min {block_params.out_min:g} is below {low}")
        if output.high is not None and block_params.out_max > output.high:
            high = f"{output.point}'s highest value {output.high:g}"
            refuse("params", f"pid out_max {block_params.out_max:g} is above {high}")

    if errors:
        raise RuleInvalid(errors)
    assert all(isinstance(output, OutputSpec) for output in outputs)  # a plain name was refused above
    return RuleSpec(
        name=name,
        kind=kind,
        inputs=tuple(compiled),
        outputs=tuple(outputs),
        priority=priority,
        params=block_params,
        cycle_time=cycle_time,
        quality_policy=quality_policy,
        fallback_value=fallback_value,
        deadband=deadband,
    )


def _name(output: OutputSpec | str) -> str:
    return output if isinstance(output, str) else output.point


def _a(kind: Type) -> str:
    return "a bool (true/false)" if kind is Type.BOOL else "a number"


def _fallback_problem(output: OutputSpec, value: float) -> str:
    if not math.isfinite(value):
        return "the fallback value must be a finite number"
    if output.type is Type.BOOL:
        return "" if value in (0, 1) else f"{output.point} is a bool point: the fallback is 1 (true) or 0 (false)"
    if output.low is not None and value < output.low:
        return f"the fallback {value:g} is below {output.point}'s lowest value {output.low:g}"
    if output.high is not None and value > output.high:
        return f"the fallback {value:g} is above {output.point}'s highest value {output.high:g}"
    return ""


# ---- cycles and order ----------------------------------------------------------------------------------------------


def find_cycle(
    start: str, reads: Mapping[str, Iterable[str]], writes: Mapping[str, Iterable[str]]
) -> list[tuple[str, str]] | None:
    """The shortest cycle through rule ``start``, as ``[(rule, point it writes that the next rule reads), ...]``.

    ``reads``/``writes``: rule name -> the points it reads / writes. None if there is none.
    """
    readers: dict[str, list[str]] = {}
    for rule, points in reads.items():
        for point in points:
            readers.setdefault(point, []).append(rule)
    came_from: dict[str, tuple[str, str]] = {}
    queue = deque([start])
    while queue:
        rule = queue.popleft()
        for point in sorted(writes.get(rule, ())):
            for reader in sorted(readers.get(point, ())):
                if reader == start:
                    path = [(rule, point)]
                    while rule != start:
                        rule, point = came_from[rule]
                        path.append((rule, point))
                    return path[::-1]
                if reader not in came_from:
                    came_from[reader] = (rule, point)
                    queue.append(reader)
    return None


def describe_cycle(cycle: list[tuple[str, str]]) -> str:
    """``a → b → a (a writes x, which b reads; b writes y, which a reads)``."""
    names = [rule for rule, _ in cycle] + [cycle[0][0]]
    if len(cycle) == 1:
        rule, point = cycle[0]
        return f"rule {rule} reads its own output {point}"
    links = [
        f"{rule} writes {point}, which {cycle[(index + 1) % len(cycle)][0]} reads"
        for index, (rule, point) in enumerate(cycle)
    ]
    return f"the rules would form a cycle: {' → '.join(names)} ({'; '.join(links)})"


def evaluation_order(specs: Iterable[RuleSpec]) -> list[RuleSpec]:
    """``specs`` with every rule after the rules whose outputs it reads (names break ties); cycles, which saving
    refuses, are appended in name order."""
    by_name = {spec.name: spec for spec in sorted(specs, key=lambda spec: spec.name)}
    writers: dict[str, set[str]] = {}
    for spec in by_name.values():
        for point in spec.output_points:
            writers.setdefault(point, set()).add(spec.name)
    before = {
        name: {writer for point in spec.points for writer in writers.get(point, ()) if writer != name}
        for name, spec in by_name.items()
    }
    after: dict[str, list[str]] = {name: [] for name in by_name}
    for name, earlier in before.items():
        for other in earlier:
            after[other].append(name)
    waiting = {name: len(earlier) for name, earlier in before.items()}
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[RuleSpec] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(by_name[name])
        for later in after[name]:
            waiting[later] -= 1
            if waiting[later] == 0:
                heapq.heappush(ready, later)
    placed = {spec.name for spec in ordered}
    ordered.extend(spec for name, spec in by_name.items() if name not in placed)
    return ordered
