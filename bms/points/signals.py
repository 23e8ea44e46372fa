"""Every saved or deleted device, point, user or group bumps the configuration revision.

Users and groups are configuration too: the pair replicates them with the
devices and points (operators log in on either node). A login only moves
``last_login``, which is not configuration, so it bumps nothing.
"""

from django.contrib.auth.models import Group, User
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from bms.points.models import ConfigRevision, Device, Point


@receiver([post_save, post_delete], sender=Device)
@receiver([post_save, post_delete], sender=Point)
@receiver([post_save, post_delete], sender=Group)
@receiver([post_save, post_delete], sender=User)
def configuration_changed(sender, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    ConfigRevision.bump()


@receiver(m2m_changed, sender=User.groups.through)
@receiver(m2m_changed, sender=User.user_permissions.through)
@receiver(m2m_changed, sender=Group.permissions.through)
def membership_changed(sender, action: str, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        ConfigRevision.bump()
