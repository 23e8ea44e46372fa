"""JSON API for BACnet operators: the priority array of a commandable point, read from its device.

``GET /api/points/<name>/priority-array`` answers
``{"point", "device", "address", "priority_array": {"1": value|null, ... "16": ...},
"active_priority", "relinquish_default"}``. It is a direct, read-only request
to the device (like ``manage.py bacnet priority``); the engine's process
image does not hold priority arrays.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from bms.api.views import api_login_required, error
from bms.points.bacnet_tools import read_priority_array
from bms.points.models import Point
from drivers.base import CommunicationError, DriverError


@require_GET
@api_login_required
def priority_array(request, name: str):
    point = Point.objects.select_related("device").filter(name=name).first()
    if point is None:
        return error("unknown_point", f"there is no point named {name!r}", 404)
    if point.device.driver != "bacnet":
        return error("not_bacnet", f"{name} is a {point.device.driver} point; only BACnet points have one", 400)
    try:
        state = read_priority_array(point)
    except CommunicationError as exc:
        return error("device_unreachable", str(exc), 502)
    except DriverError as exc:
        return error("refused", str(exc), 409)
    return JsonResponse(state)
