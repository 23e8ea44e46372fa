"""The audit trail in the REST API: who asked for what and when, refusals included (administrators).

``GET audit/``: newest first, filtered by ``user`` (user names), ``action`` (e.g. ``write.requested``; a value
ending in ``*`` matches every action starting with it), ``target`` and a time range, a page at a time. Only for a
caller who sees every site and holds ``control.view_auditentry``: its rows name objects of every site, so a
restricted caller would learn of other sites' objects from them (ADR 0021). Anyone else gets 403 ``forbidden``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import MultiValueField, parse_query
from bms.api.v1.docs import error_responses
from bms.api.v1.events import TimeRangeSerializer, in_time_range
from bms.api.v1.permissions import RequiredPermissions
from bms.control.models import AuditEntry
from bms.sites import scope

AUDIT_PERMISSION = "control.view_auditentry"


class SeesAuditTrail(RequiredPermissions):
    """``control.view_auditentry`` and every site."""

    doing = "read the audit trail"

    def required(self, request: Request, view: Any) -> list[str]:
        return [AUDIT_PERMISSION]

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        if scope.sees_all(scope.request_site_ids(request)):
            return True
        self.message = {
            "detail": f"{request.user.get_username()} may not read the audit trail: it names objects of every "
            "site, and this user (or token) sees only some sites.",
            "required": [AUDIT_PERMISSION],
        }
        return False


class AuditEntrySerializer(serializers.ModelSerializer):
    """One audit entry."""

    user = serializers.CharField(source="username", help_text="who (the user name at the time)")

    class Meta:
        model = AuditEntry
        fields = ["id", "time", "user", "action", "target", "detail"]
        read_only_fields = fields


class AuditQuerySerializer(TimeRangeSerializer):
    """Filters of the audit trail."""

    user = MultiValueField(child=serializers.CharField(max_length=150), help_text="user names")
    action = MultiValueField(
        child=serializers.CharField(max_length=64), help_text="actions; `write.*` matches every write.… action"
    )
    target = MultiValueField(child=serializers.CharField(max_length=128), help_text="targets (point names, ...)")


def select_audit(rows: QuerySet, query: dict[str, Any]) -> QuerySet:
    """``rows`` narrowed by ``query`` (validated :class:`AuditQuerySerializer` data)."""
    rows = in_time_range(rows, query)
    if query.get("user"):
        rows = rows.filter(username__in=query["user"])
    if query.get("target"):
        rows = rows.filter(target__in=query["target"])
    if query.get("action"):
        wanted = Q()
        for action in query["action"]:
            wanted |= Q(action__startswith=action[:-1]) if action.endswith("*") else Q(action=action)
        rows = rows.filter(wanted)
    return rows


class AuditListView(GenericAPIView):
    """The audit trail, newest first."""

    serializer_class = AuditEntrySerializer
    permission_classes = [SeesAuditTrail]
    queryset = AuditEntry.objects.all()

    @extend_schema(
        operation_id="audit_list",
        summary="Audit trail",
        description=(
            "Who asked for what and when (writes, refusals, configuration changes, tokens), newest first, filtered, "
            "a page at a time. Needs `control.view_auditentry` and access to every site."
        ),
        parameters=[AuditQuerySerializer],
        responses={200: AuditEntrySerializer(many=True), **error_responses(400, 403)},
        tags=["audit"],
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, AuditQuerySerializer)
        page = self.paginate_queryset(select_audit(self.get_queryset(), query).order_by("-time", "-id"))
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)
