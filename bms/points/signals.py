"""Every saved or deleted device or point bumps the configuration revision."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from bms.points.models import ConfigRevision, Device, Point


@receiver([post_save, post_delete], sender=Device)
@receiver([post_save, post_delete], sender=Point)
def configuration_changed(sender, **kwargs) -> None:
    ConfigRevision.bump()
