from django.contrib import admin

from bms.control.admin import ReadOnlyLogAdmin
from bms.events.models import Event


@admin.register(Event)
class EventAdmin(ReadOnlyLogAdmin):
    list_display = ("time", "kind", "severity", "source", "message", "origin")
    list_filter = ("kind", "severity")
    search_fields = ("source", "message")
