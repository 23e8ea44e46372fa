"""Every saved or deleted calendar, calendar entry, schedule, target or exception bumps the configuration revision.

A running engine reloads its configuration when the revision moves, so an
edited schedule takes effect without a restart.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from bms.points.models import ConfigRevision
from bms.schedules.models import Calendar, CalendarEntry, ExceptionEvent, Schedule, ScheduleTarget


@receiver([post_save, post_delete], sender=Calendar)
@receiver([post_save, post_delete], sender=CalendarEntry)
@receiver([post_save, post_delete], sender=Schedule)
@receiver([post_save, post_delete], sender=ScheduleTarget)
@receiver([post_save, post_delete], sender=ExceptionEvent)
def schedule_configuration_changed(sender, **kwargs) -> None:
    ConfigRevision.bump()
