"""The standby is read-only: changes sent to a node that is not active are refused, explained and recorded.

A request that changes something (POST, PUT, PATCH, DELETE) reaching a pair
node whose role is not ``active`` (standby, syncing, handing over, isolated,
or unknown because its status is stale) is answered 503 with the active
node's name and address: a JSON error under ``/api/``, a page otherwise (the
admin included). Logging in and out and asking for a switchover stay
possible. Every refusal of a logged-in user is written to the audit trail (which
replicates, so the active node's operators see it too); anonymous ones are only logged.

A status only just stale (its last beat less than two heartbeat timeouts
old) is waited for, up to that age, before a change is refused: under load
the row's write can be a beat late while the engine is fine (bench/stress.py
saw a write refused on a row 300 ms old with a 300 ms timeout). Waiting is
safe: the change is still taken only on a fresh ``active`` row, and the
command it makes is bound to this node and epoch (ADR 0008). A status older
than that (the engine is stopped or frozen) is refused at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from bms.control.models import AuditEntry
from bms.history.lockwait import create_without_waiting, is_lock_timeout
from redundancy.config import heartbeat_timeout
from redundancy.nodeview import UNKNOWN, NodeView, load_view, node_view, remember_view

log = logging.getLogger(__name__)

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: views that stay usable on a standby (by namespaced URL name)
ALLOWED_ON_STANDBY = frozenset(
    {"login", "logout", "admin:login", "admin:logout", "api-redundancy-switchover", "api-v1-redundancy-switchover"}
)
REFUSED_ACTION = "refused.standby"
#: how often a just-stale status is read again while a change waits for it (seconds)
LATE_STATUS_POLL = 0.05


class StandbyReadOnlyMiddleware:
    """Refuse changes on a node that is not active; place it after the authentication middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if request.method not in CHANGING_METHODS:
            return None
        match = request.resolver_match
        if match is not None and match.view_name in ALLOWED_ON_STANDBY:
            return None
        view = node_view(request)
        if view.role == UNKNOWN:
            view = wait_for_late_status(request, view)
        if view.writable:
            return None
        return refuse(request, view)


def wait_for_late_status(request: HttpRequest, view: NodeView) -> NodeView:
    """Read the status again while it is less than two heartbeat timeouts old (see the module docstring)."""
    if not view.pair or view.updated_at is None:
        return view
    wait = 2 * heartbeat_timeout() - (view.age_seconds or 0.0)  # updated_at is set: never None here
    if wait <= 0:
        return view
    deadline = time.monotonic() + wait
    while view.role == UNKNOWN and time.monotonic() < deadline:
        time.sleep(LATE_STATUS_POLL)
        view = load_view()
    remember_view(request, view)
    return view


def refuse(request: HttpRequest, view: NodeView) -> HttpResponse:
    """Record the refusal and answer 503 in the form the client expects."""
    message = view.where_to_write()
    user = request.user if getattr(request, "user", None) is not None and request.user.is_authenticated else None
    # Anonymous requests never create rows (issue 13): anyone could fill the replicated audit trail.
    if user is not None:
        _record(request, view, user)
    log.warning("refused %s %s on %s node %s", request.method, request.path, view.role, view.node)
    if request.path.startswith("/api/"):
        body = {
            "error": "standby",
            "detail": message,  # the /api/v1/ error form (docs/api.md)
            "message": message,  # the older /api/ clients read this
            "node": view.node,
            "role": view.role,
            "active_node": view.active_node,
            "active_url": view.active_url,
        }
        response: HttpResponse = JsonResponse(body, status=503)
    else:
        target = f"{view.active_url}{request.path}" if view.active_url and view.active_node != view.node else ""
        response = render(
            request, "redundancy/refused.html", {"message": message, "view": view, "target": target}, status=503
        )
    response["Retry-After"] = "2"
    # A refusal is an expected answer, logged once above, not a server error for django.request to report.
    response._has_been_logged = True
    return response


def _record(request: HttpRequest, view: NodeView, user: Any) -> None:
    try:
        # Bounded: a node whose engine froze holding the history stamp refuses in time (bms.history.lockwait).
        create_without_waiting(
            AuditEntry,
            user=user,
            username=user.get_username() if user else "",
            action=REFUSED_ACTION,
            target=request.path[:128],
            detail={
                "method": request.method,
                "node": view.node,
                "role": view.role,
                "epoch": view.epoch,
                "active_node": view.active_node,
                "active_url": view.active_url,
            },
        )
    except Exception as error:  # the refusal itself must not fail because the audit write did
        if is_lock_timeout(error):
            log.warning(
                "the refused %s %s is not in the audit trail: the history stamp stayed locked for %g ms",
                request.method,
                request.path,
                settings.BMS_WRITE_LOCK_WAIT_MS,
            )
        else:
            log.exception("could not record the refused %s %s in the audit trail", request.method, request.path)
