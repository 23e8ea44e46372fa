"""JSON API for BACnet operators: the priority array of a commandable point, read from its device.

``GET /api/points/<name>/priority-array`` answers
``{"point", "device", "address", "priority_array": {"1": value|null, ... "16": ...},
"active_priority", "relinquish_default"}``. It is a direct, read-only request
to the device (like ``manage.py bacnet priority``); the engine's process
image does not hold priority arrays. Only the active node talks to devices:
a standby answers 503 with the active node's name and address. A point of a site
the caller may not see is answered like an unknown one (ADR 0021).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from bms.api.v1.scoping import visible_points
from bms.api.views import api_login_required, error, unknown_point
from bms.points.bacnet_tools import read_priority_array
from drivers.base import CommunicationError, DriverError
from redundancy.nodeview import node_view


@require_GET
@api_login_required
def priority_array(request, name: str):
    view = node_view(request)
    if not view.is_active:
        # No field I/O on a node that is not active, not even a read: the device is the active node's.
        where = f"; read it on the active node {view.active_node}" if view.active_node else ""
        where += f" at {view.active_url}" if where and view.active_url else ""
        message = f"This node ({view.node}) is {view.role.replace('_', ' ')} and does not talk to devices{where}"
        body = {"error": "standby", "message": message, "active_node": view.active_node, "active_url": view.active_url}
        return JsonResponse(body, status=503)
    point = visible_points(request).filter(name=name).first()
    if point is None:
        return unknown_point(name)
    if point.device.driver != "bacnet":
        return error("not_bacnet", f"{name} is a {point.device.driver} point; only BACnet points have one", 400)
    try:
        state = read_priority_array(point)
    except CommunicationError as exc:
        return error("device_unreachable", str(exc), 502)
    except DriverError as exc:
        return error("refused", str(exc), 409)
    return JsonResponse(state)
