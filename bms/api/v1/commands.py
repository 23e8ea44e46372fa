"""The command log in the REST API: every write and its outcome, of the points the caller sees (issue 13 item 1).

=================================  ===========================================  ====================
``GET commands/``                  commands, newest first, filtered, paged      every logged-in user
``GET commands/<command_id>/``     one command (poll it after a 202 write)      every logged-in user
=================================  ===========================================  ====================

A caller restricted to some sites sees the commands of those sites' points only (not those of a point since
deleted, whose site is unknown): another site's command by id is a 404 exactly like a missing one.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import MultiValueField, parse_query
from bms.api.v1.docs import error_responses
from bms.api.v1.scoping import visible_commands
from bms.control.models import Command

STATUSES = [status for status, _label in Command.STATUSES]


class CommandSerializer(serializers.Serializer):
    """One command: what was asked, by whom, and its outcome (the same object the write answers)."""

    command_id = serializers.CharField()
    point = serializers.CharField()
    value = serializers.JSONField(allow_null=True, help_text="engineering value; null: a relinquish")
    priority = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=STATUSES)
    error = serializers.CharField(allow_blank=True)
    source = serializers.CharField(help_text="web, api, schedule, logic, engine, ...")
    user = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    lifetime_seconds = serializers.FloatField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    hold_until = serializers.DateTimeField(allow_null=True)
    accepted_by = serializers.CharField()
    accepted_epoch = serializers.IntegerField()

    def to_representation(self, instance: Command) -> dict[str, Any]:
        return instance.as_dict()


class CommandQuerySerializer(serializers.Serializer):
    """Filters of the command list."""

    point = MultiValueField(child=serializers.CharField(max_length=128), help_text="point names")
    status = MultiValueField(child=serializers.ChoiceField(choices=STATUSES), help_text="statuses")


class CommandListView(GenericAPIView):
    """The commands of the caller's points, newest first."""

    serializer_class = CommandSerializer

    def get_queryset(self) -> QuerySet:
        return visible_commands(self.request)

    @extend_schema(
        operation_id="commands_list",
        summary="Commands",
        description="The command log of the points the caller sees, newest first, filtered, a page at a time.",
        parameters=[CommandQuerySerializer],
        responses={200: CommandSerializer(many=True), **error_responses(400)},
        tags=["commands"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, CommandQuerySerializer)
        rows = self.get_queryset()
        if query.get("point"):
            rows = rows.filter(point_name__in=query["point"])
        if query.get("status"):
            rows = rows.filter(status__in=query["status"])
        page = self.paginate_queryset(rows.order_by("-created_at", "-id"))
        return self.get_paginated_response(CommandSerializer(page, many=True).data)


class CommandDetailView(GenericAPIView):
    """One command by its ``command_id``."""

    serializer_class = CommandSerializer
    pagination_class = None

    @extend_schema(
        operation_id="commands_retrieve",
        summary="One command",
        description="A command by its `command_id`: poll it after a write answered 202.",
        responses={200: CommandSerializer, **error_responses(404)},
        tags=["commands"],
    )
    def get(self, request: Request, command_id: str) -> Response:
        command = visible_commands(request).filter(command_id=command_id).first()
        if command is None:
            raise NotFound(f"There is no command {command_id!r}.")
        return Response(CommandSerializer(command).data)
