"""The hook the alarm engine calls: the outbox rows of journal rows, written in the journal's own transaction.

:func:`enqueue` is cheap for a flood: the rules (with their classes and
recipients) are loaded once per call, the alarm classes of the rows in one
query, the keys already present in one query per 5,000, the history stamps
reserved as one block (:func:`bms.history.models.next_stamps`: one
``UPDATE … RETURNING`` on the origin counter, which keeps sequence order
equal to commit order, ADR 0006) and the rows
inserted in batches. Rows of classes that are not annunciated, and rows no
rule asks for, create nothing.

Keys: one message per journal row, stage and recipient. The journal row is
identified by ``(alarm, alarm_seq)`` (unique per alarm, the same on both
nodes, ADR 0014); an unnumbered row (``alarm_seq`` 0) by its own stamp. A
recipient reached by several rules gets one message per journal row (the
first rule by name is recorded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from bms.alarms.states import State, TransitionKind
from bms.history.bulk import copy_new_rows
from bms.history.models import next_stamps

if TYPE_CHECKING:
    from bms.alarms.models import AlarmJournal
    from bms.notifications.models import Recipient

KEY_CHUNK = 5000
INSERT_BATCH = 1000


def notification_key(identity: str, stage: str, recipient: str) -> str:
    """The key of one message: SHA-256 over the journal row's identity, the stage and the recipient's name."""
    text = "\x1f".join(("bms-notification-v1", identity, stage, recipient))
    return hashlib.sha256(text.encode()).hexdigest()


def journal_identity(row: AlarmJournal) -> str:
    """What identifies a journal row on both nodes: ``alarm#alarm_seq``, or its stamp if it is not numbered."""
    if row.alarm_seq:
        return f"{row.alarm}#{row.alarm_seq}"
    return f"{row.alarm}@{row.origin}/{row.origin_seq}"


def payload_of(row: AlarmJournal, stage: str, rule: str, key: str, escalate_after: int = 0) -> dict[str, Any]:
    """The facts every channel sends (the webhook's JSON body), from the journal row alone."""
    payload = {
        "idempotency_key": key,
        "stage": stage,
        "rule": rule,
        "alarm": row.alarm,
        "alarm_seq": row.alarm_seq,
        "transition": row.transition,
        "state": row.state,
        "time": row.time.isoformat(),
        "point": row.point_name,
        "value": row.value,
        "priority": row.priority,
        "class": row.alarm_class,
        "area": row.area,
        "message": row.message,
        "user": row.username,
        "comment": row.comment,
        "count": row.count,
    }
    if stage != "notify":
        payload["unacknowledged_minutes"] = escalate_after
    return payload


@dataclass(slots=True)
class _Rule:
    """One enabled rule, compiled for matching many rows."""

    name: str
    classes: frozenset[str]
    max_priority: int | None
    patterns: Any  # the model's area matcher
    transitions: frozenset[str]
    recipients: list[Recipient]
    escalation: list[Recipient]
    escalate_after: int

    def matches(self, row: AlarmJournal) -> bool:
        if self.classes and row.alarm_class not in self.classes:
            return False
        if self.max_priority is not None and (row.priority is None or row.priority > self.max_priority):
            return False
        return self.patterns(row.area)


def _rules() -> list[_Rule]:
    from bms.notifications.models import NotificationRule, split_list

    rules = (
        NotificationRule.objects.filter(enabled=True)
        .select_related("group", "escalation_group")
        .prefetch_related("alarm_classes", "group__recipients", "escalation_group__recipients")
        .order_by("name")
    )
    compiled = []
    for rule in rules:
        escalation = []
        if rule.escalation_group is not None and rule.escalate_after_minutes > 0:
            escalation = [r for r in rule.escalation_group.recipients.all() if r.enabled]
        compiled.append(
            _Rule(
                name=rule.name,
                classes=frozenset(c.name for c in rule.alarm_classes.all()),
                max_priority=rule.max_priority,
                patterns=rule.area_matches,
                transitions=frozenset(split_list(rule.transitions)),
                recipients=[r for r in rule.group.recipients.all() if r.enabled],
                escalation=escalation,
                escalate_after=rule.escalate_after_minutes,
            )
        )
    return compiled


def _silent_classes(rows: Iterable[AlarmJournal]) -> set[str]:
    """The classes among ``rows`` that are not annunciated (journal only). A class not found notifies."""
    from bms.alarms.models import AlarmClass

    names = {row.alarm_class for row in rows}
    return set(AlarmClass.objects.filter(name__in=names, annunciated=False).values_list("name", flat=True))


def _defaults() -> dict[str, Any]:
    """Every column of an outbox row (but the primary key) with its model default."""
    from bms.notifications.models import Notification

    return {field.attname: field.get_default() for field in Notification._meta.concrete_fields if not field.primary_key}


def build(rows: list[AlarmJournal], now: datetime | None = None) -> list[dict[str, Any]]:
    """The outbox rows for ``rows`` as column values (unstamped), one per journal row, stage and recipient."""
    from bms.notifications.models import Notification

    rules = _rules()
    if not rules or not rows:
        return []
    silent = _silent_classes(rows)
    now = now or timezone.now()
    defaults = _defaults()
    out: dict[str, dict[str, Any]] = {}

    def add(row: AlarmJournal, stage: str, rule: _Rule, recipient: Recipient, due: datetime) -> None:
        key = notification_key(journal_identity(row), stage, recipient.name)
        if key in out:
            return
        out[key] = {
            **defaults,
            "key": key,
            "stage": stage,
            "rule": rule.name,
            "recipient": recipient.name,
            "channel": recipient.channel,
            "address": recipient.address,
            "alarm": row.alarm,
            "alarm_seq": row.alarm_seq,
            "transition": row.transition,
            "time": row.time,
            "payload": payload_of(row, stage, rule.name, key, rule.escalate_after),
            "due_at": due,
            "next_try": due,
            "created_at": now,
        }

    raised = TransitionKind.RAISED.value
    unacked = State.ACTIVE_UNACKED.value
    for row in rows:
        if row.alarm_class in silent:
            continue
        for rule in rules:
            if not rule.matches(row):
                continue
            if row.transition in rule.transitions:
                for recipient in rule.recipients:
                    if recipient.on_duty(row.time):
                        add(row, Notification.NOTIFY, rule, recipient, row.time)
            if rule.escalation and row.transition == raised and row.state == unacked and row.alarm_seq:
                due = row.time + timedelta(minutes=rule.escalate_after)
                for recipient in rule.escalation:
                    if recipient.on_duty(due):
                        add(row, Notification.ESCALATION, rule, recipient, due)
    return list(out.values())


def enqueue(rows: list[AlarmJournal]) -> int:
    """Create the outbox rows of every rule matching ``rows``; return how many were created.

    Call inside the transaction that saved ``rows`` (saved journal rows, with
    their ``alarm_seq``): the outbox rows commit or roll back with them. A
    key already present (the partner wrote or replicated the same journal
    row first) is left alone.
    """
    candidates = build(list(rows))
    if not candidates:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _stamp(candidates)
            return _copy_in(candidates)
        return _bulk_create(candidates)


def _stamp(rows: list[dict[str, Any]]) -> None:
    """One block of consecutive history stamps for ``rows`` (one statement; sequence order stays commit order)."""
    origin, epoch, seqs = next_stamps(len(rows))
    for row, seq in zip(rows, seqs, strict=True):
        row["origin"], row["epoch"], row["origin_seq"] = origin, epoch, seq


def _bulk_create(rows: list[dict[str, Any]]) -> int:
    """Other databases (SQLite, embedded): skip the keys present, then ``bulk_create``; rows inserted."""
    from bms.notifications.models import Notification

    present: set[str] = set()
    keys = [row["key"] for row in rows]
    for start in range(0, len(keys), KEY_CHUNK):
        present.update(
            Notification.objects.filter(key__in=keys[start : start + KEY_CHUNK]).values_list("key", flat=True)
        )
    fresh = [row for row in rows if row["key"] not in present]
    if not fresh:
        return 0
    _stamp(fresh)
    Notification.objects.bulk_create(
        [Notification(**row) for row in fresh], batch_size=INSERT_BATCH, ignore_conflicts=True
    )
    return len(fresh)


def _copy_in(rows: list[dict[str, Any]]) -> int:
    """PostgreSQL: ``COPY`` and one ``INSERT … ON CONFLICT DO NOTHING`` (:mod:`bms.history.bulk`); rows inserted.

    A key already present (the partner's version of the same journal row
    arrived first) is skipped, never an error that would fail the engine's
    transaction.
    """
    from bms.notifications.models import Notification

    return len(copy_new_rows(Notification, rows, "key"))
