"""Node-local redundancy state: what the engine's pair service last knew, for the web side to read.

Never replicated: each node keeps its own row. The engine writes it on every
role change and about twice a second; pages, the API, the read-only guard
and ``/healthz`` read it, so the web process needs no connection to the
engine (it may run in another process).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from redundancy.config import heartbeat_timeout


class NodeState(models.Model):
    """This node's role, epoch and live redundancy status (one row per node name)."""

    node = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=16, default="starting")
    epoch = models.BigIntegerField(default=0)
    active_node = models.CharField(max_length=64, blank=True, help_text="the node this node believes is active")
    active_url = models.CharField(max_length=300, blank=True)
    status = models.JSONField(default=dict, blank=True, help_text="live status for the redundancy page and API")
    updated_at = models.DateTimeField(default=timezone.now)
    switchover_requested_at = models.DateTimeField(null=True, blank=True)
    switchover_requested_by = models.CharField(max_length=150, blank=True)
    take_control_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="an operator asked this node to take control although it may be stale"
    )
    take_control_requested_by = models.CharField(max_length=150, blank=True)

    class Meta:
        permissions = [("switchover", "Can hand control to the partner node (redundancy switchover)")]

    def __str__(self) -> str:
        return f"{self.node}: {self.role} (epoch {self.epoch})"

    @classmethod
    def current(cls) -> NodeState:
        """This node's row (a default, unsaved one before the engine first wrote it)."""
        return cls.objects.filter(node=settings.BMS_NODE_NAME).first() or cls(node=settings.BMS_NODE_NAME)

    def fresh(self, now: datetime | None = None, max_age: float | None = None) -> bool:
        """True if the engine gave a sign of life within ``max_age`` seconds (default: the heartbeat timeout).

        The engine's liveness beat touches ``updated_at`` at least every
        min(period, timeout / 3). A row older than the heartbeat timeout means
        a frozen or dead engine: by then the partner may have taken control,
        so the role written here can no longer be vouched for.
        """
        if self.pk is None:
            return False
        if max_age is None:
            max_age = heartbeat_timeout()
        return (now or timezone.now()) - self.updated_at < timedelta(seconds=max_age)


class QuarantinedRow(models.Model):
    """A history row this node could not send to its partner (it cannot be encoded for the sync link).

    Node-local, never replicated. Replication skips the row from then on, so
    one bad row cannot stop the stream behind it; the row itself stays in its
    table, and an event and the ``bms_sync_quarantined_rows`` metric make it
    visible (ADR 0011).
    """

    table = models.CharField(max_length=100, help_text="history table, as app_label.model")
    origin = models.CharField(max_length=64)
    origin_seq = models.BigIntegerField()
    reason = models.CharField(max_length=300)
    time = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["table", "origin", "origin_seq"], name="redundancy_quarantined_row")
        ]

    def __str__(self) -> str:
        return f"{self.table} {self.origin}/{self.origin_seq}: {self.reason}"
