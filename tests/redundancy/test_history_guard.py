"""History replication that survives bad rows and lost batches, against the real database (ADR 0011).

The replicator's history functions are driven directly: messages go through
the sync link's encoder and decoder (``framing.pack``/``unpack``) as on the
wire, and storing meets real PostgreSQL locks.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from bms.control.models import AuditEntry
from bms.events.models import Event
from bms.tokens.models import TokenUse
from redundancy import framing, history, replication
from redundancy.models import QuarantinedRow
from redundancy.replication import Replicator

pytestmark = pytest.mark.django_db(transaction=True)
EVENT_FIELDS = ["time", "kind", "source", "severity", "message", "origin", "epoch", "origin_seq"]


class Service:
    """The pair service as the replicator sees it: configuration, partner, and a link that records messages."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(db_sync=True, timeout=0.3, node="main")
        self.partner = SimpleNamespace(heartbeat={}, last_heard=None)
        self.connected = True
        self.sent: list[dict[str, Any]] = []

    async def send(self, kind: str, **body: Any) -> bool:
        # Encoded and decoded as on the link: a message the encoder refuses fails here as it would there.
        self.sent.append(framing.unpack(framing.pack({"t": kind, **body})))
        return True

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.sent if message["t"] == kind]


async def run_in_db(function, *args):
    """The engine's database door: one call on a worker thread, with a short lock timeout, then disconnect."""

    def call():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")  # a locked table fails the call instead of hanging
            return function(*args)
        finally:
            connection.close()  # the worker thread's connection must not outlive the test database

    return await sync_to_async(call)()


def replicator() -> tuple[Replicator, Service]:
    service = Service()
    return Replicator(service, SimpleNamespace(image=None, run_in_db=run_in_db)), service


def events(n: int) -> list[int]:
    return [
        Event.objects.create(time="2026-11-30T00:00:00Z", kind="k", source="s", message=f"m{i}").origin_seq
        for i in range(n)
    ]


def insert_unpackable_audit_row() -> int:
    """An audit row as an old node wrote it: a 400-digit integer in its detail, with a fresh stamp of this node."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO history_origincounter (origin, value, epoch) VALUES ('main', 0, 1) "
            "ON CONFLICT (origin) DO NOTHING"
        )
        cursor.execute("UPDATE history_origincounter SET value = value + 1 WHERE origin = 'main' RETURNING value")
        seq = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO control_auditentry (time, username, action, target, detail, origin, epoch, origin_seq) "
            "VALUES (now(), 'old', 'write.rejected', 'zone1_setpoint', %s::jsonb, 'main', 1, %s)",
            ['{"value": 1' + "0" * 400 + "}", seq],
        )
    return seq


def sent_seqs(message: dict[str, Any], table: str) -> list[int]:
    return [
        row[batch["fields"].index("origin_seq")]
        for batch in message["batches"]
        if batch["table"] == table
        for row in batch["rows"]
    ]


def test_a_row_that_cannot_be_packed_is_quarantined_once_with_an_event_and_skipped():
    held = history.local_cursors()  # rows already here (a flush re-creates audited configuration): the peer's too
    AuditEntry.objects.create(action="before", detail={"n": 1})
    bad = insert_unpackable_audit_row()
    after = AuditEntry.objects.create(action="after", detail={"n": 2}).origin_seq

    batches, _ = history.rows_after(held)
    framing.pack({"t": "history", "batches": batches})  # the message can be sent
    audit = [b for b in batches if b["table"] == "control.auditentry"]
    seqs = [row[audit[0]["fields"].index("origin_seq")] for row in audit[0]["rows"]]
    assert bad not in seqs and after in seqs and len(seqs) == 2

    quarantined = QuarantinedRow.objects.get()
    assert (quarantined.table, quarantined.origin, quarantined.origin_seq) == ("control.auditentry", "main", bad)
    assert "OverflowError" in quarantined.reason
    event = Event.objects.get(kind=history.QUARANTINE_EVENT)
    assert event.severity == Event.WARNING and f"main/{bad}" in event.message

    history.rows_after(held)  # once per row: a second round records nothing new
    assert QuarantinedRow.objects.count() == 1 and Event.objects.filter(kind=history.QUARANTINE_EVENT).count() == 1
    # The backlog counts what can still reach the peer: the quarantined row is not waiting for anything.
    acknowledged = {**held, "control.auditentry": {"main": after}, "events.event": {"main": event.origin_seq}}
    assert history.unacknowledged(acknowledged) == 0


def test_a_row_too_large_for_a_frame_is_quarantined(monkeypatch):
    # A message of 4000 bytes at most, a row of 2000: the small row travels, the large one never could.
    monkeypatch.setattr(history, "MESSAGE_BYTES", 4000)
    monkeypatch.setattr(history, "ROW_BYTES", 2000)
    held = history.local_cursors()  # the peer holds what is already here
    small = AuditEntry.objects.create(action="small", detail={"n": 1}).origin_seq
    large = AuditEntry.objects.create(action="large", detail={"text": "x" * 5000}).origin_seq
    batches, _ = history.rows_after(held)
    audit = next(b for b in batches if b["table"] == "control.auditentry")
    assert [row[audit["fields"].index("origin_seq")] for row in audit["rows"]] == [small]
    assert QuarantinedRow.objects.get().origin_seq == large


async def test_the_backlog_counts_unacknowledged_rows_and_they_are_sent_again():
    sender, link = replicator()
    held = await run_in_db(history.local_cursors)  # the peer holds what is already here
    seqs = await run_in_db(events, 3)
    await sender._on_cursors({"cursors": held})

    await sender.push_history()
    assert sent_seqs(link.messages("history")[0], "events.event") == seqs
    assert sender.backlog == 3  # sent, not acknowledged
    await sender.push_history()
    assert len(link.messages("history")) == 1 and sender.backlog == 3  # optimistic: not sent twice at once

    started = time.monotonic()
    deadline = started + 30
    while len(link.messages("history")) < 2:
        assert time.monotonic() < deadline, "the unacknowledged rows were never sent again"
        await sender.push_history()
        await _pause()
    assert time.monotonic() - started >= 1.5  # not before the resend delay (2 s at least)
    resent = link.messages("history")[1]
    assert sent_seqs(resent, "events.event") == seqs
    assert resent["batches"][0]["after"] == held.get("events.event", {}).get("main", 0)
    assert sender.resends == 1 and sender.history_stuck

    await sender._on_history_ack({"acks": [["events.event", "main", seqs[-1]]]})
    await sender.push_history()
    assert sender.backlog == 0 and not sender.history_stuck


async def test_a_nack_rewinds_to_what_the_peer_holds_at_once():
    sender, link = replicator()
    seqs = await run_in_db(events, 4)
    held = await run_in_db(history.local_cursors)  # the peer holds what was here before, and the first event
    await sender._on_cursors({"cursors": {**held, "events.event": {"main": seqs[0]}}})
    await sender.push_history()
    assert sent_seqs(link.messages("history")[0], "events.event") == seqs[1:]

    await sender._on_history_nack({"nacks": [["events.event", "main", seqs[1]]]})
    await sender.push_history()
    again = link.messages("history")[1]
    assert sent_seqs(again, "events.event") == seqs[2:] and again["batches"][0]["after"] == seqs[1]
    assert sender.backlog == 2 and sender.resends == 1


async def test_rows_the_peer_sends_back_do_not_count_as_held_beyond_what_it_sent():
    # After a split heals, the peer stores this node's step-down event and, in a round it had already
    # queued on its database thread, sends it straight back (its view of this node's cursor was older).
    # Meanwhile this node wrote its next event. That one must still go: the echo proves the peer holds
    # what it sent, not everything this node holds of its own stream.
    main, link = replicator()
    await run_in_db(events, 1)
    held = await run_in_db(history.local_cursors)  # both nodes hold all of it (replicated before the split)
    await main._send_cursors()  # the link is back: announce what this node holds
    await main._on_cursors({"cursors": held})
    before = held["events.event"]["main"]
    step_down = await run_in_db(events, 1)
    await main.push_history()
    sent = link.messages("history")[-1]
    assert sent_seqs(sent, "events.event") == step_down
    standby = await run_in_db(events, 1)  # written before the echo arrives

    echo = [{**batch, "after": before} for batch in sent["batches"] if batch["table"] == "events.event"]
    await main._on_history({"t": "history", "node": "backup", "batches": echo})
    assert link.messages("history_ack")[-1]["acks"] == [["events.event", "main", standby[0]]]
    await main.push_history()
    assert sent_seqs(link.messages("history")[-1], "events.event") == standby, (
        f"the row written after the echoed one was not sent: peer cursors {main.peer_cursors}, acked {main.acked}"
    )
    assert main.backlog == 1  # the echo shows the peer holds the step-down event; the next one waits for its ack
    await main._on_history_ack({"acks": [["events.event", "main", standby[0]]]})
    await main.push_history()
    assert main.backlog == 0


async def test_a_lost_batch_is_sent_again_while_other_streams_are_acknowledged():
    # An event batch is lost (sent on a connection that died, another one stays up) and nothing follows it
    # in its stream. Audit rows (on an active node: trend samples) keep flowing and are acknowledged: that
    # traffic must not keep restarting the lost batch's resend delay.
    sender, link = replicator()
    await sender._on_cursors({"cursors": await run_in_db(history.local_cursors)})  # the peer holds what is here
    lost = await run_in_db(events, 1)
    await sender.push_history()
    started = time.monotonic()
    deadline = started + 30

    def resent() -> bool:
        return any(lost[0] in sent_seqs(message, "events.event") for message in link.messages("history")[1:])

    while not resent():
        assert time.monotonic() < deadline, f"the lost event batch was never sent again (acked {sender.acked})"
        entry = await run_in_db(lambda: AuditEntry.objects.create(action="flowing", detail={}))
        await sender.push_history()
        await sender._on_history_ack({"acks": [["control.auditentry", "main", entry.origin_seq]]})
        await _pause()
    assert time.monotonic() - started >= 1.5  # not before the resend delay (2 s at least)
    assert sender.resends >= 1


def _peer_batch(after: int, seqs: list[int]) -> dict[str, Any]:
    rows = [["2026-11-30T00:00:00Z", "k", "peer", "info", f"m{n}", "peer", 2, n] for n in seqs]
    return {"table": "events.event", "origin": "peer", "after": after, "fields": EVENT_FIELDS, "rows": rows}


def _peer_rows() -> list[int]:
    return sorted(Event.objects.filter(origin="peer").values_list("origin_seq", flat=True))


async def test_a_batch_the_receiver_cannot_store_is_refused_and_nothing_after_it_leaves_a_hole():
    receiver, link = replicator()
    name = connection.settings_dict["NAME"]
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=name) as locker:
        # Another transaction holds the table: the receiver's insert fails on its lock timeout, for real.
        locker.execute("LOCK TABLE events_event IN ACCESS EXCLUSIVE MODE")
        await receiver._on_history({"batches": [_peer_batch(0, [1, 2])]})
        locker.rollback()
    assert link.messages("history_nack")[-1]["nacks"] == [["events.event", "peer", 0]]
    assert not link.messages("history_ack") and receiver.store_failures == 1

    # The sender, not yet told, goes on from its optimistic cursor: storing that would leave 1 and 2 out for good.
    await receiver._on_history({"batches": [_peer_batch(2, [3])]})
    assert link.messages("history_nack")[-1]["nacks"] == [["events.event", "peer", 0]]
    assert await run_in_db(_peer_rows) == []

    await receiver._on_history({"batches": [_peer_batch(0, [1, 2])]})
    await receiver._on_history({"batches": [_peer_batch(2, [3])]})
    assert [m["acks"] for m in link.messages("history_ack")] == [
        [["events.event", "peer", 2]],
        [["events.event", "peer", 3]],
    ]
    assert await run_in_db(_peer_rows) == [1, 2, 3]


async def test_the_replicator_reports_quarantined_rows_and_keeps_sending():
    sender, link = replicator()
    held = await run_in_db(history.local_cursors)  # the peer holds what is already here
    present = await run_in_db(_all_rows)
    bad = await run_in_db(insert_unpackable_audit_row)
    good = (await run_in_db(lambda: AuditEntry.objects.create(action="after", detail={}))).origin_seq
    await sender._on_cursors({"cursors": held})
    await sender.push_history()
    message = link.messages("history")[0]
    assert sent_seqs(message, "control.auditentry") == [good]
    assert bad not in sent_seqs(message, "control.auditentry")
    assert sender.quarantined == 1
    # Every row waits for its acknowledgement (the quarantine event too), except the bad row.
    assert sender.backlog == await run_in_db(_all_rows) - present - 1


def _all_rows() -> int:
    return sum(model.objects.count() for model in history.replicated_models().values())


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def test_while_rows_flow_the_backlog_is_counted_at_most_every_interval_and_never_reads_zero(monkeypatch):
    # Counting asks every table; with 50 API writers on a pair, counting on every round held the engine's database
    # thread long enough for one device's commands to expire. Between counts the backlog must never read 0 while
    # rows wait (a standby reporting 0 counts as caught up), and it must reach 0 at once when everything is acked.
    counts = []
    count_rows = history.waiting
    monkeypatch.setattr(history, "waiting", lambda acked: counts.append(1) or count_rows(acked))
    sender, link = replicator()
    held = await run_in_db(history.local_cursors)
    await sender._on_cursors({"cursors": held})
    await run_in_db(events, 3)
    await sender.push_history()
    assert (sender.backlog, len(counts)) == (3, 1)  # from 0: counted at once

    await run_in_db(events, 2)
    await sender.push_history()  # within the interval: sent, not counted
    assert len(counts) == 1 and sender.backlog >= 2, (counts, sender.backlog)

    acks = [[b["table"], b["origin"], b["rows"][-1][b["fields"].index("origin_seq")]] for b in link.sent[-1]["batches"]]
    await sender._on_history_ack({"acks": acks})
    await sender.push_history()
    assert sender.backlog == 0 and len(counts) == 1  # everything acknowledged: 0 without a count

    await run_in_db(events, 4)
    await sender.push_history()
    assert (sender.backlog, len(counts)) == (4, 2)  # rows flow again after 0: counted at once
    await run_in_db(events, 1)
    await sender.push_history()
    assert len(counts) == 2 and sender.backlog >= 1
    await asyncio.sleep(replication.BACKLOG_COUNT_INTERVAL)
    await sender.push_history()  # nothing new to send, rows outstanding, the interval passed: counted, exact
    assert (sender.backlog, len(counts)) == (5, 3)


async def test_a_history_tables_origins_and_tops_come_from_its_stamp_index():
    # Asked on every round: one index descent per origin, not a scan (the answers are the same as a scan's).
    def fill() -> None:
        events(3)
        for seq in (7, 9):  # rows of the partner, as replication stores them (their own stamps)
            Event.objects.create(
                time="2026-11-30T00:00:00Z", kind="k", source="s", message="m", origin="backup", epoch=1, origin_seq=seq
            )

    await run_in_db(fill)
    mine = await run_in_db(lambda: max(Event.objects.filter(origin="main").values_list("origin_seq", flat=True)))
    assert await run_in_db(Event.stored_origins) == ["backup", "main"]
    assert await run_in_db(Event.stored_tops) == {"backup": 9, "main": mine}
    assert await run_in_db(Event.stored_tops, "backup") == {"backup": 9}
    assert await run_in_db(TokenUse.stored_origins) == []  # an empty table
    assert await run_in_db(TokenUse.stored_tops) == {}


async def test_a_long_backlog_is_counted_up_to_a_limit_not_row_by_row(monkeypatch):
    # Asked every round, also while the partner is away: an exact count costs as many rows as wait (57 ms at
    # 700,000 events, on the engine's database thread). Beyond the limit the count says "at least the limit".
    monkeypatch.setattr(Event, "COUNT_LIMIT", 5)
    await run_in_db(events, 3)
    assert (await run_in_db(history.waiting, {}))[("events.event", "main")] == 3  # below the limit: exact
    await run_in_db(events, 4)
    assert (await run_in_db(history.waiting, {}))[("events.event", "main")] == 5  # 7 wait: at least 5


async def test_while_the_partner_is_away_the_backlog_is_counted_at_most_every_interval(monkeypatch):
    counts = []
    count_rows = history.waiting
    monkeypatch.setattr(history, "waiting", lambda acked: counts.append(1) or count_rows(acked))
    sender, _ = replicator()
    await sender._on_cursors({"cursors": await run_in_db(history.local_cursors)})
    sender.link_down()  # the partner's cursors are known, the link is gone: rows wait for it
    await run_in_db(events, 3)
    await sender.push_history()
    assert (sender.backlog, len(counts)) == (3, 1)
    await run_in_db(events, 2)
    for _ in range(5):  # the history loop's rounds (every 0.2 s and on every wake-up) within one interval
        await sender.push_history()
    assert (sender.backlog, len(counts)) == (3, 1)
    await asyncio.sleep(replication.BACKLOG_COUNT_INTERVAL)
    await sender.push_history()
    assert (sender.backlog, len(counts)) == (5, 2)


async def test_rows_before_the_bulk_ones_are_acknowledged_before_those_are_stored(monkeypatch):
    # A round carries commands (whose barrier the active node waits on), events, alarms, then up to thousands of
    # trend samples: the first ones are acknowledged as soon as they are stored, not after the samples.
    held = await run_in_db(history.local_cursors)
    await run_in_db(events, 2)
    await run_in_db(lambda: AuditEntry.objects.create(action="stands-in-for-samples", detail={}))
    batches, _ = await run_in_db(history.rows_after, held)
    by_table = {batch["table"]: batch for batch in batches}
    message = framing.unpack(
        framing.pack({"t": "history", "batches": [by_table["events.event"], by_table["control.auditentry"]]})
    )
    monkeypatch.setattr(history, "is_bulk", lambda label: label == "control.auditentry")
    receiver, link = replicator()
    receiver.received = {table: dict(origins) for table, origins in held.items()}  # it holds what was here
    acknowledged_at_store: dict[str, list[str]] = {}

    async def watching(function, *args):
        if function is history.store_rows:
            acks = [ack[0] for sent in link.messages("history_ack") for ack in sent["acks"]]
            acknowledged_at_store[args[0]["table"]] = acks
        return await run_in_db(function, *args)

    receiver.engine = SimpleNamespace(image=None, run_in_db=watching)
    await receiver._on_history(message)
    assert acknowledged_at_store == {"events.event": [], "control.auditentry": ["events.event"]}
    assert [[ack[0] for ack in sent["acks"]] for sent in link.messages("history_ack")] == [
        ["events.event"],
        ["control.auditentry"],
    ]
    assert not link.messages("history_nack")


async def test_bulk_rows_wait_for_acknowledgements_beyond_the_window_and_the_others_do_not(monkeypatch):
    # Trend samples are sent at most BULK_WINDOW ahead of what the peer acknowledged (else a busy receiver's
    # socket buffers fill, acknowledgements come after the resend delay and the same samples go again and again);
    # commands, events and alarms are never held back by it. The audit trail stands in for the samples here.
    monkeypatch.setattr(AuditEntry, "BULK", True)
    monkeypatch.setattr(history, "BULK_WINDOW", 4)
    sender, link = replicator()
    held = await run_in_db(history.local_cursors)
    audit = [
        (await run_in_db(lambda n=n: AuditEntry.objects.create(action=f"sample-{n}", detail={}))).origin_seq
        for n in range(10)
    ]
    first_events = await run_in_db(events, 2)
    await sender._on_cursors({"cursors": held})

    await sender.push_history()
    first = link.messages("history")[-1]
    assert sent_seqs(first, "events.event") == first_events
    assert sent_seqs(first, "control.auditentry") == audit[:4]  # the window: four ahead of the acknowledged

    more_events = await run_in_db(events, 1)
    await sender.push_history()
    second = link.messages("history")[-1]
    assert sent_seqs(second, "events.event") == more_events and sent_seqs(second, "control.auditentry") == []

    await sender._on_history_ack({"acks": [["control.auditentry", "main", audit[1]]]})  # the peer stored two
    await sender.push_history()
    third = link.messages("history")[-1]
    assert sent_seqs(third, "control.auditentry") == audit[4:6]  # room for two more, no more
