"""Records every request made with an API token (:class:`~bms.tokens.models.TokenUse`), with its answer.

The token authentication marks the request; this middleware, around the
whole view, writes one row once the answer's status is known. A request
whose token was refused is not recorded (it has no valid token, and
anonymous requests never create rows); it is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from bms.history.lockwait import create_without_waiting
from bms.tokens.models import TokenUse

log = logging.getLogger(__name__)
PATH_CHARS = 255


class TokenUseMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        token = getattr(request, "bms_token", None)
        if token is not None:
            try:
                # Bounded: a frozen engine holding the history stamp must not hold the answer (bms.history.lockwait).
                create_without_waiting(
                    TokenUse,
                    prefix=token.prefix,
                    username=token.user.get_username(),
                    method=(request.method or "")[:8],
                    path=request.path[:PATH_CHARS],
                    status=response.status_code,
                )
            except DatabaseError as exc:  # the answer stands; the missing record is said
                log.error(
                    "the use of token bms_%s (%s %s) could not be recorded: %s",
                    token.prefix,
                    request.method,
                    request.path,
                    exc,
                )
        return response
