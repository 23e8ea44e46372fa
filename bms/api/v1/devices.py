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
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from bms.api.v1.alarms import LookupMixin, ModelValidationMixin, MultiValueField, parse_query
from bms.api.v1.checked import CheckedModelSerializer, LookupFirstMixin
from bms.api.v1.docs import error_responses
from bms.api.v1.permissions import ModelPermissions
from bms.api.v1.scoping import DefaultSiteMixin, site_field
from bms.points.models import Device
from bms.sites import scope
from drivers.registry import DRIVERS

DRIVER_NAMES = sorted(DRIVERS)


class DeviceSerializer(DefaultSiteMixin, CheckedModelSerializer):
    """A field device: its driver, where it is, how often it is polled, and the site it belongs to."""

    site = site_field(help_text="the site's name; default: the site 'main', if the caller sees it")

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
