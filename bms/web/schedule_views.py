"""The web manager's schedule pages (issue 12 item 5): the list, and the editor with its next transitions.

``/schedules/`` lists the schedules and calendars (with each calendar's
iCalendar export and an import). ``/schedules/<id>/`` and ``/schedules/new/``
are the editor: a week grid (per weekday, time/value pairs), exceptions with
their days, event priority and calendar, targets, the effective period and
the default, and the next transitions. The pages are rendered once with what
the editor needs to choose from (calendars, writable points, time zones);
``static/bms/schedules.js`` then reads and saves the schedule through the
REST API (``/api/v1/schedules/``), so the page and every other client go
through the same checks (the models', docs/schedules.md), whose refusals the
page shows next to the field they name. The transitions are computed by the
server (``next-transitions``); the value the engine holds arrives over the
websocket (image entry ``schedule:<name>``) when it runs the schedule.

Editing needs the schedule permissions (engineers) and an active node: on a
standby the editor is read-only, and the read-only guard refuses a change
anyway.

Sites (ADR 0021): a caller restricted to some sites sees the schedules of
those sites and their calendars and shared ones (a shared calendar's "used
by" names only the caller's schedules); another site's schedule by URL is
the same 404 as one that does not exist. The editor offers only the caller's
sites, and per site only its writable points and its calendars (and shared
ones).
"""

from __future__ import annotations

import zoneinfo

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from bms.control.priority import PRIORITIES
from bms.schedules.models import DAYS as MONTH_DAYS
from bms.schedules.models import (
    MONTHS,
    VALUE_TYPES,
    WEEKDAY_CHOICES,
    WEEKS,
    Calendar,
    ExceptionEvent,
    Schedule,
    site_time_zone,
)
from bms.sites import scope as sites
from bms.sites.models import Site
from redundancy.nodeview import node_view


def can_edit(request: HttpRequest, what: str = "schedule") -> bool:
    """Whether this user may change schedules here: the permissions, and a node that takes changes."""
    user = request.user
    return user.has_perm(f"schedules.change_{what}") and user.has_perm(f"schedules.add_{what}") and _writable(request)


def _writable(request: HttpRequest) -> bool:
    return node_view(request).writable


@login_required
@require_GET
def schedule_list(request: HttpRequest) -> HttpResponse:
    """The caller's schedules (type, targets, enabled) and calendars, with links to the editor and the exports."""
    ids = sites.request_site_ids(request)
    schedules = sites.in_sites(Schedule.objects.all(), ids).select_related("site")
    schedules = schedules.prefetch_related("targets__point").order_by("name")
    # a shared calendar is used by schedules of every site: name only the caller's
    users = sites.in_sites(ExceptionEvent.objects.select_related("schedule"), ids, "schedule__site")
    calendars = sites.shared_or_in_sites(Calendar.objects.select_related("site"), ids).order_by("name")
    calendars = calendars.prefetch_related("entries", Prefetch("exception_events", queryset=users))
    return render(
        request,
        "web/schedules.html",
        {
            "schedules": schedules,
            "calendars": calendars,
            "can_edit": can_edit(request),
            "can_import": request.user.has_perm("schedules.add_calendar") and _writable(request),
            "sees_all_sites": sites.sees_all(ids),
            "import_sites": sites.in_sites(Site.objects.all(), ids, "pk"),
            "site_time_zone": site_time_zone(),
        },
    )


@login_required
@require_GET
def schedule_editor(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """The editor of one schedule (``pk`` None: a new one)."""
    ids = sites.request_site_ids(request)
    schedule = None
    if pk is not None:
        schedule = sites.in_sites(Schedule.objects.all(), ids).filter(pk=pk).first()
        if schedule is None:
            raise Http404(f"There is no schedule with id {pk}.")
    editable = can_edit(request)
    if schedule is None and not editable:
        raise Http404("Creating schedules needs the engineer role on the active node.")
    points = sites.points_in_sites(ids).filter(writable=True).select_related("device__site").order_by("name")
    calendars = sites.shared_or_in_sites(Calendar.objects.select_related("site"), ids).order_by("name")
    choices = {
        "value_types": VALUE_TYPES,
        "entry_kinds": ExceptionEvent.KINDS,
        "months": MONTHS,
        "weeks": WEEKS,
        "days": MONTH_DAYS,
        "weekdays": WEEKDAY_CHOICES,
        "priorities": list(PRIORITIES),
        "sites": [{"name": site.name, "title": str(site)} for site in sites.in_sites(Site.objects.all(), ids, "pk")],
        "calendars": [calendar.name for calendar in calendars],
        # per calendar its site (null: shared), so the editor offers a schedule its site's and the shared ones
        "calendar_sites": {calendar.name: calendar.site.name if calendar.site else None for calendar in calendars},
        "points": [
            {"name": p.name, "kind": p.value_kind, "unit": p.unit, "device": p.device.name, "site": p.device.site.name}
            for p in points
        ],
        "site_time_zone": site_time_zone(),
    }
    return render(
        request,
        "web/schedule_edit.html",
        {
            "schedule": schedule,
            "can_edit": editable,
            "choices": choices,
            "time_zones": sorted(zoneinfo.available_timezones()),
            "site_time_zone": site_time_zone(),
        },
    )
