"""Across a takeover: each notification is sent once, or twice with the same key in the one documented case.

Both nodes are played in this database, with the real replication code: what
the backup holds when the main node dies is what the history stream had
shipped by then (``redundancy.history.rows_after``, packed and unpacked as
on the sync link, stored by ``store_rows``: the upsert and merge the backup
runs). "Main dies" = this database is replaced by that shipped state; then
the test is the backup (``BMS_NODE_NAME``, a higher epoch) and drains.
The receivers are the same real SMTP sink and webhook server throughout.

The cases of docs/notifications.md, "Across a takeover":
1. sent, and the "sent" version replicated: the backup sends nothing;
2. never sent (pending, replicated): the backup sends it, once;
3. sent, but main died before the "sent" version reached the backup: the
   backup sends it again, with the same Message-ID / Idempotency-Key;
4. after failback the versions merge: "sent" wins, nothing is sent again;
and the journal row arrived without its outbox rows (two streams): the
backup derives them again (reconciliation) and sends them once.
"""

from __future__ import annotations

from typing import Any

import pytest

from bms.alarms.models import AlarmJournal
from bms.history.models import set_epoch
from bms.notifications import drain as draining
from bms.notifications.models import Notification
from bms.notifications.outbox import enqueue
from redundancy import framing, history
from tests.notifications.conftest import at, journal_row, record

pytestmark = pytest.mark.django_db

TABLES = ("notifications.notification", "alarms.alarmjournal")


def active() -> bool:
    return True


def shipped() -> list[dict[str, Any]]:
    """Everything the history stream would send a partner holding nothing, as it crosses the sync link."""
    batches, _ = history.rows_after({}, limit=1_000_000)
    mine = [batch for batch in batches if batch["table"] in TABLES]
    return framing.unpack(framing.pack({"batches": mine}))["batches"]


def store(batches: list[dict[str, Any]]) -> None:
    for batch in batches:
        history.store_rows(batch)


def main_dies_backup_takes_over(settings, backup_holds: list[dict[str, Any]]) -> None:
    """This database becomes the backup's: only what had been replicated; the backup is active in epoch 5."""
    Notification.objects.all().delete()
    AlarmJournal.objects.all().delete()
    store(backup_holds)
    settings.BMS_NODE_NAME = "backup"
    set_epoch(5, "backup")


@pytest.fixture
def main(settings):
    settings.BMS_NODE_NAME = "main"
    set_epoch(4, "main")


def notify_keys() -> set[str]:
    return set(Notification.objects.filter(stage="notify").values_list("key", flat=True))


def arrivals(sink, receiver) -> dict[str, int]:
    return dict(sink.keys() + receiver.keys())


def test_sent_and_replicated_is_not_sent_again(main, site, mail_to_sink, receiver, settings):
    record(journal_row(seq=1), journal_row(seq=2, transition="realarm", time=at(minutes=1)))
    assert draining.drain(active, now=at(minutes=1, seconds=1)).sent == 4
    main_dies_backup_takes_over(settings, shipped())  # the "sent" versions had been replicated

    assert draining.drain(active, now=at(minutes=2)).handled == 0
    assert arrivals(mail_to_sink, receiver) == {key: 1 for key in notify_keys()}
    assert Notification.objects.filter(stage="notify", status="sent", sent_by="main").count() == 4


def test_never_sent_is_sent_by_the_backup_once(main, site, mail_to_sink, receiver, settings):
    record(journal_row(seq=1))
    replicated = shipped()  # the pending rows reached the backup; main died before sending
    main_dies_backup_takes_over(settings, replicated)

    assert draining.drain(active, now=at(seconds=30)).sent == 2
    assert arrivals(mail_to_sink, receiver) == {key: 1 for key in notify_keys()}
    sent = Notification.objects.filter(stage="notify")
    assert {(n.status, n.sent_by, n.origin, n.epoch) for n in sent} == {("sent", "backup", "backup", 5)}


def test_retries_continue_on_the_backup_from_the_replicated_count(main, site, mail_to_sink, receiver, settings):
    receiver.fail("/hook", times=3)
    record(journal_row(seq=1))
    now = at(seconds=1)
    for _ in range(2):
        draining.drain(active, now=now)
        now = Notification.objects.get(channel="webhook").next_try
    main_dies_backup_takes_over(settings, shipped())
    hook = Notification.objects.get(channel="webhook")
    assert (hook.attempts, hook.next_try) == (2, now)  # the backoff goes on where main left it

    assert draining.drain(active, now=now).retried == 1
    hook.refresh_from_db()
    assert hook.attempts == 3
    draining.drain(active, now=hook.next_try)
    assert receiver.keys() == {hook.key: 1}
    assert receiver.attempts("/hook") == 4


def test_sent_but_not_replicated_is_sent_again_with_the_same_key(main, site, mail_to_sink, receiver, settings):
    record(journal_row(seq=1))
    replicated = shipped()  # the pending versions reached the backup ...
    assert draining.drain(active, now=at(seconds=1)).sent == 2  # ... main sent, then died before replicating that
    main_sent = shipped()
    first_hook = receiver.accepted()[0]

    main_dies_backup_takes_over(settings, replicated)
    assert draining.drain(active, now=at(seconds=30)).sent == 2

    # the documented duplicate: twice, with the same key, so receivers can drop the second
    assert arrivals(mail_to_sink, receiver) == {key: 2 for key in notify_keys()}
    assert len({mail.message_id for mail in mail_to_sink.mails}) == 1
    second_hook = receiver.accepted()[1]
    assert (second_hook.key, second_hook.body, second_hook.signature) == (
        first_hook.key,
        first_hook.body,
        first_hook.signature,
    )

    # failback: main's versions reach the backup (and the backup's reach main); both stay "sent", once each
    store(main_sent)
    assert set(Notification.objects.filter(stage="notify").values_list("status", flat=True)) == {"sent"}
    store(replicated)  # a stale pending version arriving late changes nothing
    assert set(Notification.objects.filter(stage="notify").values_list("status", flat=True)) == {"sent"}
    assert draining.drain(active, now=at(minutes=1)).sent == 0
    assert arrivals(mail_to_sink, receiver) == {key: 2 for key in notify_keys()}


def test_the_same_journal_row_written_by_both_nodes_gives_the_same_keys(main, site, mail_to_sink, receiver, settings):
    row = journal_row(seq=1)
    record(row)
    main_keys = set(Notification.objects.values_list("key", flat=True))
    main_dies_backup_takes_over(settings, [])  # nothing had been replicated
    recovered = journal_row(seq=1)  # the backup rebuilds the transition from the replicated alarm state
    recovered.recovered = True
    record(recovered)
    assert set(Notification.objects.values_list("key", flat=True)) == main_keys
    draining.drain(active, now=at(seconds=1))
    assert arrivals(mail_to_sink, receiver) == {key: 1 for key in notify_keys()}
    assert enqueue([recovered]) == 0  # the same row once more: its keys are present


def test_escalation_decided_on_the_backup_from_replicated_rows(main, site, mail_to_sink, receiver, settings):
    record(journal_row(seq=1))
    draining.drain(active, now=at(seconds=1))
    record(journal_row(seq=2, transition="acknowledged", state="active_acked", time=at(minutes=3), user="op"))
    main_dies_backup_takes_over(settings, shipped())
    result = draining.drain(active, now=at(minutes=10))
    assert (result.sent, result.cancelled) == (0, 1)
    assert not [mail for mail in mail_to_sink.mails if mail.to == ["manager@example.test"]]


def test_escalation_still_due_is_sent_by_the_backup_once(main, site, mail_to_sink, receiver, settings):
    record(journal_row(seq=1))
    draining.drain(active, now=at(seconds=1))
    main_dies_backup_takes_over(settings, shipped())
    assert draining.drain(active, now=at(minutes=10)).sent == 1
    assert draining.drain(active, now=at(minutes=20)).handled == 0
    escalation = Notification.objects.get(stage="escalation")
    assert [mail.key for mail in mail_to_sink.mails if mail.to == ["manager@example.test"]] == [escalation.key]
    assert (escalation.status, escalation.sent_by) == ("sent", "backup")


def test_a_journal_row_that_arrived_without_its_outbox_rows_is_notified_by_the_backup(
    main, site, mail_to_sink, receiver, settings
):
    record(journal_row(seq=1), journal_row(seq=2, transition="realarm", time=at(minutes=1)))
    main_keys = set(Notification.objects.values_list("key", flat=True))
    journal_only = [batch for batch in shipped() if batch["table"] == "alarms.alarmjournal"]
    main_dies_backup_takes_over(settings, journal_only)
    assert not Notification.objects.exists()

    assert draining.drain(active, now=at(minutes=2)).sent == 4
    assert set(Notification.objects.values_list("key", flat=True)) == main_keys  # the same keys main had
    assert arrivals(mail_to_sink, receiver) == {key: 1 for key in notify_keys()}
    assert draining.drain(active, now=at(minutes=10)).sent == 1  # the escalation too, once
    assert draining.drain(active, now=at(minutes=11)).handled == 0


def test_reconciliation_leaves_own_old_and_already_seen_rows_alone(main, site, settings):
    reconciler = draining.Reconciler()
    record(journal_row(seq=1))  # main's own: its outbox rows were written with it
    assert draining.reconcile(at(minutes=1), reconciler) == 0
    replicated = shipped()
    main_dies_backup_takes_over(settings, [b for b in replicated if b["table"] == "alarms.alarmjournal"])
    assert draining.reconcile(at(minutes=45), reconciler) == 0  # older than the window (30 min)
    assert draining.reconcile(at(minutes=1), draining.Reconciler()) == 3
    assert draining.reconcile(at(minutes=1), draining.Reconciler()) == 0  # present: left alone
    store(replicated)  # main's own versions arrive later: the same keys, merged
    assert Notification.objects.count() == 3
