"""The pair's status in the REST API: a read-only wrapper of ``GET /api/redundancy/status`` (same document)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bms.api.v1.docs import error_responses
from redundancy import operations
from redundancy.nodeview import node_view


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
