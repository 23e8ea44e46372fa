"""The embedded shape's drain thread, against the real receivers: it sends only while the node is active."""

from __future__ import annotations

import pytest
from django.utils import timezone

from bms.notifications.models import Notification
from bms.notifications.runner import NotificationRunner
from tests.notifications.conftest import journal_row, record
from tests.support.processes import wait_until

# the runner works on a thread with its own database connection: the rows must be committed
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_runner_sends_only_while_the_node_is_active_and_stops(site, mail_to_sink, receiver):
    role = {"active": False}
    runner = NotificationRunner(lambda: role["active"], interval=0.05)
    now = timezone.now()  # the runner reads the real clock: the escalation is not due during the test
    record(journal_row(seq=1, time=now), journal_row(seq=2, transition="realarm", time=now))
    runner.start()
    try:
        wait_until(lambda: runner.passes >= 3, message="three passes as a standby")
        assert runner.last is not None and runner.last.inactive
        assert not mail_to_sink.mails and not receiver.hits

        role["active"] = True  # takeover
        runner.wake()
        wait_until(lambda: len(mail_to_sink.mails) == 2 and len(receiver.accepted()) == 2, message="4 deliveries")
        passes = runner.passes
        wait_until(lambda: runner.passes >= passes + 3, message="three more passes")
        keys = set(Notification.objects.filter(stage="notify").values_list("key", flat=True))
        assert dict(mail_to_sink.keys() + receiver.keys()) == {key: 1 for key in keys}
    finally:
        runner.stop()
    assert not runner.running


def test_a_failing_pass_does_not_end_the_thread(site, mail_to_sink, receiver):
    answers = {"calls": 0}

    def flaky() -> bool:
        answers["calls"] += 1
        if answers["calls"] <= 2:
            raise RuntimeError("the role cannot be read")
        return True

    record(journal_row(seq=1, time=timezone.now()))
    runner = NotificationRunner(flaky, interval=0.05)
    runner.start()
    try:
        wait_until(lambda: len(mail_to_sink.mails) == 1 and len(receiver.accepted()) == 1, message="2 deliveries")
    finally:
        runner.stop()
    assert answers["calls"] > 2
