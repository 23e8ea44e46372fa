"""Logic configuration: one :class:`Rule` per expression or block, reading points and writing points at a priority.

Rules are configuration: every save or delete bumps the configuration
revision (:mod:`bms.logic.signals`) and they are replicated to the standby
with the rest of the configuration. A rule is checked whole on every save
(``full_clean``), so the admin, an import and code get the same refusals:
syntax and type errors in its expressions (with the column), unknown points,
outputs that are not writable, block parameters, the quality policy, two
enabled rules writing one point at one priority, and cycles between rules
(rule A writes a point that rule B reads, and B, perhaps through others,
writes one that A reads).

Points are referred to by name, in expressions (``{zone1_temp}``) as in the
output field, so a rule reads like what an engineer wrote. A point renamed
or deleted later makes the rule fail to load (the engine logs why and runs
the others) until it is edited.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import QuerySet

from bms.logic.blocks import BLOCKS
from bms.logic.expr import Type, point_type
from bms.logic.spec import (
    EXPRESSION,
    FALLBACK,
    HOLD,
    KINDS,
    MAX_CYCLE,
    MIN_CYCLE,
    QUALITY_POLICIES,
    RELINQUISH,
    OutputSpec,
    RuleInvalid,
    RuleSpec,
    compile_rule,
    describe_cycle,
    find_cycle,
    referenced_points,
)
from bms.points.models import POINT_NAME_VALIDATOR, Point
from bms.sites.models import site_owner
from drivers.registry import driver_class

PRIORITY_VALIDATORS = [
    MinValueValidator(1, "A priority is from 1 (highest) to 16 (lowest)."),
    MaxValueValidator(16, "A priority is from 1 (highest) to 16 (lowest)."),
]
#: fields whose ranges their validators check, so clean() does not repeat what compile_rule says of them
FIELD_CHECKED = ("priority", "cycle_time", "output_deadband")
#: rule names are short enough for the command id ``logic:<name>:<number>`` (64 characters at most)
NAME_LENGTH = 40


def _finite(value: float) -> None:
    if value is not None and not math.isfinite(value):
        raise ValidationError("Give a finite number.")


def output_spec(point: Point) -> OutputSpec:
    """What a rule's command to ``point`` must respect: type, range (writable and register), resolution."""
    low, high = point.min_value, point.max_value
    driver = driver_class(point.device.driver)
    raw_range = driver.value_range(point.data_type) if point.data_type != "bool" else None
    if raw_range is not None and point.scale:
        ends = sorted(bound * point.scale + point.offset for bound in raw_range)
        low = ends[0] if low is None else max(low, ends[0])
        high = ends[1] if high is None else min(high, ends[1])
    return OutputSpec(
        point=point.name,
        type=point_type(point.data_type),
        data_type=point.data_type,
        scale=point.scale,
        offset=point.offset,
        low=low,
        high=high,
        writable=point.writable,
        relinquish=bool(driver.relinquish),
    )


def split_outputs(text: str) -> list[str]:
    """The point names of a rule's output field (commas between them, spaces allowed)."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


class Rule(models.Model):
    """A logic rule: an expression or a block over point values, writing its result to points at a priority.

    ``kind`` ``expression``: ``expression`` is the rule (its type must be the
    output point's). Any other kind is a block (:mod:`bms.logic.blocks`):
    ``inputs`` binds each of the block's inputs to an expression
    (``{"pv": "{zone1_temp}", "sp": "21.5"}``) and ``params`` holds its
    parameters (``{"kp": 2, "ki": 0.05}``). ``output``: the point written; a
    sequencer writes one point per unit, separated by commas, lead order
    first. ``priority``: the slot of the point's 16-level priority array the
    rule writes (1 highest). ``cycle_time``: the rule also runs this often
    when no input changes. ``quality_policy``: what it does while an input
    is bad (hold the last command, command ``fallback_value``, or relinquish
    its slot); ``output_deadband``: a number is commanded again only when it
    moved by more than this.
    """

    KIND_CHOICES = [(kind, kind.replace("_", " ")) for kind in KINDS]
    POLICY_CHOICES = [
        (HOLD, "hold the last command"),
        (FALLBACK, "command the fallback value"),
        (RELINQUISH, "relinquish (release the priority slot)"),
    ]

    name = models.CharField(
        max_length=NAME_LENGTH, unique=True, validators=[POINT_NAME_VALIDATOR], help_text="identifies the rule"
    )
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)
    kind = models.CharField(
        max_length=16,
        choices=KIND_CHOICES,
        default=EXPRESSION,
        error_messages={"invalid_choice": "Unknown kind %(value)r; the kinds are listed in docs/logic.md."},
    )
    expression = models.TextField(
        blank=True,
        help_text="expression rules: e.g. if({oat} < 5, 1, 0); points in braces (docs/logic.md)",
    )
    inputs = models.JSONField(
        default=dict,
        blank=True,
        help_text='blocks: an expression per input, e.g. {"pv": "{zone1_temp}", "sp": "{zone1_sp}"}',
    )
    params = models.JSONField(default=dict, blank=True, help_text='blocks: parameters, e.g. {"kp": 2, "ki": 0.05}')
    output = models.CharField(
        max_length=2200,
        help_text="the point written; a sequencer: one point per unit, separated by commas, lead first",
    )
    priority = models.PositiveSmallIntegerField(
        default=16, validators=PRIORITY_VALIDATORS, help_text="the priority slot written, 1 (highest) to 16"
    )
    cycle_time = models.FloatField(
        default=1.0,
        validators=[_finite, MinValueValidator(MIN_CYCLE), MaxValueValidator(MAX_CYCLE)],
        help_text="seconds: the rule also runs this often without a change of its inputs",
    )
    quality_policy = models.CharField(
        max_length=16, choices=POLICY_CHOICES, default=HOLD, help_text="what the rule does while an input is bad"
    )
    fallback_value = models.FloatField(
        null=True, blank=True, validators=[_finite], help_text="the fallback policy's value (bool: 1 or 0)"
    )
    output_deadband = models.FloatField(
        default=0.0,
        validators=[_finite, MinValueValidator(0.0)],
        help_text="a number is commanded again only once it moved more than this; 0: on every change",
    )
    site = site_owner("rules", "the building it belongs to: it reads and writes only points of this site")

    #: the points the checks look names up in (not a field). ``None``: every point. The API narrows it to the
    #: caller's sites, so a point of another site is refused exactly like one that does not exist.
    point_scope: QuerySet | None = None

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an invalid rule here too, not only in forms: every way in is checked."""
        self.full_clean()
        super().save(*args, **kwargs)

    def output_names(self) -> list[str]:
        return split_outputs(self.output)

    def input_points(self) -> list[str]:
        """The points the rule reads (best effort: an input that does not parse names none)."""
        return referenced_points(self.kind, self.expression, self.inputs)

    # ---- validation ---------------------------------------------------------------------------------------

    def clean(self) -> None:
        if self.kind not in BLOCKS and self.kind != EXPRESSION:
            return  # the field's own check names the bad kind
        if self.quality_policy not in QUALITY_POLICIES:
            return
        errors: dict[str, list[str]] = {}
        names = set(self.output_names()) | set(self.input_points())
        scope = Point.objects.all() if self.point_scope is None else self.point_scope
        points = {point.name: point for point in scope.filter(name__in=names).select_related("device__site")}
        try:
            self.build_spec(points)
        except RuleInvalid as exc:
            # the fields' own validators check these ranges too (and say so once)
            errors.update((field, messages) for field, messages in exc.errors.items() if field not in FIELD_CHECKED)
        if not errors:
            self._check_sites(points, errors)
        if not errors and self.enabled:
            self._check_neighbours(errors)
        if errors:
            raise ValidationError(errors)

    def _check_sites(self, points: Mapping[str, Point], errors: dict[str, list[str]]) -> None:
        """Every point the rule reads or writes is of the rule's own site."""
        site = self._site()
        if site is None:
            return  # the field's own check names a site that does not exist
        outputs = set(self.output_names())
        for name in sorted(points):
            point_site = points[name].device.site
            if point_site.pk == site.pk:
                continue
            field = "output" if name in outputs else ("expression" if self.kind == EXPRESSION else "inputs")
            errors.setdefault(field, []).append(
                f"{name} is a point of site {point_site.name}; rule {self.name or '(new)'} is of site {site.name}: "
                "a rule reads and writes only points of its own site"
            )

    def _site(self) -> Any:
        try:
            return self.site
        except models.ObjectDoesNotExist:
            return None

    def _check_neighbours(self, errors: dict[str, list[str]]) -> None:
        """Another enabled rule writing one of our outputs at our priority; a cycle through this rule."""
        others = list(Rule.objects.filter(enabled=True).exclude(pk=self.pk).exclude(name=self.name))
        mine = self.output_names()
        for other in others:
            shared = [name for name in other.output_names() if name in mine]
            if shared and other.priority == self.priority:
                errors.setdefault("priority", []).append(
                    f"rule {other.name} already writes {shared[0]} at priority {self.priority}; "
                    "give this rule another priority (or disable the other)"
                )
        if errors:
            return
        reads = {other.name: other.input_points() for other in others}
        writes = {other.name: other.output_names() for other in others}
        reads[self.name], writes[self.name] = self.input_points(), mine
        cycle = find_cycle(self.name, reads, writes)
        if cycle is not None:
            field = ("expression" if self.kind == EXPRESSION else "inputs") if len(cycle) == 1 else NON_FIELD_ERRORS
            errors.setdefault(field, []).append(describe_cycle(cycle))

    # ---- what the engine needs ------------------------------------------------------------------------

    def build_spec(self, points: Mapping[str, Point]) -> RuleSpec:
        """The rule as the engine runs it; ``points``: at least the points it names, by name (with their device).

        Raises :class:`~bms.logic.spec.RuleInvalid` (by field) when the rule cannot run.
        """
        types = PointTypes(points)
        outputs = [output_spec(points[name]) if name in points else name for name in self.output_names()]
        return compile_rule(
            self.name,
            self.kind,
            expression=self.expression,
            inputs=self.inputs,
            params=self.params,
            outputs=outputs,
            types=types,
            priority=self.priority if self.priority is not None else 16,
            cycle_time=self.cycle_time if self.cycle_time is not None else 1.0,
            quality_policy=self.quality_policy,
            fallback_value=self.fallback_value,
            deadband=self.output_deadband if self.output_deadband is not None else 0.0,
        )


class PointTypes(Mapping[str, Type]):
    """The expression type of each of ``points`` (name -> Point), worked out when asked for.

    A rule names a few points; the engine's loader passes every point that any enabled rule names, and building
    the whole map for each rule made a reload quadratic: enabling 5,000 rules (15,000 points named) held the
    engine's database thread for about 80 s (bench/logic.py)."""

    __slots__ = ("_points",)

    def __init__(self, points: Mapping[str, Point]) -> None:
        self._points = points

    def __getitem__(self, name: str) -> Type:
        return point_type(self._points[name].data_type)

    def __iter__(self) -> Iterator[str]:
        return iter(self._points)

    def __len__(self) -> int:
        return len(self._points)
