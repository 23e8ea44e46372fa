"""Admin for notification rules, recipient groups (with their recipients) and the read-only outbox."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from bms.notifications.models import Notification, NotificationRule, Recipient, RecipientGroup
from bms.sites.admin_scope import EverySiteOnly


class RecipientInline(admin.TabularInline):
    """The recipients of a group, edited with it."""

    model = Recipient
    extra = 1
    fields = ("name", "channel", "address", "secret", "weekdays", "start_time", "end_time", "enabled")


@admin.register(RecipientGroup)
class RecipientGroupAdmin(admin.ModelAdmin):
    """Groups with their recipients inline."""

    list_display = ("name", "description")
    search_fields = ("name",)
    inlines = [RecipientInline]


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    """Recipients on their own, to search across groups."""

    list_display = ("name", "group", "channel", "address", "weekdays", "start_time", "end_time", "enabled")
    list_filter = ("channel", "enabled", "group")
    search_fields = ("name", "address")


@admin.register(NotificationRule)
class NotificationRuleAdmin(admin.ModelAdmin):
    """Rules: what notifies whom, and the escalation."""

    list_display = (
        "name",
        "enabled",
        "max_priority",
        "areas",
        "transitions",
        "group",
        "escalation_group",
        "escalate_after_minutes",
    )
    list_filter = ("enabled",)
    search_fields = ("name", "areas")
    filter_horizontal = ("alarm_classes",)


@admin.register(Notification)
class NotificationAdmin(EverySiteOnly, admin.ModelAdmin):
    """The outbox is history: shown, never edited here (a change needs a stamp and a merge rank); it names alarms of
    every site, so only callers who see every site have it."""

    list_display = ("time", "alarm", "alarm_seq", "transition", "stage", "recipient", "status", "attempts", "next_try")
    list_filter = ("status", "stage", "channel")
    search_fields = ("alarm", "recipient", "key")
    date_hierarchy = "time"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        return False
