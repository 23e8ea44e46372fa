"""Login throttling: django-axes counts failed logins in the database and refuses a client that keeps failing.

Settings in ``bms/settings/base.py`` (``AXES_*``, ``BMS_LOGIN_*``, ``BMS_TRUSTED_PROXIES``); docs/security.md.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check for every login that comes with a request (the login pages, the admin).

    ``authenticate()`` without a request (a management command, Django's test client ``login()``) has no client
    to count failures against; axes would raise there, so it is left to the next backend unthrottled. Every login
    over HTTP passes its request.
    """

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind ``BMS_TRUSTED_PROXIES`` proxies the address they forwarded.

    With N trusted proxies the client is the Nth entry from the right of X-Forwarded-For (each proxy appends the
    address it was reached from); entries further left were written by the client and prove nothing.
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    trusted = settings.BMS_TRUSTED_PROXIES
    if trusted <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < trusted:
        return remote
    return forwarded[-trusted][:64]


#: the longest user name axes records and compares (its column holds 255; Django's users have at most 150)
USERNAME_CHARS = 255
#: what axes keeps of the GET and POST data of an address's failed logins (it appends each failure's)
REQUEST_DATA_CHARS = 4096


def username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The user name a login tried, as axes records and compares it: cut to fit its column.

    A 5000-character name used to reach the database whole and fail the login with a 500 (issue 13).
    """
    name = (credentials or {}).get(settings.AXES_USERNAME_FORM_FIELD)
    if name is None:
        name = request.POST.get(settings.AXES_USERNAME_FORM_FIELD)
    return None if name is None else str(name)[:USERNAME_CHARS]


def bound_attempt(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``pre_save`` of axes' AccessAttempt: its GET and POST data keep only their last REQUEST_DATA_CHARS.

    Axes appends each failure's data to the row (``Concat`` in the UPDATE): a client failing on and on, locked
    out or not, grew one row without end. Wrapping the expression in ``Right`` keeps the newest part.
    """
    from django.db.models.functions import Right

    for field in ("get_data", "post_data"):
        value = getattr(instance, field)
        if hasattr(value, "resolve_expression"):
            setattr(instance, field, Right(value, REQUEST_DATA_CHARS))
        elif isinstance(value, str):
            setattr(instance, field, value[-REQUEST_DATA_CHARS:])
