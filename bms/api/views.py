"""JSON API: points with live values, writes through the command path, command status.

Authentication is the session (log in through /login/ or the admin); POSTs
need the CSRF token like any Django form. Errors are JSON objects
``{"error": code, "message": text}`` with a matching HTTP status.
"""

from __future__ import annotations

import functools
import json

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from bms.control.models import Command
from bms.control.services import CommandRejected, submit_write, wait_for_outcome
from bms.engine.dbhealth import UNAVAILABLE_ERRORS
from bms.points.models import Point
from bms.realtime.snapshot import EngineUnavailable, fetch_snapshot
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
        snapshot = async_to_sync(fetch_snapshot)()
    except EngineUnavailable:
        return {}, None
    return snapshot["points"], snapshot["seq"]


@require_GET
@api_login_required
def points(request):
    live, seq = live_points()
    rows = [point_json(point, live.get(point.name)) for point in Point.objects.select_related("device")]
    return JsonResponse({"seq": seq, "engine": seq is not None, "points": rows})


@require_GET
@api_login_required
def point_detail(request, name: str):
    point = Point.objects.select_related("device").filter(name=name).first()
    if point is None:
        return error("unknown_point", f"there is no point named {name!r}", 404)
    live, _ = live_points()
    return JsonResponse(point_json(point, live.get(name)))


@require_POST
@api_login_required
def point_write(request, name: str):
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
        submission = submit_write(
            user=request.user,
            point_name=name,
            value=body["value"],
            command_id=body.get("command_id"),
            priority=body.get("priority"),
            source="web" if request.headers.get("X-BMS-Client") == "web-manager" else "api",
            epoch=node_view(request).epoch,
            lifetime=body.get("lifetime"),
        )
    except CommandRejected as exc:
        return error(exc.code, exc.message, exc.status)
    try:
        command = wait_for_outcome(submission.command, settings.BMS_COMMAND_WAIT_SECONDS)
    except UNAVAILABLE_ERRORS:
        # Recorded (and handed to the engine) before the database went away: the outcome will be on the row.
        payload = submission.command.as_dict() | {
            "repeated": not submission.created,
            "message": "the database went away while waiting for the outcome; "
            f"ask GET /api/commands/{submission.command.command_id}/ later",
        }
        return JsonResponse(payload, status=202)
    payload = command.as_dict() | {"repeated": not submission.created}
    if command.status == Command.FAILED:
        return JsonResponse(payload, status=502)
    if command.status == Command.EXPIRED:
        return JsonResponse(payload, status=504)
    return JsonResponse(payload, status=200 if command.status in Command.FINAL else 202)


@require_GET
@api_login_required
def command_detail(request, command_id: str):
    command = Command.objects.filter(command_id=command_id).first()
    if command is None:
        return error("unknown_command", f"there is no command {command_id!r}", 404)
    return JsonResponse(command.as_dict())
