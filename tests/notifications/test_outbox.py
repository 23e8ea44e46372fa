"""The hook: which journal rows make which outbox rows, with what keys and stamps, cheaply for a flood."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from bms.alarms.models import AlarmClass, AlarmJournal
from bms.history.models import OriginCounter, next_stamps
from bms.notifications.models import Notification, NotificationRule, Recipient, RecipientGroup
from bms.notifications.outbox import enqueue, journal_identity, notification_key
from tests.notifications.conftest import T0, at, journal_row, record

pytestmark = pytest.mark.django_db


def test_a_raise_makes_one_row_per_duty_recipient_and_one_escalation(site):
    assert record(journal_row()) == 3
    rows = {(n.stage, n.recipient): n for n in Notification.objects.all()}
    assert set(rows) == {("notify", "ops-mail"), ("notify", "ops-hook"), ("escalation", "manager-mail")}
    escalation = rows[("escalation", "manager-mail")]
    assert escalation.next_try == escalation.due_at == at(minutes=10)
    assert rows[("notify", "ops-mail")].next_try == T0
    for notification in rows.values():
        assert notification.key == notification_key("zone1_temp.high#1", notification.stage, notification.recipient)
        assert notification.payload["idempotency_key"] == notification.key
        assert notification.status == "pending" and notification.origin == "main" and notification.origin_seq > 0
    assert rows[("notify", "ops-hook")].payload["message"] == "zone1_temp.high raised"


def test_keys_depend_only_on_the_journal_rows_identity_stage_and_recipient():
    row = journal_row(seq=7)
    assert journal_identity(row) == "zone1_temp.high#7"
    key = notification_key(journal_identity(row), "notify", "ops-mail")
    assert key == notification_key("zone1_temp.high#7", "notify", "ops-mail")  # the partner derives the same
    assert len({key, notification_key("zone1_temp.high#8", "notify", "ops-mail")}) == 2
    assert key != notification_key("zone1_temp.high#7", "escalation", "ops-mail")
    assert key != notification_key("zone1_temp.high#7", "notify", "ops-hook")
    unnumbered = journal_row(seq=0)
    unnumbered.origin, unnumbered.origin_seq = "main", 42
    assert journal_identity(unnumbered) == "zone1_temp.high@main/42"


def test_rows_no_rule_asks_for_create_nothing(site):
    assert record(journal_row(transition="acknowledged", state="active_acked", user="op")) == 0
    assert record(journal_row(seq=2, transition="shelved", state="shelved")) == 0
    assert not Notification.objects.exists()


def test_non_annunciated_classes_never_notify(site):
    assert AlarmClass.objects.get(name="journal-only").annunciated is False
    assert record(journal_row(klass="journal-only")) == 0
    AlarmClass.objects.filter(name="low").update(annunciated=False)
    assert record(journal_row(seq=2, klass="low")) == 0
    assert record(journal_row(seq=3, klass="high")) == 3


def test_rules_filter_by_class_priority_and_area(site):
    site.rule.enabled = False
    site.rule.save()
    critical = NotificationRule.objects.create(name="critical-ahu", group=site.duty, max_priority=200, areas="AHU-*")
    critical.alarm_classes.add(AlarmClass.objects.get(name="critical"))

    assert record(journal_row(seq=1, klass="high", priority=100)) == 0  # wrong class
    assert record(journal_row(seq=2, klass="critical", priority=300)) == 0  # not urgent enough
    assert record(journal_row(seq=3, klass="critical", priority=None)) == 0  # no priority: not "at most 200"
    assert record(journal_row(seq=4, klass="critical", priority=100, area="Boiler")) == 0  # wrong area
    assert record(journal_row(seq=5, klass="critical", priority=100, area="AHU-2")) == 2
    assert set(Notification.objects.values_list("alarm_seq", flat=True)) == {5}


def test_schedules_pick_the_recipients_on_duty_at_the_transitions_time(site, settings):
    settings.TIME_ZONE = "Europe/Paris"  # UTC+1 in winter
    site.ops_mail.weekdays, site.ops_mail.start_time, site.ops_mail.end_time = "mon,tue,wed,thu,fri", "08:00", "17:00"
    site.ops_mail.save()
    site.ops_hook.weekdays, site.ops_hook.start_time, site.ops_hook.end_time = "mon,tue,wed,thu,fri", "17:00", "08:00"
    site.ops_hook.save()
    monday_day = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)  # 16:59 in Paris
    monday_evening = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # 17:00 in Paris
    saturday_early = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)  # 06:00 Saturday: Friday's night shift

    record(journal_row(seq=1, transition="returned", state="rtn_unacked", time=monday_day))
    record(journal_row(seq=2, transition="returned", state="rtn_unacked", time=monday_evening))
    record(journal_row(seq=3, transition="returned", state="rtn_unacked", time=saturday_early))
    got = sorted(Notification.objects.values_list("alarm_seq", "recipient"))
    assert got == [(1, "ops-mail"), (2, "ops-hook"), (3, "ops-hook")]


def test_a_recipient_reached_by_two_rules_gets_one_message(site):
    NotificationRule.objects.create(name="another", group=site.duty, transitions="raised")
    assert record(journal_row()) == 3
    assert Notification.objects.filter(stage="notify").count() == 2
    assert set(Notification.objects.values_list("rule", flat=True)) == {"all-alarms"}  # the first by name


def test_escalation_only_for_raises_that_need_acknowledgement(site):
    assert record(journal_row(seq=1, transition="raised", state="active_acked")) == 2  # no ack needed
    assert record(journal_row(seq=2, transition="realarm")) == 2
    assert not Notification.objects.filter(stage="escalation").exists()
    site.rule.escalate_after_minutes = 0
    site.rule.save()
    assert record(journal_row(seq=3)) == 2


def test_disabled_recipients_and_rules_are_skipped(site):
    Recipient.objects.filter(name="ops-hook").update(enabled=False)
    assert record(journal_row(seq=1)) == 2
    NotificationRule.objects.update(enabled=False)
    assert record(journal_row(seq=2)) == 0


def test_a_key_already_present_is_left_alone(site):
    row = journal_row()
    assert record(row) == 3
    with transaction.atomic():
        assert enqueue([row]) == 0  # e.g. the partner's version of the same journal row arrived first
    assert Notification.objects.count() == 3


def test_the_outbox_rows_roll_back_with_the_journal_row(site):
    with pytest.raises(RuntimeError), transaction.atomic():
        record(journal_row())
        raise RuntimeError("the engine's transaction fails after the hook")
    assert not AlarmJournal.objects.exists() and not Notification.objects.exists()


def test_stamps_are_consecutive_after_what_the_counter_issued(site):
    record(journal_row(seq=1), journal_row(seq=2))
    journal = sorted(AlarmJournal.objects.values_list("origin_seq", flat=True))
    seqs = sorted(Notification.objects.values_list("origin_seq", flat=True))
    assert seqs == list(range(journal[-1] + 1, journal[-1] + 7))
    assert OriginCounter.objects.get(origin="main").value == seqs[-1]
    Recipient.objects.create(name="late", group=site.duty, channel="email", address="late@example.test")
    # read again: the change takes stamps of its own (its audit entry is history too)
    issued = OriginCounter.objects.get(origin="main").value
    record(journal_row(seq=3))
    journal_seq = AlarmJournal.objects.get(alarm_seq=3).origin_seq
    assert journal_seq == issued + 1  # the journal row's own stamp, then its four outbox rows
    later = sorted(Notification.objects.filter(alarm_seq=3).values_list("origin_seq", flat=True))
    assert later == list(range(journal_seq + 1, journal_seq + 5))


def test_a_flood_of_10000_rows_is_cheap(site, django_assert_max_num_queries):
    RecipientGroup.objects.create(name="spare")  # configuration the call does not need is not read per row
    rows = [
        journal_row(alarm=f"p{i % 500}.high", seq=i // 500 + 1, time=T0 + timedelta(seconds=i)) for i in range(10_000)
    ]
    rows += [journal_row(alarm=f"j{i}.high", klass="journal-only") for i in range(1000)]
    with transaction.atomic():
        origin, epoch, seqs = next_stamps(len(rows))
        for row, seq in zip(rows, seqs, strict=True):
            row.origin, row.epoch, row.origin_seq = origin, epoch, seq
        AlarmJournal.objects.bulk_create(rows, batch_size=2000)
        started = time.monotonic()
        with django_assert_max_num_queries(50):
            created = enqueue(rows)
        elapsed = time.monotonic() - started
    assert created == 30_000  # two duty recipients and one escalation per raise; journal-only rows: nothing
    assert Notification.objects.count() == 30_000
    assert Notification.objects.values("origin_seq").distinct().count() == 30_000
    print(f"enqueue of 10,000 journal rows (30,000 outbox rows): {elapsed:.2f} s")
    assert elapsed < 30, f"enqueue of 10,000 rows took {elapsed:.1f} s"
