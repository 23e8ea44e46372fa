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

    class Meta:
        permissions = [("switchover", "Can hand control to the partner node (redundancy switchover)")]

    def __str__(self) -> str:
        return f"{self.node}: {self.role} (epoch {self.epoch})"

    @classmethod
    def current(cls) -> NodeState:
        """This node's row (a default, unsaved one before the engine first wrote it)."""
        return cls.objects.filter(node=settings.BMS_NODE_NAME).first() or cls(node=settings.BMS_NODE_NAME)

    def fresh(self, now: datetime | None = None) -> bool:
        """True if the engine wrote this row recently enough to trust (it refreshes it twice a second)."""
        if self.pk is None:
            return False
        return (now or timezone.now()) - self.updated_at < timedelta(seconds=5)
