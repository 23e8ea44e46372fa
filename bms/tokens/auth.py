"""``Authorization: Bearer bms_...``: who a token request is, and whether the token's scope allows it.

A key that is malformed, unknown, expired or revoked, or whose user is
inactive, is answered 401 with a code saying which (``token_invalid``,
``token_expired``, ``token_revoked``, ``token_user_inactive``), never as
anonymous. The scope a request needs: ``read`` for GET, HEAD and OPTIONS;
for a change, the view's ``token_scope`` (``write`` on operational actions:
point writes and relinquish, alarm actions), else ``admin``. Beyond the
scope the user's own permissions still apply, so a token never allows more
than its user may do. No CSRF token is needed: a browser never sends this
header by itself.

The request remembers its token (``request.bms_token``) so that
:class:`~bms.tokens.middleware.TokenUseMiddleware` records the use with the
answer's status.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from bms.tokens import keys
from bms.tokens.models import ADMIN, READ, ApiToken

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCHEMES = ("bearer", "token")


class TokenRefused(exceptions.AuthenticationFailed):
    """A token that cannot be used (401), with a code saying why."""

    keeps_code = True  # the API's error body says which refusal (bms/api/v1/errors.py)


class ScopeRefused(exceptions.PermissionDenied):
    """A usable token whose scope does not cover the request (403 ``token_scope``)."""

    keeps_code = True


def required_scope(method: str, view: Any) -> str:
    """The scope a request by ``method`` to ``view`` needs (see the module docstring)."""
    if method.upper() in SAFE_METHODS:
        return READ
    return getattr(view, "token_scope", ADMIN)


class TokenAuthentication(authentication.BaseAuthentication):
    """API tokens (:class:`~bms.tokens.models.ApiToken`) in the ``Authorization`` header."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, key = header.partition(" ")
        if scheme.lower() not in SCHEMES:
            return None  # not a token request: the session may still authenticate it
        token = self._token(key.strip())
        request._request.bms_token = token  # recorded with the answer, a refusal of its scope included
        needed = required_scope(request.method or "GET", (request.parser_context or {}).get("view"))
        if not token.allows(needed):
            raise ScopeRefused(
                f"token bms_{token.prefix} has scope {token.scope}; {request.method} {request.path} needs "
                f"scope {needed}",
                code="token_scope",
            )
        return token.user, token

    @staticmethod
    def _token(key: str) -> ApiToken:
        prefix = keys.prefix_of(key)
        token = ApiToken.objects.select_related("user").filter(prefix=prefix).first() if prefix is not None else None
        if token is None or not keys.matches(key, token.digest):
            log.info("API request with an unknown or malformed token (prefix %s)", prefix or "-")
            raise TokenRefused("the token is not valid (malformed or unknown)", code="token_invalid")
        state = token.state(timezone.now())
        if state == "revoked":
            raise TokenRefused(f"token bms_{token.prefix} was revoked", code="token_revoked")
        if state == "expired":
            raise TokenRefused(
                f"token bms_{token.prefix} expired at {token.expires_at:%Y-%m-%d %H:%M} UTC", code="token_expired"
            )
        if not token.user.is_active:
            raise TokenRefused(f"the user of token bms_{token.prefix} is inactive", code="token_user_inactive")
        return token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="bms"'


class TokenScheme(OpenApiAuthenticationExtension):
    """API tokens in the OpenAPI schema."""

    target_class = "bms.tokens.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (web manager: API tokens; or manage.py apitoken create), sent as "
            "'Authorization: Bearer bms_...'. Its scope (read, write, admin) narrows what its user may do.",
        }
