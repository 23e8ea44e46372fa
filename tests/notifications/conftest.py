"""Fixtures of the notification tests: real receivers on loopback, Django's SMTP backend aimed at the sink,
the default alarm classes, a small configuration, and journal rows written the way the engine writes them
(saved, then :func:`bms.notifications.outbox.enqueue` in the same transaction)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.db import transaction

from bms.alarms.models import AlarmJournal
from bms.history.models import next_stamps
from bms.notifications.models import NotificationRule, Recipient, RecipientGroup
from bms.notifications.outbox import enqueue
from tests.notifications.receivers import SmtpSink, WebhookReceiver

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
_default_classes = importlib.import_module("bms.alarms.migrations.0002_default_alarm_classes")

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
SECRET = "webhook-secret-for-tests"


@pytest.fixture(autouse=True)
def fresh_reconciler() -> None:
    """Each test starts with a drain process that has reconciled nothing yet (its memory is per process)."""
    from bms.notifications.drain import _reconciler

    _reconciler.reset()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    hook.start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def mail_to_sink(settings, smtp_sink: SmtpSink) -> SmtpSink:
    """Django's real SMTP backend, talking to the sink (the test environment's locmem backend is replaced)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_sink.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.BMS_NOTIFY_TIMEOUT = 5.0
    settings.BMS_NOTIFY_RETRY_BASE = 15.0
    settings.BMS_NOTIFY_RETRY_CAP = 900.0
    return smtp_sink


@pytest.fixture
def classes(db) -> None:
    """The classes the data migration creates (a transactional test elsewhere may have flushed them)."""
    _default_classes.create_classes(apps, None)


@dataclass
class Site:
    """A configuration for the tests: on-duty group (email + webhook), an escalation group, one rule."""

    duty: RecipientGroup
    managers: RecipientGroup
    ops_mail: Recipient
    ops_hook: Recipient
    manager_mail: Recipient
    rule: NotificationRule


@pytest.fixture
def site(classes, receiver: WebhookReceiver) -> Site:
    duty = RecipientGroup.objects.create(name="on-duty")
    managers = RecipientGroup.objects.create(name="managers")
    ops_mail = Recipient.objects.create(name="ops-mail", group=duty, channel="email", address="ops@example.test")
    ops_hook = Recipient.objects.create(
        name="ops-hook", group=duty, channel="webhook", address=receiver.url("/hook"), secret=SECRET
    )
    manager_mail = Recipient.objects.create(
        name="manager-mail", group=managers, channel="email", address="manager@example.test"
    )
    rule = NotificationRule.objects.create(
        name="all-alarms",
        transitions="raised,realarm,returned",
        group=duty,
        escalation_group=managers,
        escalate_after_minutes=10,
    )
    return Site(duty, managers, ops_mail, ops_hook, manager_mail, rule)


def journal_row(
    alarm: str = "zone1_temp.high",
    seq: int = 1,
    transition: str = "raised",
    state: str = "active_unacked",
    *,
    time: datetime = T0,
    klass: str = "high",
    priority: int | None = 300,
    area: str = "AHU-1",
    user: str = "",
) -> AlarmJournal:
    """An unsaved journal row as :meth:`AlarmJournal.for_transition` would make it."""
    return AlarmJournal(
        time=time,
        alarm=alarm,
        point_name=alarm.split(".")[0],
        transition=transition,
        state=state,
        value=27.5,
        priority=priority,
        alarm_class=klass,
        area=area,
        message=f"{alarm} {transition}",
        username=user,
        alarm_seq=seq,
    )


def record(*rows: AlarmJournal) -> int:
    """Write journal rows and their outbox rows in one transaction, as the engine does; the outbox count."""
    with transaction.atomic():
        origin, epoch, seqs = next_stamps(len(rows))
        for row, seq in zip(rows, seqs, strict=True):
            row.origin, row.epoch, row.origin_seq = origin, epoch, seq
        AlarmJournal.objects.bulk_create(rows)
        return enqueue(list(rows))


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)
