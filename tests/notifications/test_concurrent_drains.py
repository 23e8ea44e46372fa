"""Drains running at the same time over the same rows (two Celery workers, a worker and a runner, a late sender).

Each drain runs on its own thread with its own database connection, against
a real webhook receiver and SMTP sink. The interleavings that matter are
forced, not hoped for: a drain's ``is_active`` callable, asked after it has
read the due rows and before it touches one, waits for the test; the
receiver holds a request so that its sender is mid-delivery (the receiver
has the message, the row is not marked yet) while the other drain acts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bms.notifications import drain as draining
from bms.notifications.models import Notification, Recipient
from tests.notifications.conftest import SECRET, journal_row, record
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 60  # seconds: generous deadlines, the conditions come at once on an idle machine


def active() -> bool:
    return True


class DrainThread:
    """``drain(is_active)`` on a thread of its own (its own connection); the result, or what it raised."""

    def __init__(self, is_active: Callable[[], bool], **kwargs) -> None:
        self.result: draining.DrainResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(is_active,), kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, is_active: Callable[[], bool], **kwargs) -> None:
        try:
            self.result = draining.drain(is_active, **kwargs)
        except BaseException as exc:  # handed to the test thread by join()
            self.error = exc
        finally:
            connection.close()

    def join(self) -> draining.DrainResult:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the drain did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Pause:
    """An ``is_active`` that stops once, at its ``at``-th call, until the test lets it go on.

    Call 1 is the check before the pass; call 2 comes after the pass read its
    due rows and before it does anything with the first: the moment another
    drain can act on rows this one has read.
    """

    def __init__(self, at: int = 2) -> None:
        self.at = at
        self.calls = 0
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls == self.at:
            self.reached.set()
            assert self.go.wait(WAIT), "the test never let the drain go on"
        return True


def statuses(keys: set[str] | None = None) -> dict[str, str]:
    rows = Notification.objects.all() if keys is None else Notification.objects.filter(key__in=keys)
    return dict(rows.values_list("key", "status"))


def escalation_by_webhook(site, receiver) -> None:
    """The managers hear of escalations on ``/escalation`` only (a path the receiver can hold)."""
    site.manager_mail.enabled = False
    site.manager_mail.save()
    Recipient.objects.create(
        name="manager-hook", group=site.managers, channel="webhook", address=receiver.url("/escalation"), secret=SECRET
    )


def test_two_drains_that_read_the_same_rows_deliver_each_once_and_mark_all_sent(site, mail_to_sink, receiver):
    now = timezone.now()  # the escalations these raises schedule are not due during the test
    record(*[journal_row(seq=seq, time=now) for seq in range(1, 6)])
    keys = set(Notification.objects.filter(stage="notify").values_list("key", flat=True))
    assert len(keys) == 10
    # both read all ten due rows before either claims one; then they race for them
    first, second = Pause(), Pause()
    one, two = DrainThread(first), DrainThread(second)
    assert first.reached.wait(WAIT) and second.reached.wait(WAIT)
    first.go.set()
    second.go.set()
    results = [one.join(), two.join()]
    assert sum(result.sent for result in results) == 10
    assert sum(result.retried + result.gave_up + result.cancelled for result in results) == 0
    assert dict(mail_to_sink.keys() + receiver.keys()) == {key: 1 for key in keys}
    assert statuses(keys) == {key: "sent" for key in keys}
    assert not Notification.objects.filter(key__in=keys).exclude(lease_owner="").exists()


def test_a_drain_does_not_cancel_an_escalation_another_drain_is_delivering(site, mail_to_sink, receiver, settings):
    settings.BMS_NOTIFY_TIMEOUT = 30.0  # the held request must not time out while the test acts
    escalation_by_webhook(site, receiver)
    raised = timezone.now() - timedelta(minutes=11)  # the escalation (after 10 minutes) is due
    record(journal_row(seq=1, time=raised))
    assert draining.drain(active, now=raised + timedelta(seconds=1)).sent == 2  # the raise's own notifications
    escalation = Notification.objects.get(stage="escalation")
    assert escalation.address.endswith("/escalation")

    late = Pause()
    reader = DrainThread(late)  # reads the escalation, still pending and unclaimed, then waits
    assert late.reached.wait(WAIT)
    receiver.hold("/escalation")
    sender = DrainThread(active)  # claims the escalation and delivers it: the receiver has it, unanswered
    wait_until(lambda: receiver.holding("/escalation") == 1, WAIT, message="the escalation to be mid-delivery")
    # the operator acknowledges while it is on the wire; the reader now finds the alarm settled
    record(journal_row(seq=2, transition="acknowledged", state="active_acked", time=timezone.now(), user="op"))
    late.go.set()
    result = reader.join()
    assert (result.cancelled, result.sent, result.deferred) == (0, 0, 1)  # another sender has it: hands off
    assert Notification.objects.get(pk=escalation.pk).status == "pending"
    receiver.release("/escalation")
    assert sender.join().sent == 1
    assert receiver.keys("/escalation") == {escalation.key: 1}
    assert Notification.objects.get(pk=escalation.pk).status == "sent"  # it was delivered: it says so


def test_a_delivery_is_marked_sent_even_if_a_drain_cancelled_it_meanwhile(site, mail_to_sink, receiver, settings):
    """A sender stalled past its lease (frozen, swapped out): another drain takes the row over and cancels it."""
    settings.BMS_NOTIFY_TIMEOUT = 30.0
    escalation_by_webhook(site, receiver)
    raised = timezone.now() - timedelta(minutes=11)
    record(journal_row(seq=1, time=raised))
    draining.drain(active, now=raised + timedelta(seconds=1))
    escalation = Notification.objects.get(stage="escalation")

    receiver.hold("/escalation")
    sender = DrainThread(active)
    wait_until(lambda: receiver.holding("/escalation") == 1, WAIT, message="the escalation to be mid-delivery")
    record(journal_row(seq=2, transition="acknowledged", state="active_acked", time=timezone.now(), user="op"))
    lease = Notification.objects.get(pk=escalation.pk).lease_until
    assert draining.drain(active, now=lease + timedelta(seconds=1)).cancelled == 1  # the lease ran out: taken over
    assert Notification.objects.get(pk=escalation.pk).status == "cancelled"
    receiver.release("/escalation")
    assert sender.join().sent == 1
    assert receiver.keys("/escalation") == {escalation.key: 1}
    escalation.refresh_from_db()
    assert (escalation.status, escalation.lease_owner) == ("sent", "")  # sent wins, as in the pair's merge


def test_a_late_failure_leaves_the_row_to_the_sender_that_took_it_over(site, mail_to_sink, receiver, settings):
    settings.BMS_NOTIFY_TIMEOUT = 30.0
    escalation_by_webhook(site, receiver)
    raised = timezone.now() - timedelta(minutes=11)
    record(journal_row(seq=1, time=raised))
    draining.drain(active, now=raised + timedelta(seconds=1))
    escalation = Notification.objects.get(stage="escalation")

    receiver.fail("/escalation", times=1)
    receiver.hold("/escalation")
    stalled = DrainThread(active)
    wait_until(lambda: receiver.holding("/escalation") == 1, WAIT, message="the escalation to be mid-delivery")
    # its lease runs out; another sender claims the row and is now the one working on it
    row = Notification.objects.get(pk=escalation.pk)
    assert draining.claim(row, row.lease_until + timedelta(seconds=1), "another-worker")
    taken = Notification.objects.get(pk=escalation.pk)
    receiver.release("/escalation")  # the stalled sender's request now fails (500)
    result = stalled.join()
    assert (result.sent, result.retried, result.deferred) == (0, 0, 1)
    row = Notification.objects.get(pk=escalation.pk)
    # untouched: still the other sender's claim, no failure counted by the one that lost it
    assert (row.status, row.lease_owner, row.lease_until, row.attempts, row.origin_seq) == (
        "pending",
        "another-worker",
        taken.lease_until,
        0,
        taken.origin_seq,
    )
