"""Caught up while history flows: the standby holds every row of the active node older than a bound.

At 100,000 points the active node writes 10,000 trend samples a second and a few thousand are always in flight,
so "caught up" (syncing -> standby, automatic failback) waited for a backlog of exactly 0, which came by luck
(bench/scale.py). The active node now says whether the partner has acknowledged every row of its own stamped
at least the bound ago (``history_current``). Real database, real history rows and stamps; the clock is the
test's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from bms.engine import store
from bms.events.models import Event
from redundancy import history, replication
from redundancy.roles import Role
from tests.redundancy.test_sync_request import Service, node, run_in_db

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "events.event"
START = datetime(2026, 12, 2, tzinfo=UTC)


def write_events(count: int, first: int = 0) -> int:
    """``count`` events stamped by this node; returns the last stamp issued."""
    store.log_events(
        [("note", f"dev{first + n}", "x", "info", START + timedelta(seconds=first + n)) for n in range(count)]
    )
    return history.last_stamp(settings.BMS_NODE_NAME)


@pytest.fixture
def clock(monkeypatch):
    now = [5000.0]
    monkeypatch.setattr(replication.time, "monotonic", lambda: now[0])
    return now


@pytest.fixture
def active():
    service = Service(Role.ACTIVE)
    service.config.node = settings.BMS_NODE_NAME
    replicator = node(service, points=0)
    replicator.peer_cursors = {}
    return replicator


async def test_the_partner_is_current_once_it_holds_every_row_older_than_the_bound(clock, active):
    bound = replication.CURRENT_WITHIN_RESENDS * active.resend_after
    early = await run_in_db(write_events, 3)
    active.backlog = 3
    await active._probe_lag()
    assert not active.history_current  # no stamp old enough yet: the lag is not known

    clock[0] += bound
    later = await run_in_db(write_events, 4, 3)  # rows keep coming: the backlog never reaches 0
    active.backlog = 7
    await active._probe_lag()
    assert not active.history_current  # the rows stamped before the watermark are not acknowledged

    active.acked = {EVENTS: {settings.BMS_NODE_NAME: early}}
    await active._probe_lag()
    assert active.history_current, (early, later)  # behind only by rows younger than the bound

    clock[0] += bound  # the watermark moves on to the stamp seen a bound ago (``later``): not acknowledged
    await active._probe_lag()
    assert not active.history_current
    active.acked = {EVENTS: {settings.BMS_NODE_NAME: later}}
    await active._probe_lag()
    assert active.history_current


async def test_a_stamp_seen_before_a_pause_in_the_counts_does_not_bound_the_lag(clock, active):
    bound = replication.CURRENT_WITHIN_RESENDS * active.resend_after
    early = await run_in_db(write_events, 2)
    active.backlog = 2
    await active._probe_lag()
    clock[0] += bound + replication.STAMP_SEEN_SLACK + 1  # no count meanwhile (the link was away, say)
    await run_in_db(write_events, 5, 2)
    active.acked = {EVENTS: {settings.BMS_NODE_NAME: early}}
    active.backlog = 5
    await active._probe_lag()
    assert not active.history_current  # that old stamp says nothing about the last minutes


async def test_quarantined_and_other_origins_rows_do_not_hold_it_back(active):
    top = await run_in_db(write_events, 3)

    def other_origin_row() -> None:
        Event.objects.create(
            time=START, kind="note", source="x", message="m", origin="backup", epoch=1, origin_seq=top + 100
        )

    await sync_to_async(other_origin_row)()
    acked = {EVENTS: {settings.BMS_NODE_NAME: top}}
    assert not await run_in_db(history.behind, acked, settings.BMS_NODE_NAME, top)
    assert await run_in_db(history.behind, {}, settings.BMS_NODE_NAME, top)
    assert await run_in_db(history.behind, {EVENTS: {settings.BMS_NODE_NAME: top - 1}}, settings.BMS_NODE_NAME, top)


@pytest.mark.parametrize(
    ("heartbeat", "caught_up"),
    [
        ({"backlog": 0}, True),
        ({"backlog": 4000, "history_current": True}, True),
        ({"backlog": 4000, "history_current": False}, False),
        ({"backlog": 4000}, False),  # an older partner that does not say: as before, the backlog must be 0
    ],
)
def test_a_standby_is_caught_up_with_a_backlog_only_if_the_active_node_says_it_is_current(heartbeat, caught_up):
    service = Service(Role.STANDBY, partner_hash="same")
    service.partner.heartbeat = {"config_hash": "same", **heartbeat}
    standby = node(service, points=0)
    standby.config_hash = "same"
    standby.image_synced = True
    assert standby.caught_up is caught_up


class AckingService(Service):
    """A partner that acknowledges each history message it receives (``acking`` False: it never does)."""

    def __init__(self, acking: bool) -> None:
        super().__init__(Role.HANDING_OVER)
        self.config.node = settings.BMS_NODE_NAME
        self.config.handover_timeout = 1.0
        self.acking = acking
        self.replicator = None

    async def send(self, kind: str, **body) -> bool:
        await super().send(kind, **body)
        if kind == "history" and self.acking:
            tops = [
                (batch["table"], batch["origin"], batch["rows"][-1][batch["fields"].index("origin_seq")])
                for batch in body["batches"]
            ]
            await self.replicator._on_history_ack({"acks": tops})
        return True


@pytest.mark.parametrize("acking", [True, False], ids=["partner-acknowledges", "partner-silent"])
async def test_a_handover_sends_history_until_the_partner_holds_all_of_it(acking, caplog):
    service = AckingService(acking)
    active = node(service, points=0)
    service.replicator = active
    active.peer_cursors = {}
    top = await run_in_db(write_events, history.BATCH + 500)  # more than one round
    await active.hand_over()
    kinds = service.kinds()
    assert kinds[-1] == "handover" and kinds.count("history") >= 2, kinds
    if acking:
        assert active.acked[EVENTS][settings.BMS_NODE_NAME] == top and active.backlog == 0
        assert "not yet acknowledged" not in caplog.text
    else:
        assert "history row(s) not yet acknowledged by the partner" in caplog.text


async def test_a_moment_with_nothing_waiting_is_a_watermark_and_the_stamps_kept_stay_few(clock, active):
    bound = replication.CURRENT_WITHIN_RESENDS * active.resend_after
    top = await run_in_db(write_events, 2)
    active.acked = {EVENTS: {settings.BMS_NODE_NAME: top}}
    for _ in range(200):  # 100 s of counts with nothing waiting
        active.backlog = 0
        await active._probe_lag()
        clock[0] += 0.5
    assert active.history_current
    assert len(active._stamps_seen) <= bound / 0.5 + 2, len(active._stamps_seen)
    await run_in_db(write_events, 3, 2)  # rows flow again, newer than the watermark: still current
    active.backlog = 3
    await active._probe_lag()
    assert active.history_current
