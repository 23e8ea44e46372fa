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

from bms.notifications import conf
from bms.notifications.drain import drain_all
from redundancy.nodeview import worker_may_act

log = logging.getLogger(__name__)
TASK_NAME = "bms.notifications.drain"
SCHEDULE_NAME = "bms-notifications-drain"


def node_is_active() -> bool:
    """True if this node is the active one and may send (:func:`redundancy.nodeview.worker_may_act`)."""
    return worker_may_act("not sending notifications")


@shared_task(name=TASK_NAME, ignore_result=True)
def drain_outbox() -> dict[str, Any]:
    """Send every notification due now, if this node is active; what it did."""
    return asdict(drain_all(node_is_active))


def beat_entry() -> dict[str, Any]:
    """The beat schedule entry of the drain task."""
    period = conf.poll_seconds()
    return {"task": TASK_NAME, "schedule": period, "options": {"expires": max(3 * period, 10.0)}}
