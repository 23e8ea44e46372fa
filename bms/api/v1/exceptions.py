"""The API's own exceptions (beside DRF's): each becomes a JSON error with its code (bms.api.v1.errors).

Kept apart from :mod:`bms.api.v1.errors` so that the parser, which DRF imports
while it sets itself up, can raise them without importing DRF's views.
"""

from __future__ import annotations

from rest_framework import exceptions, status


class Conflict(exceptions.APIException):
    """409: the request is well formed but clashes with what is stored (a name taken, a class still in use)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the stored state."
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    """503: a part the request needs (the engine, the database) did not answer; nothing was changed."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A part this request needs is unavailable; try again in a moment."
    default_code = "unavailable"


class BadRequest(exceptions.APIException):
    """400: a request Django found suspicious or malformed (not a body that failed validation)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request could not be understood."
    default_code = "bad_request"


class PayloadTooLarge(exceptions.APIException):
    """413: the body is larger than the API reads."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"
