"""Sets the audit actor for each request: via admin, api or web, and the request's user when a change is saved."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from bms.audit.context import Actor, acting


def via_of(path: str) -> str:
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/api/"):
        return "api"
    return "web"


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The user is looked up when a change is saved: DRF authenticates a token inside the view and sets
        # request.user then.
        with acting(Actor(via_of(request.path), user=lambda: getattr(request, "user", None))):
            return self.get_response(request)
