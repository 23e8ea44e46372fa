from django.contrib import admin

from bms.points.models import Device, Point


class PointInline(admin.TabularInline):
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
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("name", "driver", "host", "port", "unit_id", "poll_interval", "timeout", "enabled")
    list_filter = ("driver", "enabled")
    search_fields = ("name", "host")
    inlines = [PointInline]


@admin.register(Point)
class PointAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "device",
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
    list_filter = ("device", "data_type", "writable", "enabled", "trend_mode")
    search_fields = ("name", "description", "address")
