"""Alarm classes (shared by every site), definitions and the journal in the admin.

Definitions and journal rows belong to their point's site: a caller restricted to some sites sees only theirs
(bms/sites/admin_scope.py, docs/sites.md).
"""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from bms.alarms.models import AlarmClass, AlarmDefinition, AlarmJournal
from bms.control.admin import ReadOnlyLogAdmin
from bms.sites.admin_scope import SiteScopedAdminMixin
from bms.sites.scope import named_in_sites, request_site_ids


@admin.register(AlarmClass)
class AlarmClassAdmin(admin.ModelAdmin):
    list_display = ("name", "default_priority", "swatch", "ack_required", "annunciated", "description")
    list_filter = ("ack_required", "annunciated")
    search_fields = ("name", "description")

    @admin.display(description="colour", ordering="colour")
    def swatch(self, obj: AlarmClass) -> str:
        return format_html(
            '<span style="display:inline-block;width:1em;height:1em;background:{};vertical-align:middle"></span> {}',
            obj.colour,
            obj.colour,
        )


@admin.register(AlarmDefinition)
class AlarmDefinitionAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "point__device__site"
    list_display = (
        "name",
        "point",
        "kind",
        "limit",
        "alarm_value",
        "priority",
        "alarm_class",
        "area",
        "on_delay",
        "ack_required",
        "enabled",
        "out_of_service",
    )
    list_filter = ("kind", "alarm_class", "enabled", "out_of_service", "ack_required", "area")
    search_fields = ("name", "point__name", "area", "message")
    list_select_related = ("point", "alarm_class")
    autocomplete_fields = ("point", "setpoint_point", "suppression_point")
    readonly_fields = ("out_of_service_by", "out_of_service_at")
    fieldsets = (
        (None, {"fields": ("name", "point", "kind", "alarm_class", "priority", "area", "message", "enabled")}),
        ("Condition", {"fields": ("limit", "deadband", "alarm_value", "setpoint_point", "rate_per_minute")}),
        ("Timing", {"fields": ("on_delay", "off_delay", "quality_delay", "realarm_seconds")}),
        ("Handling", {"fields": ("ack_required", "suppression_point")}),
        ("Out of service", {"fields": ("out_of_service", "out_of_service_by", "out_of_service_at")}),
    )

    def save_model(self, request, obj: AlarmDefinition, form, change: bool) -> None:
        if "out_of_service" in form.changed_data:
            obj.out_of_service_by = request.user.get_username()
            obj.out_of_service_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(AlarmJournal)
class AlarmJournalAdmin(ReadOnlyLogAdmin):
    list_display = (
        "time",
        "alarm",
        "transition",
        "state",
        "value",
        "priority",
        "alarm_class",
        "area",
        "username",
        "comment",
        "origin",
    )
    list_filter = ("transition", "state", "alarm_class", "area")
    search_fields = ("alarm", "point_name", "message", "username", "comment")
    date_hierarchy = "time"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # a journal row names its alarm's point: another site's point (or one since deleted) is not shown
        return named_in_sites(super().get_queryset(request), request_site_ids(request))
