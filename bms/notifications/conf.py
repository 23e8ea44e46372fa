"""The notification settings, each read from Django settings, else the environment, else its default.

Nothing here is required: a site that configures no rule sends nothing.
docs/notifications.md lists them.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings


def setting(name: str, default: Any, kind: type = str) -> Any:
    """The setting ``name``: Django settings first, then the environment, then ``default``; as ``kind``."""
    if hasattr(settings, name):
        return kind(getattr(settings, name))
    raw = os.environ.get(name, "").strip()
    return kind(raw) if raw else default


def poll_seconds() -> float:
    """How often the drain looks for due notifications (Celery beat's period; the embedded runner's wait)."""
    return setting("BMS_NOTIFY_POLL_SECONDS", 2.0, float)


def batch() -> int:
    """At most this many notifications per drain pass (a pass that fills it is followed at once by another)."""
    return setting("BMS_NOTIFY_BATCH", 200, int)


def timeout() -> float:
    """Seconds one delivery may take (SMTP conversation, HTTP request) before it counts as failed."""
    return setting("BMS_NOTIFY_TIMEOUT", 10.0, float)


def retry_base() -> float:
    """The first retry's delay in seconds; each further failure doubles it."""
    return setting("BMS_NOTIFY_RETRY_BASE", 15.0, float)


def retry_cap() -> float:
    """The longest delay between two attempts, in seconds."""
    return setting("BMS_NOTIFY_RETRY_CAP", 900.0, float)


def give_up_hours() -> float:
    """A notification still failing this many hours after it was written is given up (0: never)."""
    return setting("BMS_NOTIFY_GIVE_UP_HOURS", 72.0, float)


def lease_seconds() -> float:
    """How long a claimed notification is left to its sender before another drain may try it (a dead sender)."""
    return max(setting("BMS_NOTIFY_LEASE_SECONDS", 0.0, float), 3 * timeout() + 5)


def reconcile_minutes() -> float:
    """How far back the active node looks for the partner's journal rows whose outbox rows never arrived (0: off)."""
    return setting("BMS_NOTIFY_RECONCILE_MINUTES", 30.0, float)


def reconcile_seconds() -> float:
    """How often a drain process looks (it remembers per origin how far it got)."""
    return setting("BMS_NOTIFY_RECONCILE_SECONDS", 10.0, float)


def message_id_domain() -> str:
    """The right-hand side of every Message-ID; the same on both nodes, so a resent email keeps its Message-ID."""
    return setting("BMS_NOTIFY_MESSAGE_ID_DOMAIN", "bms.notifications")


def from_email() -> str:
    """The sender of notification emails (default: Django's DEFAULT_FROM_EMAIL)."""
    return setting("BMS_NOTIFY_FROM_EMAIL", "") or settings.DEFAULT_FROM_EMAIL
