"""The event log in the REST API: what the engine observed (communication lost and restored, point errors).

``GET events/`` (every logged-in user): newest first, filtered by ``kind``, ``severity``, ``source`` and a time
range (``time_from`` inclusive, ``time_to`` exclusive, named as in the alarm journal; ISO 8601, UTC without an
offset), a page at a time. A caller restricted to some sites sees only the events whose source is a device or
point of those sites (:func:`bms.sites.scope.visible_sources`): an event of the pair itself, or of a device since
deleted, is not shown to it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import MultiValueField, parse_query
from bms.api.v1.docs import error_responses
from bms.events.models import Event
from bms.sites import scope

SEVERITIES = [Event.INFO, Event.WARNING, Event.ERROR]


class EventSerializer(serializers.ModelSerializer):
    """One event."""

    class Meta:
        model = Event
        fields = ["id", "time", "kind", "source", "severity", "message"]
        read_only_fields = fields


class TimeRangeSerializer(serializers.Serializer):
    """A time range, named as the alarm journal's: ``time_from`` (inclusive) to ``time_to`` (exclusive)."""

    time_from = serializers.DateTimeField(
        required=False, help_text="from this time on (inclusive; ISO 8601, UTC without an offset)"
    )
    time_to = serializers.DateTimeField(required=False, help_text="before this time (exclusive)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("time_from"), attrs.get("time_to")
        if start is not None and end is not None and start > end:
            raise ValidationError({"time_to": ["time_to is before time_from."]})
        return attrs


def in_time_range(rows: QuerySet, query: dict[str, Any], field: str = "time") -> QuerySet:
    """``rows`` whose ``field`` lies in the range of ``query`` (validated :class:`TimeRangeSerializer` data)."""
    if query.get("time_from") is not None:
        rows = rows.filter(**{f"{field}__gte": query["time_from"]})
    if query.get("time_to") is not None:
        rows = rows.filter(**{f"{field}__lt": query["time_to"]})
    return rows


class EventQuerySerializer(TimeRangeSerializer):
    """Filters of the event list."""

    kind = MultiValueField(child=serializers.CharField(max_length=32), help_text="kinds, e.g. comm_lost")
    severity = MultiValueField(child=serializers.ChoiceField(choices=SEVERITIES), help_text="severities")
    source = MultiValueField(child=serializers.CharField(max_length=128), help_text="device or point names")


class EventListView(GenericAPIView):
    """The event log, newest first."""

    serializer_class = EventSerializer

    def get_queryset(self) -> QuerySet:
        sources = scope.visible_sources(scope.request_site_ids(self.request))
        rows = Event.objects.all()
        return rows if sources is None else rows.filter(source__in=sources)

    @extend_schema(
        operation_id="events_list",
        summary="Events",
        description=(
            "The event log (communication lost and restored, point errors), newest first, filtered, a page at a "
            "time. A caller restricted to some sites sees the events of their devices and points only."
        ),
        parameters=[EventQuerySerializer],
        responses={200: EventSerializer(many=True), **error_responses(400)},
        tags=["events"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, EventQuerySerializer)
        rows = in_time_range(self.get_queryset(), query)
        for name in ("kind", "severity", "source"):
            if query.get(name):
                rows = rows.filter(**{f"{name}__in": query[name]})
        page = self.paginate_queryset(rows.order_by("-time", "-id"))
        return self.get_paginated_response(EventSerializer(page, many=True).data)
