"""Pages of the web manager: the points list with live values, the event log, and liveness."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
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


def healthz(request):
    """Liveness for load balancers and scripts; no login."""
    return JsonResponse({"node": settings.BMS_NODE_NAME, "status": "ok"})
