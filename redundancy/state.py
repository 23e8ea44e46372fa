"""The node state row, read and written by both sides: the pair service (engine) and the web side.

Blocking functions; the engine calls them on its database thread.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bms.engine.store import with_fresh_connection
from bms.history.models import OriginCounter, set_epoch
from redundancy.models import NodeState


@with_fresh_connection
def load_epoch() -> int:
    """The highest epoch this node ever persisted (its own or one it adopted from the partner)."""
    node = NodeState.objects.filter(node=settings.BMS_NODE_NAME).values_list("epoch", flat=True).first() or 0
    stamps = OriginCounter.objects.filter(origin=settings.BMS_NODE_NAME).values_list("epoch", flat=True).first() or 0
    return max(node, stamps)


@with_fresh_connection
def save_epoch(epoch: int) -> None:
    """Persist ``epoch`` before acting on it; never moves backwards."""
    with transaction.atomic():
        row, _ = NodeState.objects.select_for_update().get_or_create(node=settings.BMS_NODE_NAME)
        if epoch > row.epoch:
            row.epoch = epoch
            row.save(update_fields=["epoch"])
    set_epoch(epoch)


@with_fresh_connection
def save_status(role: str, epoch: int, active_node: str, active_url: str, status: dict[str, Any]) -> None:
    NodeState.objects.update_or_create(
        node=settings.BMS_NODE_NAME,
        defaults={
            "role": role,
            "epoch": epoch,
            "active_node": active_node,
            "active_url": active_url,
            "status": status,
            "updated_at": timezone.now(),
        },
    )


@with_fresh_connection
def beat() -> None:
    """The engine's liveness beat: touch ``updated_at`` only (one small UPDATE, no status document).

    The web side trusts the role in the row for one heartbeat timeout after
    the engine's last sign of life (:meth:`NodeState.fresh`).
    """
    NodeState.objects.filter(node=settings.BMS_NODE_NAME).update(updated_at=timezone.now())


REQUEST_FIELDS = ("switchover_requested_at", "take_control_requested_at")


@with_fresh_connection
def take_operator_requests() -> set[str]:
    """The operators' requests left by the web side since the last call (``REQUEST_FIELDS`` set), cleared.

    One read when there is none (the usual case, twice a second); the
    conditional clear makes each request taken once.
    """
    mine = NodeState.objects.filter(node=settings.BMS_NODE_NAME)
    row = mine.values(*REQUEST_FIELDS).first() or {}
    taken = set()
    for field in REQUEST_FIELDS:
        if row.get(field) is not None and mine.filter(**{f"{field}__isnull": False}).update(**{field: None}):
            taken.add(field)
    return taken


def request_switchover(username: str) -> None:
    """Web side: ask this node's pair service to hand control to its partner (picked up within a second)."""
    NodeState.objects.update_or_create(
        node=settings.BMS_NODE_NAME,
        defaults={"switchover_requested_at": timezone.now(), "switchover_requested_by": username},
    )


@with_fresh_connection
def load_last_role() -> str | None:
    """The role this node last reported before this start (None: it never ran in a pair on this database)."""
    return NodeState.objects.filter(node=settings.BMS_NODE_NAME).values_list("role", flat=True).first()


def request_take_control(username: str) -> None:
    """Ask this node's pair service to take control even though it cannot show it holds the latest state."""
    NodeState.objects.update_or_create(
        node=settings.BMS_NODE_NAME,
        defaults={"take_control_requested_at": timezone.now(), "take_control_requested_by": username},
    )
