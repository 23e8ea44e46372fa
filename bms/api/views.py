"""JSON API: points with live values, writes through the command path, command status.

Authentication is the session (log in through /login/ or the admin); POSTs
need the CSRF token like any Django form. Errors are JSON objects
``{"error": code, "message": text}`` with a matching HTTP status.

Scoped by site (ADR 0021): a caller restricted to some sites gets the points and commands of those sites only; a
point or command of another site is answered exactly like an unknown one.
"""

from __future__ import annotations

import functools
import json

from asgiref.sync import async_to_sync
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from bms.api.v1.alarms import live_wait_seconds
from bms.api.v1.scoping import visible_commands, visible_points
from bms.api.v1.writing import write_and_wait
from bms.control.services import CommandRejected
from bms.points.models import Point
from bms.realtime.snapshot import EngineUnavailable, fetch_snapshot
from bms.sites.scope import restricted
from redundancy.nodeview import node_view


def error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def api_login_required(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return error("unauthenticated", "log in first", 401)
        return view(request, *args, **kwargs)

    return wrapper


def point_json(point: Point, live: dict | None) -> dict:
    return {
        "name": point.name,
        "device": point.device.name,
        "description": point.description,
        "unit": point.unit,
        "data_type": point.data_type,
        "writable": point.writable,
        "min_value": point.min_value,
        "max_value": point.max_value,
        "live": live,
    }


def live_points() -> tuple[dict, int | None]:
    try:
        snapshot = async_to_sync(fetch_snapshot)(live_wait_seconds())
    except EngineUnavailable:
        return {}, None
    return snapshot["points"], snapshot["seq"]


def unknown_point(name: str) -> JsonResponse:
    """The answer for a point that does not exist, or that the caller may not see (the same, by design)."""
    return error("unknown_point", f"there is no point named {name!r}", 404)


@require_GET
@api_login_required
def points(request):
    live, seq = live_points()
    rows = [point_json(point, live.get(point.name)) for point in visible_points(request)]
    return JsonResponse({"seq": seq, "engine": seq is not None, "points": rows})


@require_GET
@api_login_required
def point_detail(request, name: str):
    point = visible_points(request).filter(name=name).first()
    if point is None:
        return unknown_point(name)
    live, _ = live_points()
    return JsonResponse(point_json(point, live.get(name)))


@require_POST
@api_login_required
def point_write(request, name: str):
    # A restricted caller learns nothing of another site's point, not even through a validation message: the point
    # is looked up first (an unknown one answers the same). Unrestricted callers keep the command path's order.
    if restricted(request) and not visible_points(request).filter(name=name).exists():
        return unknown_point(name)
    try:
        body = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        return error("malformed", "the body is too large", 413)
    except RecursionError:
        # json.loads gives up on deep nesting with RecursionError, which is not a ValueError.
        return error("malformed", "the body is nested too deeply", 400)
    except ValueError:  # also a bad encoding, and an integer longer than Python converts (4300 digits)
        return error("malformed", "the body must be JSON", 400)
    if not isinstance(body, dict) or "value" not in body:
        return error("malformed", 'send a JSON object with "value" (and optionally "command_id", "priority")', 400)
    try:
        outcome = write_and_wait(
            user=request.user,
            point_name=name,
            value=body["value"],
            command_id=body.get("command_id"),
            priority=body.get("priority"),
            source="web" if request.headers.get("X-BMS-Client") == "web-manager" else "api",
            epoch=node_view(request).epoch,
            lifetime=body.get("lifetime"),
            # Passed on, not dropped: an override sent here to end by itself must end, or be refused.
            expires_in=body.get("expires_in"),
        )
    except CommandRejected as exc:
        return error(exc.code, exc.message, exc.status)
    payload = outcome.command.as_dict() | {"repeated": not outcome.created}
    if not outcome.waited:
        # Recorded (and handed to the engine) before the database went away: the outcome will be on the row.
        payload["message"] = (
            "the database went away while waiting for the outcome; "
            f"ask GET /api/commands/{outcome.command.command_id}/ later"
        )
    return JsonResponse(payload, status=outcome.status)


@require_GET
@api_login_required
def command_detail(request, command_id: str):
    command = visible_commands(request).filter(command_id=command_id).first()
    if command is None:
        return error("unknown_command", f"there is no command {command_id!r}", 404)
    return JsonResponse(command.as_dict())
