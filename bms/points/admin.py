"""Devices and points in the admin, each of the caller's sites only (bms/sites/admin_scope.py, docs/sites.md)."""

from django.contrib import admin

from bms.points.models import Device, Point
from bms.sites.admin_scope import SiteChoicesMixin, SiteRelatedFieldListFilter, SiteScopedAdminMixin
from bms.sites.models import default_site_id


class PointInline(SiteChoicesMixin, admin.TabularInline):
    model = Point
    extra = 0
    fields = (
        "name",
        "address",
        "data_type",
        "scale",
        "offset",
        "unit",
        "writable",
        "min_value",
        "max_value",
        "deadband",
        "trend_mode",
        "trend_deadband",
        "trend_interval",
        "enabled",
    )


@admin.register(Device)
class DeviceAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "site"
    default_site = staticmethod(default_site_id)
    list_display = ("name", "site", "driver", "host", "port", "unit_id", "poll_interval", "timeout", "enabled")
    list_filter = (("site", SiteRelatedFieldListFilter), "driver", "enabled")
    list_select_related = ("site",)
    search_fields = ("name", "host")
    inlines = [PointInline]


@admin.register(Point)
class PointAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "device__site"
    list_display = (
        "name",
        "device",
        "site",
        "address",
        "data_type",
        "unit",
        "writable",
        "min_value",
        "max_value",
        "deadband",
        "trend_mode",
        "trend_interval",
        "enabled",
    )
    list_filter = (
        ("device__site", SiteRelatedFieldListFilter),
        ("device", SiteRelatedFieldListFilter),
        "data_type",
        "writable",
        "enabled",
        "trend_mode",
    )
    list_select_related = ("device__site",)
    search_fields = ("name", "description", "address")

    @admin.display(description="site", ordering="device__site__name")
    def site(self, point: Point) -> str:
        return str(point.device.site)
