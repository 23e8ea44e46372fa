"""Celery side of trending: roll-ups and storage upkeep, scheduled by beat, acting only on the active node.

Production runs ``celery -A bms worker`` and ``celery -A bms beat`` beside
the node. Beat publishes :func:`roll_up_task` every
``BMS_TREND_ROLLUP_SECONDS`` and :func:`maintain_task` every
``BMS_TREND_MAINTENANCE_SECONDS``, each with an expiry so a worker that was
away does not find a pile of copies. A task first asks whether this node is
the active one (the node state row the pair service keeps fresh) and does
nothing otherwise: the active node's roll-ups reach the standby by
replication, and a standby keeps its own partitions from its storing path
(``bms.trends.storage.upkeep_if_due``). Both tasks are idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from bms.trends import conf, maintenance
from redundancy.nodeview import worker_may_act

log = logging.getLogger(__name__)
ROLLUP_TASK = "bms.trends.roll_up"
MAINTAIN_TASK = "bms.trends.maintain"


def node_is_active() -> bool:
    """True if this node is the active one and may do trend maintenance (``nodeview.worker_may_act``)."""
    return worker_may_act("trend maintenance waits")


@shared_task(name=ROLLUP_TASK, ignore_result=True)
def roll_up_task() -> dict[str, Any]:
    """Compute the due roll-ups, if this node is active."""
    if not node_is_active():
        return {"skipped": "not active"}
    return maintenance.roll_up()


@shared_task(name=MAINTAIN_TASK, ignore_result=True)
def maintain_task() -> dict[str, Any]:
    """Create partitions ahead and drop expired data, if this node is active."""
    if not node_is_active():
        return {"skipped": "not active"}
    return maintenance.maintain()


def beat_entries() -> dict[str, dict[str, Any]]:
    """The beat schedule entries of the two tasks."""
    rollup, upkeep = conf.rollup_seconds(), conf.maintenance_seconds()
    return {
        "bms-trends-roll-up": {"task": ROLLUP_TASK, "schedule": rollup, "options": {"expires": max(rollup, 30.0)}},
        "bms-trends-maintain": {"task": MAINTAIN_TASK, "schedule": upkeep, "options": {"expires": max(upkeep, 30.0)}},
    }
