"""Every saved or deleted rule, group or recipient bumps the configuration revision, as alarm definitions do.

The revision is what tells the pair that the configuration moved, so that
the configuration dump travels again (see docs/notifications.md on which
tables it must carry).
"""

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from bms.notifications.models import NotificationRule, Recipient, RecipientGroup
from bms.points.models import ConfigRevision


@receiver([post_save, post_delete], sender=NotificationRule)
@receiver([post_save, post_delete], sender=Recipient)
@receiver([post_save, post_delete], sender=RecipientGroup)
@receiver(m2m_changed, sender=NotificationRule.alarm_classes.through)
def notification_configuration_changed(sender: type, **kwargs: Any) -> None:
    """Bump the revision (a rule's classes changing counts too)."""
    ConfigRevision.bump()
