"""The pair in the REST API: its status (the document of ``GET /api/redundancy/status``) and the switchover.

``POST redundancy/switchover`` answers as ``POST /api/redundancy/switchover`` does (the same function,
:func:`redundancy.views.switchover`), with this API's error shape: 403 ``forbidden`` without
``redundancy.switchover``, 409 ``not_ready`` when the pair cannot switch over now, 202 when asked.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bms.api.v1.docs import error_responses
from bms.api.v1.permissions import permission
from redundancy import operations
from redundancy.nodeview import node_view
from redundancy.views import SWITCHOVER_PERMISSION, switchover


class RedundancyStatusView(APIView):
    """This node's role in the pair, the partner, replication and switchover readiness."""

    @extend_schema(
        operation_id="redundancy_status",
        summary="Redundancy status",
        description=(
            "The document of the redundancy page: this node's role and epoch, the active node, the partner, "
            "replication, the witness and whether a switchover is possible now (docs/redundancy.md)."
        ),
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="the status document"), **error_responses()},
        tags=["redundancy"],
    )
    def get(self, request: Request) -> Response:
        response = Response(operations.status_payload(node_view(request._request)))
        response["Cache-Control"] = "no-store"
        return response


class NotReady(exceptions.APIException):
    """409 ``not_ready``: the pair is not in a state to switch over now (the detail says why)."""

    status_code = 409
    default_code = "not_ready"


SWITCHOVER_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="asked: `accepted` (true), `message`, and this node's `node`, `role` and `epoch`",
)


class SwitchoverView(APIView):
    """Ask the pair to swap roles (as ``POST /api/redundancy/switchover`` and the redundancy page do)."""

    # No token_scope: changing which node is active needs an admin token (the default for changes).
    permission_classes = [permission(SWITCHOVER_PERMISSION, "switch over")]

    @extend_schema(
        operation_id="redundancy_switchover",
        summary="Switch over",
        description=(
            "Needs `redundancy.switchover`. 202: the pair was asked to swap roles (the active node hands over; "
            "follow `GET redundancy/status`). 409 `not_ready`: not possible now (the detail says why, `role` is "
            "this node's role)."
        ),
        request=None,
        responses={202: SWITCHOVER_RESPONSE, **error_responses(403, 409, 503)},
        tags=["redundancy"],
    )
    def post(self, request: Request) -> Response:
        answer = switchover(request._request)
        if answer.status == 202:
            return Response(answer.body, status=202)
        extra = {key: value for key, value in answer.body.items() if key not in ("error", "message")}
        if answer.status == 409:
            raise NotReady({"detail": answer.body["message"], **extra})
        raise exceptions.PermissionDenied(answer.body["message"])  # the permission class already said it
