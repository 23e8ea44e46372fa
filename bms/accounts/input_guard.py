"""The first check of every request: NUL characters where a view or the login throttle would read them.

PostgreSQL cannot store a NUL in text, and psycopg refuses one even in a query parameter: a NUL in a form field,
the query string, the path or a header used to reach the database (axes records the failed login's user agent,
GET and POST data; forms look names up) and come back as a 500. It is refused here with a 400 before anything
runs. JSON bodies are the parsers' (``bms/api/v1/parsers.py``): their strings may escape a NUL as ``\\u0000``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

NUL = "\x00"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_in(request: HttpRequest) -> str | None:
    """Where the request carries a NUL (for the answer), or None.

    Headers everywhere (axes records the user agent, API token use is recorded with it). The path, the query
    string and form fields outside ``/api/`` only: the JSON APIs check their own parameters and answer in their
    own error form (a NUL in a point name is an unknown point, in a query parameter an ``invalid`` one), and
    their views never read form fields (reading them here would consume the body the REST framework parses).
    """
    for name, value in request.META.items():
        if name.startswith("HTTP_") and isinstance(value, str) and NUL in value:
            return f"the header {name[5:].replace('_', '-').title()}"
    if request.path.startswith("/api/"):
        return None
    if NUL in request.path:
        return "the path"
    if any(NUL in key or any(NUL in value for value in values) for key, values in request.GET.lists()):
        return "the query string"
    if request.method == "POST" and request.content_type in FORM_TYPES:
        if any(NUL in key or any(NUL in value for value in values) for key, values in request.POST.lists()):
            return "a form field"
    return None


class InputGuardMiddleware:
    """Refuse a request that carries a NUL character with 400 (JSON under ``/api/``); place it first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = nul_in(request)
        if where is None:
            return self.get_response(request)
        message = f"{where} contains a NUL character, which no field may hold"
        if request.path.startswith("/api/"):
            # both error forms: /api/v1/ clients read "detail", the older /api/ ones "message" (docs/api.md)
            return JsonResponse({"error": "malformed", "detail": message, "message": message}, status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
