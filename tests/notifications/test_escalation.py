"""Escalation: the second group hears of an alarm still unacknowledged N minutes after it was raised, once.

The decision reads only replicated data (the journal and the outbox row), so
the node that drains at the due time decides the same whichever it is.
"""

from __future__ import annotations

import pytest

from bms.notifications import drain as draining
from bms.notifications.models import Notification
from tests.notifications.conftest import at, journal_row, record

pytestmark = pytest.mark.django_db


def active() -> bool:
    return True


def manager_mails(sink) -> list:
    return [mail for mail in sink.mails if mail.to == ["manager@example.test"]]


def test_an_alarm_still_unacknowledged_escalates_once_when_due(site, mail_to_sink, receiver):
    record(journal_row(seq=1), journal_row(seq=2, transition="realarm", time=at(minutes=5)))
    draining.drain(active, now=at(minutes=5, seconds=1))
    assert manager_mails(mail_to_sink) == []
    assert draining.drain(active, now=at(minutes=9, seconds=59)).handled == 0  # not before its time

    result = draining.drain(active, now=at(minutes=10))
    assert result.sent == 1
    escalation = Notification.objects.get(stage="escalation")
    mails = manager_mails(mail_to_sink)
    assert [(mail.key, mail.message_id) for mail in mails] == [
        (escalation.key, f"<{escalation.key}@bms.notifications>")
    ]
    assert mails[0].subject.startswith("ESCALATION [high] zone1_temp.high raised")
    assert "still unacknowledged 10 minutes after it was raised" in mails[0].body
    assert draining.drain(active, now=at(minutes=30)).handled == 0
    assert len(manager_mails(mail_to_sink)) == 1


def test_an_alarm_still_unacknowledged_after_it_returned_escalates(site, mail_to_sink, receiver):
    record(journal_row(seq=1), journal_row(seq=2, transition="returned", state="rtn_unacked", time=at(minutes=3)))
    assert draining.drain(active, now=at(minutes=10)).sent == 5
    assert len(manager_mails(mail_to_sink)) == 1


@pytest.mark.parametrize(
    ("transition", "state"),
    [
        ("acknowledged", "active_acked"),
        ("acknowledged", "normal"),
        ("shelved", "shelved"),
        ("out_of_service", "out_of_service"),
        ("suppressed", "suppressed"),
    ],
)
def test_an_alarm_settled_in_time_is_not_escalated(site, mail_to_sink, receiver, transition, state):
    record(journal_row(seq=1))
    draining.drain(active, now=at(seconds=1))
    record(journal_row(seq=2, transition=transition, state=state, time=at(minutes=4), user="op"))
    result = draining.drain(active, now=at(minutes=10))
    assert (result.sent, result.cancelled) == (0, 1)
    escalation = Notification.objects.get(stage="escalation")
    assert escalation.status == "cancelled"
    assert escalation.last_error.startswith(f"not escalated: {transition} (#2, {state})")
    assert manager_mails(mail_to_sink) == []
    assert draining.drain(active, now=at(minutes=60)).handled == 0


def test_a_standby_neither_escalates_nor_cancels(site, mail_to_sink, receiver):
    record(journal_row(seq=1))
    assert draining.drain(lambda: False, now=at(minutes=10)).inactive
    assert Notification.objects.get(stage="escalation").status == "pending"
    assert mail_to_sink.mails == []
