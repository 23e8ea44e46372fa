"""A token created, changed or deleted bumps the configuration revision: tokens travel with the configuration."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from bms.points.models import ConfigRevision
from bms.tokens.models import ApiToken


@receiver([post_save, post_delete], sender=ApiToken)
def tokens_changed(sender, **kwargs) -> None:
    ConfigRevision.bump()
