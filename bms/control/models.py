"""The command log (every device write, with its outcome) and the audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from bms.history.models import HistoryRow

#: (Command.SETS_SLOT and Command.ENGINE, which the indexes' conditions need before the class exists)
_SETS_SLOT = ("succeeded", "held")
_ENGINE = "engine"


class Command(HistoryRow):
    """One requested write to a device point, identified by ``command_id`` and executed at most once.

    The row is the carrier of the command: the engine picks pending rows up
    from the database, so a lost wake-up message delays a command but never
    loses it. ``status`` moves pending -> executing -> succeeded | failed |
    unknown | expired. A command is **bound** to the node that accepted it
    and the epoch it was active in (``accepted_by``, ``accepted_epoch``): only
    that node, in that epoch, may send it, before ``expires_at``. Any other
    node (a successor after a failover, the same node after a restart in a new
    epoch) settles it instead: ``expired`` if it was still pending, ``unknown``
    if it was being sent. ``observed`` marks the outcome recorded by the node
    that could send it: it knows what the device answered, so no other
    version ever replaces it (:meth:`merge_rank`, ADR 0008).
    Every change of status takes a new history stamp, so the standby holds
    the latest version of each command (natural key: ``command_id``).

    The log is also where the server's **priority arrays** live (ADR 0016):
    for a point whose driver has no array of its own (Modbus), slot ``p``
    holds the latest command at priority ``p`` whose outcome set the slot
    (``succeeded`` or ``held``), unless it was a relinquish (``value`` null)
    or its ``hold_until`` has passed. ``held`` is the truthful outcome of a
    command whose slot was set while a higher priority was in control: the
    device was not written. Rows with ``source="engine"`` are the engine's
    own writes of an array's effective value (after an override expired,
    after a takeover); they never set a slot.
    """

    NATURAL_KEY = ("command_id",)
    MERGE_FIELDS = ("status", "observed")

    PENDING = "pending"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    HELD = "held"
    STATUSES = [(s, s) for s in (PENDING, EXECUTING, SUCCEEDED, FAILED, UNKNOWN, EXPIRED, HELD)]
    FINAL = (SUCCEEDED, FAILED, UNKNOWN, EXPIRED, HELD)
    #: outcomes after which the command's value is in its priority slot (server arrays, ADR 0016)
    SETS_SLOT = _SETS_SLOT
    #: the source of the engine's own writes of an array's effective value (they set no slot)
    ENGINE = _ENGINE

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
    accepted_epoch = models.BigIntegerField(
        default=0, help_text="fencing epoch in which the accepting node was active; only it may send the command"
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="not started by then: the command ends expired and is never sent"
    )
    observed = models.BooleanField(
        default=False,
        help_text="outcome recorded by the node that could send the command (it saw the device answer)",
    )
    hold_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="an override's end (server arrays): its slot is empty from then on (source node's clock)",
    )
    status = models.CharField(max_length=16, choices=STATUSES, default=PENDING, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(HistoryRow.Meta):
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["point_name", "priority", "status"], name="control_cmd_slot"),
            # A priority slot's latest command (bms.control.priority.latest_in_slots): one probe per priority, so
            # planning a write does not read the point's whole command log.
            models.Index(
                fields=["point_name", "priority", "-accepted_epoch", "-started_at", "-id"],
                condition=models.Q(status__in=_SETS_SLOT) & ~models.Q(source=_ENGINE),
                name="control_cmd_slot_latest",
            ),
            # The latest command sent to a point (a takeover's re-assertion asks whether it ended unknown).
            models.Index(
                fields=["point_name", "-accepted_epoch", "-started_at", "-id"],
                condition=models.Q(started_at__isnull=False) & ~models.Q(source=_ENGINE),
                name="control_cmd_last_sent",
            ),
            # Overrides' ends (the executor asks for the next one every scan): only rows with one.
            models.Index(fields=["hold_until"], condition=models.Q(hold_until__isnull=False), name="control_cmd_hold"),
            # What a node sent in an epoch (a takeover's re-assertion skips points it has already written).
            models.Index(
                fields=["accepted_by", "accepted_epoch", "started_at"],
                condition=models.Q(started_at__isnull=False),
                name="control_cmd_epoch_sent",
            ),
            # The command list, newest first, a page at a time (API and web manager).
            models.Index(fields=["-created_at", "-id"], name="control_cmd_created"),
        ]

    def __str__(self) -> str:
        return f"{self.command_id}: {self.point_name} := {self.value} ({self.status})"

    @classmethod
    def merge_rank(cls, record: dict) -> int:
        """How much a version of a command knows, for the history merge (higher wins before epoch and seq).

        2: an outcome recorded by the node that could send it (what the
        device answered, or that it was never sent); 1: an outcome recorded
        by another node or after a restart (``unknown``, ``expired``), which
        knows only that *it* did not send the command; 0: progress
        (``pending``, ``executing``).
        """
        if record.get("status") not in cls.FINAL:
            return 0
        return 2 if record.get("observed") else 1

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
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "lifetime_seconds": (
                round((self.expires_at - self.created_at).total_seconds(), 1)
                if self.expires_at and self.created_at
                else None
            ),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "hold_until": self.hold_until.isoformat() if self.hold_until else None,
            "accepted_by": self.accepted_by,
            "accepted_epoch": self.accepted_epoch,
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
