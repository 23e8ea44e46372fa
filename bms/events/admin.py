from django.contrib import admin

from bms.control.admin import ReadOnlyLogAdmin
from bms.events.models import Event
from bms.sites.scope import request_site_ids, visible_sources


@admin.register(Event)
class EventAdmin(ReadOnlyLogAdmin):
    list_display = ("time", "kind", "severity", "source", "message", "origin")
    list_filter = ("kind", "severity")
    search_fields = ("source", "message")

    def get_queryset(self, request):
        """A caller restricted to some sites sees the events of their devices and points only."""
        events = super().get_queryset(request)
        names = visible_sources(request_site_ids(request))
        return events if names is None else events.filter(source__in=names)
