"""The trend page of the web manager (issue 10 item 7): several points on one chart, history and live values.

``/trends/?points=a,b`` renders the page once; everything it shows comes
from ``static/bms/trends.js``: the series from ``GET /api/v1/trends/`` (the
resolution the visible range needs, fetched again on every zoom and pan),
live values from the websocket (subscribed to the charted points), and the
CSV export of the visible range from ``GET /api/v1/trends/csv``, streamed,
with its progress on the page. The chart is uPlot (``static/vendor/uplot/``).
A user restricted to some sites charts their points only: another site's point is listed as unknown, like a
name that does not exist.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from bms.api.v1.trends import MAX_SERIES
from bms.sites.scope import points_in_sites, request_site_ids


def requested_names(request: HttpRequest) -> list[str]:
    """The point names of ``?points=`` (commas or repeated), in order, without duplicates."""
    names = [part.strip() for value in request.GET.getlist("points") for part in value.split(",")]
    return list(dict.fromkeys(name for name in names if name))


@login_required
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """The trend page for the points named in ``?points=``; unknown names are listed, not charted."""
    names = requested_names(request)
    found = {point.name: point for point in points_in_sites(request_site_ids(request)).filter(name__in=names)}
    points = [found[name] for name in names if name in found][:MAX_SERIES]
    unknown = [name for name in names if name not in found]
    return render(
        request,
        "web/trends.html",
        {
            "points": points,
            "unknown": unknown,
            "too_many": len(found) > MAX_SERIES,
            "max_series": MAX_SERIES,
            "point_names": ",".join(point.name for point in points),
            "start": request.GET.get("start", ""),
            "end": request.GET.get("end", ""),
        },
    )
