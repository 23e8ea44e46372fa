"""Pages of the web manager: the points list with live values and the event log.

Health (``/healthz``), metrics and the redundancy page live in ``redundancy.views``.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from bms.control.priority import PRIORITIES
from bms.events.models import Event
from bms.points.models import Device
from bms.schedules.models import site_time_zone
from redundancy.nodeview import node_view

EVENTS_SHOWN = 200


@login_required
def points(request):
    """The points with live values; each writable point's priority array in a panel (static/bms/priority.js).

    Overrides are offered to users who may write (operators: priority 8; engineers, with ``points.change_point``,
    any priority) on a node that takes changes.
    """
    devices = Device.objects.prefetch_related("points").order_by("name")
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
def events(request):
    """The latest events (communication lost/restored, points failing), newest first, for every user."""
    rows = Event.objects.all()[:EVENTS_SHOWN]
    return render(request, "web/events.html", {"events": rows, "limit": EVENTS_SHOWN})
