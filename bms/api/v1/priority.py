"""Priority arrays of writable points (issue 12 item 1, ADR 0016).

====================================================  ===========================================  =====================
``GET  points/<name>/priority-array``                 the 16 slots, the effective value/priority  every logged-in user
``POST points/<name>/priority-array``                 write or relinquish one slot (an override)  ``points.write_point``
====================================================  ===========================================  =====================

A point whose device keeps no array of its own (Modbus) has one kept by the
server, derived from the replicated command log: any node answers it, a
standby too. A BACnet point's array is the device's own: it is read from
the device, so only the active node answers (503 ``standby`` elsewhere).
A write goes through the one command path (:func:`submit_write`) like every
other: ``priority`` (default 8, manual), ``value`` (null relinquishes the
slot), optional ``command_id``, ``lifetime`` (seconds to start it) and, for
server-kept arrays, ``expires_in`` (seconds until the override ends by
itself). Operators may write and relinquish priority 8; other priorities
need an engineer (``points.change_point``). A point of a site the caller may
not see is answered like an unknown one (404), before the body is read.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bms.api.v1.docs import error_responses
from bms.api.v1.exceptions import ServiceUnavailable
from bms.api.v1.fields import StrictCharField, StrictFloatField, StrictIntegerField, StrictSerializer
from bms.api.v1.permissions import permission
from bms.api.v1.scoping import point_missing, visible_points
from bms.api.v1.writing import write_and_wait
from bms.control import priority as arrays
from bms.control.services import CommandRejected
from bms.points.models import Point
from bms.tokens.models import WRITE
from drivers.base import CommunicationError, DriverError
from redundancy.nodeview import node_view


class WriteRefused(exceptions.APIException):
    """The command path refused the write (nothing was recorded but the audit line): its code and status."""

    def __init__(self, rejected: CommandRejected) -> None:
        super().__init__(rejected.message)
        self.status_code = rejected.status
        self.default_code = rejected.code


class DeviceError(exceptions.APIException):
    """502: the BACnet device did not answer (or refused) the read of its own priority array."""

    status_code = 502
    default_code = "device_unreachable"


class SlotWriteSerializer(StrictSerializer):
    """One write into a priority slot."""

    value = serializers.JSONField(
        allow_null=True, help_text="engineering value (number or boolean); null relinquishes the slot"
    )
    priority = StrictIntegerField(
        required=False, min_value=1, max_value=16, help_text="1 highest ... 16 lowest; default 8 (manual)"
    )
    command_id = StrictCharField(required=False, max_length=64, help_text="idempotency key; default: a new one")
    lifetime = StrictFloatField(required=False, help_text="seconds within which the command must start (default 5)")
    expires_in = StrictFloatField(
        required=False, help_text="server-kept arrays: seconds after which the override ends by itself"
    )


def _point(request: Request, name: str) -> Point:
    point = visible_points(request).filter(name=name).first()
    if point is None:
        raise exceptions.NotFound(point_missing(name))
    if not point.writable:
        raise exceptions.NotFound(f"{name} is read-only: it has no priority array.")
    return point


def _device_array(request: Request, point: Point) -> dict[str, Any]:
    """A BACnet point's array, read from its device (active node only), in the server-kept array's shape."""
    from bms.points.bacnet_tools import read_priority_array  # BACnet stack: only when a BACnet point asks

    view = node_view(request._request)
    if not view.is_active:
        where = f" Read it on the active node {view.active_node}" if view.active_node else ""
        where += f" at {view.active_url}" if where and view.active_url else ""
        raise ServiceUnavailable(
            f"This node ({view.node}) is not active and does not talk to devices.{where}", code="standby"
        )
    try:
        state = read_priority_array(point)
    except CommunicationError as exc:
        raise DeviceError(str(exc)) from exc
    except DriverError as exc:
        refused = DeviceError(str(exc))
        refused.status_code, refused.default_code = 409, "refused"
        raise refused from exc
    values = state.get("priority_array") or {}
    active = state.get("active_priority")
    empty = {"source": None, "user": None, "command_id": None, "set_at": None, "expires_at": None}
    return {
        "point": point.name,
        "device": point.device.name,
        "kept_by": "device",
        "slots": [{"priority": p, "value": values.get(str(p)), **empty} for p in arrays.PRIORITIES],
        "effective_value": values.get(str(active)) if active else state.get("relinquish_default"),
        "effective_priority": active,
        "relinquish_default": state.get("relinquish_default"),
        "relinquish_default_problem": None,
    }


def array_of(request: Request, point: Point) -> dict[str, Any]:
    """The point's priority array, wherever it is kept."""
    if arrays.server_keeps_array(point.device.driver):
        return arrays.describe(point)
    return _device_array(request, point)


ARRAY_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description=(
        "`point`, `device`, `kept_by` (`server` or `device`), `slots` (16 objects: `priority`, `value`, "
        "`source`, `user`, `command_id`, `set_at`, `expires_at`), `effective_value`, `effective_priority` "
        "(null: the relinquish default or nothing), `relinquish_default`"
    ),
)


class PriorityArrayView(APIView):
    """A writable point's 16-level priority array, and writes into its slots."""

    #: an API token needs the write scope for it (bms/tokens/auth.py)
    token_scope = WRITE

    permission_classes = [permission("points.write_point", "write points")]

    @extend_schema(
        operation_id="point_priority_array",
        summary="Priority array of a point",
        description=(
            "The 16 slots (1 highest, 8 manual, 16 lowest), who set each and until when, and the effective "
            "value and priority. Server-kept arrays (Modbus) are answered by any node; a BACnet device's own "
            "array is read from the device by the active node (503 `standby` elsewhere, 502 if it does not answer)."
        ),
        responses={200: ARRAY_RESPONSE, **error_responses(404, 503)},
        tags=["points"],
    )
    def get(self, request: Request, name: str) -> Response:
        response = Response(array_of(request, _point(request, name)))
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        operation_id="point_priority_write",
        summary="Write or relinquish a priority slot",
        description=(
            "Records a command (the one write path: permission, range, idempotency by `command_id`, audit) and "
            "waits for its outcome like `POST /api/points/<name>/write`. `succeeded`: the slot is set and the "
            "device holds the effective value; `held`: the slot is set but a higher priority is in control, so the "
            "device was not written (the `error` text says which). Operators may use priority 8 only."
        ),
        request=SlotWriteSerializer,
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="`command` (the command row) and `priority_array`"),
            202: OpenApiResponse(OpenApiTypes.OBJECT, description="recorded, not final yet"),
            502: OpenApiResponse(OpenApiTypes.OBJECT, description="the command failed"),
            504: OpenApiResponse(OpenApiTypes.OBJECT, description="the command expired unsent"),
            **error_responses(400, 404, 409, 503),
        },
        tags=["points"],
    )
    def post(self, request: Request, name: str) -> Response:
        point = _point(request, name)
        body = SlotWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = body.validated_data
        try:
            outcome = write_and_wait(
                user=request.user,
                point_name=point.name,
                value=wanted["value"],
                command_id=wanted.get("command_id"),
                priority=wanted.get("priority", arrays.MANUAL),
                source="api",
                epoch=node_view(request._request).epoch,
                lifetime=wanted.get("lifetime"),
                expires_in=wanted.get("expires_in"),
            )
        except CommandRejected as exc:
            raise WriteRefused(exc) from exc
        payload: dict[str, Any] = {"command": outcome.command.as_dict(), "repeated": not outcome.created}
        if outcome.waited and arrays.server_keeps_array(point.device.driver):
            payload["priority_array"] = arrays.describe(point)
        return Response(payload, status=outcome.status)
