"""Draining the outbox to a real SMTP sink (aiosmtpd) and a real webhook receiver (http.server) on loopback.

Every notification is counted at its receiver, by key: once, never zero;
failures delay (with capped exponential backoff) but do not lose; a dead
receiver does not hold up the others; a standby sends nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest

from bms.events.models import Event
from bms.notifications import drain as draining
from bms.notifications.delivery import body_bytes
from bms.notifications.models import Notification, Recipient
from tests.notifications.conftest import SECRET, T0, at, journal_row, record

pytestmark = pytest.mark.django_db


def active() -> bool:
    return True


def notify_keys(channel: str) -> set[str]:
    return set(Notification.objects.filter(stage="notify", channel=channel).values_list("key", flat=True))


def test_each_transition_arrives_once_at_the_sink_and_the_receiver(site, mail_to_sink, receiver):
    rows = [
        journal_row(seq=1),
        journal_row(seq=2, transition="realarm"),
        journal_row(seq=3, transition="returned", state="rtn_unacked"),
        journal_row(seq=4, transition="acknowledged", state="normal", user="op"),  # no rule asks for it
        journal_row(alarm="ahu1_fan.state", seq=1),
    ]
    record(*rows)
    result = draining.drain(active, now=at(seconds=1))
    assert (result.sent, result.retried) == (8, 0)

    assert mail_to_sink.keys() == {key: 1 for key in notify_keys("email")}
    assert receiver.keys() == {key: 1 for key in notify_keys("webhook")}
    assert len(notify_keys("email")) == len(notify_keys("webhook")) == 4
    for mail in mail_to_sink.mails:
        assert mail.to == ["ops@example.test"]
        assert mail.message_id == f"<{mail.key}@bms.notifications>"
    subjects = sorted(mail.subject for mail in mail_to_sink.mails)
    assert "[high] zone1_temp.high raised: zone1_temp.high raised" in subjects
    for hit in receiver.accepted():
        assert hit.signature == "sha256=" + hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
        assert hit.json()["idempotency_key"] == hit.key
        assert hit.body == body_bytes(Notification.objects.get(key=hit.key).payload)
    assert sorted(
        hit.json()["alarm_seq"] for hit in receiver.accepted() if hit.json()["alarm"] == "zone1_temp.high"
    ) == [
        1,
        2,
        3,
    ]

    again = draining.drain(active, now=at(minutes=5))  # the escalations are not due yet
    assert again.handled == 0
    assert len(mail_to_sink.mails) == 4 and len(receiver.accepted()) == 4
    sent = Notification.objects.filter(stage="notify")
    assert all(n.status == "sent" and n.sent_by == "main" and n.attempts == 1 for n in sent)


def test_a_failing_receiver_is_retried_with_capped_exponential_backoff(site, mail_to_sink, receiver, settings):
    settings.BMS_NOTIFY_RETRY_CAP = 100.0
    receiver.fail("/hook", times=5)
    record(journal_row())
    hook = Notification.objects.get(channel="webhook")
    now = at(seconds=1)
    delays = []
    for attempt in range(1, 6):
        result = draining.drain(active, now=now)
        hook.refresh_from_db()
        assert (hook.status, hook.attempts) == ("pending", attempt)
        assert hook.last_error == "webhook answered HTTP 500"
        delays.append((hook.next_try - now).total_seconds())
        # not before its time ...
        assert draining.drain(active, now=hook.next_try - timedelta(seconds=1)).handled == 0
        now = hook.next_try
        if attempt == 1:
            assert result.sent == 1  # the email went through while the webhook failed
    assert delays == [15, 30, 60, 100, 100]  # base 15 s, doubling, capped at 100 s
    assert receiver.keys() == {}
    assert receiver.attempts("/hook") == 5

    assert draining.drain(active, now=now).sent == 1  # ... and then it arrives, once
    assert receiver.keys() == {hook.key: 1}
    hook.refresh_from_db()
    assert (hook.status, hook.attempts, hook.last_error) == ("sent", 6, "")
    assert mail_to_sink.keys() == {key: 1 for key in notify_keys("email")}


def test_a_dead_mail_server_delays_but_loses_nothing(site, mail_to_sink):
    mail_to_sink.stop()
    record(journal_row(seq=1), journal_row(seq=2, transition="realarm"))
    result = draining.drain(active, now=at(seconds=1))
    # the server is down: the first email fails, the second is not tried in this pass; the webhooks go
    assert (result.sent, result.retried, result.deferred) == (2, 1, 1)
    assert Notification.objects.filter(stage="notify", channel="email", status="pending").count() == 2

    mail_to_sink.start()  # the same port
    later = at(minutes=1)
    assert draining.drain(active, now=later).sent == 2
    assert mail_to_sink.keys() == {key: 1 for key in notify_keys("email")}
    assert len(notify_keys("email")) == 2


def test_an_smtp_refusal_is_retried(site, mail_to_sink):
    mail_to_sink.fail_next = 1  # 451 to the first message
    record(journal_row())
    draining.drain(active, now=at(seconds=1))
    mail = Notification.objects.get(stage="notify", channel="email")
    assert (mail.status, mail.attempts) == ("pending", 1)
    assert "451" in mail.last_error
    draining.drain(active, now=mail.next_try)
    assert mail_to_sink.keys() == {mail.key: 1}


def test_a_permanently_failing_recipient_does_not_block_the_others(site, mail_to_sink, receiver):
    Recipient.objects.create(name="dead-hook", group=site.duty, channel="webhook", address=receiver.url("/dead"),
                             secret="s")  # fmt: skip
    Recipient.objects.create(name="bad-mail", group=site.duty, channel="email", address="nobody@example.test")
    mail_to_sink.refuse_rcpt.add("nobody@example.test")
    receiver.fail("/dead", times=10**6, status=503)
    record(*[journal_row(seq=seq) for seq in range(1, 21)])
    result = draining.drain(active, now=at(seconds=1))
    # one try each for the dead receivers in this pass; their other rows wait; everyone else gets everything
    assert result.sent == 40 and result.retried == 2 and result.deferred == 38
    assert len(mail_to_sink.keys()) == 20 and len(receiver.keys("/hook")) == 20
    assert receiver.attempts("/dead") == 1 and mail_to_sink.refused == 1
    assert set(mail_to_sink.keys().values()) == {1} and set(receiver.keys("/hook").values()) == {1}


def test_a_notification_failing_past_the_give_up_period_ends_failed_with_an_event(site, mail_to_sink, receiver,
                                                                                  settings):  # fmt: skip
    settings.BMS_NOTIFY_GIVE_UP_HOURS = 1
    receiver.fail("/hook", times=10**6)
    record(journal_row())
    draining.drain(active, now=at(seconds=1))
    hook = Notification.objects.get(channel="webhook")
    assert hook.status == "pending"
    result = draining.drain(active, now=T0 + timedelta(hours=1, seconds=1))
    assert result.gave_up == 1
    hook.refresh_from_db()
    assert (hook.status, hook.attempts) == ("failed", 2)
    event = Event.objects.get(kind="notification_failed")
    assert event.severity == "warning" and "ops-hook" in event.message
    assert draining.drain(active, now=T0 + timedelta(hours=5)).handled == 0  # given up: never tried again


def test_a_redirect_is_not_success(site, mail_to_sink, receiver):
    receiver.fail("/hook", times=1, status=307)
    record(journal_row())
    draining.drain(active, now=at(seconds=1))
    hook = Notification.objects.get(channel="webhook")
    assert hook.status == "pending" and "307" in hook.last_error
    assert receiver.attempts("/elsewhere") == 0


def test_a_standby_sends_nothing(site, mail_to_sink, receiver):
    record(journal_row())
    result = draining.drain(lambda: False, now=at(seconds=1))
    assert result.inactive and result.handled == 0
    assert not mail_to_sink.mails and not receiver.hits
    assert Notification.objects.filter(status="pending").count() == 3


def test_the_node_stops_sending_mid_pass_when_it_stops_being_active(site, mail_to_sink, receiver):
    record(*[journal_row(seq=seq) for seq in range(1, 6)])
    answers = iter([True, True, True, False])
    result = draining.drain(lambda: next(answers, False), now=at(seconds=1))
    assert result.inactive and result.sent == 2
    assert len(mail_to_sink.mails) + len(receiver.accepted()) == 2
    assert Notification.objects.filter(stage="notify", status="pending").count() == 8


def test_a_claimed_row_is_left_to_its_sender_until_the_lease_expires(site, mail_to_sink, receiver, settings):
    record(journal_row())
    mail = Notification.objects.get(stage="notify", channel="email")
    assert draining.claim(mail, at(seconds=1), "another-worker")
    result = draining.drain(active, now=at(seconds=2))
    assert result.sent == 1 and not mail_to_sink.mails  # the webhook only: the email is another sender's
    # the other sender died holding it: after the lease the row is sent (with the same key)
    lease = Notification.objects.get(pk=mail.pk).lease_until
    assert lease == at(seconds=1) + timedelta(seconds=draining.conf.lease_seconds())
    assert draining.drain(active, now=lease).sent == 1
    assert mail_to_sink.keys() == {mail.key: 1}


def test_a_dead_receivers_backlog_does_not_fill_the_batch(site, mail_to_sink, receiver):
    Recipient.objects.filter(name="ops-mail").update(enabled=False)
    receiver.fail("/hook", times=10**6)
    record(*[journal_row(seq=seq) for seq in range(1, 301)])  # 300 webhooks to a receiver that fails
    Recipient.objects.filter(name="ops-mail").update(enabled=True)
    Recipient.objects.filter(name="ops-hook").update(enabled=False)
    record(journal_row(alarm="ahu1_fan.state", seq=1, time=at(seconds=30)))  # due after all of them
    result = draining.drain(active, now=at(minutes=1), limit=50)
    assert (result.sent, result.retried) == (1, 1)
    assert receiver.attempts("/hook") == 1
    assert mail_to_sink.keys() == {key: 1 for key in notify_keys("email")}
