"""Every error of the REST API is one JSON object: ``{"error": "<code>", "detail": "<human text>", ...}``.

``error`` is a short stable code a client can branch on, ``detail`` a sentence
for a person. Some errors add keys: ``fields`` (400 ``invalid``: the messages
per field, nested like the body), ``required`` (403 ``forbidden``: the
permission that was missing). Nothing in ``/api/v1/`` answers with an HTML
page: DRF's errors go through :func:`exception_handler`, a URL that does not
exist through :func:`not_found` (the last route of ``bms.api.v1.urls``), and
Django's own 400/404/500 handlers through :func:`handler400`,
:func:`handler404` and :func:`handler500` (``bms/urls.py``), which keep
Django's pages outside ``/api/``.

The codes (docs/api.md has the table): ``invalid``, ``malformed``,
``bad_request``, ``unauthenticated``, ``forbidden``, ``csrf_failed``,
``not_found``, ``method_not_allowed``, ``not_acceptable``, ``conflict``,
``in_use``, ``too_large``, ``unsupported_media_type``, ``throttled``,
``engine_unavailable``, ``database_unavailable``, ``standby`` (from
``redundancy.middleware``) and ``internal_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from bms.api.v1.exceptions import BadRequest, Conflict, PayloadTooLarge, ServiceUnavailable
from bms.engine.dbhealth import UNAVAILABLE_ERRORS
from bms.outage import one_line
from bms.realtime.snapshot import EngineUnavailable

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
#: how long a client should wait before asking again after a 503
RETRY_AFTER_SECONDS = 2

#: the code of each DRF exception (the first that matches, so subclasses come first)
CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
    (exceptions.ValidationError, "invalid"),
    (exceptions.ParseError, "malformed"),
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
)


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The JSON object of one error."""
    return {"error": code, "detail": detail, **extra}


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """DRF's ``EXCEPTION_HANDLER``: every exception a view raises becomes a JSON error response.

    Unexpected exceptions are logged with their traceback and answered 500 ``internal_error`` (without the
    exception's text, which may hold internals); the transaction, if any, is rolled back.
    """
    exc = _translate(exc)
    if not isinstance(exc, exceptions.APIException):
        set_rollback()
        request = context.get("request")
        where = f"{request.method} {request.path}" if request is not None else "a request"
        log.error("unexpected error answering %s", where, exc_info=exc)
        body = error_body("internal_error", "An unexpected error occurred on the server; it has been logged.")
        response = Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        response._has_been_logged = True  # type: ignore[attr-defined]  # logged above, with the traceback
        return response

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = f"{exc.wait:.0f}"
    if exc.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    set_rollback()
    response = Response(_body(exc), status=exc.status_code, headers=headers)
    if exc.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        # An expected answer while a part is away, said once by whoever watches it; not a server error to report.
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _translate(exc: Exception) -> Exception:
    """Django's and our exceptions as the DRF exception that answers them (others are returned unchanged)."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, ProtectedError | RestrictedError):
        objects = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
        users = sorted({str(obj) for obj in objects})
        shown = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10 else "")
        return Conflict(f"It is still in use by {shown}; change or delete those first.", code="in_use")
    if isinstance(exc, IntegrityError):
        return Conflict(f"The change clashes with what is stored: {one_line(exc, 200)}")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, SuspiciousOperation | DjangoBadRequest):
        return BadRequest(one_line(exc, 200) or BadRequest.default_detail)
    if isinstance(exc, EngineUnavailable):
        return ServiceUnavailable(_sentence(str(exc)) or "The engine did not answer.", code="engine_unavailable")
    if isinstance(exc, UNAVAILABLE_ERRORS):
        from bms.web.middleware import OUTAGE  # the web side's one outage log: said once, then counted

        OUTAGE.failed(exc)
        return ServiceUnavailable(
            f"This node's database is unavailable ({one_line(exc, 200)}). Nothing was recorded or sent; "
            "try again in a moment.",
            code="database_unavailable",
        )
    return exc


def _sentence(text: str) -> str:
    """``text`` with a capital first letter and a full stop (the engine's messages are lower-case clauses)."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _body(exc: exceptions.APIException) -> dict[str, Any]:
    code = _code(exc)
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return error_body(code, summary(fields), fields=_plain(fields))
    detail = exc.detail
    if isinstance(detail, dict):  # an APIException raised with a dict: keep its keys
        text = str(detail.get("detail", "")) or exc.default_detail
        extra = {key: _plain(value) for key, value in detail.items() if key not in ("detail", "error")}
        return error_body(code, str(text), **extra)
    if isinstance(detail, list):
        return error_body(code, "; ".join(str(item) for item in detail))
    extra = getattr(exc, "extra", None) or {}
    return error_body(code, str(detail), **extra)


def _code(exc: exceptions.APIException) -> str:
    own = getattr(exc.detail, "code", None) if not isinstance(exc.detail, dict | list) else None
    # An exception that names its own code (csrf_failed, the token refusals of bms/tokens/auth.py) keeps it.
    keeps = own == "csrf_failed" or getattr(exc, "keeps_code", False)
    if isinstance(exc, Conflict | ServiceUnavailable | PayloadTooLarge | BadRequest) or keeps:
        return str(own or exc.default_code)
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code
    return str(exc.default_code)


def summary(fields: Any, prefix: str = "") -> str:
    """One sentence for ``detail`` from the per-field messages: the first message of each field, named."""
    parts: list[str] = []
    _collect(fields, prefix, parts)
    if not parts:
        return "The request is invalid."
    shown = "; ".join(parts[:5])
    return shown + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")


def _collect(value: Any, where: str, parts: list[str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            name = "" if key in ("non_field_errors", "__all__") else str(key)
            _collect(inner, f"{where}.{name}" if where and name else (name or where), parts)
    elif isinstance(value, list) and value and all(not isinstance(item, dict | list) for item in value):
        parts.append(f"{where}: {value[0]}" if where else str(value[0]))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _collect(inner, f"{where}[{index}]", parts)
    elif value:
        parts.append(f"{where}: {value}" if where else str(value))


def _plain(value: Any) -> Any:
    """ErrorDetail strings and lazy texts as plain JSON values."""
    if isinstance(value, dict):
        return {str(key): _plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(inner) for inner in value]
    return str(value)


# ---- outside DRF: URLs that do not exist, and Django's own error handlers --------------------------------------


# Exempt from CSRF like every DRF view: otherwise a POST/PUT/DELETE to a path that does not exist (a token client has
# no CSRF cookie) got Django's HTML 403 page instead of this JSON 404. It changes nothing, so there is nothing to guard.
@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """The last route under ``/api/v1/``: a URL that does not exist is a JSON 404, with a hint about the slash."""
    detail = f"There is no API endpoint at {request.path}."
    other = request.path[:-1] if request.path.endswith("/") else request.path + "/"
    try:
        match = resolve(other)
    except Resolver404:
        match = None
    if match is not None and match.func is not not_found:
        detail += f" Did you mean {other}?"
    else:
        detail += f" The endpoints are listed at {API_PREFIX}docs/."
    return JsonResponse(error_body("not_found", detail), status=404)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (a suspicious request): JSON under ``/api/v1/``, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(error_body("too_large", "The request body is too large."), status=413)
        return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)
    return defaults.bad_request(request, exception)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404: JSON under ``/api/v1/``, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return not_found(request)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Django's 500: JSON under ``/api/`` (the older endpoints' shape has ``message``), Django's page elsewhere."""
    text = "An unexpected error occurred on the server; it has been logged."
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("internal_error", text), status=500)
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "internal_error", "message": text}, status=500)
    return defaults.server_error(request)
