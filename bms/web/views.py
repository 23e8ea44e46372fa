"""Pages of the web manager: the points list with live values and the event log.

Health (``/healthz``), metrics and the redundancy page live in ``redundancy.views``.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from bms.events.models import Event
from bms.points.models import Device

EVENTS_SHOWN = 200


@login_required
def points(request):
    devices = Device.objects.prefetch_related("points").order_by("name")
    return render(
        request,
        "web/points.html",
        {"devices": devices, "can_write": request.user.has_perm("points.write_point")},
    )


@login_required
def events(request):
    """The latest events (communication lost/restored, points failing), newest first, for every user."""
    rows = Event.objects.all()[:EVENTS_SHOWN]
    return render(request, "web/events.html", {"events": rows, "limit": EVENTS_SHOWN})
