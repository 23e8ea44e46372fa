"""Admin for calendars (with their entries) and schedules (with their targets and exceptions).

A schedule's page also shows, read-only, its value now and its next
transitions as the engine will compute them (from the saved definition).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.utils.html import format_html, format_html_join

from bms.schedules import evaluate as ev
from bms.schedules.models import (
    DATE_ENTRY_FIELDS,
    Calendar,
    CalendarEntry,
    ExceptionEvent,
    Schedule,
    ScheduleTarget,
)

PREVIEW_TRANSITIONS = 8


class CalendarEntryInline(admin.TabularInline):
    model = CalendarEntry
    extra = 0
    fields = DATE_ENTRY_FIELDS


@admin.register(Calendar)
class CalendarAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "holiday_country", "holiday_subdivision", "entry_count")
    search_fields = ("name", "description")
    inlines = [CalendarEntryInline]

    @admin.display(description="entries")
    def entry_count(self, obj: Calendar) -> int:
        return obj.entries.count()


class ScheduleTargetInline(admin.TabularInline):
    model = ScheduleTarget
    extra = 0
    autocomplete_fields = ("point",)


class ExceptionEventInline(admin.StackedInline):
    model = ExceptionEvent
    extra = 0
    fk_name = "schedule"
    fieldsets = (
        (None, {"fields": ("kind", "description", "event_priority", "time_values")}),
        (
            "Days",
            {
                "fields": (
                    "calendar",
                    "date",
                    ("start_date", "end_date"),
                    "year",
                    "month",
                    "day",
                    "week_of_month",
                    "day_of_week",
                )
            },
        ),
    )


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "value_type", "default_value", "time_zone", "effective_from", "effective_to")
    list_filter = ("enabled", "value_type", "time_zone")
    search_fields = ("name", "description", "targets__point__name")
    readonly_fields = ("preview",)
    inlines = [ScheduleTargetInline, ExceptionEventInline]
    fieldsets = (
        (None, {"fields": ("name", "description", "enabled", "value_type", "default_value", "time_zone")}),
        ("Weekly schedule", {"fields": ("weekly",)}),
        ("Effective period", {"fields": ("effective_from", "effective_to")}),
        ("Now and next (as saved)", {"fields": ("preview",)}),
    )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """A refusal that only shows when the inlines are saved together (a new target and a new exception whose
        value it cannot take) rolls the whole change back and is shown as a message, not as a server error."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            self.message_user(request, "Nothing was saved: " + "; ".join(exc.messages), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    @admin.display(description="value now and next transitions")
    def preview(self, obj: Schedule) -> str:
        if obj.pk is None:
            return "(save first)"
        try:
            definition = obj.definition()
        except (ValueError, KeyError) as exc:
            return f"cannot be evaluated: {exc}"
        now = datetime.now(UTC)
        state = ev.value_at(definition, now)
        zone = definition.zone
        if not state.active:
            head = "inactive now (outside its effective period)"
        else:
            since = f" since {state.since.astimezone(zone):%Y-%m-%d %H:%M %Z}" if state.since else ""
            head = f"now {_shown(state.value)}{since}"
        rows = format_html_join(
            "",
            "<li>{} {} &rarr; {} <small>({})</small></li>",
            (
                (f"{o.at.astimezone(zone):%a %Y-%m-%d %H:%M %Z}", "", _shown(o.value), o.identity)
                for o in ev.next_transitions(definition, now, PREVIEW_TRANSITIONS)
            ),
        )
        return format_html("<p>{}</p><ul>{}</ul>", head, rows)


def _shown(value: ev.Value) -> str:
    return "none (relinquish)" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
