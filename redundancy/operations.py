"""What operators see and do: the status document, the role history, and the switchover request.

Shared by the redundancy page, ``/api/redundancy/status``,
``/api/redundancy/switchover`` and ``python manage.py redundancy``, so that
all of them say the same thing in the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from bms.control.models import AuditEntry
from bms.events.models import Event
from redundancy import state
from redundancy.nodeview import ACTIVE, NodeView

ROLE_HISTORY = 20
SWITCHOVER_ACTION = "redundancy.switchover"
TAKE_CONTROL_ACTION = "redundancy.take_control"


def role_history(limit: int = ROLE_HISTORY) -> list[dict[str, Any]]:
    """The last role changes of both nodes (the event log replicates), newest first."""
    rows = Event.objects.filter(kind="role_change").order_by("-time", "-id")[:limit]
    return [
        {"time": row.time.isoformat(), "node": row.source, "severity": row.severity, "reason": row.message}
        for row in rows
    ]


def _partner(view: NodeView) -> dict[str, Any]:
    partners = view.status.get("partners") or [{}]
    return partners[0] if view.fresh else {}


def status_payload(view: NodeView) -> dict[str, Any]:
    """The document behind the redundancy page and ``GET /api/redundancy/status``."""
    status = view.status if view.fresh else {}
    refusal = switchover_refusal(view)
    payload: dict[str, Any] = {
        "node": view.node,
        "pair": view.pair,
        "role": view.role,
        "epoch": view.epoch,
        "active_node": view.active_node,
        "active_url": view.active_url,
        "partner": view.partner,
        "partner_url": view.partner_url,
        "public_url": view.public_url,
        "fresh": view.fresh,
        "updated_at": view.updated_at.isoformat() if view.updated_at else None,
        "status_age_ms": round(view.age_seconds * 1000) if view.age_seconds is not None else None,
        "this": status.get("this", {}),
        "partners": status.get("partners", []),
        "sync": status.get("sync", {}),
        "witness": status.get("witness", {}),
        "config": status.get("config", {}),
        "failovers": status.get("failovers", 0),
        "role_changes": role_history(),
        "switchover": {"allowed": refusal is None, "reason": refusal or ""},
    }
    if not view.pair:
        payload["message"] = (
            f"{view.node} runs alone (no BMS_PARTNER_ADDRESS, or BMS_REDUNDANCY_ACTIVATE=0): it is always active"
        )
    elif not view.fresh:
        payload["message"] = view.where_to_write()
    return payload


def switchover_refusal(view: NodeView) -> str | None:
    """Why a switchover cannot be asked for now, or None if it can."""
    if not view.pair:
        return f"{view.node} has no partner (BMS_PARTNER_ADDRESS is empty): there is no node to switch over to"
    if not view.fresh:
        return view.where_to_write()
    partner = _partner(view)
    partner_role = partner.get("role") or "unknown"
    if view.role == ACTIVE:
        if partner_role != "standby":
            return f"the partner {view.partner} is {partner_role}, not standby: it cannot take control now"
        if not partner.get("caught_up"):
            return f"the partner {view.partner} has not caught up yet (image, configuration and history)"
        return None
    if view.role == "standby":
        if partner_role != ACTIVE:
            return f"the partner {view.partner} is {partner_role}, not active: there is no control to hand over"
        if not (view.status.get("sync") or {}).get("caught_up"):
            return f"this node ({view.node}) has not caught up with {view.partner} yet"
        return None
    return f"this node ({view.node}) is {view.role}: a switchover needs one active node and one caught-up standby"


def _audited_request(
    view: NodeView, username: str, source: str, user: Any, action: str, ask: Callable[[str], None]
) -> None:
    """Leave an operator's request for the pair service (``ask``) and its audit entry, in one transaction."""
    with transaction.atomic():
        ask(username)
        AuditEntry.objects.create(
            user=user,
            username=username[:150],
            action=action,
            target=view.node,
            detail={"source": source, "role": view.role, "epoch": view.epoch, "partner": view.partner},
        )


def request_switchover(view: NodeView, username: str, source: str, user: Any = None) -> str:
    """Ask the pair to swap roles (checked by the caller with :func:`switchover_refusal`); return what happens."""
    _audited_request(view, username, source, user, SWITCHOVER_ACTION, state.request_switchover)
    if view.role == ACTIVE:
        return f"Switchover requested: {view.node} hands control to {view.partner} within a few seconds."
    return (
        f"Switchover requested: {view.node} asks the active node {view.partner} to hand control over;"
        " this node becomes active within a few seconds."
    )


def take_control_refusal(view: NodeView) -> str | None:
    """Why "take control although stale" makes no sense now, or None if it may be asked for."""
    if not view.pair:
        return f"{view.node} has no partner: it is always active"
    if view.role in (ACTIVE, "handing_over"):
        return f"this node ({view.node}) is already {view.role}"
    if view.role == "standby":
        return f"this node ({view.node}) is standby behind an active partner: use a switchover instead"
    return None


def request_take_control(view: NodeView, username: str, source: str, user: Any = None) -> str:
    """Ask a node that waits for its partner to take control anyway (audited); return what happens."""
    _audited_request(view, username, source, user, TAKE_CONTROL_ACTION, state.request_take_control)
    return (
        f"Take-control requested: if {view.node} still cannot hear {view.partner}, it takes control within a few "
        "seconds with the state it has. Commands the partner executed after this node stopped are not known here."
    )
