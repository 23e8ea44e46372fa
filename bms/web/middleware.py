"""A request that needs the database while it is away gets a clear 503, not a 500 and a traceback in the log.

Health and role keep answering from memory (:mod:`redundancy.nodeview`);
everything else that must read or write the database (a write, the point
list, a page) is answered ``503``: a JSON error under ``/api/``, a short page
otherwise, naming the cause. Nothing is half-done: a write is recorded in the
database or not at all, so a refused write was neither recorded nor sent.
The log says it once per outage, then counts (the first request that finds
the database back says how many were refused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

from bms.engine.dbhealth import UNAVAILABLE_ERRORS, database_outage_log
from bms.outage import one_line

log = logging.getLogger(__name__)
#: one per web process: requests refused since the first one of this outage
OUTAGE = database_outage_log("requests that need it are answered 503 until it returns", log)


class DatabaseUnavailableMiddleware:
    """Turn database errors raised by a view into a 503 naming the cause."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if OUTAGE.down and response.status_code < 500:
            OUTAGE.worked()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, UNAVAILABLE_ERRORS):
            return None
        OUTAGE.failed(exception)
        message = (
            f"This node's database is unavailable ({one_line(exception, 200)}). Nothing was recorded or sent; "
            "try again in a moment. Live values and the node's role are still served."
        )
        if request.path.startswith("/api/"):
            response = JsonResponse({"error": "database_unavailable", "message": message}, status=503)
        else:
            title = "<!doctype html><title>Database unavailable</title><h1>Database unavailable</h1>"
            response = HttpResponse(f"{title}<p>{escape(message)}</p>", status=503)
        # Django logs every 5xx answer; this outage is logged by OUTAGE, once.
        response._has_been_logged = True
        return response
