"""Notification configuration (recipient groups, recipients with duty schedules, rules) and the outbox.

Configuration: a :class:`NotificationRule` picks journal rows by alarm class,
priority, area and transition and names a :class:`RecipientGroup` to notify,
and optionally a second group to escalate to when the alarm is still
unacknowledged some minutes after it was raised. A :class:`Recipient` is an
email address or a webhook URL with a weekly duty window.

The outbox: one :class:`Notification` per message to send, written by
:func:`bms.notifications.outbox.enqueue` in the transaction that writes the
journal row that causes it, replicated to the partner like all history, and
drained by the active node only (:mod:`bms.notifications.drain`). A
notification changes (attempts, next try, sent): every change takes a new
history stamp, so the partner holds its latest version, and its natural key
(:attr:`Notification.key`, derived from the journal row and the recipient)
is the same on both nodes. docs/notifications.md explains the whole.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone

from bms.alarms.models import PRIORITY_VALIDATORS, AlarmClass
from bms.alarms.states import TransitionKind
from bms.history.models import HistoryRow
from bms.notifications import conf

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_WEEKDAYS = ",".join(WEEKDAYS)
TRANSITION_VALUES = tuple(kind.value for kind in TransitionKind)
DEFAULT_TRANSITIONS = "raised,realarm"


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (the comma lists of rules and schedules)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _validate_weekdays(value: str) -> None:
    days = [day.lower() for day in split_list(value)]
    unknown = sorted(set(days) - set(WEEKDAYS))
    if unknown:
        raise ValidationError(f"Unknown weekday(s) {', '.join(unknown)}; use {ALL_WEEKDAYS}.")
    if not days:
        raise ValidationError(f"Name at least one weekday ({ALL_WEEKDAYS}).")


def _validate_transitions(value: str) -> None:
    kinds = split_list(value)
    unknown = sorted(set(kinds) - set(TRANSITION_VALUES))
    if unknown:
        raise ValidationError(f"Unknown transition(s) {', '.join(unknown)}; use {', '.join(TRANSITION_VALUES)}.")


class RecipientGroup(models.Model):
    """A named set of recipients that rules notify (on duty, escalation, ...)."""

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Recipient(models.Model):
    """An email address or a webhook URL in a group, with the weekly window in which it is on duty.

    The window is in the site's time zone (``settings.TIME_ZONE``): on the
    listed weekdays from ``start_time`` (inclusive) to ``end_time``
    (exclusive); an end at or before the start runs past midnight into the
    next day (the weekday is the day the window starts); no times: all day.
    ``name`` identifies the recipient in notification keys, so renaming one
    is seen as a new recipient. ``secret`` signs webhook bodies (HMAC-SHA256).
    """

    EMAIL = "email"
    WEBHOOK = "webhook"
    CHANNELS = [(EMAIL, "email"), (WEBHOOK, "webhook")]

    name = models.CharField(max_length=64, unique=True, help_text="identifies the recipient in notification keys")
    group = models.ForeignKey(RecipientGroup, on_delete=models.CASCADE, related_name="recipients")
    channel = models.CharField(max_length=8, choices=CHANNELS, default=EMAIL)
    address = models.CharField(max_length=300, help_text="email: the address; webhook: the http(s) URL to POST to")
    secret = models.CharField(
        max_length=200, blank=True, help_text="webhook: the HMAC-SHA256 key that signs each body (required)"
    )
    weekdays = models.CharField(
        max_length=40, default=ALL_WEEKDAYS, validators=[_validate_weekdays], help_text=f"on duty on: {ALL_WEEKDAYS}"
    )
    start_time = models.TimeField(null=True, blank=True, help_text="on duty from (site time); blank: all day")
    end_time = models.TimeField(null=True, blank=True, help_text="until (exclusive); at or before the start: overnight")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["group__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel} {self.address})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an invalid recipient here too, not only in forms."""
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.channel == self.EMAIL:
            try:
                validate_email(self.address)
            except ValidationError:
                errors["address"] = "Give an email address."
        elif self.channel == self.WEBHOOK:
            try:
                URLValidator(schemes=["http", "https"])(self.address)
            except ValidationError:
                errors["address"] = "Give an http:// or https:// URL."
            if not self.secret:
                errors["secret"] = "A webhook needs a secret: receivers check the signature with it."
        if (self.start_time is None) != (self.end_time is None):
            errors["end_time"] = "Give both the start and the end of the duty window, or neither (all day)."
        if errors:
            raise ValidationError(errors)

    def on_duty(self, when: datetime) -> bool:
        """Is the recipient on duty at ``when`` (aware)? See :func:`on_duty`."""
        return on_duty(self.weekdays, self.start_time, self.end_time, when)


def site_zone() -> ZoneInfo:
    """The site's time zone (``settings.TIME_ZONE``), in which duty windows are read."""
    return ZoneInfo(settings.TIME_ZONE)


def on_duty(weekdays: str, start: time | None, end: time | None, when: datetime, zone: ZoneInfo | None = None) -> bool:
    """True if ``when`` (aware) falls in the weekly window: ``weekdays`` from ``start`` to ``end``, site time."""
    local = when.astimezone(zone or site_zone())
    days = {WEEKDAYS.index(day.lower()) for day in split_list(weekdays) if day.lower() in WEEKDAYS}
    if start is None or end is None:
        return local.weekday() in days
    clock = local.time().replace(tzinfo=None)
    if start < end:
        return local.weekday() in days and start <= clock < end
    # overnight: from start on a listed day to end on the next day
    if clock >= start:
        return local.weekday() in days
    return clock < end and (local.weekday() - 1) % 7 in days


class NotificationRule(models.Model):
    """Which journal rows notify whom: by alarm class, priority, area and transition, with optional escalation.

    A journal row matches when its class is one of ``alarm_classes`` (none:
    any class), its priority is at most ``max_priority`` (blank: any), its
    area matches one of ``areas`` (shell patterns such as ``AHU-*``, case
    sensitive; blank: any area) and its transition is one of
    ``transitions``. Journal rows of classes that are not annunciated never
    notify. When ``escalation_group`` is set and ``escalate_after_minutes``
    is above 0, a ``raised`` row of an alarm that needs acknowledgement also
    schedules an escalation to that group, sent if the alarm is still
    unacknowledged that many minutes after it was raised.
    """

    name = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    alarm_classes = models.ManyToManyField(
        AlarmClass, blank=True, related_name="notification_rules", help_text="none: every (annunciated) class"
    )
    max_priority = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=PRIORITY_VALIDATORS,
        help_text="alarms this urgent or more (priority number at most this); blank: any",
    )
    areas = models.CharField(
        max_length=255, blank=True, help_text="comma-separated areas or patterns (AHU-*, Floor?); blank: any"
    )
    transitions = models.CharField(
        max_length=255,
        default=DEFAULT_TRANSITIONS,
        blank=True,
        validators=[_validate_transitions],
        help_text="comma-separated transitions: raised, realarm, returned, acknowledged, shelved, ...",
    )
    group = models.ForeignKey(RecipientGroup, on_delete=models.PROTECT, related_name="rules")
    escalation_group = models.ForeignKey(
        RecipientGroup,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalating_rules",
        help_text="notified when the alarm is still unacknowledged after the minutes below",
    )
    escalate_after_minutes = models.PositiveIntegerField(default=0, help_text="0: no escalation")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuse an invalid rule here too, not only in forms."""
        self.full_clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.escalate_after_minutes and self.escalation_group_id is None:
            raise ValidationError({"escalation_group": "Name the group to escalate to, or set the minutes to 0."})

    def area_matches(self, area: str) -> bool:
        patterns = split_list(self.areas)
        return not patterns or any(fnmatch.fnmatchcase(area or "", pattern) for pattern in patterns)


class Notification(HistoryRow):
    """One message to one recipient about one journal row (or its escalation): the replicated outbox row.

    ``key`` is derived from the journal row's identity (alarm name and
    ``alarm_seq``), the stage (notify or escalation) and the recipient's
    name, so both nodes derive the same key for the same message; it is the
    webhook's ``Idempotency-Key`` and the email's Message-ID. ``status``
    moves pending -> sent | failed (given up) | cancelled (an escalation
    whose alarm was acknowledged in time). ``attempts``, ``next_try`` and
    ``last_error`` record retries. Every change takes a new stamp (natural
    key ``key``), and in the merge a final status beats progress, ``sent``
    beating all (:meth:`merge_rank`). ``lease_until``/``lease_owner`` are
    a node-local claim while a sender works on the row; they are written
    without a stamp and cleared by the stamped change that follows.
    """

    NATURAL_KEY = ("key",)
    MERGE_FIELDS = ("status",)

    NOTIFY = "notify"
    ESCALATION = "escalation"
    STAGES = [(NOTIFY, "notify"), (ESCALATION, "escalation")]

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STATUSES = [(s, s) for s in (PENDING, SENT, FAILED, CANCELLED)]
    FINAL = (SENT, FAILED, CANCELLED)

    key = models.CharField(max_length=64, unique=True, help_text="Idempotency-Key / Message-ID: same on both nodes")
    stage = models.CharField(max_length=12, choices=STAGES, default=NOTIFY)
    rule = models.CharField(max_length=64, help_text="the rule's name")
    recipient = models.CharField(max_length=64, help_text="the recipient's name")
    channel = models.CharField(max_length=8, choices=Recipient.CHANNELS)
    address = models.CharField(max_length=300)
    alarm = models.CharField(max_length=160, db_index=True, help_text="the journal row's alarm")
    alarm_seq = models.PositiveBigIntegerField(default=0, help_text="the journal row's alarm_seq")
    transition = models.CharField(max_length=20)
    time = models.DateTimeField(help_text="the transition's time")
    payload = models.JSONField(default=dict, help_text="what is sent: the webhook's JSON body, the email's facts")
    status = models.CharField(max_length=12, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField(help_text="when it fell due: the transition's time, or the escalation's")
    next_try = models.DateTimeField(help_text="not sent before this time (the due time, then each retry's)")
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.CharField(max_length=64, blank=True, help_text="the node that sent it (or gave it up)")
    created_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)

    class Meta(HistoryRow.Meta):
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["status", "next_try"], name="notifications_due")]

    def __str__(self) -> str:
        return f"{self.alarm}#{self.alarm_seq} {self.stage} -> {self.recipient} ({self.status})"

    @classmethod
    def merge_rank(cls, record: dict) -> int:
        """How much a version knows (higher wins the merge, before epoch and seq).

        3: sent (a receiver has it: no later version may make it pending
        again); 2: given up or cancelled; 0: pending (progress: attempts and
        next try, ordered by epoch and seq).
        """
        status = record.get("status")
        if status == cls.SENT:
            return 3
        if status in cls.FINAL:
            return 2
        return 0

    @property
    def message_id(self) -> str:
        """The email's Message-ID (angle brackets included)."""
        return f"<{self.key}@{conf.message_id_domain()}>"
