"""Draining the outbox: send what is due, record it with a new stamp, retry failures with capped backoff.

Only the active node drains: :func:`drain` asks ``is_active`` before the
pass and again before every send, and a standby (or a node that does not
know its role) sends nothing. The Celery task and the embedded runner are
the two callers; both may run at once, and several workers too: a row is
*claimed* first (a node-local lease, written only if the row is still
pending, unleased and unchanged since it was read), so it is sent by one of
them; a sender that dies holding a claim leaves it to expire (then the row
is sent again, with the same key). Every later write of the pass is
conditional too, so that drains never undo each other's marks: a failure
or a cancellation is recorded only while the row is still pending and this
sender's claim (a sender stalled past its lease has lost the row to the
one that took it over), and a delivery is recorded as ``sent`` whatever
another drain wrote meanwhile, unless the row already says ``sent`` (the
receiver has it; ``sent`` wins in the pair's merge as well).

Per row: an escalation whose alarm left the unacknowledged states after the
raise (acknowledged, shelved, suppressed, out of service, normal) is
cancelled instead of sent; otherwise the row is delivered and marked
``sent``, or its failure counted and its next try put off by
``min(cap, base x 2^(attempts-1))`` seconds. A row failing for longer than
the give-up period ends ``failed`` with a warning event. One failing
receiver does not hold up the others: its other rows are skipped for the
rest of the pass (the mail server, when it is the server that fails).

Reconciliation: the journal and the outbox are two history tables, so they
reach the partner on two streams; after a takeover the new active node may
hold a journal row of its predecessor without the outbox rows written with
it. Every few seconds the drain runs :func:`reconcile`: it derives the
outbox rows of the partner's recent journal rows again (the keys are
deterministic, so a row that is present is left alone) and the missing ones
are sent like any other.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from bms.alarms.models import AlarmJournal
from bms.alarms.states import State
from bms.events.models import Event
from bms.history.models import stamped_update
from bms.notifications import conf
from bms.notifications.delivery import Deliverer, DeliveryError
from bms.notifications.models import Notification
from bms.notifications.outbox import enqueue

log = logging.getLogger(__name__)
UNACKNOWLEDGED = (State.ACTIVE_UNACKED.value, State.RTN_UNACKED.value)
GIVE_UP_EVENT = "notification_failed"


@dataclass(slots=True)
class DrainResult:
    """What one pass did."""

    sent: int = 0
    retried: int = 0
    gave_up: int = 0
    cancelled: int = 0
    deferred: int = 0  # left for a later pass: its receiver failed earlier in this pass, or another sender has it
    inactive: bool = False  # this node is not active (the pass stopped, or never started)
    full: bool = False  # the pass took a whole batch: more may be due now

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.gave_up + self.cancelled


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: base x 2^(attempts-1), capped."""
    return min(conf.retry_cap(), conf.retry_base() * 2 ** max(0, min(attempts - 1, 40)))


def owner_name() -> str:
    """Who holds a claim: node, process and thread (for the admin and the logs)."""
    return f"{settings.BMS_NODE_NAME}:{os.getpid()}:{threading.get_ident()}"[:100]


def due(
    now: datetime, limit: int, skipped: AbstractSet[tuple[str, str]] = frozenset(), seen: AbstractSet[int] = frozenset()
) -> list[Notification]:
    """Pending rows due by ``now``, not claimed by a live sender, oldest due first.

    ``skipped``: receivers that failed in this pass (``(channel, address)``;
    an empty address: the whole channel), left out so that their backlog
    cannot fill the batch; ``seen``: rows this pass has already had.
    """
    rows = Notification.objects.filter(status=Notification.PENDING, next_try__lte=now).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now)
    )
    for channel, address in skipped:
        rows = rows.exclude(channel=channel, **({"address": address} if address else {}))
    if seen:
        rows = rows.exclude(pk__in=seen)
    return list(rows.order_by("next_try", "id")[:limit])


def claim(notification: Notification, now: datetime, owner: str) -> bool:
    """Take the row for sending, if it is still the version read, pending and unclaimed (no stamp: node-local)."""
    lease = now + timedelta(seconds=conf.lease_seconds())
    taken = (
        Notification.objects.filter(pk=notification.pk, status=Notification.PENDING, origin_seq=notification.origin_seq)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease_until=lease, lease_owner=owner)
    )
    return taken == 1


def settled_by(notification: Notification) -> AlarmJournal | None:
    """The first journal row after the raise that left the alarm acknowledged or not annunciated, if any."""
    return (
        AlarmJournal.objects.filter(alarm=notification.alarm, alarm_seq__gt=notification.alarm_seq)
        .exclude(state__in=UNACKNOWLEDGED)
        .order_by("alarm_seq")
        .first()
    )


def _mine(notification: Notification, owner: str) -> QuerySet[Notification]:
    """The row while it is still pending and claimed by ``owner``: the writes of a sender that may have lost it."""
    return Notification.objects.filter(pk=notification.pk, status=Notification.PENDING, lease_owner=owner)


def _sent(notification: Notification, now: datetime) -> None:
    # Not conditional on the claim: the receiver has the message, so the row must say so even if a drain
    # took it over meanwhile (this sender stalled past its lease) and cancelled or gave it up.
    changed = stamped_update(
        Notification.objects.filter(pk=notification.pk).exclude(status=Notification.SENT),
        status=Notification.SENT,
        sent_at=now,
        sent_by=settings.BMS_NODE_NAME,
        attempts=F("attempts") + 1,
        last_error="",
        lease_until=None,
        lease_owner="",
    )
    if not changed:
        log.warning("notification %s to %s was sent twice (same key)", notification.key, notification.recipient)


def _cancel(notification: Notification, row: AlarmJournal, now: datetime, owner: str) -> bool:
    """Record that the escalation is not sent; False if this sender no longer holds the row."""
    changed = stamped_update(
        _mine(notification, owner),
        status=Notification.CANCELLED,
        sent_at=now,
        sent_by=settings.BMS_NODE_NAME,
        last_error=f"not escalated: {row.transition} (#{row.alarm_seq}, {row.state}) before it fell due",
        lease_until=None,
        lease_owner="",
    )
    return changed == 1


RETRIED, GAVE_UP, LOST = "retried", "gave_up", "lost"


def _failed(notification: Notification, error: str, now: datetime, owner: str) -> str:
    """Count a failure: put the next try off (``RETRIED``) or give up (``GAVE_UP``).

    ``LOST``: nothing written, the row is no longer this sender's (another
    one took it over after the lease ran out, or recorded it meanwhile);
    its count of attempts and its claim are left as that sender has them.
    """
    attempts = notification.attempts + 1
    give_up = conf.give_up_hours()
    if give_up > 0 and now - notification.due_at >= timedelta(hours=give_up):
        with transaction.atomic():
            changed = stamped_update(
                _mine(notification, owner),
                status=Notification.FAILED,
                attempts=attempts,
                sent_by=settings.BMS_NODE_NAME,
                last_error=error[:2000],
                lease_until=None,
                lease_owner="",
            )
            if changed:
                Event.objects.create(
                    time=now,
                    kind=GIVE_UP_EVENT,
                    source=notification.recipient[:128],
                    severity=Event.WARNING,
                    message=(
                        f"notification of {notification.alarm} #{notification.alarm_seq} ({notification.transition}) "
                        f"to {notification.recipient} given up after {attempts} attempts: {error}"
                    )[:2000],
                )
        if not changed:
            return LOST
        log.warning("notification %s to %s given up: %s", notification.key, notification.recipient, error)
        return GAVE_UP
    delay = backoff(attempts)
    changed = stamped_update(
        _mine(notification, owner),
        attempts=attempts,
        next_try=now + timedelta(seconds=delay),
        last_error=error[:2000],
        lease_until=None,
        lease_owner="",
    )
    if not changed:
        return LOST
    log.warning(
        "notification %s to %s failed (attempt %d, next in %.0f s): %s",
        notification.key,
        notification.recipient,
        attempts,
        delay,
        error,
    )
    return RETRIED


class Reconciler:
    """What one drain process has reconciled: per origin, the highest journal ``origin_seq`` looked at."""

    def __init__(self) -> None:
        self.cursors: dict[str, int] = {}
        self.last: datetime | None = None
        self.lock = threading.Lock()

    def due(self, now: datetime) -> bool:
        """Time to look again (or the clock went back)."""
        if self.last is None:
            return True
        elapsed = (now - self.last).total_seconds()
        return elapsed < 0 or elapsed >= conf.reconcile_seconds()

    def reset(self) -> None:
        """Forget what was looked at (tests; a process that starts afresh)."""
        with self.lock:
            self.cursors.clear()
            self.last = None


_reconciler = Reconciler()


def reconcile(now: datetime, reconciler: Reconciler | None = None) -> int:
    """Outbox rows for the partner's journal rows of the last minutes that have none here; how many were made.

    Only other origins' rows are looked at (this node wrote its own outbox
    rows with its journal rows), from ``BMS_NOTIFY_RECONCILE_MINUTES`` back
    and above what this process already looked at.
    """
    window = conf.reconcile_minutes()
    if window <= 0:
        return 0
    reconciler = reconciler or _reconciler
    with reconciler.lock:
        reconciler.last = now
        me = settings.BMS_NODE_NAME
        rows = AlarmJournal.objects.filter(time__gte=now - timedelta(minutes=window)).exclude(origin=me)
        known = Q()
        for origin, seq in reconciler.cursors.items():
            known |= Q(origin=origin, origin_seq__lte=seq)
        if reconciler.cursors:
            rows = rows.exclude(known)
        found = list(rows.order_by("origin", "origin_seq"))
        if not found:
            return 0
        with transaction.atomic():
            made = enqueue(found)
        for row in found:
            reconciler.cursors[row.origin] = max(reconciler.cursors.get(row.origin, 0), row.origin_seq)
    if made:
        log.warning("made %d notification(s) for the partner's journal rows whose outbox rows had not arrived", made)
    return made


def drain(
    is_active: Callable[[], bool],
    *,
    limit: int | None = None,
    now: datetime | None = None,
    deliverer: Deliverer | None = None,
    reconciler: Reconciler | None = None,
) -> DrainResult:
    """One pass over the due notifications; sends only while ``is_active()`` says this node is active.

    ``now`` fixes the clock for the whole pass (tests step through backoff
    with it); by default each step reads the clock. ``reconciler``: reconcile
    with this one first (default: the process's own, every few seconds).
    """
    result = DrainResult()
    if not is_active():
        result.inactive = True
        return result
    clock: Callable[[], datetime] = (lambda: now) if now is not None else timezone.now
    limit = limit or conf.batch()
    if reconciler is not None or _reconciler.due(clock()):
        reconcile(clock(), reconciler)
    owner = owner_name()
    skipped: set[tuple[str, str]] = set()
    seen: set[int] = set()
    sender = deliverer or Deliverer()
    try:
        while result.handled < limit and not result.inactive:
            rows = due(clock(), limit - result.handled, skipped, seen)
            if not rows:
                break
            for notification in rows:
                seen.add(notification.pk)
                if (notification.channel, notification.address) in skipped or (notification.channel, "") in skipped:
                    result.deferred += 1
                    continue
                if not is_active():
                    result.inactive = True
                    break
                # claimed before anything is decided, a cancellation too: another drain that read the row
                # before this one may be delivering it right now
                if not claim(notification, clock(), owner):
                    result.deferred += 1
                    continue
                if notification.stage == Notification.ESCALATION:
                    settled = settled_by(notification)
                    if settled is not None:
                        if _cancel(notification, settled, clock(), owner):
                            result.cancelled += 1
                        else:
                            result.deferred += 1
                        continue
                try:
                    sender.deliver(notification)
                except DeliveryError as exc:
                    skipped.add(exc.scope)
                    outcome = _failed(notification, str(exc), clock(), owner)
                    if outcome == GAVE_UP:
                        result.gave_up += 1
                    elif outcome == RETRIED:
                        result.retried += 1
                    else:
                        result.deferred += 1
                else:
                    _sent(notification, clock())
                    result.sent += 1
        result.full = result.handled >= limit
    finally:
        if deliverer is None:
            sender.close()
    return result


def drain_all(is_active: Callable[[], bool], budget_seconds: float = 30.0) -> DrainResult:
    """Passes until nothing more is due now (or ``budget_seconds`` ran out); the totals."""
    total = DrainResult()
    started = timezone.now()
    while True:
        result = drain(is_active)
        for name in ("sent", "retried", "gave_up", "cancelled", "deferred"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
        total.inactive = result.inactive
        total.full = result.full
        if result.inactive or not result.full or result.handled == 0:
            return total
        if (timezone.now() - started).total_seconds() > budget_seconds:
            return total
