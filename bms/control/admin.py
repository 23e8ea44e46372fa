from django.contrib import admin

from bms.control.models import AuditEntry, Command


class ReadOnlyLogAdmin(admin.ModelAdmin):
    """Logs are append-only: the admin shows them and never edits them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Command)
class CommandAdmin(ReadOnlyLogAdmin):
    list_display = ("created_at", "command_id", "point_name", "value", "status", "username", "source", "origin")
    list_filter = ("status", "source")
    search_fields = ("command_id", "point_name", "username")


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyLogAdmin):
    list_display = ("time", "username", "action", "target")
    list_filter = ("action",)
    search_fields = ("username", "target")
