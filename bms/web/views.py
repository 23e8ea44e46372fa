"""Pages of the web manager: the points list with live values, and liveness."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render

from bms.points.models import Device


@login_required
def points(request):
    devices = Device.objects.prefetch_related("points").order_by("name")
    return render(
        request,
        "web/points.html",
        {"devices": devices, "can_write": request.user.has_perm("points.write_point")},
    )


def healthz(request):
    """Liveness for load balancers and scripts; no login."""
    return JsonResponse({"node": settings.BMS_NODE_NAME, "status": "ok"})
