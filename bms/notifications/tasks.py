"""Celery side of notifications: the drain task, scheduled by beat every ``BMS_NOTIFY_POLL_SECONDS``.

Production runs ``celery -A bms worker`` and ``celery -A bms beat`` beside
the node (docs/notifications.md). Beat publishes :func:`drain_outbox` every
poll period, with an expiry of a few periods so that a worker that was away
does not find a pile of stale copies; the worker drains whatever is due,
but only if this node is active (:func:`node_is_active`, from the node
state row the pair service keeps fresh). A dead broker or worker only
delays: the outbox rows wait in the database until a drain comes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from celery import shared_task
from django.conf import settings

from bms.notifications import conf
from bms.notifications.drain import drain_all

log = logging.getLogger(__name__)
TASK_NAME = "bms.notifications.drain"
SCHEDULE_NAME = "bms-notifications-drain"


def node_is_active() -> bool:
    """True if this node is the active one (a node without a partner always is); False if it cannot tell.

    A worker started without the pair's settings would see "no partner,
    always active": so a fresh node state row of this node that says it is
    not active wins over that, and nothing is sent from a standby.
    """
    from redundancy.models import NodeState
    from redundancy.nodeview import ACTIVE, load_view

    try:
        view = load_view()
        if not view.is_active:
            return False
        if not view.pair:
            row = NodeState.objects.filter(node=settings.BMS_NODE_NAME).first()
            if row is not None and row.fresh() and row.role != ACTIVE:
                log.warning("no partner configured here, but this node's engine says it is %s: not sending", row.role)
                return False
        return True
    except Exception:  # a view that cannot be read means "do not send"
        log.exception("cannot read this node's role; not sending notifications")
        return False


@shared_task(name=TASK_NAME, ignore_result=True)
def drain_outbox() -> dict[str, Any]:
    """Send every notification due now, if this node is active; what it did."""
    return asdict(drain_all(node_is_active))


def beat_entry() -> dict[str, Any]:
    """The beat schedule entry of the drain task."""
    period = conf.poll_seconds()
    return {"task": TASK_NAME, "schedule": period, "options": {"expires": max(3 * period, 10.0)}}
