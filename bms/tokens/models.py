"""API tokens for scripts (:class:`ApiToken`) and the record of every request made with one (:class:`TokenUse`).

A token belongs to one user and never allows more than that user may do;
its **scope** narrows it further: ``read`` (look only), ``write`` (also
write points and act on alarms), ``admin`` (also change the configuration).
It has an expiry (at most :data:`MAX_DAYS` days) and can be revoked. Only
the hash of its key is stored (:mod:`bms.tokens.keys`). Tokens are
configuration: they travel to the standby with the users
(:mod:`bms.tokens.replication`), so a script keeps working after a failover.
Uses are history rows, replicated both ways like the audit trail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from bms.history.models import HistoryRow

READ, WRITE, ADMIN = "read", "write", "admin"
SCOPES = (
    (READ, "read: see what the user may see"),
    (WRITE, "write: also write points and act on alarms"),
    (ADMIN, "admin: also change the configuration"),
)
SCOPE_RANK = {READ: 0, WRITE: 1, ADMIN: 2}
DEFAULT_DAYS = 90
MAX_DAYS = 366


class ApiToken(models.Model):
    """One user's API token: a name, a scope, an expiry, the hash of its key; revocable (see the module)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64, help_text="what the token is for, e.g. 'energy report script'")
    prefix = models.CharField(max_length=8, unique=True, help_text="the visible part of the key: bms_<prefix>_...")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key (the key is never stored)")
    scope = models.CharField(max_length=8, choices=SCOPES, default=READ)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"bms_{self.prefix}_… ({self.name}, {self.scope}, {self.user})"

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if (now or timezone.now()) >= self.expires_at else "active"

    def allows(self, scope: str) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[scope]

    @staticmethod
    def expiry(days: float, now: datetime | None = None) -> datetime:
        """When a token made now for ``days`` days ends; refuses a lifetime outside 1 day .. MAX_DAYS."""
        if isinstance(days, bool) or not isinstance(days, int | float) or not 1 <= days <= MAX_DAYS:
            raise ValueError(f"a token lasts from 1 to {MAX_DAYS} days, not {days!r}")
        return (now or timezone.now()) + timedelta(days=days)


class TokenUse(HistoryRow):
    """One request made with a token: when, which token, by whom, what, and the answer's status."""

    time = models.DateTimeField(default=timezone.now, db_index=True)
    prefix = models.CharField(max_length=8, db_index=True)
    username = models.CharField(max_length=150)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    status = models.PositiveSmallIntegerField()

    class Meta(HistoryRow.Meta):
        ordering = ["-time"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} bms_{self.prefix} {self.method} {self.path} {self.status}"
