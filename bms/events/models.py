"""The event log: what the engine observed (communication lost/restored, point errors)."""

from django.db import models


class Event(models.Model):
    """One logged occurrence; written once per state transition, never per poll."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    time = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=32, db_index=True)
    source = models.CharField(max_length=128, help_text="device or point name")
    severity = models.CharField(max_length=8, choices=[(s, s) for s in (INFO, WARNING, ERROR)], default=INFO)
    message = models.TextField()
    origin = models.CharField(max_length=64, help_text="node that logged the event")

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.kind} {self.source}: {self.message}"
