"""The event log: what the engine observed (communication lost/restored, point errors)."""

from django.db import models

from bms.history.models import HistoryRow


class Event(HistoryRow):
    """One logged occurrence; written once per state transition, never per poll; replicated to the partner."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    time = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=32, db_index=True)
    source = models.CharField(max_length=128, help_text="device or point name")
    severity = models.CharField(max_length=8, choices=[(s, s) for s in (INFO, WARNING, ERROR)], default=INFO)
    message = models.TextField()

    class Meta(HistoryRow.Meta):
        ordering = ["-time", "-id"]
        # The event pages of a user limited to some sites filter by source, newest first: without it, a quiet
        # site's page read the whole log (34 ms at 200,000 events).
        indexes = [models.Index(fields=["source", "-time", "-id"], name="events_event_source_time")]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.kind} {self.source}: {self.message}"
