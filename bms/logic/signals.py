"""Every saved or deleted logic rule bumps the configuration revision, as points and alarms do.

A running engine reloads its configuration when the revision moves, so an
edited rule takes effect without a restart (the rules' states carry over by
name: :class:`bms.logic.runner.RuleRunner` takes the old runner's states).
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from bms.logic.models import Rule
from bms.points.models import ConfigRevision


@receiver([post_save, post_delete], sender=Rule)
def logic_configuration_changed(sender, **kwargs) -> None:
    ConfigRevision.bump()
