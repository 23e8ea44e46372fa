"""Every saved or deleted alarm class or definition bumps the configuration revision, as points do.

A running engine reloads its configuration when the revision moves, so an
edited limit or a new definition takes effect without a restart.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from bms.alarms.models import AlarmClass, AlarmDefinition
from bms.points.models import ConfigRevision


@receiver([post_save, post_delete], sender=AlarmClass)
@receiver([post_save, post_delete], sender=AlarmDefinition)
def alarm_configuration_changed(sender, **kwargs) -> None:
    ConfigRevision.bump()
