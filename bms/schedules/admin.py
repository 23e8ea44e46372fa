"""Admin for calendars (with their entries) and schedules (with their targets and exceptions).

A schedule's page also shows, read-only, its value now and its next
transitions as the engine will compute them (from the saved definition).

Sites (bms/sites/admin_scope.py, docs/sites.md): a caller restricted to some
sites sees the schedules of those sites and the calendars of those sites or
shared ones (no site); targets and exceptions offer only those points and
calendars. Shared calendars are changed only by callers who see every site,
and a restricted caller gives a new calendar one of its sites.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponseRedirect
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
from bms.sites.admin_scope import SiteChoicesMixin, SiteRelatedFieldListFilter, SiteScopedAdminMixin
from bms.sites.models import default_site_id
from bms.sites.scope import restricted

PREVIEW_TRANSITIONS = 8


class CalendarEntryInline(admin.TabularInline):
    model = CalendarEntry
    extra = 0
    fields = DATE_ENTRY_FIELDS


@admin.register(Calendar)
class CalendarAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "site"
    shared_site = True  # a calendar of no site (public holidays) serves every site
    list_display = ("name", "site", "description", "holiday_country", "holiday_subdivision", "entry_count")
    list_filter = (("site", SiteRelatedFieldListFilter),)
    list_select_related = ("site",)
    search_fields = ("name", "description")
    inlines = [CalendarEntryInline]

    def get_form(self, request: HttpRequest, obj: Calendar | None = None, change: bool = False, **kwargs) -> type:
        form: type[ModelForm] = super().get_form(request, obj, change=change, **kwargs)
        if restricted(request) and "site" in form.base_fields:
            # a shared calendar is for callers who see every site: a restricted one names one of its own
            form.base_fields["site"].required = True
        return form

    def _shared_refused(self, request: HttpRequest, obj: Calendar | None) -> bool:
        return obj is not None and obj.site_id is None and restricted(request)

    def has_change_permission(self, request: HttpRequest, obj: Calendar | None = None) -> bool:
        return super().has_change_permission(request, obj) and not self._shared_refused(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Calendar | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not self._shared_refused(request, obj)

    @admin.display(description="entries")
    def entry_count(self, obj: Calendar) -> int:
        return obj.entries.count()


class ScheduleTargetInline(SiteChoicesMixin, admin.TabularInline):
    model = ScheduleTarget
    extra = 0
    autocomplete_fields = ("point",)


class ExceptionEventInline(SiteChoicesMixin, admin.StackedInline):
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
class ScheduleAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    site_path = "site"
    default_site = staticmethod(default_site_id)
    list_display = (
        "name",
        "site",
        "enabled",
        "value_type",
        "default_value",
        "time_zone",
        "effective_from",
        "effective_to",
    )
    list_filter = (("site", SiteRelatedFieldListFilter), "enabled", "value_type", "time_zone")
    list_select_related = ("site",)
    search_fields = ("name", "description", "targets__point__name")
    readonly_fields = ("preview",)
    inlines = [ScheduleTargetInline, ExceptionEventInline]
    fieldsets = (
        (None, {"fields": ("name", "site", "description", "enabled", "value_type", "default_value", "time_zone")}),
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
