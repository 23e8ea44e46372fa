"""Alarm configuration (classes and per-point definitions) and the alarm journal.

Definitions are configuration: every save or delete bumps the configuration
revision (:mod:`bms.alarms.signals`), as devices and points do, so a running
engine reloads them. A definition is checked whole on every save
(``full_clean``), so the admin, the CSV import and code all get the same
clear refusals. The journal is history: a :class:`~bms.history.models.HistoryRow`
table, replicated to the partner like the event log.

Priorities run from 1 (most urgent) to 1000, as BACnet's priorities do: the
console sorts the smallest first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from bms.alarms.conditions import (
    LIMIT_KINDS,
    LOW_KINDS,
    NUMERIC_KINDS,
    STATE_KINDS,
    Condition,
    Kind,
    template_problems,
)
from bms.alarms.spec import AlarmSpec
from bms.alarms.states import DISPLAY_STATES, AlarmConfig, Transition, TransitionKind
from bms.history.models import HistoryRow
from bms.points.models import POINT_NAME_VALIDATOR, Point

PRIORITY_VALIDATORS = [
    MinValueValidator(1, "A priority is from 1 (most urgent) to 1000."),
    MaxValueValidator(1000, "A priority is from 1 (most urgent) to 1000."),
]
UNKNOWN_POINT = "There is no point with id %(value)r."
COLOUR_VALIDATOR = RegexValidator(r"^#[0-9A-Fa-f]{6}$", "Give the colour as #rrggbb, e.g. #d32f2f.")


def _finite(value: float) -> None:
    if value is not None and not math.isfinite(value):
        raise ValidationError("Give a finite number.")


def _not_negative(value: float) -> None:
    _finite(value)
    if value is not None and value < 0:
        raise ValidationError("Must not be negative.")


#: per kind, the optional settings it uses (the others must stay empty / 0)
USES: dict[Kind, frozenset[str]] = {
    **{kind: frozenset({"limit", "deadband"}) for kind in LIMIT_KINDS},
    Kind.STATE_EQUAL: frozenset({"alarm_value"}),
    Kind.STATE_NOT_EQUAL: frozenset({"alarm_value"}),
    Kind.DEVIATION: frozenset({"limit", "deadband", "setpoint_point"}),
    Kind.RATE_OF_CHANGE: frozenset({"rate_per_minute", "deadband"}),
    Kind.QUALITY: frozenset({"quality_delay"}),
}
#: the settings each kind cannot do without
NEEDS: dict[Kind, tuple[str, ...]] = {
    **{kind: ("limit",) for kind in LIMIT_KINDS},
    Kind.STATE_EQUAL: ("alarm_value",),
    Kind.STATE_NOT_EQUAL: ("alarm_value",),
    Kind.DEVIATION: ("setpoint_point", "limit"),
    Kind.RATE_OF_CHANGE: ("rate_per_minute",),
    Kind.QUALITY: (),
}
KIND_VALUES = frozenset(kind.value for kind in Kind)
_RANK = {kind: rank for rank, kind in enumerate(LIMIT_KINDS)}


class AlarmClass(models.Model):
    """A class of alarms (critical, high, ... journal-only): their default priority, colour and acknowledgement.

    A definition copies the class's priority and acknowledgement setting when
    it leaves them blank; changing the class later does not change saved
    definitions. ``annunciated`` off means the class's alarms are recorded in
    the journal only: not shown on the console nor notified.
    """

    name = models.CharField(max_length=64, unique=True, validators=[POINT_NAME_VALIDATOR])
    description = models.CharField(max_length=255, blank=True)
    default_priority = models.PositiveSmallIntegerField(
        validators=PRIORITY_VALIDATORS, help_text="1 (most urgent) to 1000"
    )
    colour = models.CharField(max_length=7, default="#757575", validators=[COLOUR_VALIDATOR], help_text="#rrggbb")
    ack_required = models.BooleanField(default=True, help_text="its alarms must be acknowledged by default")
    annunciated = models.BooleanField(
        default=True, help_text="shown on the console and notified; off: recorded in the journal only"
    )

    class Meta:
        ordering = ["default_priority", "name"]
        verbose_name_plural = "alarm classes"

    def __str__(self) -> str:
        return self.name


class AlarmDefinition(models.Model):
    """One alarm condition on one point, with its priority, class, delays, message and handling.

    ``name`` identifies the alarm everywhere (process image, journal, import);
    left blank it becomes ``<point>.<kind>``. ``priority`` and ``ack_required``
    left blank take the class's defaults when saved. For the ``quality`` kind
    the on-delay is ``quality_delay``; ``suppression_point`` is a bool point
    that suppresses the alarm by design while it is true. ``out_of_service``
    is set by an engineer (who and when are recorded with it).
    """

    KINDS = [(kind.value, kind.value.replace("_", " ")) for kind in Kind]

    name = models.CharField(
        max_length=160,
        unique=True,
        blank=True,
        validators=[POINT_NAME_VALIDATOR],
        help_text="identifies the alarm; blank: <point>.<kind>",
    )
    point = models.ForeignKey(
        Point, on_delete=models.CASCADE, related_name="alarm_definitions", error_messages={"invalid": UNKNOWN_POINT}
    )
    kind = models.CharField(
        max_length=16,
        choices=KINDS,
        error_messages={
            "invalid_choice": "Unknown kind %(value)r; use " + ", ".join(kind.value for kind in Kind) + "."
        },
    )
    limit = models.FloatField(
        null=True, blank=True, validators=[_finite], help_text="high/low kinds: the limit; deviation: the band (±)"
    )
    deadband = models.FloatField(
        default=0.0,
        validators=[_not_negative],
        help_text="hysteresis: high clears below limit - deadband, low above limit + deadband",
    )
    on_delay = models.FloatField(
        default=0.0, validators=[_not_negative], help_text="seconds the condition must hold before the alarm is raised"
    )
    off_delay = models.FloatField(
        default=0.0, validators=[_not_negative], help_text="seconds the condition must be gone before it returns"
    )
    alarm_value = models.FloatField(
        null=True,
        blank=True,
        validators=[_finite],
        help_text="state kinds: the value (bool: 1 true, 0 false; multistate: the state number)",
    )
    setpoint_point = models.ForeignKey(
        Point,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deviation_alarms",
        error_messages={"invalid": UNKNOWN_POINT},
        help_text="deviation: the point holding the setpoint",
    )
    rate_per_minute = models.FloatField(
        null=True,
        blank=True,
        validators=[_finite],
        help_text="rate of change: the largest change per minute (either direction)",
    )
    quality_delay = models.FloatField(
        default=0.0,
        validators=[_not_negative],
        help_text="quality: seconds the quality must stay bad, comm_failure or stale",
    )
    priority = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=PRIORITY_VALIDATORS, help_text="1 (most urgent) to 1000; blank: the class's"
    )
    alarm_class = models.ForeignKey(
        AlarmClass, on_delete=models.PROTECT, related_name="definitions", verbose_name="class"
    )
    area = models.CharField(max_length=128, blank=True, db_index=True, help_text="area or equipment, e.g. AHU-1")
    message = models.CharField(
        max_length=255, blank=True, help_text="template with {point} {value} {unit} {limit}; blank: a default text"
    )
    ack_required = models.BooleanField(null=True, blank=True, help_text="blank: the class's setting")
    realarm_seconds = models.FloatField(
        default=0.0,
        validators=[_not_negative],
        help_text="notify again after this many seconds while active and unacknowledged; 0: never",
    )
    suppression_point = models.ForeignKey(
        Point,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="suppressed_alarms",
        error_messages={"invalid": UNKNOWN_POINT},
        help_text="a bool point: the alarm is suppressed by design while it is true",
    )
    enabled = models.BooleanField(default=True)
    out_of_service = models.BooleanField(default=False, help_text="taken out of service by an engineer")
    out_of_service_by = models.CharField(max_length=150, blank=True)
    out_of_service_at = models.DateTimeField(null=True, blank=True)

    #: the importer checks a whole file at once and turns the per-definition sibling queries off
    check_siblings = True
    #: set by the importer, which has just run ``full_clean`` on this definition (its references looked up in the
    #: tables it read, not one query each): the next save does not check it a second time
    checked = False

    class Meta:
        ordering = ["name"]
        permissions = [
            ("acknowledge_alarm", "Can acknowledge alarms"),
            ("shelve_alarm", "Can shelve and unshelve alarms"),
            ("set_out_of_service", "Can take alarms out of service and put them back"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.point_id}.{self.kind}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an invalid definition here too, not only in forms: every way in is checked."""
        if not self.checked:
            self.full_clean()
        self.checked = False
        super().save(*args, **kwargs)

    def set_out_of_service(self, out_of_service: bool, user: str) -> None:
        """An engineer takes the alarm out of service or puts it back; who and when are kept with the flag."""
        self.out_of_service = out_of_service
        self.out_of_service_by = user
        self.out_of_service_at = timezone.now()
        self.save()

    # ---- validation ---------------------------------------------------------------------------------------

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}

        def refuse(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        point = self._related("point")
        alarm_class = self._related("alarm_class")
        if alarm_class is not None:
            if self.priority is None:
                self.priority = alarm_class.default_priority
            if self.ack_required is None:
                self.ack_required = alarm_class.ack_required
        if self.kind not in KIND_VALUES:
            return  # the field's own check names the bad kind
        kind = Kind(self.kind)
        if not self.name and point is not None:
            self.name = f"{point.name}.{kind.value}"

        uses = USES[kind]
        for field in ("limit", "alarm_value", "rate_per_minute", "setpoint_point"):
            if field not in uses and getattr(self, f"{field}_id" if field == "setpoint_point" else field) is not None:
                refuse(field, f"{kind.value} alarms do not use {_label(field)}; leave it empty")
        for field in ("deadband", "quality_delay"):
            if field not in uses and getattr(self, field):
                refuse(field, f"{kind.value} alarms do not use {_label(field)}; leave it at 0")
        if kind is Kind.QUALITY and self.on_delay:
            refuse("on_delay", "quality alarms wait for quality_delay; leave on_delay at 0")
        for field in NEEDS[kind]:
            if getattr(self, f"{field}_id" if field == "setpoint_point" else field) is None:
                refuse(field, f"{kind.value} alarms need {_label(field)}")

        if point is not None:
            self._check_point(kind, point, refuse)
        if kind is Kind.DEVIATION and self.limit is not None and self.limit <= 0:
            refuse("limit", "the deviation band must be above 0")
        if kind is Kind.RATE_OF_CHANGE and self.rate_per_minute is not None and self.rate_per_minute <= 0:
            refuse("rate_per_minute", "the rate per minute must be above 0")
        suppression = self._related("suppression_point")
        if suppression is not None:
            if suppression.data_type != "bool":
                refuse("suppression_point", f"the suppression point must be a bool point; {suppression} is not")
            elif point is not None and suppression.pk == point.pk:
                refuse("suppression_point", "a point cannot suppress its own alarm")
        for problem in template_problems(self.message or ""):
            refuse("message", problem)

        if self.check_siblings and point is not None:
            default_name = f"{point.name}.{kind.value}"
            if (
                self.name == default_name
                and AlarmDefinition.objects.filter(name=self.name).exclude(pk=self.pk).exists()
            ):
                refuse(
                    "name", f"{point} already has a {kind.value} alarm named {self.name}; give this one its own name"
                )
            if self.enabled and kind in LIMIT_KINDS and self.limit is not None:
                siblings = AlarmDefinition.objects.filter(point=point, kind__in=LIMIT_KINDS, enabled=True)
                for problem in limit_order_problems(self, siblings.exclude(pk=self.pk).exclude(name=self.name)):
                    refuse("limit", problem)
        if errors:
            raise ValidationError(errors)

    def _check_point(self, kind: Kind, point: Point, refuse) -> None:
        if kind in NUMERIC_KINDS and point.data_type == "bool":
            refuse(
                "kind",
                f"{point} is a bool point: a {kind.value} alarm (a limit on a number) cannot apply; "
                "use state_equal or state_not_equal",
            )
        if kind in STATE_KINDS:
            value_kind = point.value_kind
            if value_kind == "real":
                refuse(
                    "kind",
                    f"{kind.value} alarms need a bool or multistate (integer) point; {point} is a real value: "
                    "use a limit alarm",
                )
            elif self.alarm_value is not None:
                if value_kind == "bool" and self.alarm_value not in (0, 1):
                    refuse("alarm_value", f"{point} is a bool point: the alarm value is 1 (true) or 0 (false)")
                elif value_kind == "integer" and self.alarm_value != int(self.alarm_value):
                    refuse("alarm_value", f"{point} holds whole numbers: the alarm value must be one")
        if kind is Kind.DEVIATION:
            setpoint = self._related("setpoint_point")
            if setpoint is not None:
                if setpoint.pk == point.pk:
                    refuse("setpoint_point", "the setpoint point must be another point")
                elif setpoint.data_type == "bool":
                    refuse("setpoint_point", f"the setpoint point {setpoint} is a bool point; it must hold a number")

    def _related(self, field: str) -> Any:
        """The related object if its id is set and it exists, else None (the field's own check reports it)."""
        if getattr(self, f"{field}_id") is None:
            return None
        try:
            return getattr(self, field)
        except models.ObjectDoesNotExist:
            return None

    # ---- what the engine needs ------------------------------------------------------------------------

    def condition(self) -> Condition:
        """The condition to evaluate (:func:`bms.alarms.conditions.evaluate`)."""
        return Condition(Kind(self.kind), self.limit, self.deadband, self.alarm_value, self.rate_per_minute)

    def alarm_config(self, **site: Any) -> AlarmConfig:
        """The timing behaviour (:class:`bms.alarms.states.AlarmConfig`); ``site``: shelving and chatter settings."""
        ack_required = self.ack_required if self.ack_required is not None else self.alarm_class.ack_required
        return AlarmConfig(
            ack_required=ack_required,
            on_delay=self.quality_delay if self.kind == Kind.QUALITY else self.on_delay,
            off_delay=self.off_delay,
            realarm_seconds=self.realarm_seconds,
            **site,
        )

    def spec(self, **site: Any) -> AlarmSpec:
        """The definition as the engine runs it (select the point, class and related points with it)."""
        alarm_class = self.alarm_class
        return AlarmSpec(
            name=self.name,
            point=self.point.name,
            condition=self.condition(),
            config=self.alarm_config(**site),
            priority=self.priority if self.priority is not None else alarm_class.default_priority,
            alarm_class=alarm_class.name,
            colour=alarm_class.colour,
            annunciated=alarm_class.annunciated,
            area=self.area,
            template=self.message,
            unit=self.point.unit,
            setpoint_point=self.setpoint_point.name if self.setpoint_point_id else None,
            suppression_point=self.suppression_point.name if self.suppression_point_id else None,
            out_of_service=self.out_of_service,
            out_of_service_by=self.out_of_service_by,
        )

    def render_message(self, value: Any) -> str:
        """The alarm text for ``value``: the template (or the kind's default) filled in."""
        return self.spec().message(value)


def _label(field: str) -> str:
    return {
        "limit": "a limit",
        "alarm_value": "an alarm value",
        "rate_per_minute": "a rate per minute",
        "setpoint_point": "a setpoint point",
        "deadband": "a deadband",
        "quality_delay": "a quality delay",
    }[field]


def limit_order_problems(
    mine: AlarmDefinition, others: Iterable[AlarmDefinition], where: dict[str, str] | None = None
) -> list[str]:
    """Where ``mine``'s limit breaks low_low ≤ low < high ≤ high_high against the other limits of its point.

    ``where``: by definition name, where the other one is (a file's line), added to its name in the message.
    """
    problems = []
    for other in others:
        if other.limit is None or other.kind not in _RANK or other.kind == mine.kind:
            continue
        lower, upper = (mine, other) if _RANK[Kind(mine.kind)] < _RANK[Kind(other.kind)] else (other, mine)
        strict = lower.kind in LOW_KINDS and upper.kind not in LOW_KINDS  # a low against a high
        if lower.limit < upper.limit or (lower.limit == upper.limit and not strict):
            continue
        relation = "at" if lower.limit == upper.limit else ("above" if mine is lower else "below")
        named = f"{other.name}, {where[other.name]}" if where and other.name in where else other.name
        problems.append(
            f"the {_kind_name(mine.kind)} limit {mine.limit:g} is {relation} the {_kind_name(other.kind)} "
            f"limit {other.limit:g} ({named}); keep low_low ≤ low < high ≤ high_high"
        )
    return problems


def _kind_name(kind: str) -> str:
    return kind.replace("_", "-")


class AlarmJournal(HistoryRow):
    """One alarm transition (raised, acknowledged, returned, shelved, ...), append-only and replicated.

    Rows carry names, not foreign keys (alarm, point, class, user), so a row
    stays meaningful after its definition is changed or deleted and can be
    stored on the partner before the configuration it refers to. ``time`` is
    the source time of the transition; ``state`` the alarm's display state
    after it.
    """

    TRANSITIONS = [(kind.value, kind.value.replace("_", " ")) for kind in TransitionKind]
    STATES = [(state.value, state.value.replace("_", " ")) for state in DISPLAY_STATES]

    time = models.DateTimeField(db_index=True, help_text="when it happened, by the source's time")
    alarm = models.CharField(max_length=160, db_index=True, help_text="the alarm definition's name")
    point_name = models.CharField(max_length=128, db_index=True)
    transition = models.CharField(max_length=20, choices=TRANSITIONS, db_index=True)
    state = models.CharField(max_length=20, choices=STATES, help_text="the alarm's state after the transition")
    value = models.JSONField(null=True, blank=True, help_text="the point's value at the transition")
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    alarm_class = models.CharField(max_length=64, blank=True)
    area = models.CharField(max_length=128, blank=True)
    message = models.TextField(blank=True)
    username = models.CharField(max_length=150, blank=True)
    comment = models.TextField(blank=True)
    count = models.PositiveIntegerField(default=0, help_text="chattering: activations and returns summarised")
    alarm_seq = models.PositiveBigIntegerField(
        default=0, help_text="the transition's number in its alarm's life (0: not numbered); one row per number"
    )
    recovered = models.BooleanField(
        default=False, help_text="rebuilt from the replicated state by a node that took over (the original was lost)"
    )
    recorded_at = models.DateTimeField(default=timezone.now, help_text="when the row was written")

    class Meta(HistoryRow.Meta):
        ordering = ["-time", "-id"]
        constraints = [
            *HistoryRow.Meta.constraints,
            # The alarm's state (with its transition counter) and its journal rows reach the partner on two
            # streams: after a takeover both nodes may write the same transition. One row per number, whoever
            # writes or replicates it first (ADR 0014).
            models.UniqueConstraint(
                fields=["alarm", "alarm_seq"], condition=models.Q(alarm_seq__gt=0), name="alarms_journal_one_per_seq"
            ),
        ]
        verbose_name = "alarm journal entry"
        verbose_name_plural = "alarm journal"

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.alarm} {self.transition} -> {self.state}"

    @classmethod
    def settle_replicated(cls, records: list[dict]) -> None:
        """One row per ``(alarm, alarm_seq)`` on both nodes: the original beats a ``recovered`` copy, then the
        lower ``(origin, origin_seq)`` wins. A stored row that loses to an incoming one is deleted here (the
        incoming one is then inserted); an incoming row that loses is ignored by the insert."""
        incoming = {}
        for record in records:
            if record.get("alarm_seq"):
                key = (record["alarm"], int(record["alarm_seq"]))
                if key not in incoming or _journal_rank(record) < _journal_rank(incoming[key]):
                    incoming[key] = record
        if not incoming:
            return
        wanted = models.Q()
        for alarm, number in incoming:
            wanted |= models.Q(alarm=alarm, alarm_seq=number)
        stored = cls.objects.filter(wanted).values("pk", "alarm", "alarm_seq", "recovered", "origin", "origin_seq")
        losers = [
            row["pk"]
            for row in stored
            if _journal_rank(incoming[(row["alarm"], row["alarm_seq"])]) < _journal_rank(row)
        ]
        if losers:
            cls.objects.filter(pk__in=losers).delete()

    @classmethod
    def for_transition(cls, transition: Transition, spec: AlarmSpec | AlarmDefinition) -> AlarmJournal:
        """The (unsaved) journal row of ``transition`` of the alarm ``spec`` (or its definition) describes."""
        if isinstance(spec, AlarmDefinition):
            spec = spec.spec()
        return cls(
            time=transition.time,
            alarm=transition.alarm,
            point_name=spec.point,
            transition=transition.kind.value,
            state=transition.state,
            value=transition.value,
            priority=spec.priority,
            alarm_class=spec.alarm_class,
            area=spec.area,
            message=spec.message(transition.value),
            username=transition.user,
            comment=transition.comment,
            count=transition.count,
            alarm_seq=transition.number,
        )


def _journal_rank(row: dict) -> tuple[bool, str, int]:
    """Which of two journal rows of one transition stays (the smaller): an original, then the first stamp."""
    return bool(row.get("recovered")), str(row["origin"]), int(row["origin_seq"])
