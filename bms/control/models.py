"""The command log (every device write, with its outcome) and the audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bms.history.models import HistoryRow


class Command(HistoryRow):
    """One requested write to a device point, identified by ``command_id`` and executed at most once.

    The row is the carrier of the command: the engine picks pending rows up
    from the database, so a lost wake-up message delays a command but never
    loses it. ``status`` moves pending -> executing -> succeeded | failed; a
    command found ``executing`` when the engine starts is marked ``unknown``
    and never re-sent, because the device may or may not have received it.
    Every change of status takes a new history stamp, so the standby holds
    the latest version of each command (natural key: ``command_id``).
    """

    NATURAL_KEY = ("command_id",)

    PENDING = "pending"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    STATUSES = [(s, s) for s in (PENDING, EXECUTING, SUCCEEDED, FAILED, UNKNOWN)]
    FINAL = (SUCCEEDED, FAILED, UNKNOWN)

    command_id = models.CharField(max_length=64, unique=True)
    point = models.ForeignKey("points.Point", null=True, on_delete=models.SET_NULL, related_name="commands")
    point_name = models.CharField(max_length=128)
    value = models.JSONField(null=True, blank=True, help_text="engineering value as requested; null = relinquish")
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    payload_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=16, default="api")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    accepted_by = models.CharField(max_length=64, help_text="node that accepted the command")
    status = models.CharField(max_length=16, choices=STATUSES, default=PENDING, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(HistoryRow.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.command_id}: {self.point_name} := {self.value} ({self.status})"

    def as_dict(self) -> dict:
        return {
            "command_id": self.command_id,
            "point": self.point_name,
            "value": self.value,
            "priority": self.priority,
            "status": self.status,
            "error": self.error,
            "source": self.source,
            "user": self.username,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class AuditEntry(HistoryRow):
    """Who asked for what and when, including refused requests; append-only, replicated to the partner."""

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=128, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta(HistoryRow.Meta):
        ordering = ["-time"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action} {self.target}"
