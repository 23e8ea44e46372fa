"""Points with their live values, and writes and relinquishes through the command path (issue 13 item 1).

=====================================  =============================================  =====================
``GET  points/``                       the points of the caller's sites, live         every logged-in user
``GET  points/<name>/``                one point, live                                every logged-in user
``POST points/<name>/write``           write a value (a command)                      ``points.write_point``
``POST points/<name>/relinquish``      empty one priority slot (a command)            ``points.write_point``
=====================================  =============================================  =====================

Live state (value, quality, time of the reading, time of the last change, image sequence) comes from the engine's
process image; when the engine does not answer, ``live`` is null and ``live_problem`` says why. A write is the one
command path (:mod:`bms.api.v1.writing`): permission, range, idempotency by ``command_id``, audit, and the answer
the older ``POST /api/points/<name>/write`` gives (200 final, 202 not yet, 502 failed, 504 expired). Writes and
relinquishes need a ``write`` token. A point of another site is a 404 exactly like a missing one, for a write
before the body or the permission is looked at, and no command is recorded.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import MultiValueField, parse_query
from bms.api.v1.configuration import live_entries
from bms.api.v1.docs import error_responses
from bms.api.v1.fields import StrictCharField, StrictFloatField, StrictIntegerField, StrictSerializer
from bms.api.v1.permissions import permission
from bms.api.v1.priority import WriteRefused
from bms.api.v1.scoping import visible_point, visible_points
from bms.api.v1.writing import write_and_wait
from bms.control.services import CommandRejected
from bms.points.models import Point
from bms.tokens.models import WRITE
from redundancy.nodeview import node_view


class LiveStateSerializer(serializers.Serializer):
    """A point's state in the process image."""

    value = serializers.JSONField(allow_null=True, help_text="engineering value (null: none read yet)")
    quality = serializers.CharField(help_text="good, stale, comm_error, ...")
    time = serializers.DateTimeField(allow_null=True, help_text="when it was last read (UTC)")
    changed = serializers.DateTimeField(allow_null=True, help_text="when its value last changed (UTC)")
    seq = serializers.IntegerField(allow_null=True, help_text="the image sequence number of its last change")


class PointSerializer(serializers.ModelSerializer):
    """A data point: its configuration, and its live state from the process image."""

    device = serializers.CharField(source="device.name", read_only=True)
    site = serializers.CharField(source="device.site.name", read_only=True)
    live = serializers.SerializerMethodField()
    live_problem = serializers.SerializerMethodField()

    class Meta:
        model = Point
        fields = [
            "name",
            "device",
            "site",
            "description",
            "unit",
            "data_type",
            "writable",
            "min_value",
            "max_value",
            "enabled",
            "live",
            "live_problem",
        ]
        read_only_fields = fields

    @extend_schema_field(LiveStateSerializer(allow_null=True))
    def get_live(self, point: Point) -> dict[str, Any] | None:
        entries = self.context.get("live")
        return entries.get(point.name) if entries is not None else None

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="why live is null: the engine's answer"))
    def get_live_problem(self, point: Point) -> str | None:
        return self.context.get("live_problem")


def with_live(points: list[Point]) -> dict[str, Any]:
    """The serializer context that gives ``points`` their live state (one question to the engine for all)."""
    live, problem = live_entries([point.name for point in points])
    return {"live": live, "live_problem": problem}


class PointQuerySerializer(serializers.Serializer):
    """Filters of the point list."""

    site = MultiValueField(child=serializers.CharField(max_length=64), help_text="site names")
    device = MultiValueField(child=serializers.CharField(max_length=64), help_text="device names")
    name = serializers.CharField(required=False, max_length=128, help_text="names starting with this")
    writable = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="writable or not")


def select_points(rows: QuerySet, query: dict[str, Any]) -> QuerySet:
    """``rows`` narrowed by ``query`` (validated :class:`PointQuerySerializer` data)."""
    if query.get("site"):
        rows = rows.filter(device__site__name__in=query["site"])
    if query.get("device"):
        rows = rows.filter(device__name__in=query["device"])
    if query.get("name"):
        rows = rows.filter(name__startswith=query["name"])
    if query.get("writable") is not None:
        rows = rows.filter(writable=query["writable"])
    return rows


class PointListView(GenericAPIView):
    """The points of the caller's sites, with their live state."""

    serializer_class = PointSerializer

    def get_queryset(self) -> QuerySet:
        return visible_points(self.request)

    @extend_schema(
        operation_id="points_list",
        summary="Points, live",
        description=(
            "The points of the caller's sites (by device, then name), filtered, a page at a time, each with its "
            "live state from the engine's process image (`live` null and `live_problem` set when the engine did "
            "not answer)."
        ),
        parameters=[PointQuerySerializer],
        responses={200: PointSerializer(many=True), **error_responses(400)},
        tags=["points"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, PointQuerySerializer)
        page = self.paginate_queryset(select_points(self.get_queryset(), query))
        return self.get_paginated_response(PointSerializer(page, many=True, context=with_live(page)).data)


class PointDetailView(GenericAPIView):
    """One point of the caller's sites, with its live state."""

    serializer_class = PointSerializer
    pagination_class = None

    @extend_schema(
        operation_id="points_retrieve",
        summary="One point, live",
        responses={200: PointSerializer, **error_responses(404)},
        tags=["points"],
    )
    def get(self, request: Request, name: str) -> Response:
        point = visible_point(request, name)
        return Response(PointSerializer(point, context=with_live([point])).data)


class WriteSerializer(StrictSerializer):
    """A write of one value."""

    value = serializers.JSONField(help_text="engineering value: a number, or true/false for a bool point")
    priority = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=16,
        help_text="1 highest ... 16 lowest; default: as POST /api/points/<name>/write (16 on server-kept arrays); "
        "operators may use 8 (manual) or none",
    )
    command_id = StrictCharField(required=False, max_length=64, help_text="idempotency key; default: a new one")
    lifetime = StrictFloatField(required=False, help_text="seconds within which the command must start (default 5)")
    expires_in = StrictFloatField(
        required=False, help_text="server-kept arrays: seconds after which the override ends by itself"
    )

    def validate_value(self, value: Any) -> Any:
        if value is None:
            raise serializers.ValidationError("A write needs a value; POST .../relinquish to empty a slot.")
        return value


class RelinquishSerializer(StrictSerializer):
    """The release of one priority slot."""

    priority = StrictIntegerField(
        min_value=1, max_value=16, help_text="the slot to empty; operators may relinquish 8 (manual) only"
    )
    command_id = StrictCharField(required=False, max_length=64, help_text="idempotency key; default: a new one")
    lifetime = StrictFloatField(required=False, help_text="seconds within which the command must start (default 5)")


COMMAND_ANSWER = "`command_id`, `point`, `value`, `priority`, `status`, `error`, ... (the command) and `repeated`"


def _write_schema(operation: str, summary: str, body: type[serializers.Serializer], what: str) -> Any:
    return extend_schema(
        operation_id=operation,
        summary=summary,
        description=(
            f"{what} Needs `points.write_point` (and a `write` token). Records a command (range, permission, "
            "idempotency by `command_id`, audit) and waits a few seconds for its outcome. Repeating a `command_id` "
            "with the same body answers the same command (`repeated`: true); with another body it is a 409."
        ),
        request=body,
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description=f"final: {COMMAND_ANSWER}"),
            202: OpenApiResponse(OpenApiTypes.OBJECT, description="recorded, not final yet: poll commands/<id>/"),
            502: OpenApiResponse(OpenApiTypes.OBJECT, description="the command failed"),
            504: OpenApiResponse(OpenApiTypes.OBJECT, description="the command expired unsent"),
            **error_responses(400, 403, 404, 409, 503),
        },
        tags=["points"],
    )


class PointCommandView(GenericAPIView):
    """Base of write and relinquish: the point first (404), then the permission, the body, the command path."""

    #: an API token needs the write scope for it (bms/tokens/auth.py)
    token_scope = WRITE
    permission_classes = [permission("points.write_point", "write points")]
    pagination_class = None

    def check_permissions(self, request: Request) -> None:
        if request.user is not None and request.user.is_authenticated:
            # Another site's point (or a missing one) is a 404 before the permission or the body could tell.
            self.point = visible_point(request, self.kwargs["name"])
        super().check_permissions(request)

    def wanted(self, data: dict[str, Any]) -> dict[str, Any]:
        """The command path's arguments from the validated body."""
        raise NotImplementedError

    def post(self, request: Request, name: str) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            outcome = write_and_wait(
                user=request.user,
                point_name=self.point.name,
                source="api",
                epoch=node_view(request._request).epoch,
                **self.wanted(dict(body.validated_data)),
            )
        except CommandRejected as exc:
            raise WriteRefused(exc) from exc
        payload = outcome.command.as_dict() | {"repeated": not outcome.created}
        return Response(payload, status=outcome.status)


class PointWriteView(PointCommandView):
    serializer_class = WriteSerializer

    def wanted(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"value": data["value"], "priority": data.get("priority"), **_optional(data)}

    @_write_schema("points_write", "Write a point", WriteSerializer, "Writes `value` into a priority slot.")
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)


class PointRelinquishView(PointCommandView):
    serializer_class = RelinquishSerializer

    def wanted(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"value": None, "priority": data["priority"], **_optional(data)}

    @_write_schema(
        "points_relinquish",
        "Relinquish a priority slot",
        RelinquishSerializer,
        "Empties the slot `priority`, so that a lower priority (or the relinquish default) takes over.",
    )
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)


def _optional(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.get(key) for key in ("command_id", "lifetime", "expires_in")}
