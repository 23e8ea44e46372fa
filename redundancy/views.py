"""Redundancy on the web: health for load balancers and clients, metrics, the redundancy page and its API,
and following the active node (follow tokens).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from bms.realtime import layer_health
from bms.realtime.hub import live_stats
from bms.trends import status as trend_status
from redundancy import follow as follow_tokens
from redundancy import metrics as pair_metrics
from redundancy import operations
from redundancy.nodeview import NodeView, node_view

log = logging.getLogger(__name__)
SWITCHOVER_PERMISSION = "redundancy.switchover"


def _json_error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def _api_login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return _json_error("unauthenticated", "log in first", 401)
        return view(request, *args, **kwargs)

    return wrapper


def _cross_origin(response: HttpResponse) -> HttpResponse:
    # Pages served by one node poll the other node's health (another origin); nothing here is secret.
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "no-store"
    return response


# --- health and metrics (no login) ------------------------------------------------------------------------------


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: this node answers; with its role, epoch, the active node as it knows them, its channel layer, and
    this web process's live fan-out counters (``live``: clients, frames encoded and sent, catch-ups)."""
    return _cross_origin(JsonResponse(_health_body(node_view(request))))


def _health_body(view: NodeView) -> dict[str, Any]:
    body = layer_health.add_to_health(view.health())
    body["live"] = live_stats()
    body["trends"] = trend_status.health()  # ok, spooling, losing or unknown (bms/trends/status.py)
    return body


@require_GET
def healthz_active(request: HttpRequest) -> HttpResponse:
    """200 only on the active node (for load balancers), 503 elsewhere; same body as ``/healthz``.

    A down channel layer leaves the code alone (``status`` says ``degraded``):
    the node still serves and commands, and the standby could not do better.
    """
    view = node_view(request)
    return _cross_origin(JsonResponse(_health_body(view), status=200 if view.is_active else 503))


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(pair_metrics.render(node_view(request)), content_type=pair_metrics.CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response


# --- the redundancy page and its API ----------------------------------------------------------------------------


@login_required
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    view = node_view(request)
    return render(
        request,
        "redundancy/page.html",
        {
            "payload": operations.status_payload(view),
            "can_switchover": request.user.has_perm(SWITCHOVER_PERMISSION),
        },
    )


@never_cache
@require_GET
@_api_login_required
def api_status(request: HttpRequest) -> HttpResponse:
    return JsonResponse(operations.status_payload(node_view(request)))


@dataclass(frozen=True, slots=True)
class SwitchoverAnswer:
    """What a switchover request is answered: the HTTP status and the body (``error`` and ``message`` if refused)."""

    status: int
    body: dict[str, Any]


def switchover(request: HttpRequest) -> SwitchoverAnswer:
    """Ask the pair to swap roles for the logged-in ``request.user``: 202 asked, 403 not allowed, 409 not ready.

    Shared by ``POST /api/redundancy/switchover`` and ``POST /api/v1/redundancy/switchover``.
    """
    if not request.user.has_perm(SWITCHOVER_PERMISSION):
        message = f"{request.user.get_username()} may not switch over (needs {SWITCHOVER_PERMISSION})"
        return SwitchoverAnswer(403, {"error": "forbidden", "message": message})
    view = node_view(request)
    refusal = operations.switchover_refusal(view)
    if refusal is not None:
        return SwitchoverAnswer(
            409, {"error": "not_ready", "message": f"Switchover refused: {refusal}.", "role": view.role}
        )
    message = operations.request_switchover(view, request.user.get_username(), "api", user=request.user)
    log.info("switchover requested by %s on %s (%s)", request.user.get_username(), view.node, view.role)
    return SwitchoverAnswer(
        202, {"accepted": True, "message": message, "node": view.node, "role": view.role, "epoch": view.epoch}
    )


@require_POST
@_api_login_required
def api_switchover(request: HttpRequest) -> HttpResponse:
    """Ask the pair to swap roles: 202 when asked, 409 when the pair is not in a state to do it."""
    answer = switchover(request)
    return JsonResponse(answer.body, status=answer.status)


# --- following the active node -----------------------------------------------------------------------------------


@never_cache
@require_GET
@_api_login_required
def follow_token(request: HttpRequest) -> HttpResponse:
    """A fresh follow token for the logged-in user (pages fetch one at load and every few minutes)."""
    if not follow_tokens.available():
        return _json_error("unavailable", "follow tokens need the pair secret BMS_SYNC_SECRET", 404)
    return JsonResponse(
        {
            "token": follow_tokens.make_token(request.user, request.session.session_key),
            "max_age": follow_tokens.MAX_AGE_SECONDS,
            "refresh": follow_tokens.REFRESH_SECONDS,
        }
    )


def _local_path(target: str) -> bool:
    return (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and url_has_allowed_host_and_scheme(target, allowed_hosts=None)
    )


@never_cache
@require_GET
def follow(request: HttpRequest) -> HttpResponse:
    """Log in the user a follow token names and go on to ``next`` (a path on this node only)."""
    target = request.GET.get("next", "")
    if not _local_path(target):
        target = resolve_url(settings.LOGIN_REDIRECT_URL)
    try:
        user = follow_tokens.user_for_token(request.GET.get("token", ""))
    except follow_tokens.FollowRefused as exc:
        log.warning("follow refused: %s", exc)
        return redirect_to_login(target)
    if not (request.user.is_authenticated and request.user.pk == user.pk):
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect(target)
