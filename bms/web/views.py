"""Pages of the web manager: the points list with live values and the event log.

Health (``/healthz``), metrics and the redundancy page live in ``redundancy.views``. A user restricted to some
sites (:mod:`bms.sites.scope`) sees their devices and points, and the events whose source is one of them, only.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from bms.control.priority import PRIORITIES
from bms.events.models import Event
from bms.points.models import Device
from bms.schedules.models import site_time_zone
from bms.sites.scope import in_sites, request_site_ids, visible_sources
from redundancy.nodeview import node_view

EVENTS_SHOWN = 200


@login_required
def points(request: HttpRequest) -> HttpResponse:
    """The points with live values; each writable point's priority array in a panel (static/bms/priority.js).

    Overrides are offered to users who may write (operators: priority 8; engineers, with ``points.change_point``,
    any priority) on a node that takes changes.
    """
    devices = in_sites(Device.objects.all(), request_site_ids(request)).prefetch_related("points").order_by("name")
    can_write = request.user.has_perm("points.write_point")
    return render(
        request,
        "web/points.html",
        {
            "devices": devices,
            "can_write": can_write,
            "can_override": can_write and node_view(request).writable,
            "can_any_priority": request.user.has_perm("points.change_point"),
            "priorities": list(PRIORITIES),
            "site_time_zone": site_time_zone(),
        },
    )


@login_required
def events(request: HttpRequest) -> HttpResponse:
    """The latest events (communication lost/restored, points failing), newest first, for every user.

    A restricted user sees the events of its sites' devices and points (an event of the pair, or of a device
    since deleted, belongs to no site it may be shown)."""
    rows = Event.objects.all()
    sources = visible_sources(request_site_ids(request))
    if sources is not None:
        rows = rows.filter(source__in=sources)
    rows = rows[:EVENTS_SHOWN]
    return render(request, "web/events.html", {"events": rows, "limit": EVENTS_SHOWN})
