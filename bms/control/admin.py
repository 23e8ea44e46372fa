from django.contrib import admin

from bms.control.models import AuditEntry, Command
from bms.sites.admin_scope import EverySiteOnly, SiteScopedAdminMixin


class ReadOnlyLogAdmin(admin.ModelAdmin):
    """Logs are append-only: the admin shows them and never edits them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Command)
class CommandAdmin(SiteScopedAdminMixin, ReadOnlyLogAdmin):
    """The command log; a caller restricted to some sites sees the commands of their points only."""

    site_path = "point__device__site"
    list_display = ("created_at", "command_id", "point_name", "value", "status", "username", "source", "origin")
    list_filter = ("status", "source")
    search_fields = ("command_id", "point_name", "username")


@admin.register(AuditEntry)
class AuditEntryAdmin(EverySiteOnly, ReadOnlyLogAdmin):
    """The audit trail: it names objects of every site, so only callers who see every site have it (ADR 0021)."""

    list_display = ("time", "username", "action", "target")
    list_filter = ("action",)
    search_fields = ("username", "target")
