"""The web side's view of this node's role, read from the node state row the pair service writes.

Every page, the read-only guard, ``/healthz``, the redundancy page, the API,
``/metrics`` and the ``redundancy`` command read the role through
:func:`node_view`. A node without a partner (``BMS_PARTNER_ADDRESS`` empty,
or redundancy not activated) runs alone and is always active in epoch 0. A
pair node whose row (or, with the engine in this process, the state it
publishes in memory) is missing or stale (no liveness beat from the engine
for the heartbeat timeout: the engine is frozen or dead, and the partner may
already have taken control) does not know its role: it reports ``unknown``,
refuses changes like a standby and answers 503 on ``/healthz/active``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from bms.engine.dbhealth import UNAVAILABLE_ERRORS
from bms.outage import one_line
from redundancy.config import heartbeat_timeout, pair_configured
from redundancy.models import NodeState

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
ACTIVE = "active"
_REQUEST_ATTRIBUTE = "_bms_node_view"

# When the engine runs in this process (the embedded shape, ``runbms``), the composition root
# (bms.node) registers where its state lives in memory, so that this node can still say what it is
# while its database is away. In a web process on its own only the last row read is known.
_memory_row: Callable[[], NodeState | None] | None = None
_database_problem: Callable[[], str] | None = None
_last_row: NodeState | None = None
# The in-process engine's loop watch (bms.engine.loopwatch.LoopWatch.summary): a node alone has no node
# state row, so /metrics reads its loop lag from here when the engine runs in this process.
_engine_loop: Callable[[], dict[str, Any]] | None = None


def use_memory(row: Callable[[], NodeState | None] | None, database_problem: Callable[[], str] | None) -> None:
    """Register the in-process engine's view of this node (``row``) and of its database (None: none here)."""
    global _memory_row, _database_problem
    _memory_row, _database_problem = row, database_problem


def use_loop_watch(summary: Callable[[], dict[str, Any]] | None) -> None:
    """Register the in-process engine's loop lag summary (None: no engine in this process)."""
    global _engine_loop
    _engine_loop = summary


def engine_loop() -> dict[str, Any] | None:
    """The in-process engine's loop lag summary, or None if the engine does not run in this process."""
    return _engine_loop() if _engine_loop is not None else None


def pair_mode() -> bool:
    """True if this node runs as one half of a pair (a partner is configured and redundancy is activated)."""
    if not pair_configured():
        return False
    return str(getattr(settings, "BMS_REDUNDANCY_ACTIVATE", "1")).strip().lower() not in ("0", "false", "no", "off")


def partner_name() -> str:
    return settings.BMS_PARTNER_NAME or ("backup" if settings.BMS_NODE_NAME == "main" else "main")


@dataclass(slots=True)
class NodeView:
    """This node's role as the web side sees it, at one instant."""

    node: str
    pair: bool
    role: str
    epoch: int
    active_node: str
    active_url: str
    partner: str
    partner_url: str
    public_url: str
    fresh: bool
    updated_at: datetime | None
    status: dict[str, Any] = field(default_factory=dict)
    degraded: str = ""  # why this node cannot serve normally (its database is away), "" if it can

    @property
    def is_active(self) -> bool:
        return self.role == ACTIVE

    @property
    def writable(self) -> bool:
        """Changes are accepted only on the active node (a node alone is always active)."""
        return self.is_active

    @property
    def role_known(self) -> bool:
        return self.role != UNKNOWN

    @property
    def age_seconds(self) -> float | None:
        if self.updated_at is None:
            return None
        return max(0.0, (timezone.now() - self.updated_at).total_seconds())

    def health(self) -> dict[str, Any]:
        """The body of ``/healthz`` and ``/healthz/active``."""
        return {
            "node": self.node,
            "role": self.role,
            "epoch": self.epoch,
            "active_node": self.active_node,
            "active_url": self.active_url,
            "partner": self.partner if self.pair else "",
            "partner_url": self.partner_url,
            "pair": self.pair,
            "status": "degraded" if self.degraded else "ok",
            "database": self.degraded or "ok",
        }

    def where_to_write(self) -> str:
        """One sentence for an operator who tried to change something here."""
        if self.role == UNKNOWN:
            age = self.age_seconds
            why = "no status from its redundancy service" + (f" for {age:.1f} s" if age is not None else " yet")
            head = f"This node ({self.node}) does not know its role ({why}), so it accepts no changes"
        else:
            head = f"This node ({self.node}) is {self.role.replace('_', ' ')}"
        if self.active_node and self.active_node != self.node:
            where = f"make changes on the active node {self.active_node}"
            return f"{head}; {where} at {self.active_url}" if self.active_url else f"{head}; {where}"
        if self.pair and self.partner_url:
            return f"{head}; no active node is known right now: try the partner {self.partner} at {self.partner_url}"
        return f"{head}; no active node is known right now, try again in a few seconds"


def _standalone() -> NodeView:
    url = settings.BMS_PUBLIC_URL.rstrip("/")
    return NodeView(
        node=settings.BMS_NODE_NAME,
        pair=False,
        role=ACTIVE,
        epoch=0,
        active_node=settings.BMS_NODE_NAME,
        active_url=url,
        partner="",
        partner_url="",
        public_url=url,
        fresh=True,
        updated_at=None,
    )


def load_view() -> NodeView:
    """This node's view: the in-process engine's published state, else the database row (one query).

    With the engine in this process (``runbms``) the view is what its status
    loop last published in memory, so a busy database cannot make the node
    look stale. In a web process on its own, the row; with the database away
    the last row read (which turns ``unknown`` once older than the heartbeat
    timeout, like any row), marked ``degraded``.
    """
    global _last_row
    problem = _database_problem() if _database_problem is not None else ""
    if not pair_mode():
        view = _standalone()
        view.degraded = problem
        return view
    published = _memory_row() if _memory_row is not None else None
    if published is not None:
        # The engine runs in this process: its state as its status loop last published it, aged like the row
        # (a stalled engine loop stops publishing), without a query and whatever the database is doing.
        age = timezone.now() - published.updated_at
        view = _view_of(published, fresh=age < timedelta(seconds=heartbeat_timeout()))
        view.degraded = problem
        return view
    try:
        row = NodeState.current()
    except UNAVAILABLE_ERRORS as exc:
        problem = problem or f"database unavailable: {one_line(exc, 200)}"
        view = _view_of(_last_row or NodeState(node=settings.BMS_NODE_NAME))
    else:
        _last_row = row
        view = _view_of(row)
    view.degraded = problem
    return view


def _view_of(row: NodeState, fresh: bool | None = None) -> NodeView:
    fresh = row.fresh() if fresh is None else fresh
    status = row.status if isinstance(row.status, dict) else {}
    partners = status.get("partners") or [{}]
    partner_url = (partners[0].get("url") if fresh else "") or settings.BMS_PARTNER_URL
    return NodeView(
        node=settings.BMS_NODE_NAME,
        pair=True,
        role=row.role if fresh else UNKNOWN,
        epoch=row.epoch,
        active_node=row.active_node if fresh else "",
        active_url=row.active_url if fresh else "",
        partner=partner_name(),
        partner_url=partner_url.rstrip("/"),
        public_url=settings.BMS_PUBLIC_URL.rstrip("/"),
        fresh=fresh,
        updated_at=row.updated_at if row.pk is not None or fresh else None,
        status=status,
    )


def node_view(request: HttpRequest | None = None) -> NodeView:
    """This node's view, read once per request (the guard, the banner and the view share it)."""
    if request is None:
        return load_view()
    view = getattr(request, _REQUEST_ATTRIBUTE, None)
    if view is None:
        view = load_view()
        remember_view(request, view)
    return view


def remember_view(request: HttpRequest, view: NodeView) -> None:
    """Make ``view`` the one :func:`node_view` answers for the rest of ``request`` (read again by the guard)."""
    setattr(request, _REQUEST_ATTRIBUTE, view)


def worker_may_act(waiting: str) -> bool:
    """May periodic work outside the engine (a Celery task, a maintenance thread) act for this node now?

    True on the active node (a node without a partner always is); False otherwise and whenever the role
    cannot be read (``waiting`` says, in the log, what then waits). A worker started without the pair's
    settings would see "no partner, always active": a fresh state row of this node that says it is not
    active wins over that, so nothing acts from a standby.
    """
    try:
        view = load_view()
        if not view.is_active:
            return False
        if not view.pair:
            row = NodeState.objects.filter(node=settings.BMS_NODE_NAME).first()
            if row is not None and row.fresh() and row.role != ACTIVE:
                log.warning("no partner configured here, but this node's engine says it is %s: %s", row.role, waiting)
                return False
        return True
    except Exception:  # a view that cannot be read means "do nothing now"
        log.exception("cannot read this node's role; %s", waiting)
        return False
