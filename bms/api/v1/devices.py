"""Field devices in the REST API (issue 13 item 1), scoped by site.

=============================  =========================================  ==========================
``GET  devices/``              the devices of the caller's sites          every logged-in user
``GET  devices/<id>/``         one device                                 every logged-in user
``POST devices/``              add a device                               ``points.add_device``
``PUT/PATCH devices/<id>/``    change a device                            ``points.change_device``
``DELETE devices/<id>/``       delete a device and its points             ``points.delete_device``
=============================  =========================================  ==========================

The list filters by ``site`` (names), ``driver`` and ``enabled``. Every save runs the model's own checks (the
admin's): a refusal is a 400 ``invalid`` with the messages per field. A device's ``site`` is named, and only a site
the caller sees can be named (another is "no such site", as a missing one); a caller restricted to some sites must
name one. A device of another site by id is a 404 exactly like a missing one, for reads and changes alike.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import LookupMixin, ModelValidationMixin, MultiValueField, parse_query
from bms.api.v1.checked import CheckedModelSerializer, LookupFirstMixin
from bms.api.v1.docs import error_responses
from bms.api.v1.fields import json_type
from bms.api.v1.permissions import ModelPermissions
from bms.points.models import Device
from bms.sites import scope
from bms.sites.models import Site
from drivers.registry import DRIVERS

DRIVER_NAMES = sorted(DRIVERS)


@extend_schema_field(OpenApiTypes.STR)
class SiteNameField(serializers.SlugRelatedField):
    """A site by name, among the sites the caller sees (another site is "no such site", like a missing one)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "name")
        kwargs.setdefault("error_messages", {"does_not_exist": "There is no site named {value!r}."})
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        return scope.in_sites(Site.objects.all(), scope.request_site_ids(request), "pk")

    def to_internal_value(self, data: Any) -> Site:
        if not isinstance(data, str):
            raise ValidationError(f"Expected a site name (a string), got {json_type(data)}.")
        if "\x00" in data or len(data) > 64:
            raise ValidationError(f"There is no site named {data[:64]!r}.")
        return super().to_internal_value(data)


class DeviceSerializer(CheckedModelSerializer):
    """A field device: its driver, where it is, how often it is polled, and the site it belongs to."""

    site = SiteNameField(
        queryset=Site.objects.all(), required=False, help_text="the site's name; default: the site 'main'"
    )

    class Meta:
        model = Device
        fields = [
            "id",
            "name",
            "site",
            "driver",
            "host",
            "port",
            "unit_id",
            "poll_interval",
            "timeout",
            "options",
            "enabled",
        ]
        extra_kwargs = {
            "driver": {"error_messages": {"invalid_choice": "Unknown driver {input!r}; use " + ", ".join(DRIVER_NAMES)}}
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context.get("request")
        if self.instance is None and "site" not in attrs and not scope.sees_all(scope.request_site_ids(request)):
            # The default site may be one this caller does not see: it must say where the device goes.
            raise ValidationError({"site": ["Name the device's site (this user sees only some sites)."]})
        return attrs


class DeviceQuerySerializer(serializers.Serializer):
    """Filters of the device list."""

    site = MultiValueField(child=serializers.CharField(max_length=64), help_text="site names")
    driver = MultiValueField(child=serializers.ChoiceField(choices=DRIVER_NAMES), help_text="drivers")
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="enabled or not")


@extend_schema_view(
    list=extend_schema(
        summary="Devices",
        description="The devices of the caller's sites, by name.",
        parameters=[DeviceQuerySerializer],
        responses={200: DeviceSerializer(many=True), **error_responses(400)},
    ),
    retrieve=extend_schema(summary="One device", responses={200: DeviceSerializer, **error_responses(404)}),
    create=extend_schema(
        summary="Add a device",
        description="Checked whole by the model (as in the admin): each refusal is a message under its field.",
        responses={201: DeviceSerializer, **error_responses(400, 403, 409)},
    ),
    update=extend_schema(
        summary="Replace a device", responses={200: DeviceSerializer, **error_responses(400, 403, 404, 409)}
    ),
    partial_update=extend_schema(
        summary="Change a device", responses={200: DeviceSerializer, **error_responses(400, 403, 404, 409)}
    ),
    destroy=extend_schema(
        summary="Delete a device (and its points)", responses={204: None, **error_responses(403, 404, 409)}
    ),
)
class DeviceViewSet(LookupFirstMixin, LookupMixin, ModelValidationMixin, viewsets.ModelViewSet):
    """Devices: read by every logged-in user (its sites only), changed with the device permissions (engineers)."""

    queryset = Device.objects.all()
    serializer_class = DeviceSerializer
    permission_classes = [ModelPermissions]
    what = "device"

    def get_queryset(self) -> QuerySet:
        return scope.in_sites(Device.objects.select_related("site"), scope.request_site_ids(self.request))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        query = parse_query(request, DeviceQuerySerializer)
        rows = self.get_queryset()
        if query.get("site"):
            rows = rows.filter(site__name__in=query["site"])
        if query.get("driver"):
            rows = rows.filter(driver__in=query["driver"])
        if query.get("enabled") is not None:
            rows = rows.filter(enabled=query["enabled"])
        page = self.paginate_queryset(rows.order_by("name"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
