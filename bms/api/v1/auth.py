"""Who is asking: the web manager's session for now.

API tokens (issue 13) come as another class in ``REST_FRAMEWORK
["DEFAULT_AUTHENTICATION_CLASSES"]`` (bms/settings/base.py), placed before
this one, with an ``OpenApiAuthenticationExtension`` beside it like
:class:`SessionScheme` so that the schema names it.

Changes (POST, PUT, PATCH, DELETE) made with the session need the CSRF token,
as every form of the web manager does: the ``csrftoken`` cookie's value in
the ``X-CSRFToken`` header. A request without a session is answered 401
``unauthenticated`` (not 403), as the older ``/api/`` endpoints do.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session, with a 401 for a missing login and a ``csrf_failed`` code for a missing token."""

    def authenticate_header(self, request: Request) -> str:
        # Having a header at all makes DRF answer 401 instead of 403 to a request without a login.
        return 'Session realm="bms", login="/login/"'

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as exc:
            raise exceptions.PermissionDenied(
                f"{exc.detail} Send the csrftoken cookie's value in the X-CSRFToken header.", code="csrf_failed"
            ) from exc


class SessionScheme(OpenApiAuthenticationExtension):
    """The session cookie in the OpenAPI schema."""

    target_class = "bms.api.v1.auth.SessionAuthentication"
    name = "sessionAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "Log in at /login/ (the web manager's session). Changes also need the X-CSRFToken header.",
        }
