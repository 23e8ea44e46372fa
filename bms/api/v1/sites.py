"""Sites (buildings) in the REST API (issue 13 items 1 and 3).

===========================  ===============================================  =================================
``GET  sites/``              the sites the caller sees, by name               every logged-in user
``GET  sites/<id>/``         one site                                         every logged-in user
``POST sites/``              add a site                                       ``sites.add_site``, every site seen
``PUT/PATCH sites/<id>/``    change a site                                    ``sites.change_site``
``DELETE sites/<id>/``       delete a site (409 while it owns or is granted)  ``sites.delete_site``
===========================  ===============================================  =================================

A caller restricted to some sites lists only those; another site by id is a 404 exactly like a missing one, also
for a change (the lookup comes before the permission check). Only a caller who sees every site may add one: a site
a restricted caller made would be one it cannot see.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import LookupMixin, ModelValidationMixin, parse_query
from bms.api.v1.checked import CheckedModelSerializer, LookupFirstMixin
from bms.api.v1.docs import error_responses
from bms.api.v1.permissions import ModelPermissions
from bms.sites import scope
from bms.sites.models import Site


class SiteSerializer(CheckedModelSerializer):
    """A building: its unique name (letters, digits, ``_ - .``) and what operators call it."""

    class Meta:
        model = Site
        fields = ["id", "name", "title"]


class SiteQuerySerializer(serializers.Serializer):
    """Filters of the site list."""

    name = serializers.CharField(required=False, max_length=64, help_text="names starting with this")


@extend_schema_view(
    list=extend_schema(
        summary="Sites",
        description="The sites the caller sees (a restricted user: those granted), by name.",
        parameters=[SiteQuerySerializer],
        responses={200: SiteSerializer(many=True), **error_responses(400)},
    ),
    retrieve=extend_schema(summary="One site", responses={200: SiteSerializer, **error_responses(404)}),
    create=extend_schema(
        summary="Add a site",
        description="Needs `sites.add_site` and access to every site.",
        responses={201: SiteSerializer, **error_responses(400, 403, 409)},
    ),
    update=extend_schema(
        summary="Replace a site", responses={200: SiteSerializer, **error_responses(400, 403, 404, 409)}
    ),
    partial_update=extend_schema(
        summary="Change a site", responses={200: SiteSerializer, **error_responses(400, 403, 404, 409)}
    ),
    destroy=extend_schema(
        summary="Delete a site (not while it owns devices or is granted)",
        responses={204: None, **error_responses(403, 404, 409)},
    ),
)
class SiteViewSet(LookupFirstMixin, LookupMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Sites: read by every logged-in user (its own sites only), changed with the site permissions (engineers)."""

    queryset = Site.objects.all()
    serializer_class = SiteSerializer
    permission_classes = [ModelPermissions]
    what = "site"

    def get_queryset(self) -> Any:
        return scope.in_sites(Site.objects.all(), scope.request_site_ids(self.request), "pk")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        query = parse_query(request, SiteQuerySerializer)
        rows = self.get_queryset()
        if query.get("name"):
            rows = rows.filter(name__startswith=query["name"])
        page = self.paginate_queryset(rows.order_by("name"))
        return self.get_paginated_response(SiteSerializer(page, many=True).data)

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        if not scope.sees_all(scope.request_site_ids(self.request)):
            user = self.request.user.get_username()
            raise PermissionDenied(
                f"{user} may not add sites: it sees only some sites (a site is added by someone who sees every site)."
            )
        super().perform_create(serializer)
